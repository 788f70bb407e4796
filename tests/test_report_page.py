"""The curation report page (curation/report.py) on a small synthetic curation folder: its structure, its
Markdown twin, re-runs, and the page as headless Chromium loads it (skipped without Chromium)."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import soundfile

from curation.report import CuratedSet, cosine_profile, example_rows, main, sets_from_emb_dir, write_report
from report_checks import (NoChromium, check_report_html, console_errors, is_blank_png, open_in_chromium,
                           parse_page)

CLIPS, CAPTIONS, DIM = 24, 40, 16
LABELS = ["dog", "rain", "siren", "clapping"]  # clapping gets no caption
EXPECT_SETS = [("du", "du"), ("ds-esc50", "ds"), ("ads-esc50", "ads")]
LEAKS = [
    {"seed": 1234, "target": "esc50", "set": "DU", "path": "/a/x.wav", "reference": "/esc/1-1.wav", "kind": "exact",
     "cosine": 1.0, "mel_corr": 1.0, "offset_s": 0.0, "action": "dropped"},
    {"seed": 1234, "target": "esc50", "set": "DU", "path": "/a/y.wav", "reference": "/esc/1-2.wav", "kind": "near",
     "cosine": 0.97, "mel_corr": 0.91, "offset_s": 1.5, "action": "warned"},
    {"seed": 1234, "target": "esc50", "set": "ADS esc50", "path": "/a/y.wav", "reference": "/esc/1-2.wav",
     "kind": "near", "cosine": 0.97, "mel_corr": 0.91, "offset_s": 1.5, "action": "warned"},
]


def _unit(rng, n):
    x = rng.standard_normal((n, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _write_csv(path, fields, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def _join(audio, caps, thr):
    sims = audio.astype(np.float32) @ caps.astype(np.float32).T
    q, k = np.nonzero(sims >= thr)
    return q, k, sims[q, k]


def make_curation_folder(root, seed=0):
    """A curation folder in the pipeline's formats: 24 short WAVs, random unit embeddings, DU / DS / ADS CSVs."""
    rng = np.random.default_rng(seed)
    emb = os.path.join(root, "seed1234", "curation", "save")
    wav_dir = os.path.join(root, "audio")
    os.makedirs(emb)
    os.makedirs(wav_dir)
    paths = []
    for i in range(CLIPS):
        rate = (22050, 16000, 44100)[i % 3]
        seconds = 0.5 + (i % 8)  # up to 7.5 s: the excerpt keeps 5
        t = np.arange(int(seconds * rate)) / rate
        wav = 0.2 * np.sin(2 * np.pi * (200 + 40 * i) * t)
        if i % 5 == 0:
            wav = np.stack([wav, 0.5 * wav], axis=1)  # stereo
        p = os.path.join(wav_dir, f"Yclip{i:02d}.wav")
        soundfile.write(p, wav, rate)
        paths.append(p)
    with open(os.path.join(emb, "audio_paths.txt"), "w") as f:
        f.write("".join(p + "\n" for p in paths))
    audio, text = _unit(rng, CLIPS).astype(np.float16), _unit(rng, CAPTIONS).astype(np.float16)
    np.save(os.path.join(emb, "audio_emb.npy"), audio)
    np.save(os.path.join(emb, "text_emb.npy"), text)
    captions = [f"caption number {i} | with, a comma" for i in range(CAPTIONS)]
    _write_csv(os.path.join(emb, "text_captions.csv"), ["ID", "caption"],
               [{"ID": f"c{i}", "caption": c} for i, c in enumerate(captions)])

    sims = audio.astype(np.float32) @ text.astype(np.float32).T
    du_thr = round(float(np.quantile(sims, 0.85)), 2)
    q, k, s = _join(audio, text, du_thr)
    _write_csv(os.path.join(emb, f"du_pairs_thr{du_thr}.csv"), ["ID", "wav_path", "caption", "similarity"],
               [{"ID": f"p{j}", "wav_path": paths[a], "caption": captions[c], "similarity": f"{v:.6f}"}
                for j, (a, c, v) in enumerate(zip(q, k, s))])
    with open(os.path.join(emb, f"du_pairs_thr{du_thr}_summary.json"), "w") as f:
        json.dump({"threshold": du_thr, "pairs": int(q.size), "caption_set": "text", "curation": "du"}, f)

    # DS: 12 captions of the teacher's pairs, labelled with 3 of the 4 labels.
    ds_rows = list(range(0, 24, 2))
    ds_labels = [LABELS[i % 3] for i in range(len(ds_rows))]
    ds_sim = np.linspace(0.55, 0.95, len(ds_rows))
    np.save(os.path.join(emb, "ds_esc50_emb.npy"), text[ds_rows])
    _write_csv(os.path.join(emb, "ds_esc50_captions.csv"), ["ID", "caption", "label", "similarity"],
               [{"ID": f"c{r}", "caption": captions[r], "label": lab, "similarity": f"{v:.6f}"}
                for r, lab, v in zip(ds_rows, ds_labels, ds_sim)])
    _write_csv(os.path.join(emb, "ds_esc50_pairs.csv"), ["ID", "wav_path", "caption", "similarity", "label"],
               [{"ID": f"c{r}", "wav_path": paths[(r + 1) % CLIPS], "caption": captions[r], "similarity": f"{v:.6f}",
                 "label": lab} for r, lab, v in zip(ds_rows, ds_labels, ds_sim)])
    per_label = {lab: ds_labels.count(lab) for lab in LABELS if lab in ds_labels}
    with open(os.path.join(emb, "ds_esc50_summary.json"), "w") as f:
        json.dump({"curation": "ds_esc50", "threshold": 0.55, "labels": len(LABELS),
                   "captions_per_label": per_label}, f)
    with open(os.path.join(emb, "embeddings.json"), "w") as f:
        json.dump({"ds_esc50": {"labels": LABELS, "rows": len(ds_rows)}}, f)

    ads_caps = text[ds_rows]
    ads_sims = audio.astype(np.float32) @ ads_caps.astype(np.float32).T
    ads_thr = round(float(np.quantile(ads_sims, 0.7)), 2)
    q, k, s = _join(audio, ads_caps, ads_thr)
    name = f"ads_esc50_pairs_thr{ads_thr}"
    _write_csv(os.path.join(emb, name + ".csv"), ["ID", "wav_path", "caption", "similarity"],
               [{"ID": f"a{j}", "wav_path": paths[a], "caption": captions[ds_rows[c]], "similarity": f"{v:.6f}"}
                for j, (a, c, v) in enumerate(zip(q, k, s))])
    with open(os.path.join(emb, name + "_summary.json"), "w") as f:
        json.dump({"threshold": ads_thr, "caption_set": "ds_esc50", "curation": "ads_esc50"}, f)

    results = os.path.join(root, "results.csv")
    _write_csv(results, ["model", "dataset", "seeds", "top1_mean", "top1_ci_low", "top1_ci_high"],
               [{"model": m, "dataset": d, "seeds": 1, "top1_mean": f"{0.3 + 0.1 * i + 0.02 * j:.4f}",
                 "top1_ci_low": f"{0.25 + 0.1 * i + 0.02 * j:.4f}", "top1_ci_high": f"{0.35 + 0.1 * i + 0.02 * j:.4f}"}
                for i, m in enumerate(["teacher", "DU", "ADS"]) for j, d in enumerate(["esc50", "us8k"])])
    return emb, results


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("curation_report"))
    emb, results = make_curation_folder(root)
    out = os.path.join(root, "report")
    sets = sets_from_emb_dir(emb)
    written = write_report(out, sets, results_csv=results, leakage_rows=LEAKS, title="Test run")
    return {"root": root, "emb": emb, "results": results, "out": out, "sets": sets, "written": written}


def _pairs(cs):
    with open(cs.pairs_csv, encoding="utf-8") as f:
        return sum(1 for _ in f) - 1


def test_sets_found_in_the_folder(report):
    sets = report["sets"]
    assert [(s.slug, s.kind) for s in sets] == EXPECT_SETS
    du, ds, ads = sets
    assert du.caption_set == "text" and ds.caption_set == ads.caption_set == "ds_esc50"
    assert du.threshold == float(du.pairs_csv.rsplit("_thr", 1)[1][:-4]) and ds.threshold == 0.55
    assert ds.labels == LABELS and du.seed == 1234


def test_page_structure(report):
    sets = report["sets"]
    examples = {s.slug: min(20, _pairs(s)) for s in sets}
    assert examples["du"] == 20 and examples["ds-esc50"] == 12  # more pairs than shown; fewer than 20
    check_report_html(report["written"]["html"], EXPECT_SETS, expect_examples=examples,
                      expect_empty_labels={"ds-esc50": ["clapping"]}, expect_leaks=True)
    # Excerpts: only the examples' clips, at most 5 s of 16 kHz mono.
    files = sorted(os.listdir(os.path.join(report["out"], "report_files")))
    assert len(files) == report["written"]["excerpts"] > 0
    for name in files:
        info = soundfile.info(os.path.join(report["out"], "report_files", name))
        assert info.samplerate == 16000 and info.channels == 1 and info.duration <= 5.05, (name, info)


def test_page_counts_match_the_csv(report):
    """The curve's count at the threshold is the CSV's pair count (same float32 products here)."""
    text = open(report["written"]["html"], encoding="utf-8").read()
    page = parse_page(report["written"]["html"])
    for cs in report["sets"]:
        if cs.kind == "ds":
            continue
        n = _pairs(cs)
        assert f"CSV: {n:,} pairs" in text
        assert f"{n:,}" in page.text[f"set-{cs.slug}"].split("cosines ≥ threshold (float32, here)", 1)[1][:20]


def test_markdown_names_sets_and_leaks(report):
    md = open(report["written"]["md"], encoding="utf-8").read()
    for cs in report["sets"]:
        assert f"## {cs.name}" in md
    assert "| 1234 | esc50 | DU | exact | 1 | 1 | 0 |" in md
    assert "| 1234 | esc50 | DU | near | 1 | 0 | 1 |" in md
    assert "| 1234 | esc50 | ADS esc50 | near | 1 | 0 | 1 |" in md
    assert "labels with no caption: clapping" in md
    assert "teacher" in md and "[0.250, 0.350]" in md


def test_rerun_is_idempotent_and_removes_stale_excerpts(report, tmp_path):
    out = str(tmp_path / "again")
    shutil.copytree(report["out"], out)
    stale = os.path.join(out, "report_files", "clip-stale.wav")
    open(stale, "wb").close()
    written = write_report(out, sets_from_emb_dir(report["emb"]), results_csv=report["results"],
                           leakage_rows=LEAKS, title="Test run")
    assert not os.path.exists(stale)
    assert sorted(os.listdir(os.path.join(out, "report_files"))) == sorted(
        os.listdir(os.path.join(report["out"], "report_files")))
    assert open(written["html"], encoding="utf-8").read() == open(report["written"]["html"], encoding="utf-8").read()
    # Fewer examples: the excerpts of the examples no longer shown go.
    fewer = write_report(out, sets_from_emb_dir(report["emb"]), leakage_rows=[], examples=3)
    assert fewer["excerpts"] == len(os.listdir(os.path.join(out, "report_files"))) <= 9
    check_report_html(fewer["html"], EXPECT_SETS, expect_examples={s: 3 for s, _ in EXPECT_SETS},
                      expect_leaks=False, expect_results=False)
    assert "no leaks found" in open(fewer["md"], encoding="utf-8").read()


def test_missing_audio_keeps_the_example_without_a_player(report, tmp_path):
    cs = report["sets"][1]
    broken = str(tmp_path / "ds_esc50_pairs.csv")
    rows = list(csv.DictReader(open(cs.pairs_csv, encoding="utf-8")))
    rows[0]["wav_path"] = "/nonexistent/clip.wav"
    _write_csv(broken, list(rows[0]), rows)
    s = CuratedSet("DS esc50", "ds", cs.emb_dir, broken, "ds_esc50", 0.55, LABELS)
    written = write_report(str(tmp_path / "out"), [s])
    text = open(written["html"], encoding="utf-8").read()
    assert "audio unavailable" in text and text.count("<audio ") == 11


def test_cosine_profile_in_blocks_matches_the_full_product():
    rng = np.random.default_rng(3)
    a, c = _unit(rng, 37).astype(np.float32), _unit(rng, 23).astype(np.float32)
    full = a @ c.T
    p = cosine_profile(a, c, threshold=0.3, block_values=50)  # blocks of 2 clips x 23 captions... and of captions
    q = cosine_profile(a, c, threshold=0.3, block_values=7)  # caption blocks of 7: the product is split both ways
    for prof in (p, q):
        np.testing.assert_allclose(prof["best"], full.max(axis=1), rtol=0, atol=1e-6)
        assert prof["at_threshold"] == int((full >= 0.3).sum())
        assert prof["at_least"][0] == full.size
        for t in (-0.5, 0.0, 0.25, 0.5):
            i = int(np.searchsorted(prof["grid"], t - 1e-12))
            assert abs(int(prof["at_least"][i]) - int((full >= prof["grid"][i]).sum())) <= 1
    assert example_rows(full[0], 5) == example_rows(full[0], 5)  # deterministic


def test_command_line(report, tmp_path, capsys):
    out = str(tmp_path / "cli")
    main([f"--emb_dir={report['emb']}", f"--results={report['results']}", f"--out={out}"])
    printed = capsys.readouterr().out.strip()
    assert printed == os.path.join(out, "report.html") and os.path.isfile(printed)
    check_report_html(printed, EXPECT_SETS, expect_examples={"du": 20, "ds-esc50": 12, "ads-esc50": 20})


# ------------------------------------------------------------------ in a browser
def _open(path, **kwargs):
    try:
        return open_in_chromium(path, **kwargs)
    except NoChromium:
        pytest.skip("no chromium: apt-get install chromium")


def test_page_in_chromium(report):
    dom, messages, png = _open(report["written"]["html"])
    assert not console_errors(messages), console_errors(messages)
    ok = [m for m in messages if m["text"].startswith("audio ok ")]
    assert len(ok) == dom.count("<audio ") == 20 + 12 + 20, [m["text"] for m in messages]
    assert any(m["text"].startswith("page loaded: ") for m in messages)
    assert dom.count('<svg class="fig-hist"') == 3 and dom.count('<svg class="fig-curve"') == 2
    assert '<svg class="fig-labels"' in dom and '<svg class="fig-results"' in dom
    assert 'id="set-ads-esc50"' in dom and 'id="leakage"' in dom and 'id="results"' in dom
    assert png and not is_blank_png(png)


def test_chromium_check_catches_broken_pages(report, tmp_path):
    """The same helper reports a missing audio file and a script error (the browser test can fail)."""
    out = str(tmp_path / "copy")
    shutil.copytree(report["out"], out)
    page = os.path.join(out, "report.html")
    text = open(page, encoding="utf-8").read()
    first = text.index('src="report_files/') + len('src="report_files/')
    broken = text[:first] + "missing-" + text[first:]
    open(page, "w", encoding="utf-8").write(broken)
    _, messages, _ = _open(page, screenshot=False)
    errors = [m["text"] for m in console_errors(messages)]
    assert any("audio failed: report_files/missing-" in e for e in errors), errors

    scripted = os.path.join(out, "scripted.html")
    open(scripted, "w", encoding="utf-8").write(
        text.replace("</body>", "<script>throw new Error('broken figure code');</script></body>"))
    dom, messages, png = _open(scripted)
    errors = [m["text"] for m in console_errors(messages)]
    assert any("broken figure code" in e for e in errors), errors
    assert not is_blank_png(png)

    blank = os.path.join(out, "blank.html")
    open(blank, "w", encoding="utf-8").write("<!DOCTYPE html><html><head></head><body></body></html>")
    _, messages, png = _open(blank)
    assert is_blank_png(png) and not console_errors(messages)
