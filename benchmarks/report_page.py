"""How heavy the curation report page is for a run of 100,000 pairs: build time, size, browser load time.

Synthesises a curation folder (``--clips`` unpaired clips x ``--captions`` captions, random unit embeddings
of dimension ``--dim`` stored as float16 like the embedding step's; a DU pairs CSV of the ``--pairs`` best
clip-caption cosines, threshold in its name; 20 short WAVs, each clip path a symbolic link to one of them),
then

- builds the report with ``curation.report.write_report`` (timed: the blocked cosine profile, the excerpts
  of the 20 examples, the page and its Markdown twin);
- measures ``report.html`` plus ``report_files/``;
- times headless Chromium's ``--dump-dom`` (start, load, layout, exit) on the report and on an empty page
  (the browser's start-up), median of ``--repeats`` runs each, and reports both and their difference: what
  opening the page costs beyond starting a browser.

Usage::

    python benchmarks/report_page.py [--work DIR] [--json] [--out FILE]
    python benchmarks/report_page.py --page toy_results/report.html --out FILE   # a run's own page
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.machine import describe, emit_json  # noqa: E402


def _unit_rows(rng, n, dim, block=4096):
    out = np.empty((n, dim), dtype=np.float16)
    for i in range(0, n, block):
        x = rng.standard_normal((min(block, n - i), dim)).astype(np.float32)
        out[i:i + block] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def build_folder(work, clips, captions, dim, pairs, seed=0):
    """The synthetic curation folder; returns ``(emb_dir, pairs_csv, threshold, pair_rows)``."""
    import soundfile

    rng = np.random.default_rng(seed)
    emb = os.path.join(work, "seed1234", "curation", "save")
    wav_dir = os.path.join(work, "audio")
    os.makedirs(emb, exist_ok=True)
    os.makedirs(wav_dir, exist_ok=True)
    sources = []
    for i in range(20):
        t = np.arange(10 * 32000) / 32000
        wav = (0.2 * np.sin(2 * np.pi * (220 + 30 * i) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
        path = os.path.join(wav_dir, f"source{i:02d}.wav")
        soundfile.write(path, wav, 32000, subtype="PCM_16")
        sources.append(path)
    link_dir = os.path.join(wav_dir, "clips")
    os.makedirs(link_dir, exist_ok=True)
    paths = []
    for i in range(clips):
        path = os.path.join(link_dir, f"Yclip{i:06d}.wav")
        if not os.path.lexists(path):
            os.symlink(sources[i % len(sources)], path)
        paths.append(path)
    with open(os.path.join(emb, "audio_paths.txt"), "w", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in paths))
    audio, text = _unit_rows(rng, clips, dim), _unit_rows(rng, captions, dim)
    np.save(os.path.join(emb, "audio_emb.npy"), audio)
    np.save(os.path.join(emb, "text_emb.npy"), text)
    caption_text = [f"synthetic caption {i}: a sound of thing {i % 97} near thing {i % 89}" for i in range(captions)]
    with open(os.path.join(emb, "text_captions.csv"), "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "caption"])
        w.writerows([f"c{i}", c] for i, c in enumerate(caption_text))
    # The `pairs` best cosines: a candidate floor from a sample, then the exact cut.
    caps = text.astype(np.float32)
    sample = audio[rng.choice(clips, min(clips, 2000), replace=False)].astype(np.float32) @ caps.T
    floor = float(np.quantile(sample, 1 - 2.0 * pairs / (clips * captions)))
    qs, ks, ss = [], [], []
    for a0 in range(0, clips, 2048):
        s = audio[a0:a0 + 2048].astype(np.float32) @ caps.T
        q, k = np.nonzero(s >= floor)
        qs.append(q + a0)
        ks.append(k)
        ss.append(s[q, k])
    q, k, s = np.concatenate(qs), np.concatenate(ks), np.concatenate(ss)
    cut = float(np.sort(s)[::-1][min(pairs, s.size) - 1])
    threshold = float(np.floor(cut * 1e6) / 1e6)
    keep = np.nonzero(s >= threshold)[0]
    keep = keep[np.lexsort((k[keep], q[keep]))]
    pairs_csv = os.path.join(emb, f"du_pairs_thr{threshold:g}.csv")
    with open(pairs_csv, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "wav_path", "caption", "similarity"])
        for j in keep:
            w.writerow([f"Yclip{q[j]:06d}__c{k[j]}", paths[q[j]], caption_text[k[j]], f"{s[j]:.6f}"])
    with open(os.path.join(emb, f"du_pairs_thr{threshold:g}_summary.json"), "w", encoding="utf-8") as f:
        json.dump({"threshold": threshold, "pairs": int(keep.size), "caption_set": "text", "curation": "du"}, f)
    return emb, pairs_csv, threshold, int(keep.size)


def write_results(path):
    rows = []
    for i, model in enumerate(["teacher", "DU", "DS", "ADS", "DS+SoftCLAP", "ADS+SoftCLAP"]):
        for j, dataset in enumerate(["esc50", "us8k", "tut17"]):
            mean = 0.3 + 0.05 * i + 0.03 * j
            rows.append([model, dataset, 1, f"{mean:.4f}", f"{mean - 0.06:.4f}", f"{mean + 0.06:.4f}"])
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "dataset", "seeds", "top1_mean", "top1_ci_low", "top1_ci_high"])
        w.writerows(rows)


def folder_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def time_dump_dom(binary, page, repeats):
    """Median wall seconds of ``chromium --headless --dump-dom file://page`` (fresh profile each run)."""
    times = []
    for _ in range(repeats):
        profile = tempfile.mkdtemp(prefix="chromium-profile-")
        try:
            begin = time.perf_counter()
            proc = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                   "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}",
                                   "--window-size=1200,3000", "--dump-dom", "file://" + page],
                                  capture_output=True, text=True, timeout=300)
            times.append(time.perf_counter() - begin)
            if "</html>" not in proc.stdout:
                raise RuntimeError(f"chromium failed on {page}: {proc.stderr[-1500:]}")
        finally:
            shutil.rmtree(profile, ignore_errors=True)
    return round(statistics.median(times), 3), [round(t, 3) for t in times]


def browser_load(page, work, repeats):
    """Headless Chromium's ``--dump-dom`` time of ``page`` and of an empty page (browser start-up), medians."""
    binary = chromium_binary()
    if binary is None:
        return {"browser": "no chromium on PATH: load time not measured"}
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    empty = os.path.join(work, "empty.html")
    with open(empty, "w", encoding="utf-8") as f:
        f.write("<!DOCTYPE html><html><head><title>empty</title></head><body></body></html>\n")
    time_dump_dom(binary, empty, 1)  # warm the file cache
    page_median, page_runs = time_dump_dom(binary, page, repeats)
    empty_median, empty_runs = time_dump_dom(binary, empty, repeats)
    return {
        "browser": version,
        "dump_dom_report_seconds": page_median, "dump_dom_report_runs": page_runs,
        "dump_dom_empty_seconds": empty_median, "dump_dom_empty_runs": empty_runs,
        "page_load_beyond_startup_seconds": round(page_median - empty_median, 3),
    }


def measure_existing(page, repeats):
    """Size and load time of a report a run wrote (``--page``), e.g. the toy pipeline's."""
    work = tempfile.mkdtemp(prefix="report-page-bench-")
    try:
        html_bytes = os.path.getsize(page)
        files_bytes = folder_bytes(os.path.join(os.path.dirname(os.path.abspath(page)), "report_files"))
        result = {"machine": describe("cpu"), "page": os.path.abspath(page), "html_bytes": html_bytes,
                  "report_files_bytes": files_bytes, "total_mb": round((html_bytes + files_bytes) / 1e6, 3)}
        result.update(browser_load(page, work, repeats))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    parser.add_argument("--clips", type=int, default=20000)
    parser.add_argument("--captions", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=100000)
    parser.add_argument("--repeats", type=int, default=5, help="browser runs per page (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--page", default=None,
                        help="measure this report.html (e.g. a toy run's) instead of a synthesised one")
    args = parser.parse_args(argv)
    if args.page:
        result = measure_existing(args.page, args.repeats)
        emit_json(result, args.out, to_stdout=True)
        return result

    from curation.report import sets_from_emb_dir, write_report

    work = args.work or tempfile.mkdtemp(prefix="report-page-bench-")
    try:
        begin = time.perf_counter()
        emb, pairs_csv, threshold, pair_rows = build_folder(work, args.clips, args.captions, args.dim, args.pairs)
        synth = time.perf_counter() - begin
        results = os.path.join(work, "results.csv")
        write_results(results)
        leaks = [{"seed": 1234, "target": "esc50", "set": "DU", "path": f"/x/{i}.wav", "reference": f"/esc/{i}.wav",
                  "kind": "near" if i % 3 else "exact", "cosine": 0.97, "mel_corr": 0.9, "offset_s": 0.0,
                  "action": "dropped"} for i in range(120)]
        out = os.path.join(work, "report")
        begin = time.perf_counter()
        written = write_report(out, sets_from_emb_dir(emb), results_csv=results, leakage_rows=leaks,
                               title="Report page benchmark")
        build = time.perf_counter() - begin
        html_bytes = os.path.getsize(written["html"])
        files_bytes = folder_bytes(os.path.join(out, "report_files"))
        result = {
            "machine": describe("cpu"),
            "clips": args.clips, "captions": args.captions, "dim": args.dim, "pairs": pair_rows,
            "threshold": threshold, "cosines": args.clips * args.captions,
            "synthesis_seconds": round(synth, 2),
            "build_seconds": round(build, 2),
            "excerpts": written["excerpts"],
            "html_bytes": html_bytes, "report_files_bytes": files_bytes,
            "total_mb": round((html_bytes + files_bytes) / 1e6, 3),
            "md_bytes": os.path.getsize(written["md"]),
        }
        result.update(browser_load(written["html"], work, args.repeats))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.json or args.out:
        emit_json(result, args.out, to_stdout=args.json)
    if not args.json:
        for key, value in result.items():
            if key != "machine":
                print(f"{key:36s}{value}")
        print(f"{'cpu':36s}{result['machine']['cpu']} ({result['machine']['logical_cpus']} logical CPUs)")
    return result


if __name__ == "__main__":
    main()
