"""README.md, CHANGELOG.md and docs/*.md: links, anchors and quoted repository paths resolve.

Every relative link ``[text](path)``, ``[text](path#anchor)`` and
``[text](#anchor)`` must name a file or folder of the repository and, for a
Markdown target, one of its headings (GitHub's anchors: see
:func:`github_slug`). Every repository path quoted in backticks or in a code
block (``recipes/x.py``, ``hparams/toy/pipeline.yaml``, ``docs/results/...``,
``models/clap.py``, ``tests/test_x.py``, a folder such as ``dataset/toy/``)
must exist, and every dotted module a page names (``models.loss.SoftClapLoss``)
must be a module of the repository. Placeholders are not paths: anything with
``$``, ``<``, ``>`` or ``*``; ``{a,b}`` is expanded; paths under an output
folder (``toy_results/...``) start with no folder of the repository.
"""

import os
import re
import unicodedata
from urllib.parse import unquote

import pytest

from conftest import REPO

README_LIMIT = 20_000
#: File endings that make ``name.ext`` a file name, not a dotted module (``pipeline.yaml``, ``training.md``).
FILE_ENDINGS = {"md", "py", "yaml", "yml", "csv", "json", "txt", "npy", "log", "png", "pt", "pth", "ckpt", "wav",
                "flac", "ogg", "mp3", "tsv", "toml", "lock", "faiss", "bin", "safetensors", "cfg", "html", "sh"}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*(?:#+[ \t]*)?$")
HTML_ANCHOR = re.compile(r"""<a\s[^>]*(?:name|id)=["']([^"']+)["']""")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def markdown_files(root=REPO):
    """README.md, CHANGELOG.md and the pages of docs/ (relative to ``root``)."""
    names = [n for n in ("README.md", "CHANGELOG.md") if os.path.isfile(os.path.join(root, n))]
    docs = os.path.join(root, "docs")
    if os.path.isdir(docs):
        names += sorted(f"docs/{n}" for n in os.listdir(docs) if n.endswith(".md"))
    return names


def split_markdown(text):
    """``(prose_lines, code_lines)``: the lines outside and inside fenced code blocks."""
    prose, code, fence = [], [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None and match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and not line.strip()[len(match.group(1)):].strip():
            fence = None
        elif fence is None:
            prose.append(line)
        else:
            code.append(line)
    return prose, code


def github_slug(heading):
    """GitHub's anchor of a heading: its text, lower case, punctuation dropped but ``-`` and ``_``, spaces → ``-``."""
    text = LINK.sub(lambda m: m.group(1), heading)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return kept.replace(" ", "-")


def anchors(text):
    """The anchors of a Markdown text: its headings' slugs (repeats get ``-1``, ``-2``, ...) and HTML anchors."""
    found, seen = set(), {}
    prose, _ = split_markdown(text)
    for line in prose:
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            if slug in seen:
                seen[slug] += 1
                found.add(f"{slug}-{seen[slug]}")
            else:
                seen[slug] = 0
                found.add(slug)
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(prose):
    """The link targets of prose lines (code spans masked, so code is never read as a link)."""
    targets = []
    for line in prose:
        masked = CODE_SPAN.sub(lambda m: "CODE", line)
        targets += [m.group(2) for m in LINK.finditer(masked)]
    return targets


def quoted_text(prose, code):
    """What a page quotes as code: the contents of its code spans and its code blocks."""
    spans = [m.group(2) for line in prose for m in CODE_SPAN.finditer(line)]
    return spans + code


def expand_braces(path):
    """``a/{b,c}.yaml`` → ``[a/b.yaml, a/c.yaml]`` (one brace group at a time)."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if not match:
        return [path]
    return [p for option in match.group(1).split(",")
            for p in expand_braces(path[: match.start()] + option + path[match.end():])]


def repository_folders(root):
    """The top-level folders of the repository (hidden ones such as .ci included, build output excluded)."""
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))
                  and d not in (".git", "build", "__pycache__") and not d.endswith(".egg-info")
                  and not d.startswith((".venv", ".pytest", ".ruff")))


def packages(root):
    """The top-level Python packages of the repository."""
    return sorted(d for d in repository_folders(root) if os.path.isfile(os.path.join(root, d, "__init__.py")))


def quoted_paths(snippets, root):
    """Repository paths quoted in ``snippets`` (placeholders skipped, braces expanded, ``../`` prefixes dropped)."""
    tops = "|".join(re.escape(d) for d in repository_folders(root))
    if not tops:
        return []
    pattern = re.compile(rf"(?<![\w/.$<>{{}}@~-])(?:\.\./)*((?:{tops})/[\w./{{}},*<>$|-]*)")
    found = []
    for snippet in snippets:
        for match in pattern.finditer(snippet):
            path = match.group(1).rstrip(".,|")
            if any(c in path for c in "$<>*|") or "..." in path:
                continue
            for expanded in expand_braces(path):
                if "{" not in expanded and "}" not in expanded:
                    found.append(expanded)
    return found


def quoted_modules(snippets, root):
    """Dotted names starting with a package of the repository (``models.loss.SoftClapLoss``), file names skipped."""
    names = "|".join(re.escape(p) for p in packages(root))
    if not names:
        return []
    pattern = re.compile(rf"(?<![\w./$-])((?:{names})(?:\.[A-Za-z_]\w*)+)(?![\w/-])")
    found = []
    for snippet in snippets:
        for match in pattern.finditer(snippet):
            dotted = match.group(1)
            if dotted.rsplit(".", 1)[1].lower() not in FILE_ENDINGS:
                found.append(dotted)
    return found


def module_exists(dotted, root):
    """Whether ``pkg.sub.module[.attribute...]`` starts with modules of the repository.

    A name after a package that is neither a module nor a subpackage is an
    attribute (``inference.ClapEmbedder``, ``dataset.toy.plan_world``), except
    a lower-case name right after a top-level package (``dataset.no_such``),
    which can only be a module that is not there.
    """
    parts = dotted.split(".")
    folder = os.path.join(root, parts[0])
    for depth, part in enumerate(parts[1:], start=1):
        if os.path.isfile(os.path.join(folder, part, "__init__.py")):
            folder = os.path.join(folder, part)
        elif os.path.isfile(os.path.join(folder, part + ".py")):
            return True
        else:
            return not (depth == 1 and part[:1].islower())
    return True


def problems(name, root=REPO):
    """Everything that does not resolve in the page ``name`` (relative to ``root``), one line each."""
    path = os.path.join(root, name)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    prose, code = split_markdown(text)
    found = []
    for target in links(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I) or target.startswith("//"):
            continue  # a URL (https:, mailto:)
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part)
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if os.path.relpath(resolved, root).startswith(".."):
            found.append(f"{name}: link ({target}) leaves the repository")
            continue
        if not os.path.exists(resolved):
            found.append(f"{name}: link ({target}): no file {os.path.relpath(resolved, root)}")
            continue
        if anchor and resolved.endswith(".md"):
            with open(resolved, encoding="utf-8") as f:
                if unquote(anchor) not in anchors(f.read()):
                    found.append(f"{name}: link ({target}): no heading #{anchor} in {os.path.relpath(resolved, root)}")
    snippets = quoted_text(prose, code)
    for quoted in quoted_paths(snippets, root):
        if not os.path.exists(os.path.join(root, quoted)):
            found.append(f"{name}: quoted path {quoted} does not exist")
    for dotted in quoted_modules(snippets, root):
        if not module_exists(dotted, root):
            found.append(f"{name}: quoted module {dotted} does not exist")
    return found


@pytest.mark.parametrize("name", markdown_files())
def test_links_anchors_and_quoted_paths_resolve(name):
    found = problems(name)
    assert not found, "\n".join(found)


def test_readme_is_at_most_20_kb():
    size = os.path.getsize(os.path.join(REPO, "README.md"))
    assert size <= README_LIMIT, f"README.md has {size} bytes (at most {README_LIMIT}: move sections to docs/)"


def test_every_page_is_one_click_from_the_readme():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        prose, _ = split_markdown(f.read())
    linked = {os.path.normpath(t.partition("#")[0]) for t in links(prose)}
    pages = [n for n in markdown_files() if n != "README.md"]
    assert pages, "no docs pages found"
    missing = [n for n in pages if os.path.normpath(n) not in linked]
    assert not missing, f"pages the README does not link to: {missing}"


def test_github_slugs():
    assert github_slug("The whole method on the toy world: `recipes/toy_pipeline.py`") == \
        "the-whole-method-on-the-toy-world-recipestoy_pipelinepy"
    assert github_slug("Reduced precision: bf16 / fp16") == "reduced-precision-bf16--fp16"
    assert github_slug("The paper's code vs this project") == "the-papers-code-vs-this-project"
    assert github_slug("Text↔audio retrieval") == "textaudio-retrieval"
    assert github_slug("See [the API](api.md#x) here") == "see-the-api-here"


GOOD_PAGE = """# Page

## Same
## Same
Text [up](#same-1), [other](page.md#a-heading), [folder](../recipes/), [web](https://example.org/x#y).
`recipes/run.py`, `hparams/toy/{a,b}.yaml`, `pkg/mod.py`, `pkg.mod.Thing`, `pkg.Exported`, `pkg.mod`,
`hparams/$SET/a.yaml`, `hparams/<set>/a.yaml`, `hparams/*.yaml`, `toy_results/seed1/teacher/`,
`pipeline.yaml`, `$OUT/pkg/save`, `seed<N>/pkg/x.csv`, `hparams/toy/{a,b}.yaml`.

```bash
# ## Not a heading
python recipes/run.py hparams/toy/a.yaml --output_folder=toy_results/pkg/missing.py
```
"""

TARGET_PAGE = "# Target\n\n## A heading\n\n```\n## Fenced heading\n```\n"


def write_tree(root, page):
    """A tiny repository: a script, two YAMLs, a package, docs/page.md and docs/index.md holding ``page``."""
    for rel, content in {"recipes/run.py": "", "hparams/toy/a.yaml": "", "hparams/toy/b.yaml": "",
                         "pkg/__init__.py": "", "pkg/mod.py": "", "docs/page.md": TARGET_PAGE,
                         "docs/index.md": page}.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
            f.write(content)


def test_a_correct_page_has_no_problems(tmp_path):
    write_tree(tmp_path, GOOD_PAGE)
    assert problems("docs/index.md", str(tmp_path)) == []


@pytest.mark.parametrize("line, reported", [
    ("[gone](missing.md)", "no file docs/missing.md"),
    ("[gone](../recipes/gone.py)", "no file recipes/gone.py"),
    ("[outside](../../x.md)", "leaves the repository"),
    ("[bad anchor](#nowhere)", "no heading #nowhere in docs/index.md"),
    ("[third copy](#same-2)", "no heading #same-2"),
    ("[fenced](page.md#fenced-heading)", "no heading #fenced-heading in docs/page.md"),
    ("`recipes/gone.py`", "quoted path recipes/gone.py does not exist"),
    ("`hparams/toy/{a,c}.yaml`", "quoted path hparams/toy/c.yaml does not exist"),
    ("`pkg/gone.py`", "quoted path pkg/gone.py does not exist"),
    ("`../recipes/gone.py`", "quoted path recipes/gone.py does not exist"),
    ("```\npython recipes/gone.py hparams/toy/a.yaml\n```", "quoted path recipes/gone.py does not exist"),
    ("`pkg.gone.Thing`", "quoted module pkg.gone.Thing does not exist"),
])
def test_a_broken_reference_is_reported(tmp_path, line, reported):
    write_tree(tmp_path, GOOD_PAGE + "\n" + line + "\n")
    found = problems("docs/index.md", str(tmp_path))
    assert any(reported in p for p in found), found
