"""The pipeline runner's plans: the toy plan unchanged, inputs checked before any work.

- The toy plan's stage commands (and so its markers' digests) equal those the toy
  pipeline built before the runner was opened to real data
  (``tests/fixtures/toy_plan_commands.json`` and ``toy_plan_deps.json``, written by the code of commit 445f87f);
- a bad input to ``recipes/pipeline.py`` is refused in one line naming the key and the fix, before anything is
  written.
"""

import csv
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import FIXTURES, REPO
from experiment.command_line import load_hparams
from pipeline.main import run_pipeline
from pipeline.plan import SeedPlan, curated_key, model_rows, row_title
from pipeline.stages import Stage

USER = os.path.join(REPO, "hparams", "pipeline", "laion_own_audio.yaml")


def _fake_csv(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "wav_path", "caption"])
        writer.writerows([f"c{i}", f"/a/{i}.wav", f"cap {i}"] for i in range(rows))


def _toy_plan(tmp, leakage):
    overrides = "\n".join([f"output_folder: {tmp}", "du_threshold: 0.5", "ads_threshold_esc50: 0.5",
                           "ads_threshold_us8k: 0.5", "ads_threshold_tut17: 0.5", f"leakage: {leakage}"])
    hparams = load_hparams(os.path.join(REPO, "hparams/toy/pipeline.yaml"), overrides)
    hparams["precision"] = "fp32"
    world = Stage("world", "w", marker_dir=tmp, log_dir=tmp)
    plan = SeedPlan(hparams, 1234, world, os.path.join(tmp, "world"))
    _fake_csv(os.path.join(tmp, "seed1234", "teacher", "save", "train_raw.csv"), 500)
    for stage in plan.stages:
        if stage.name.startswith("curation"):
            _fake_csv(os.path.join(tmp, stage.name + ".csv"), 100)
            stage.result = {"outputs": {"csv": os.path.join(tmp, stage.name + ".csv"), "pairs": 100}}
    return plan


def _commands(plan, tmp, skip=()):
    return {s.name: [a.replace(tmp, "<OUT>").replace(REPO, "<REPO>") for a in s.command()] for s in plan.stages
            if s.name not in skip}


def _fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)


def test_toy_plan_commands_are_those_of_the_toy_pipeline_before_the_runner_was_opened(tmp_path):
    tmp = str(tmp_path)
    plan = _toy_plan(tmp, "off")
    got = _commands(plan, tmp)
    expected = _fixture("toy_plan_commands.json")
    assert list(got) == list(expected)
    for name in expected:
        assert got[name] == expected[name], name
    # The same dependencies too, so the same digests: a toy run made before the runner was opened is skipped.
    assert {s.name: [d.name for d in s.deps] for s in plan.stages} == _fixture("toy_plan_deps.json")


def test_the_leakage_audit_adds_two_stages_before_the_students_and_changes_no_command(tmp_path):
    """With the audit on (the default) and nothing found, every command is the one without it."""
    tmp = str(tmp_path)
    plan = _toy_plan(tmp, "drop")
    audit = ("leakage_embeddings", "leakage")
    expected = _fixture("toy_plan_commands.json")
    names = [s.name for s in plan.stages]
    at = names.index("embeddings") + 1
    assert names == list(expected)[:at] + list(audit) + list(expected)[at:]
    got = _commands(plan, tmp, skip=audit)
    for name in expected:
        assert got[name] == expected[name], name
    deps = {s.name: [d.name for d in s.deps] for s in plan.stages}
    for name, old in _fixture("toy_plan_deps.json").items():
        assert deps[name] == old + (["leakage"] if name.startswith("student") else []), name
    assert deps["leakage_embeddings"] == ["teacher"] and deps["leakage"] == ["embeddings", "leakage_embeddings"]
    assert plan.audit.name == "leakage"


def test_row_keys_of_rounds():
    h = {"students": ["ads", "ads_softclap"], "rounds": 2}
    assert model_rows(h) == ["teacher", "ads", "ads_softclap", "ads@r2", "ads_softclap@r2"]
    assert [row_title(k) for k in model_rows(h)][-1] == "ADS+SoftCLAP (round 2)"
    assert curated_key("ads_softclap@r2", "esc50") == ("ads@r2", "esc50")
    assert curated_key("du", "us8k") == ("du", None) and curated_key("teacher", "esc50") is None


# ------------------------------------------------------------------ bad inputs
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    audio = root / "audio" / "sub"
    audio.mkdir(parents=True)
    import numpy as np
    import soundfile

    soundfile.write(str(audio / "a.wav"), np.zeros(1600, dtype="float32"), 16000)
    (root / "empty").mkdir()
    (root / "labels.txt").write_text("dog\nrain\n", encoding="utf-8")
    _fake_csv(str(root / "captions.csv"), 3)
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2, 2)}}, root / "unknown.pt")
    esc = root / "ESC-50" / "meta"
    esc.mkdir(parents=True)
    (esc / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\n", encoding="utf-8")
    return root


def _argv(inputs, out, **changes):
    flags = {"teacher": str(inputs / "unknown.pt"), "unpaired_audio": str(inputs / "audio"),
             "caption_pool": f"[{inputs / 'captions.csv'}]", "label_list": str(inputs / "labels.txt"),
             "output_folder": str(out)}
    flags.update(changes)
    return [USER] + [f"--{k}={v}" for k, v in flags.items() if v is not None]


@pytest.mark.parametrize("case, changes, key", [
    ("unknown student", {"students": "[ads, dsa]"}, "students"),
    ("teacher of unknown architecture", {}, "teacher"),
    ("missing teacher file", {"teacher": "/nonexistent/630k.pt"}, "teacher"),
    ("empty unpaired folder", {"unpaired_audio": "EMPTY"}, "unpaired_audio"),
    ("missing label list", {"label_list": "/nonexistent/labels.txt"}, "label_list"),
    ("target folder in the wrong layout", {"target_sets": "[us8k]", "us8k_folder": "ESC"}, "us8k_folder"),
    ("no shard matches", {"unpaired_audio": "/nonexistent/shard-{000..003}.tar"}, "unpaired_audio"),
])
def test_bad_input_is_one_line_naming_the_key_before_anything_is_written(inputs, tmp_path, case, changes, key):
    replace = {"EMPTY": str(inputs / "empty"), "ESC": str(inputs / "ESC-50")}
    changes = {k: replace.get(v, v) for k, v in changes.items()}
    if case != "teacher of unknown architecture":
        # A valid teacher file for the other cases: every check before the one tested passes.
        changes.setdefault("teacher", _valid_teacher(inputs))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        run_pipeline(_argv(inputs, out, **changes), "pipeline.py")
    message = str(info.value.code)
    assert message.startswith(f"--{key}:") and "\n" not in message, message
    assert not out.exists()


def _valid_teacher(inputs):
    """A tiny CLAP in our own layout: its architecture is the YAML's (nothing inferred)."""
    path = inputs / "ours.pt"
    if not path.exists():
        torch.save({"model": {"audio_encoder.base.bn0.weight": torch.ones(64)}}, path)
    return str(path)


def test_bad_input_from_the_command_line_prints_one_line_and_no_traceback(inputs, tmp_path):
    proc = subprocess.run([sys.executable, "recipes/pipeline.py"] + _argv(inputs, tmp_path / "out"), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("--teacher:") and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_truncated_shard_gives_its_readable_samples_and_the_rest_is_counted_and_named(tmp_path, capsys):
    import io

    import numpy as np
    import soundfile
    import webdataset

    from pipeline.sources import list_unpaired

    shards = tmp_path / "shards"
    shards.mkdir()
    for n in range(2):
        with webdataset.TarWriter(str(shards / f"part-{n:06d}.tar")) as writer:
            for i in range(3):
                buffer = io.BytesIO()
                soundfile.write(buffer, np.full(8000, 0.1 * (i + 1), dtype="float32"), 16000, format="FLAC")
                writer.write({"__key__": f"clip{n}{i}", "flac": buffer.getvalue(), "json": {"i": i}})
    damaged = shards / "part-000001.tar"
    import tarfile

    with tarfile.open(damaged) as tar:
        last = [m for m in tar.getmembers() if m.name.endswith(".flac")][-1]
    data = damaged.read_bytes()
    damaged.write_bytes(data[: last.offset_data + last.size // 2])  # cut inside the last clip
    out = list_unpaired(str(shards / "part-{000000..000001}.tar"), str(tmp_path / "inputs"))
    paths = open(out["paths"], encoding="utf-8").read().split()
    assert out["clips"] == len(paths) and 3 < len(paths) < 6 and out["unreadable"] >= 1
    assert all("#clip" in p for p in paths)
    report = json.load(open(tmp_path / "inputs" / "unpaired_report.json", encoding="utf-8"))
    [bad] = [r for r in report["shards"] if r.get("unreadable")]
    assert bad["shard"].endswith("part-000001.tar") and "truncated" in bad["error"]
    assert "part-000001.tar" in capsys.readouterr().out


def test_one_of_our_runs_as_teacher_is_loaded_from_its_save_folder_with_its_architecture(inputs, tmp_path):
    from pipeline.sources import check_user_inputs, user_sources

    run = tmp_path / "my_teacher"
    (run / "save" / "CKPT+2026-01-01+00-00-00+00").mkdir(parents=True)
    (run / "hyperparams.yaml").write_text("audioenc_name: HTSAT\nd_proj: 256\nsample_rate: 32000\n", encoding="utf-8")
    overrides = "\n".join(f"{k}: {v}" for k, v in {
        "teacher": str(run), "unpaired_audio": str(inputs / "audio"), "caption_pool": f"[{inputs / 'captions.csv'}]",
        "label_list": str(inputs / "labels.txt"), "output_folder": str(tmp_path / "out"), "rounds": 1}.items())
    hparams = load_hparams(USER, overrides)
    hparams["precision"], hparams["device"] = "fp32", None
    checked = check_user_inputs(hparams)
    assert checked["teacher_run"] == str(run / "save") and checked["arch"]["audioenc_name"] == "HTSAT"
    sources = user_sources(hparams, checked, str(tmp_path / "out"))
    inputs_stage = Stage("inputs", "i", marker_dir=str(tmp_path), log_dir=str(tmp_path))
    plan = SeedPlan(hparams, 1234, inputs_stage, sources=sources)
    names = [s.name for s in plan.stages]
    assert "teacher" not in names and names[:2] == ["caption_pool", "embeddings"], names
    embeddings = plan.stages[1].command()
    assert f"--ssl_checkpoints_dir={run / 'save'}" in embeddings
    assert f"--model={tmp_path / 'out' / 'inputs' / 'teacher_model.yaml'}" in embeddings
    assert not (tmp_path / "out").exists()  # nothing written by the checks and the plan


def test_a_caption_csv_is_a_retrieval_set_of_the_clips_on_disk(inputs, tmp_path):
    from evaluation.retrieval import read_retrieval_set

    rows = [("a", str(inputs / "audio" / "sub" / "a.wav"), "rain"), ("b", str(inputs / "audio" / "sub" / "a.wav"),
            "wind"), ("c", str(tmp_path / "gone.wav"), "a dog")]
    path = tmp_path / "held_out.csv"
    path.write_text("ID,wav_path,caption\n" + "".join(f"{i},{w},{c}\n" for i, w, c in rows), encoding="utf-8")
    clips, captions, caption_clip, counts = read_retrieval_set("csv", str(path), "any")
    assert clips == [rows[0][1]] and captions == ["rain", "wind"] and caption_clip == [0, 0]
    assert counts == {"clips_listed": 2, "clips_missing": 1, "captions_missing": 0}


# ------------------------------------------------------------------ the leakage audit's policies
def _audit_folder(tmp_path):
    """An audit folder as the two stages leave it: a pool with a lossy trimmed copy of an evaluation clip, a pair
    set holding a renamed FLAC of another; ``(folder, pool emb dir, {name: path})``."""
    import numpy as np
    import soundfile

    from test_leakage import ESC_CLIPS, lossy_trimmed_copy, unit_rows

    copy = lossy_trimmed_copy(ESC_CLIPS[2], str(tmp_path / "Ypool.ogg"), 22050, format="OGG", subtype="VORBIS")
    samples, sr = soundfile.read(ESC_CLIPS[1], dtype="int16")
    flac = str(tmp_path / "renamed.flac")
    soundfile.write(flac, samples, sr)
    refs, pool, pairs = ESC_CLIPS[:3], [copy, ESC_CLIPS[3]], [flac, ESC_CLIPS[4]]
    folder, pool_dir = tmp_path / "leakage", tmp_path / "pool"
    emb = unit_rows(3)
    for where, paths, rows in ((folder / "save", refs + pairs, np.vstack([emb, emb[1], unit_rows(1, seed=9)])),
                               (pool_dir, pool, np.vstack([emb[2], unit_rows(1, seed=8)]))):
        where.mkdir(parents=True)
        (where / "audio_paths.txt").write_text("".join(p + "\n" for p in paths), encoding="utf-8")
        np.save(where / "audio_emb.npy", rows.astype(np.float16))
    (folder / "audit_sets.json").write_text(json.dumps({"references": {"esc50": refs}, "pairs": pairs}))
    return str(folder), str(pool_dir), {"copy": copy, "flac": flac, "other": ESC_CLIPS[3]}


@pytest.mark.parametrize("policy", ["drop", "warn", "fail"])
def test_the_audit_drops_warns_or_stops(tmp_path, policy, capsys):
    from pipeline.audit import clean_csv, run_audit

    folder, pool_dir, paths = _audit_folder(tmp_path)
    if policy == "fail":
        with pytest.raises(RuntimeError, match=r"1 unpaired clip\(s\) and 1 training pair clip\(s\) are evaluation "
                                               r"clips \(listed in .*leakage.csv\); remove them, or set --leakage"):
            run_audit(folder, pool_dir, 7, {"leakage": policy})
        return
    counts = run_audit(folder, pool_dir, 7, {"leakage": policy})
    assert (counts["unpaired"], counts["pairs"], counts["exact"], counts["near"]) == (1, 1, 1, 1)
    rows = list(csv.DictReader(open(counts["csv"], encoding="utf-8")))
    action = {"drop": "dropped", "warn": "warned"}[policy]
    assert {(r["seed"], r["set"], r["path"], r["kind"], r["action"]) for r in rows} == {
        ("7", "unpaired", paths["copy"], "near", action), ("7", "pairs", paths["flac"], "exact", action)}
    assert ("WARNING" in capsys.readouterr().out) == (policy == "warn")
    # A student's CSV: a copy without the leaked clips; one with nothing to drop is given as it is.
    pairs_csv = tmp_path / "pairs.csv"
    pairs_csv.write_text(f"ID,wav_path,caption\na,{paths['copy']},x\nb,{paths['other']},y\n", encoding="utf-8")
    clean_dir = str(tmp_path / "clean")
    cleaned = clean_csv(str(pairs_csv), {r["path"] for r in rows}, clean_dir)
    assert os.path.dirname(cleaned) == clean_dir
    assert [r["wav_path"] for r in csv.DictReader(open(cleaned, encoding="utf-8"))] == [paths["other"]]
    assert clean_csv(cleaned, {r["path"] for r in rows}, clean_dir) == cleaned
    assert clean_csv(str(pairs_csv), set(), clean_dir) == str(pairs_csv)


@pytest.mark.parametrize("key, value, message", [
    ("leakage", "maybe", "--leakage must be one of drop, warn, fail, off; got 'maybe'"),
    ("leakage_mel_corr", 1.5, "--leakage_mel_corr must be a correlation in [-1.0, 1.0]; got 1.5"),
    ("leakage_wave_corr", -0.2, "--leakage_wave_corr must be a correlation in [0.0, 1.0]; got -0.2"),
    ("leakage_top_k", 0, "--leakage_top_k must be at least 1; got 0"),
])
def test_bad_leakage_keys_are_refused_in_one_line(key, value, message):
    from pipeline.audit import check_leakage_keys

    with pytest.raises(SystemExit, match=re.escape(message)):
        check_leakage_keys({key: value})
