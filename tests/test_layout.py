"""The layout: thin entry scripts in recipes/, packages whose imports point one way, no private SpeechBrain API."""

import ast
import inspect
import os
import re

import pytest

from conftest import REPO

#: The project's packages, lowest first: each may import only the packages before it (and itself).
LAYERS = ["models", "dataset", "experiment", "evaluation", "embeddings", "curation", "training", "inference",
          "pipeline"]
SCRIPT_LIMIT = 300


def python_files(folder):
    """The ``.py`` files below ``REPO/folder``, relative to the repository."""
    found = []
    for root, _, files in os.walk(os.path.join(REPO, folder)):
        found += [os.path.relpath(os.path.join(root, f), REPO) for f in files if f.endswith(".py")]
    return sorted(found)


def imported_modules(path):
    """Top-level names of the modules a file imports (absolute imports only)."""
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_recipes_holds_only_thin_entry_scripts():
    scripts = sorted(os.listdir(os.path.join(REPO, "recipes")))
    assert scripts and all(name.endswith(".py") for name in scripts if name != "__pycache__"), scripts
    assert "__init__.py" not in scripts, "recipes/ is not a package: its scripts are run, not imported"
    for name in (s for s in scripts if s.endswith(".py")):
        with open(os.path.join(REPO, "recipes", name), encoding="utf-8") as f:
            text = f.read()
        doc = ast.get_docstring(ast.parse(text)) or ""
        assert f"python recipes/{name}" in doc, f"recipes/{name}: the docstring must give its run command"
        assert 'if __name__ == "__main__":' in text, f"recipes/{name} is not an entry script"
        lines = text.count("\n")
        assert lines <= SCRIPT_LIMIT, (
            f"recipes/{name} has {lines} lines (at most {SCRIPT_LIMIT}: move library code out)"
        )


def test_nothing_imports_a_script():
    for path in python_files(".") :
        if path.startswith(("tests" + os.sep, ".")):
            continue
        assert "recipes" not in imported_modules(path), f"{path} imports a script of recipes/"


@pytest.mark.parametrize("package", LAYERS)
def test_imports_point_one_way(package):
    """A package imports only the packages below it in LAYERS: no cycles, models at the bottom."""
    allowed = set(LAYERS[: LAYERS.index(package) + 1])
    for path in python_files(package):
        upward = imported_modules(path) & (set(LAYERS) - allowed)
        assert not upward, f"{path} imports {sorted(upward)}, above {package} in {LAYERS}"


def package_imports(root, package):
    """``{module: modules of package it imports}`` of every module of ``package`` below the folder ``root``.

    Every import counts, at the top of a file or inside a function, absolute or relative: ``import p.m``,
    ``from p.m import x`` and ``from p import m`` (``m`` a module of p) all name ``p.m``; ``p/__init__.py`` is ``p``.
    """
    modules = {}
    for path in python_files_below(root, package):
        name = path[:-3].replace(os.sep, ".").removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        with open(os.path.join(root, path), encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        here = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here.split(".")[: len(here.split(".")) - node.level + 1] + ([base] if base else []))
                targets.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                               for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def python_files_below(root, package):
    """The ``.py`` files of the folder ``root/package``, relative to ``root``."""
    found = []
    for folder, dirs, files in os.walk(os.path.join(root, package)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found += [os.path.relpath(os.path.join(folder, f), root) for f in files if f.endswith(".py")]
    return sorted(found)


def find_cycle(graph):
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


@pytest.mark.parametrize("package", LAYERS)
def test_no_import_cycle_inside_a_package(package):
    """The modules of one package import each other one way: a cycle (even through a function-level import) fails."""
    cycle = find_cycle(package_imports(REPO, package))
    assert cycle is None, f"import cycle in {package}/: {' -> '.join(cycle)}"


def test_the_cycle_check_sees_function_level_and_relative_imports(tmp_path):
    """The check reports the cycle it finds, also when it is hidden in a function or written relatively."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import os\nfrom pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import c\n    return c\n")
    (pkg / "c.py").write_text("def g():\n    from .a import f\n    return f\n")
    graph = package_imports(str(tmp_path), "pkg")
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("def g():\n    return 1\n")
    assert find_cycle(package_imports(str(tmp_path), "pkg")) is None


def test_the_layout_page_matches_the_tree():
    """docs/layout.md lists exactly the top-level folders on disk and states the import order of LAYERS."""
    with open(os.path.join(REPO, "docs", "layout.md"), encoding="utf-8") as f:
        page = f.read()
    section = page.split("## Top-level folders", 1)[1]
    listed = set(re.findall(r"^([a-z_]+)/", section.split("```")[1], flags=re.M))
    on_disk = {d for d in os.listdir(REPO) if os.path.isdir(os.path.join(REPO, d)) and not d.startswith(".")
               and d not in ("build", "__pycache__") and not d.endswith(".egg-info")}
    assert listed == on_disk, f"docs/layout.md lists {sorted(listed)}, the tree has {sorted(on_disk)}"
    order = " → ".join(reversed(LAYERS))
    assert order in page, f"docs/layout.md must state the import order: {order}"


def _private_speechbrain_names():
    """Private (single underscore) attribute names of the SpeechBrain classes and modules the project uses."""
    import speechbrain as sb
    from speechbrain.dataio import dataloader, dataset, sampler
    from speechbrain.utils import checkpoints, distributed, run_opts

    names = set()
    for owner in (sb.Brain, checkpoints.Checkpointer, dataloader.SaveableDataLoader, run_opts.RunOptions,
                  sampler.ReproducibleRandomSampler, dataset.DynamicItemDataset, sb, checkpoints, distributed,
                  dataloader, run_opts):
        members = dir(owner) if inspect.isclass(owner) else vars(owner)
        names.update(n for n in members if n.startswith("_") and not n.startswith("__"))
    # Private state SpeechBrain sets on objects at run time (not visible on the class).
    names.update({"_speechbrain_recovery_skip_to", "_speechbrain_iterator", "_optimizer_step_limit_exceeded"})
    return names


def test_no_private_speechbrain_api():
    """Our code reaches SpeechBrain through public names only (an upgrade cannot silently break it)."""
    private = _private_speechbrain_names()
    assert {"_compile", "_wrap_distributed", "_create_parser"} <= private  # the check itself sees them
    offenders = []
    for folder in LAYERS + ["recipes", "benchmarks"]:
        for path in python_files(folder):
            with open(os.path.join(REPO, path), encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            offenders += [f"{path}:{node.lineno} .{node.attr}" for node in ast.walk(tree)
                          if isinstance(node, ast.Attribute) and node.attr in private]
    assert not offenders, "private SpeechBrain API used: " + ", ".join(offenders)


def test_one_docstring_convention():
    """SpeechBrain's sections ("Arguments", "Returns", "Example"), not numpydoc's "Parameters" / "Examples"."""
    numpydoc = re.compile(r"^\s*(Parameters|Examples)\n\s*-{3,}$", flags=re.M)
    offenders = []
    for folder in LAYERS + ["recipes", "benchmarks", "tests"]:
        for path in python_files(folder):
            with open(os.path.join(REPO, path), encoding="utf-8") as f:
                offenders += [f"{path}: {m.group(1)}" for m in numpydoc.finditer(f.read())]
    assert not offenders, offenders


def test_every_package_is_a_regular_package():
    """An ``__init__.py`` in each package folder, so that the editable install finds it from any folder."""
    for package in LAYERS:
        for root, dirs, files in os.walk(os.path.join(REPO, package)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            if any(f.endswith(".py") for f in files):
                assert "__init__.py" in files, f"{os.path.relpath(root, REPO)} has modules but no __init__.py"


def test_packages_import_from_any_folder(tmp_path):
    """After the README's install step the packages import outside the repository (scripts never edit sys.path)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = f"import importlib; [importlib.import_module(p) for p in {LAYERS!r}]"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
