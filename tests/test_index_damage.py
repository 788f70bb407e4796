"""A damaged index (issue 25, defect 9): search.py names the file that is damaged and the command that rebuilds it.

Every way the three files of an index folder can be cut short, edited, replaced or lost, each through
``search.py`` as a user runs it: one line, no traceback, the file named, the build_index.py command given,
and the folder left as it was. The hardening table holds one of them (a line cut off ``paths.txt``).
"""

import json
import os
import shutil

import faiss
import numpy as np
import pytest

from index_helpers import index_argv, script, tiny_files, user_error, write_clips
from test_hardening_defects import snapshot


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A flat index of four clips built by build_index.py with the tiny CLAP."""
    root = tmp_path_factory.mktemp("damage")
    tiny = tiny_files(root / "tiny")
    audio = root / "audio"
    write_clips(audio, ["a.wav", "b.wav", "c.wav", "d.wav"])
    out = root / "index"
    script("build_index").main(index_argv(audio, out, tiny))
    return out


def _lines(folder):
    return (folder / "paths.txt").read_text(encoding="utf-8").splitlines(keepends=True)


def _edit_info(folder, change):
    info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    change(info)
    (folder / "index.json").write_text(json.dumps(info), encoding="utf-8")


def _other_index(folder, dim, n):
    index = faiss.IndexFlatIP(dim)
    index.add(np.eye(n, dim, dtype=np.float32))
    faiss.write_index(index, str(folder / "index.faiss"))


# variant: (how the folder is damaged, the file the message must name, what else it must say)
DAMAGE = {
    "paths-line-cut": (lambda d: (d / "paths.txt").write_text("".join(_lines(d)[:-1])), "paths.txt", "4 vectors"),
    "paths-line-added": (lambda d: (d / "paths.txt").write_text("".join(_lines(d)) + "/x/e.wav\n"), "paths.txt",
                         "5 paths"),
    "paths-edited": (lambda d: (d / "paths.txt").write_text("".join(_lines(d)).replace("b.wav", "B.wav")),
                     "paths.txt", "was changed since the index was built"),
    "paths-missing": (lambda d: os.remove(d / "paths.txt"), "paths.txt", "not found"),
    "paths-not-text": (lambda d: (d / "paths.txt").write_bytes(b"\xff\xfe\x00garbage"), "paths.txt",
                       "cannot be read"),
    "faiss-truncated": (lambda d: (d / "index.faiss").write_bytes((d / "index.faiss").read_bytes()[:100]),
                        "index.faiss", "truncated or not a faiss index"),
    "faiss-garbage": (lambda d: (d / "index.faiss").write_bytes(b"garbage" * 10), "index.faiss",
                      "truncated or not a faiss index"),
    "faiss-missing": (lambda d: os.remove(d / "index.faiss"), "index.faiss", "not found"),
    "faiss-other-dimension": (lambda d: _other_index(d, 8, 4), "index.faiss", "8-dimensional vectors"),
    "faiss-other-count": (lambda d: _other_index(d, 16, 5), "index.faiss", "5 vectors"),
    "json-truncated": (lambda d: (d / "index.json").write_bytes((d / "index.json").read_bytes()[:40]),
                       "index.json", "cannot be read"),
    "json-not-an-object": (lambda d: (d / "index.json").write_text("[1, 2]"), "index.json", "holds a list"),
    "json-count-edited": (lambda d: _edit_info(d, lambda i: i.update(count=99)), "index.json", "says 99"),
    "json-count-not-a-number": (lambda d: _edit_info(d, lambda i: i.update(count="four")), "index.json",
                                "count missing or of the wrong type"),
    "json-model-missing": (lambda d: _edit_info(d, lambda i: i.pop("model")), "index.json", "model missing"),
    "json-architecture-edited": (lambda d: _edit_info(d, lambda i: i["model"]["architecture"].update(d_proj=8)),
                                 "index.json", "cannot be built"),
    "json-missing": (lambda d: os.remove(d / "index.json"), "index.json", "--output_folder of recipes/build_index.py"),
}


@pytest.mark.parametrize("variant", sorted(DAMAGE))
def test_a_damaged_index_is_named_in_one_line_with_the_rebuild_command(variant, built, tmp_path):
    damage, name, detail = DAMAGE[variant]
    folder = tmp_path / "index"
    shutil.copytree(built, folder)
    damage(folder)
    before = snapshot([folder])
    text = user_error(lambda: script("search").main([f"--index_folder={folder}", "a dog barks"]))
    assert "\n" not in text and "Traceback" not in text and text.startswith("ERROR: ")
    assert os.path.join(os.path.abspath(folder), name) in text and detail in text
    assert "build_index.py" in text
    if variant != "json-missing":
        assert "rebuild the index: python recipes/build_index.py --audio_folder=" in text
    assert snapshot([folder]) == before


def test_an_index_of_an_earlier_version_still_loads(built, tmp_path):
    """index.json without the paths' digest (indexes built before it was recorded): searched as before."""
    folder = tmp_path / "index"
    shutil.copytree(built, folder)
    _edit_info(folder, lambda info: info.pop("paths_digest"))
    answers = script("search").main([f"--index_folder={folder}", "a dog barks", "--topk=4"])
    assert sorted(os.path.basename(r["path"]) for r in answers[0]["results"]) == ["a.wav", "b.wav", "c.wav", "d.wav"]
