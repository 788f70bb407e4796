"""The one-command toy pipeline: a reduced run end to end, skipping finished stages, and the table's arithmetic."""

import csv
import json
import os
import re
import sys
import time

import pytest

from conftest import check_ok, kill_at_first_complete_checkpoint, run_script, trained_epochs
from dataset.manifest import read_caption_csv
from pipeline.results import markdown_table, summarise, verdicts
from pipeline.stages import Stage
from pipeline.toy import parse_seeds

PIPELINE = ["recipes/toy_pipeline.py", "hparams/toy/pipeline.yaml"]
# Tiny world, short training, two target sets, a low DS threshold so that every
# student has data: the mechanics in a few minutes, not the demo's figures.
REDUCED = ["--world_size=tiny", "--teacher_epochs=2", "--student_steps=3", "--target_sets=[esc50,tut17]",
           "--ds_threshold_esc50=0.0", "--ds_threshold_tut17=0.0", "--batch_size=16"]
MODELS = ["teacher", "DU", "DS", "ADS", "DS+SoftCLAP", "ADS+SoftCLAP"]


def read_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "toy results"
    begin = time.perf_counter()
    proc = run_script(PIPELINE + [f"--output_folder={out}"] + REDUCED, timeout=1800)
    check_ok(proc)
    print(f"reduced pipeline: {time.perf_counter() - begin:.0f} s")
    return str(out), proc


@pytest.mark.slow
def test_reduced_pipeline_writes_the_table_from_the_run(reduced_run):
    out, proc = reduced_run
    for name in ("results.md", "results.csv", "results_per_seed.csv", "results.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert open(os.path.join(out, "results.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # One progress line per stage, then the table on stdout.
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\[\s*\d+/\d+\]", line)]
    total = int(re.match(r"\[\s*\d+/(\d+)\]", lines[0]).group(1))
    assert len(lines) == total and all("done in" in line or "not run" in line for line in lines), lines
    assert "| model | ESC-50 | TUT2017 |" in proc.stdout

    # Every cell is the accuracy in the zero-shot run's own JSON.
    per_seed = read_rows(os.path.join(out, "results_per_seed.csv"))
    assert sorted({r["model"] for r in per_seed}) == sorted(MODELS)
    seed_dir = os.path.join(out, "seed1234")
    folders = {"teacher": "teacher", "DU": "du", "DS": "ds_{t}", "ADS": "ads_{t}",
               "DS+SoftCLAP": "ds_softclap_{t}", "ADS+SoftCLAP": "ads_softclap_{t}"}
    for row in per_seed:
        name = folders[row["model"]].format(t=row["dataset"])
        result = json.load(open(os.path.join(seed_dir, "zeroshot", f"{name}_{row['dataset']}",
                                             "zeroshot_results.json")))
        assert float(row["top1"]) == pytest.approx(result["top1"], abs=1e-4), row
    # Curated pair counts are the rows of the curation CSVs the students trained on.
    for row in per_seed:
        if row["model"] == "teacher":
            assert row["curated_pairs"] == ""
            continue
        marker = {"DU": "curation_du"}.get(row["model"]) or (
            ("curation_ads_" if row["model"].startswith("ADS") else "curation_ds_") + row["dataset"])
        stage = json.load(open(os.path.join(seed_dir, "stages", f"{marker}.json")))
        assert int(row["curated_pairs"]) == len(read_caption_csv(stage["outputs"]["csv"])) > 0
    table = read_rows(os.path.join(out, "results.csv"))
    assert len(table) == len(MODELS) * 2
    md = open(os.path.join(out, "results.md"), encoding="utf-8").read()
    teacher_esc = next(r for r in table if r["model"] == "teacher" and r["dataset"] == "esc50")
    # One seed: no standard deviation; the bootstrap interval from the run's predictions.csv files.
    assert (f"| teacher | {100 * float(teacher_esc['top1_mean']):.1f} [{100 * float(teacher_esc['top1_ci_low']):.1f}, "
            f"{100 * float(teacher_esc['top1_ci_high']):.1f}] |") in md
    assert os.path.getsize(os.path.join(out, "differences.csv")) > 0


@pytest.mark.slow
def test_the_toy_run_has_no_leak_and_a_report_page_a_browser_renders(reduced_run):
    """The audit finds no evaluation clip in the toy world's training audio; the report shows every curated set."""
    from report_checks import NoChromium, check_report_html, console_errors, is_blank_png, open_in_chromium

    out, proc = reduced_run
    assert read_rows(os.path.join(out, "leakage.csv")) == []
    audit = json.load(open(os.path.join(out, "seed1234", "stages", "leakage.json")))["outputs"]
    assert audit["exact"] == audit["near"] == 0 and audit["checked_unpaired"] > 0 and audit["checked_pairs"] > 0
    assert "0 exact, 0 near duplicates); policy drop." in open(os.path.join(out, "results.md")).read()
    page = os.path.join(out, "report.html")
    sets = [("du", "du")] + [(f"{kind}-{t}", kind) for kind in ("ds", "ads") for t in ("esc50", "tut17")]
    check_report_html(page, sets, expect_leaks=False)
    assert os.path.isfile(os.path.join(out, "report.md"))
    try:
        dom, messages, png = open_in_chromium(page)
    except NoChromium as err:
        pytest.skip(str(err))
    assert not console_errors(messages), console_errors(messages)
    assert dom.count("<audio") == 20 * len(sets) and dom.count("<svg") >= 2 * len(sets)
    assert png and not is_blank_png(png)


@pytest.mark.slow
def test_the_pipeline_runner_on_the_toy_yaml_gives_the_toy_pipelines_results(reduced_run, tmp_path):
    """``recipes/pipeline.py hparams/toy/pipeline.yaml`` is the toy pipeline: the same table, byte for byte."""
    out, _ = reduced_run
    other = tmp_path / "runner"
    proc = run_script(["recipes/pipeline.py", "hparams/toy/pipeline.yaml", f"--output_folder={other}"] + REDUCED,
                      timeout=1800)
    check_ok(proc)
    for name in ("results.csv", "results_per_seed.csv"):
        assert (other / name).read_bytes() == open(os.path.join(out, name), "rb").read(), name


@pytest.mark.slow
def test_rerun_skips_every_stage_and_changed_settings_rerun_only_what_depends_on_them(reduced_run):
    out, first = reduced_run
    proc = run_script(PIPELINE + [f"--output_folder={out}"] + REDUCED, timeout=600)
    check_ok(proc)
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\[\s*\d+/\d+\]", line)]
    assert lines and all("already done, skipped" in line for line in lines), lines
    assert proc.stdout.split("# Toy-world results", 1)[1].split("Machine:")[0] == \
        first.stdout.split("# Toy-world results", 1)[1].split("Machine:")[0]

    # A student setting changed: the teacher and curation are kept, students and their scores rerun.
    proc = run_script(PIPELINE + [f"--output_folder={out}"] + REDUCED + ["--student_lr=0.0001", "--students=[ds]"],
                      timeout=900)
    check_ok(proc)
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\[\s*\d+/\d+\]", line)]
    rerun = [line for line in lines if "done in" in line]
    assert rerun and all("DS student" in line or "zero-shot ds_" in line for line in rerun), rerun
    assert any("teacher training: already done" in line for line in lines)


@pytest.mark.slow
def test_killed_pipeline_continues_where_it_stopped(tmp_path):
    """SIGKILL during the teacher's training; the rerun resumes it from its checkpoint and finishes."""
    out = tmp_path / "killed"
    args = [sys.executable] + PIPELINE + [f"--output_folder={out}", "--world_size=tiny", "--teacher_epochs=3",
                                          "--target_sets=[esc50]", "--students=[ds]", "--student_steps=2",
                                          "--ds_threshold_esc50=0.0", "--batch_size=16"]
    kill_at_first_complete_checkpoint(args, out / "seed1234" / "teacher" / "save")
    assert not (out / "seed1234" / "stages" / "teacher.json").exists()

    again = run_script(args[1:], timeout=1200)
    check_ok(again)
    assert "toy world (tiny, seed 0): already done, skipped" in again.stdout
    # Without --resume_interrupt the training recipe refuses a folder with checkpoints, so finishing
    # means the pipeline resumed it; the epochs continue instead of starting over.
    assert trained_epochs(out / "seed1234" / "teacher") == [1, 2, 3]
    assert (out / "results.md").exists()


def test_seeds_flag_and_summary_arithmetic():
    assert parse_seeds({"seeds": None, "seed": 7}) == [7]
    assert parse_seeds({"seeds": "1,2, 3", "seed": 7}) == [1, 2, 3]
    assert parse_seeds({"seeds": [4, 5], "seed": 7}) == [4, 5]
    hparams = {"students": ["du"], "target_sets": ["esc50", "us8k"]}
    rows = []
    for seed, (t_esc, t_us, d_esc, d_us) in zip([1, 2, 3], [(0.5, 0.3, 0.6, 0.2), (0.4, 0.3, 0.5, 0.2),
                                                             (0.6, 0.3, 0.7, 0.2)]):
        for model, target, acc in [("teacher", "esc50", t_esc), ("teacher", "us8k", t_us),
                                   ("DU", "esc50", d_esc), ("DU", "us8k", d_us)]:
            rows.append({"seed": seed, "model": model, "dataset": target, "top1": acc, "top5": 1.0,
                         "curated_pairs": None if model == "teacher" else 100 + seed, "pair_precision": None})
    table = summarise(rows, hparams)
    cell = next(t for t in table if t["model"] == "DU" and t["dataset"] == "esc50")
    assert cell["seeds"] == 3 and cell["top1_mean"] == pytest.approx(0.6) and cell["top1_sd"] == pytest.approx(0.1)
    assert cell["curated_pairs_mean"] == pytest.approx(102)
    md = markdown_table(table, hparams, [1, 2, 3])
    assert "| teacher | 50.0 ± 10.0 | 30.0 ± 0.0 | – |" in md
    assert "| DU | 60.0 ± 10.0 | 20.0 ± 0.0 | 102 (shared) |" in md
    assert verdicts(table, hparams) == ["- DU vs teacher: ESC-50 +10.0, UrbanSound8K -10.0 points of top-1 (mixed)"]


def test_stage_digest_covers_the_command_and_the_dependencies_but_not_resume_flags(tmp_path):
    world = Stage("world", "w", marker_dir=str(tmp_path), log_dir=str(tmp_path))
    world.digest = world.compute_digest(["a"])
    child = Stage("c", "c", deps=[world], marker_dir=str(tmp_path), log_dir=str(tmp_path))
    base = child.compute_digest(["x.py", "--lr=1"])
    assert child.compute_digest(["x.py", "--lr=1", "--resume_interrupt=True", "--prev_ckpt_dir=/s"]) == base
    assert child.compute_digest(["x.py", "--lr=2"]) != base
    world.digest = world.compute_digest(["b"])
    assert child.compute_digest(["x.py", "--lr=1"]) != base


def _write_predictions(path, correct):
    """A predictions.csv whose clip ``c<i>`` is right iff ``correct[i]``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("ID,wav_path,fold,true,predicted,score,top5\n")
        for i, ok in enumerate(correct):
            f.write(f"c{i},/x/c{i}.wav,1,dog,{'dog' if ok else 'cat'},0.5,dog\n")


def test_bootstrap_intervals_are_the_percentiles_of_clip_resamples(tmp_path):
    """Accuracy and paired-difference intervals equal a direct computation over the same clip resamples."""
    import numpy as np

    from pipeline.intervals import clip_resamples
    from pipeline.results import correctness, differences, summarise, verdicts

    rng = np.random.default_rng(5)
    teacher = rng.random((2, 60)) < 0.4
    student = teacher | (rng.random((2, 60)) < 0.5)  # right wherever the teacher is, and more
    rows = []
    for model, correct in (("teacher", teacher), ("DU", student)):
        for s, seed in enumerate((1, 2)):
            path = str(tmp_path / model / str(seed) / "predictions.csv")
            _write_predictions(path, correct[s])
            rows.append({"seed": seed, "model": model, "dataset": "esc50", "top1": float(correct[s].mean()),
                         "top5": 1.0, "curated_pairs": None, "pair_precision": None, "predictions": path})
    hparams = {"students": ["du"], "target_sets": ["esc50"]}
    matrices = correctness(rows)
    table = summarise(rows, hparams, matrices)

    # Columns are the clips sorted by ID: c0, c1, c10, ...; resampling draws columns.
    order = sorted(range(60), key=lambda i: f"c{i}")
    draws = clip_resamples(60)
    for cell, correct in zip(table, (teacher, student)):
        per_clip = correct[:, order].mean(axis=0)
        low, high = np.percentile(per_clip[draws].mean(axis=1), [2.5, 97.5])
        assert (cell["top1_ci_low"], cell["top1_ci_high"]) == pytest.approx((low, high))
        assert cell["top1_ci_low"] <= cell["top1_mean"] <= cell["top1_ci_high"]
    diff = (student[:, order].mean(axis=0) - teacher[:, order].mean(axis=0))[draws].mean(axis=1)
    [entry] = differences(table, hparams, matrices)
    assert (entry["ci_low"], entry["ci_high"]) == pytest.approx(tuple(100 * np.percentile(diff, [2.5, 97.5])))
    assert entry["shown"] == 1 and "(helps)" in verdicts(table, hparams, matrices)[0]

    # The same predictions under two names: difference 0, interval [0, 0], not shown.
    same = [dict(r, model="DU") if r["model"] == "teacher" else None for r in rows]
    rows2 = [r for r in rows if r["model"] == "teacher"] + [r for r in same if r]
    m2 = correctness(rows2)
    t2 = summarise(rows2, hparams, m2)
    [entry] = differences(t2, hparams, m2)
    assert entry["diff"] == 0 and entry["shown"] == 0
    assert "not shown" in verdicts(t2, hparams, m2)[0]


def test_intervals_need_every_seeds_predictions(tmp_path):
    """A cell with a seed lacking predictions.csv gets no interval (and the table says nothing about one)."""
    from pipeline.results import correctness, markdown_table, summarise

    path = str(tmp_path / "p.csv")
    _write_predictions(path, [True, False, True, True])
    rows = [{"seed": s, "model": "teacher", "dataset": "esc50", "top1": 0.75, "top5": 1.0, "curated_pairs": None,
             "pair_precision": None, "predictions": p} for s, p in ((1, path), (2, None))]
    hparams = {"students": [], "target_sets": ["esc50"]}
    matrices = correctness(rows)
    assert matrices == {}
    table = summarise(rows, hparams, matrices)
    assert table[0]["top1_ci_low"] is None and "[" not in markdown_table(table, hparams, [1, 2])
