"""Every promise of docs/hardening.md names a test that exists (issue 25: "every promise there is a test").

A promise is a paragraph or list item of the page's sections (the lines
before the first ``##`` heading introduce the page). Each must quote at least
one test as ``tests/<file>.py::<test>`` (optionally ``[<row id>]``) or a doctest
as ``<package>/<module>.py::<package>.<module>.<function>``, and each quoted
test must exist: a function of that file (read with :mod:`ast`, not
imported), its row id in the source of the file or of a ``tests/`` module it
imports, a doctest in the named function's docstring. Three kinds of
paragraph name no test, each by its first words:

- ``Measured, not promised:`` a figure, quoting the ``benchmarks/`` script
  that measures it and the ``docs/results/`` file it wrote;
- ``Recorded, not promised:`` a record, linking to the changelog's
  records of test runs;
- a one-sentence lead-in ending with ``:`` right before a list.
"""

import ast
import os
import re

import pytest

from conftest import REPO
from test_docs_links import FENCE, split_markdown

PAGE = "docs/hardening.md"
REFERENCE = re.compile(r"`([\w./-]+\.py)::([\w.]+)(?:\[([^\]`]+)\])?`")
MEASURED, RECORDED = "Measured, not promised:", "Recorded, not promised:"
RECORDS_LINK = "CHANGELOG.md#test-runs-recorded-at-past-commits"


def prose_lines(text):
    """The page's lines with those of code blocks blanked (so line numbers stay the file's)."""
    lines, fence = [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and not match:
            lines.append(line)
            continue
        if fence is None:
            fence = match.group(1)
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and not line.strip()[len(match.group(1)):].strip():
            fence = None
        lines.append("")
    assert [line for line in lines if line] == [line for line in split_markdown(text)[0] if line]
    return lines


def units(text):
    """``[(line number, text)]``: the paragraphs and list items after the first ``##`` heading (code removed)."""
    found, current, start, in_sections = [], [], 0, False
    for number, line in enumerate(prose_lines(text), start=1):
        heading = line.startswith("#")
        if heading and line.startswith("## "):
            in_sections = True
        new_item = line.startswith("- ")
        if heading or not line.strip() or new_item:
            if current:
                found.append((start, " ".join(current)))
            current = []
        if in_sections and line.strip() and not heading:
            if not current:
                start = number
            current.append(line.strip())
    if current:
        found.append((start, " ".join(current)))
    return found


def _functions(tree):
    """Names of the top-level functions of a module, and ``Class.method`` of its classes."""
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names[f"{node.name}.{item.name}"] = item
    return names


def _local_imports(tree, folder):
    """Sources of the modules of ``folder`` that a test file imports (where its row tables may live)."""
    sources = []
    for node in ast.walk(tree):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for module in modules:
            path = os.path.join(folder, module.replace(".", os.sep) + ".py")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    sources.append(f.read())
    return sources


def reference_problem(path, name, row, root=REPO):
    """Why ``path::name[row]`` does not resolve, or None."""
    full = os.path.join(root, path)
    if not os.path.isfile(full):
        return f"no file {path}"
    with open(full, encoding="utf-8") as f:
        source = f.read()
    tree = ast.parse(source)
    functions = _functions(tree)
    if path.startswith("tests/"):
        if name not in functions or not name.split(".")[-1].startswith("test_"):
            return f"{path} has no test {name}"
        if row is not None:
            sources = [source] + _local_imports(tree, os.path.dirname(full))
            if not any(f'"{row}"' in s or f"'{row}'" in s for s in sources):
                return f"{path}::{name}: no row {row!r} in its table"
        return None
    module = path[:-3].replace("/", ".")
    function = name[len(module) + 1:] if name.startswith(module + ".") else None
    if function not in functions:
        return f"{path} has no function {name[len(module) + 1:] if function is None else function} " \
               f"(a doctest is named {module}.<function>)"
    if ">>>" not in (ast.get_docstring(functions[function]) or ""):
        return f"{path}::{name} has no doctest"
    return None


def is_exempt(text, following):
    """A measured figure, a record, or a one-sentence lead-in of a list (see the module docstring)."""
    if text.startswith(MEASURED):
        return bool(re.search(r"`(?:python )?benchmarks/\w+\.py`", text) and "`docs/results/" in text)
    if text.startswith(RECORDED):
        return RECORDS_LINK in text
    return text.endswith(":") and ". " not in text and following is not None and following.startswith("- ")


def problems(name=PAGE, root=REPO):
    """Every promise without a test and every quoted test that does not resolve, one line each."""
    with open(os.path.join(root, name), encoding="utf-8") as f:
        found_units = units(f.read())
    found = []
    for k, (line, text) in enumerate(found_units):
        references = REFERENCE.findall(text)
        following = found_units[k + 1][1] if k + 1 < len(found_units) else None
        if not references and not is_exempt(text, following):
            found.append(f"{name}, line {line}: names no test: {text[:100]}...")
        for path, test, row in references:
            problem = reference_problem(path, test, row or None, root)
            if problem:
                found.append(f"{name}, line {line}: {problem}")
    return found


def test_every_promise_of_the_hardening_page_names_a_test_that_exists():
    found = problems()
    assert not found, "\n".join(found)


def test_the_page_names_many_tests():
    """The check above is not vacuous: the page has sections, paragraphs and references."""
    with open(os.path.join(REPO, PAGE), encoding="utf-8") as f:
        text = f.read()
    assert len(units(text)) >= 30 and len(REFERENCE.findall(text)) >= 60


# ------------------------------------------------------------------ the check itself, on a small tree
TEST_FILE = '''"""A test file."""
from rows import ROWS


def helper():
    pass


def test_one():
    pass


@pytest.mark.parametrize("row", ["kept-row"])
def test_rows(row):
    pass
'''
MODULE = '''def documented(x):
    """Doubles.

    >>> documented(2)
    4
    """
    return 2 * x


def undocumented(x):
    return x
'''
GOOD = """# Page

An intro line with no test.

## Section

A promise (`tests/test_a.py::test_one`) and a row (`tests/test_a.py::test_rows[kept-row]`)
and one from the imported table (`tests/test_a.py::test_rows[table-row]`).

Measured, not promised: `python benchmarks/cost.py` wrote `docs/results/cost.json`.

Recorded, not promised: runs in the [changelog](../CHANGELOG.md#test-runs-recorded-at-past-commits).

A lead-in:

- an item held by a doctest (`pkg/mod.py::pkg.mod.documented`);
- another item (`tests/test_a.py::test_one`).

```
code is not a promise
```
"""


def write_tree(root, page):
    for rel, content in {"tests/test_a.py": TEST_FILE, "tests/rows.py": 'ROWS = ["table-row"]\n',
                         "pkg/__init__.py": "", "pkg/mod.py": MODULE, "docs/page.md": page}.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
            f.write(content)


def test_a_page_whose_promises_all_name_tests_passes(tmp_path):
    write_tree(tmp_path, GOOD)
    assert problems("docs/page.md", str(tmp_path)) == []


@pytest.mark.parametrize("added, reported", [
    ("A promise with no test.", "names no test: A promise with no test."),
    ("Gone (`tests/test_a.py::test_gone`).", "tests/test_a.py has no test test_gone"),
    ("Not a test (`tests/test_a.py::helper`).", "tests/test_a.py has no test helper"),
    ("No such file (`tests/test_b.py::test_one`).", "no file tests/test_b.py"),
    ("No such row (`tests/test_a.py::test_rows[other-row]`).", "no row 'other-row' in its table"),
    ("No doctest (`pkg/mod.py::pkg.mod.undocumented`).", "has no doctest"),
    ("Measured, not promised: 2 s, with no script named.", "names no test"),
    ("Recorded, not promised: with no link to the records.", "names no test"),
    ("A lead-in followed by a paragraph, not a list:", "names no test"),
    ("- an item with no test", "names no test: - an item with no test"),
])
def test_a_promise_without_a_test_is_reported(tmp_path, added, reported):
    write_tree(tmp_path, GOOD + "\n" + added + "\n\nA last promise (`tests/test_a.py::test_one`).\n")
    found = problems("docs/page.md", str(tmp_path))
    assert any(reported in p for p in found), found
