"""The paper YAMLs carry the paper code's own values, or a documented reason why not.

``tests/fixtures/original_insper_yaml_values.json`` holds the values of the
paper code's ``hparams/insper/microsoft_clap_train.yaml`` and
``softclap_train.yaml`` (zhepeiw/clap_curation, commit in the file) for every
top-level key our YAML of the same path shares with it. Each shared key must
be equal in ours, or be a row of the table "The paper YAMLs' values" in
``docs/paper_vs_ours.md`` (a documented difference), whose cells show both
values; a documented key must really differ, so the table cannot go stale.
Nothing is instantiated: the YAMLs are read as data (tags kept).
"""

import json
import os
import re

import pytest

from conftest import FIXTURES, REPO
from test_hparams_variants import Tagged, load_hparams_data

with open(os.path.join(FIXTURES, "original_insper_yaml_values.json"), encoding="utf-8") as _f:
    ORIGINAL = json.load(_f)
with open(os.path.join(FIXTURES, "paper_code_yaml_keys.json"), encoding="utf-8") as _f:
    ORIGINAL_KEYS = json.load(_f)
DOC = os.path.join(REPO, "docs", "paper_vs_ours.md")
SECTION = "## The paper YAMLs' values"


def as_data(value):
    """A parsed YAML value in the fixture's form: a tag becomes ``{"!": tag, "value": content}``."""
    if isinstance(value, Tagged):
        return {"!": value.tag, "value": as_data(value.value)}
    if isinstance(value, dict):
        return {str(k): as_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_data(v) for v in value]
    return value


def same(a, b):
    """Equal values; numbers by value (``1`` is ``1.0``), but a bool is not a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def shown(value):
    """How the docs table writes a value: a tag with a scalar in full, an object by its tag, ``null``, ``True``."""
    if isinstance(value, dict) and "!" in value:
        content = value["value"]
        return f"{value['!']} {content}" if isinstance(content, str) and content else value["!"]
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


def documented():
    """``{key: (the paper's cell, our cell, why)}`` of the docs table of the paper YAMLs' values."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    assert SECTION in text, f"{DOC} has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([A-Za-z_]+)` \|(.*)\|(.*)\|(.*)\|$", line)
        if match:
            key, paper, ours, why = (part.strip() for part in match.groups())
            assert key not in rows, f"{key} has two rows in {SECTION!r}"
            rows[key] = (paper, ours, why)
    return rows


DOCUMENTED = documented()
FILES = sorted(ORIGINAL["files"])


def test_fixture_names_the_original_and_every_shared_key():
    """The fixture covers exactly the keys our YAMLs share with the original (its key list is a second record)."""
    assert ORIGINAL["source"] == "zhepeiw/clap_curation" and re.fullmatch(r"[0-9a-f]{40}", ORIGINAL["commit"])
    assert ORIGINAL["commit"] == ORIGINAL_KEYS["commit"]
    assert FILES == ["hparams/insper/microsoft_clap_train.yaml", "hparams/insper/softclap_train.yaml"]
    for path in FILES:
        ours = load_hparams_data(path)
        shared = [k for k in ORIGINAL_KEYS["files"][path] if k in ours]
        assert list(ORIGINAL["files"][path]) == shared, path


@pytest.mark.parametrize("path", FILES)
def test_every_shared_key_has_the_papers_value_or_a_documented_reason(path):
    ours = {k: as_data(v) for k, v in load_hparams_data(path).items()}
    original = ORIGINAL["files"][path]
    undocumented = {k: (v, ours[k]) for k, v in original.items() if k not in DOCUMENTED and not same(v, ours[k])}
    assert not undocumented, (
        f"{path}: keys whose value is not the paper code's ({ORIGINAL['source']}@{ORIGINAL['commit'][:8]}) and that "
        f"the table {SECTION!r} of docs/paper_vs_ours.md does not list (paper's, ours): {undocumented}")
    stale = [k for k in DOCUMENTED if k in original and same(original[k], ours[k])]
    assert not stale, f"{path}: documented as different but equal to the paper's: {stale}"


def test_documented_differences_show_both_values_and_why():
    """Each row: a key both sides have, both values written in its cells, a reason; printed as the list."""
    print(f"\nDocumented differences from {ORIGINAL['source']}@{ORIGINAL['commit']} "
          f"(docs/paper_vs_ours.md, {SECTION[3:]}):")
    assert DOCUMENTED, "the table lists no key"
    for key, (paper_cell, our_cell, why) in DOCUMENTED.items():
        paths = [p for p in FILES if key in ORIGINAL["files"][p]]
        assert paths, f"{key}: documented, but no paper YAML shares it with ours"
        for path in paths:
            original = ORIGINAL["files"][path][key]
            ours = as_data(load_hparams_data(path)[key])
            assert f"`{shown(original)}`" in paper_cell, f"{key}: the paper's cell should show `{shown(original)}`"
            assert f"`{shown(ours)}`" in our_cell, f"{key}: our cell should show `{shown(ours)}` ({path})"
        assert len(why) > 15, f"{key}: say why"
        print(f"  {key}: paper {paper_cell} | ours {our_cell}")


def test_the_papers_values_are_ours():
    """Known answers: the five values the issue named, and the learning rates the paper's rule gives at 32."""
    from hyperpyyaml import load_hyperpyyaml

    for path in FILES:
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            lines = [line for line in f if re.match(r"(seed|number_of_epochs|batch_size|valid_pct|base_lr|final_lr|"
                                                    r"num_workers):", line)]
        values = load_hyperpyyaml("".join(lines))
        assert (values["seed"], values["number_of_epochs"], values["batch_size"], values["valid_pct"],
                values["num_workers"]) == (2022, 100, 32, 0.17, 8)
        assert (values["base_lr"], values["final_lr"]) == pytest.approx((3.125e-5, 3.125e-10), rel=1e-12)
