"""Settings for every test of the repository, the packages' doctests included (``tests/conftest.py`` holds the
fixtures of ``tests/``): nothing a run writes is left outside pytest's temporary folders.

- The doctests make their example folders with ``tempfile.mkdtemp()``, which nothing removes: each run used to
  leave about a hundred folders in the system's temporary folder. Each doctest's ``tempfile`` now writes into
  that doctest's own ``tmp_path``.
- The processes the tests start (recipes, ``torchrun``, which leaves a ``torchelastic_*`` folder per launch)
  get ``TMPDIR`` inside the session's temporary folder.

pytest removes both with the rest of its temporary folders (kept only for failed tests:
``tmp_path_retention_policy`` in pyproject.toml).
"""

import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def _session_temporary_folder(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("tmpdir"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", folder)
        patch.setattr(tempfile, "tempdir", folder)
        yield folder


@pytest.fixture(autouse=True)
def _doctest_temporary_folders(request):
    if type(request.node).__name__ != "DoctestItem":  # pytest's doctest item (its class is not public API)
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(request.getfixturevalue("tmp_path")))
        yield
