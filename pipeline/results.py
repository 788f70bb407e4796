"""The toy pipeline's table: zero-shot accuracy per model and target set, over seeds, and what it says.

Built only from the zero-shot JSON files and curation outputs of the run
(never from a file in the repository): ``results.md``, ``results.csv`` (one
row per model x set: mean, sample standard deviation and per-seed values),
``results_per_seed.csv``, ``differences.csv`` (each comparison's difference and
its paired bootstrap interval, :mod:`pipeline.intervals`) and ``results.png``.
"""

import os

import pandas as pd

from dataset.manifest import atomic_write, write_csv
from pipeline.intervals import RESAMPLES, accuracy_interval, clip_resamples, correct_matrix, difference_interval, shown
from pipeline.plan import curated_key, model_rows, row_round, row_title, target_title

__all__ = ["collect", "correctness", "summarise", "markdown_table", "differences", "verdicts", "write_results",
           "write_bar_chart", "machine_description"]


def collect(plans, hparams):
    """One row per (seed, model, target set): accuracy and curated-pair figures."""
    rows = []
    for plan in plans:
        for (kind, target), stage in plan.zeroshot.items():
            out = (stage.result or {}).get("outputs") or {}
            key = curated_key(kind, target)
            curated = plan.curated.get(key) if key else None
            cur = (curated.result or {}).get("outputs", {}) if curated is not None else {}
            predictions = os.path.join(os.path.dirname(out["json"]), "predictions.csv") if out.get("json") else None
            rows.append({
                "seed": plan.seed, "model": row_title(kind), "round": row_round(kind), "dataset": target,
                "predictions": predictions if predictions and os.path.isfile(predictions) else None,
                "top1": out.get("top1"), "top5": out.get("top5"), "clips": out.get("clips"),
                "curated_pairs": cur.get("pairs"), "pair_precision": cur.get("pair_precision"),
                "threshold": cur.get("threshold"),
                "not_run": (stage.result or {}).get("skipped") or "",
            })
    return rows


_NUMERIC = ("top1", "top5", "curated_pairs", "pair_precision")


def correctness(rows):
    """Per (model, set): the clip IDs and the ``(seeds, clips)`` 0/1 matrix of its predictions.

    Only cells whose every seed has a ``predictions.csv`` (rows from
    :func:`collect`) are included: their intervals come from those files.
    """
    cells = {}
    for row in rows:
        cells.setdefault((row["model"], row["dataset"]), []).append(row.get("predictions"))
    return {key: correct_matrix(paths) for key, paths in cells.items() if paths and all(paths)}


def _aligned(cell_a, cell_b):
    """The two cells' matrices restricted to the clips both scored (same column order)."""
    (clips_a, a), (clips_b, b) = cell_a, cell_b
    common = sorted(set(clips_a) & set(clips_b))
    ia, ib = {c: i for i, c in enumerate(clips_a)}, {c: i for i, c in enumerate(clips_b)}
    return a[:, [ia[c] for c in common]], b[:, [ib[c] for c in common]]


def _value(x):
    """A plain float, or None for a missing value (pandas' NaN)."""
    return None if pd.isna(x) else float(x)


def summarise(rows, hparams, matrices=None):
    """Per (model, dataset): mean, sample std and count over seeds of top-1, top-5 and pair counts.

    With ``matrices`` (:func:`correctness`), each cell also gets the 95 %
    bootstrap interval of its top-1 over clips, pooled over seeds
    (``top1_ci_low``, ``top1_ci_high``; None without predictions).

    Arguments
    ---------
    rows : list of dict
        From :func:`collect` (one per seed, model and set; None where not measured).
    hparams : dict
        ``students`` and ``target_sets`` give the table's order.

    Returns
    -------
    list of dict
        One per model and set, in table order: ``seeds`` (how many measured),
        ``top1_mean``, ``top1_sd`` (None for one seed), ``top5_mean``,
        ``top5_sd``, ``curated_pairs_mean``, ``pair_precision_mean``,
        ``top1_per_seed`` (``;``-joined).

    Example
    -------
    >>> rows = [{"seed": s, "model": "teacher", "dataset": "esc50", "top1": t, "top5": 1.0,
    ...          "curated_pairs": None, "pair_precision": None} for s, t in [(1, 0.25), (2, 0.5)]]
    >>> cell = summarise(rows, {"students": [], "target_sets": ["esc50"]})[0]
    >>> cell["seeds"], cell["top1_mean"], round(cell["top1_sd"], 4), cell["curated_pairs_mean"], cell["top1_per_seed"]
    (2, 0.375, 0.1768, None, '0.2500;0.5000')
    """
    keys = model_rows(hparams)
    models = [row_title(k) for k in keys]
    rounds = {row_title(k): row_round(k) for k in keys} if int(hparams.get("rounds") or 1) > 1 else None
    frame = pd.DataFrame(rows, columns=["model", "dataset", *_NUMERIC])
    frame[list(_NUMERIC)] = frame[list(_NUMERIC)].apply(pd.to_numeric, errors="coerce")
    # Sample standard deviation (ddof=1); NaN (no value) for fewer than two seeds.
    stats = frame.groupby(["model", "dataset"], sort=False).agg(
        seeds=("top1", "count"), top1_mean=("top1", "mean"), top1_sd=("top1", "std"), top5_mean=("top5", "mean"),
        top5_sd=("top5", "std"), curated_pairs_mean=("curated_pairs", "mean"),
        pair_precision_mean=("pair_precision", "mean"),
    )
    table = []
    for model in models:
        for target in hparams["target_sets"]:
            cell = [r for r in rows if r["model"] == model and r["dataset"] == target]
            found = (model, target) in stats.index
            entry = {"model": model, **({"round": rounds[model]} if rounds else {}), "dataset": target,
                     "seeds": int(stats.loc[(model, target), "seeds"]) if found else 0}
            for key in ("top1_mean", "top1_sd", "top5_mean", "top5_sd", "curated_pairs_mean", "pair_precision_mean"):
                entry[key] = _value(stats.loc[(model, target), key]) if found else None
            entry["top1_per_seed"] = ";".join("" if r["top1"] is None else f"{r['top1']:.4f}" for r in cell)
            entry["top1_ci_low"] = entry["top1_ci_high"] = None
            if matrices and (model, target) in matrices:
                correct = matrices[(model, target)][1]
                entry["top1_ci_low"], entry["top1_ci_high"] = accuracy_interval(
                    correct, clip_resamples(correct.shape[1]))
            table.append(entry)
    return table


def _pct(mean, sd, low=None, high=None):
    if mean is None:
        return "–"
    return (f"{100 * mean:.1f}" + (f" ± {100 * sd:.1f}" if sd is not None else "")
            + (f" [{100 * low:.1f}, {100 * high:.1f}]" if low is not None else ""))


def markdown_table(table, hparams, seeds):
    targets = hparams["target_sets"]
    cells = {(t["model"], t["dataset"]): t for t in table}
    titles = [target_title(t) for t in targets]
    lines = ["| model | " + " | ".join(titles) + " | curated pairs (" + " / ".join(titles) + ") |",
             "|---" * (len(targets) + 2) + "|"]
    for model in dict.fromkeys(t["model"] for t in table):
        accs = [_pct(*(cells[(model, t)].get(k) for k in ("top1_mean", "top1_sd", "top1_ci_low", "top1_ci_high")))
                for t in targets]
        pairs = [cells[(model, t)]["curated_pairs_mean"] for t in targets]
        pair_text = "–" if all(p is None for p in pairs) else (
            f"{pairs[0]:.0f} (shared)" if model == "DU"
            else " / ".join("–" if p is None else f"{p:.0f}" for p in pairs))
        lines.append(f"| {model} | " + " | ".join(accs) + f" | {pair_text} |")
    return "\n".join(lines)


def _comparisons(hparams):
    """(row, reference row) pairs: each student against the teacher, each SoftCLAP student against its plain one."""
    rows = model_rows(hparams)[1:]
    pairs = [(row_title(k), "teacher") for k in rows]
    pairs += [(row_title(k), row_title(k.replace("_softclap", ""))) for k in rows
              if "_softclap" in k and k.replace("_softclap", "") in rows]
    return pairs


def differences(table, hparams, matrices=None):
    """One entry per comparison and set: the difference of the means and, with predictions, its paired interval.

    ``diff``, ``ci_low``, ``ci_high`` in points of top-1; ``shown`` is +1 / -1
    when the interval excludes 0, 0 when it contains it, None without predictions.
    """
    cells = {(t["model"], t["dataset"]): t for t in table}
    out = []
    for a, b in _comparisons(hparams):
        for target in hparams["target_sets"]:
            x, y = cells.get((a, target)), cells.get((b, target))
            if not x or not y or x["top1_mean"] is None or y["top1_mean"] is None:
                continue
            entry = {"comparison": f"{a} vs {b}", "dataset": target, "diff": 100 * (x["top1_mean"] - y["top1_mean"]),
                     "ci_low": None, "ci_high": None, "shown": None}
            if matrices and (a, target) in matrices and (b, target) in matrices:
                ca, cb = _aligned(matrices[(a, target)], matrices[(b, target)])
                low, high = difference_interval(ca, cb, clip_resamples(ca.shape[1]))
                entry.update(ci_low=100 * low, ci_high=100 * high, shown=shown((low, high)))
            out.append(entry)
    return out


def verdicts(table, hparams, matrices=None):
    """What the run measured: each row against the teacher, SoftCLAP against its plain counterpart.

    With predictions, each difference carries its paired 95 % interval, and the
    verdict counts only the differences whose interval excludes 0.
    """
    out = []
    entries = differences(table, hparams, matrices)
    for comparison in dict.fromkeys(e["comparison"] for e in entries):
        mine = [e for e in entries if e["comparison"] == comparison]
        parts = []
        for e in mine:
            text = f"{target_title(e['dataset'])} {e['diff']:+.1f}"
            if e["shown"] is not None:
                text += f" [{e['ci_low']:+.1f}, {e['ci_high']:+.1f}]" + (" not shown" if e["shown"] == 0 else "")
            parts.append(text)
        if all(e["shown"] is not None for e in mine):
            names = {s: [target_title(e["dataset"]) for e in mine if e["shown"] == s] for s in (1, -1, 0)}
            if len(names[1]) == len(mine):
                word = "helps"
            elif len(names[-1]) == len(mine):
                word = "hurts"
            elif len(names[0]) == len(mine):
                word = "not shown"
            else:
                word = "; ".join(f"{label} on {', '.join(names[s])}" for s, label in
                                 ((1, "better"), (-1, "worse"), (0, "not shown")) if names[s])
        else:
            deltas = [e["diff"] for e in mine]
            word = ("helps" if min(deltas) > 0 else "hurts" if max(deltas) < 0
                    else "no change" if max(map(abs, deltas)) == 0 else "mixed")
        out.append(f"- {comparison}: {', '.join(parts)} points of top-1 ({word})")
    return out


def write_results(plans, hparams, seeds, machine):
    """Writes results.md / .csv / _per_seed.csv / .png into the output folder; returns the Markdown text."""
    out = os.path.abspath(hparams["output_folder"])
    rows = collect(plans, hparams)
    matrices = correctness(rows)
    table = summarise(rows, hparams, matrices)
    per_seed_fields = ["seed", "model", "dataset", "top1", "top5", "clips", "curated_pairs", "pair_precision",
                       "threshold", "not_run"]
    if int(hparams.get("rounds") or 1) > 1:  # self-training: which round each row belongs to
        per_seed_fields.insert(2, "round")
    write_csv(os.path.join(out, "results_per_seed.csv"), [{k: _fmt(r[k]) for k in per_seed_fields} for r in rows],
              per_seed_fields)
    fields = list(table[0]) if table else []
    write_csv(os.path.join(out, "results.csv"), [{k: _fmt(t[k]) for k in fields} for t in table], fields)
    diff_rows = differences(table, hparams, matrices)
    diff_fields = ["comparison", "dataset", "diff", "ci_low", "ci_high", "shown"]
    write_csv(os.path.join(out, "differences.csv"), [{k: _fmt(d[k]) for k in diff_fields} for d in diff_rows],
              diff_fields)
    spread = "mean ± sample standard deviation over seeds " + ", ".join(map(str, seeds)) if len(seeds) > 1 \
        else f"seed {seeds[0]}"
    intervals = (" In brackets: the 95 % bootstrap interval over clips (percentile, pooled over seeds, "
                 f"{RESAMPLES} resamples of the per-clip predictions.csv files)." if matrices else "")
    toy = "world_size" in hparams
    text = "\n".join([
        "# Toy-world results" if toy else "# Results",
        "",
        f"Zero-shot top-1 accuracy (%) on the {'toy ' if toy else ''}target sets; {spread}. DS and ADS students are "
        "trained per target set; the DU student is shared. Curated pairs: DU = unpaired clip x caption "
        "pairs, DS = training pairs kept, ADS = unpaired clip x DS caption pairs." + intervals,
        "",
        markdown_table(table, hparams, seeds),
        "",
        "Measured differences (mean over seeds" + ("; in brackets the paired 95 % bootstrap interval over the same "
                                                   "clips; an interval containing 0 is not shown)" if matrices
                                                   else ")") + ":",
        "",
        *verdicts(table, hparams, matrices),
        "",
        f"Machine: {machine}. Settings: " + (f"world {hparams['world_size']} (seed {hparams['world_seed']}), "
                                            if toy else f"teacher {hparams.get('teacher')}, ")
        + (f"teacher {hparams['teacher_epochs']} epochs, " if toy or hparams.get("teacher") in (None, "", "train")
           else "") + f"students {hparams['student_steps']} steps, curation_prob "
        f"{hparams['curation_prob']} ({hparams.get('curation_mixing', 'insert')} mixing), softclap_beta "
        f"{hparams['softclap_beta']} ({hparams.get('softclap_targets', 'normalized')} targets)"
        + (f", precision {hparams['precision']}" if hparams.get("precision", "fp32") != "fp32" else "")
        + f", curation crop {hparams.get('curation_eval_crop', 'center')}, caption rows "
        f"{hparams.get('caption_rows', 'distinct')}." + ("" if toy else _thresholds_line(plans)),
        "",
        *_leakage_lines(plans, out),
    ])
    atomic_write(os.path.join(out, "results.md"), lambda f: f.write(text), "w", encoding="utf-8")
    write_bar_chart(os.path.join(out, "results.png"), table, hparams, spread)
    return text


def _leakage_lines(plans, out):
    """The leakage audit's counts per seed (``leakage.csv`` beside ``results.md`` lists every clip found)."""
    from pipeline.audit import LEAKAGE_FIELDS, read_leakage_rows

    audits = [(plan.seed, (plan.audit.result or {}).get("outputs") or {}) for plan in plans
              if getattr(plan, "audit", None) is not None]
    if not audits:
        return []
    rows = read_leakage_rows(plans)
    write_csv(os.path.join(out, "leakage.csv"), rows, LEAKAGE_FIELDS)
    lines = ["Leakage audit (evaluation clips found by content in the training audio; every clip in leakage.csv):", ""]
    for seed, counts in audits:
        lines.append(f"- seed {seed}: {counts.get('unpaired', 0)} of {counts.get('checked_unpaired', 0)} unpaired "
                     f"clips and {counts.get('pairs', 0)} of {counts.get('checked_pairs', 0)} training-pair clips "
                     f"match one of {counts.get('references', 0)} evaluation clips ({counts.get('exact', 0)} exact, "
                     f"{counts.get('near', 0)} near duplicates); policy {counts.get('policy')}"
                     + (", dropped before the students trained" if counts.get("policy") == "drop"
                        and (counts.get("unpaired") or counts.get("pairs")) else "") + ".")
    return lines + [""]


def _thresholds_line(plans):
    """The curation thresholds each seed used (data-derived ones are recorded here and in the stage markers)."""
    parts = []
    for plan in plans:
        for (key, target), stage in plan.curated.items():
            value = ((stage.result or {}).get("outputs") or {}).get("threshold")
            if value is not None:
                parts.append(f"seed {plan.seed} {row_title(key)}{' ' + target if target else ''} {value}")
    return (" Curation thresholds: " + "; ".join(parts) + ".") if parts else ""


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else value


def write_bar_chart(path, table, hparams, subtitle):
    """Grouped bars: one group per target set, one bar per model, error bars = spread over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    targets = hparams["target_sets"]
    models = list(dict.fromkeys(t["model"] for t in table))
    cells = {(t["model"], t["dataset"]): t for t in table}
    fig = Figure(figsize=(2.2 + 1.6 * len(targets), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        means = [100 * (cells[(model, t)]["top1_mean"] or 0.0) for t in targets]
        sds = [100 * (cells[(model, t)]["top1_sd"] or 0.0) for t in targets]
        xs = [k + (i - (len(models) - 1) / 2) * width for k in range(len(targets))]
        ax.bar(xs, means, width, yerr=sds if any(sds) else None, capsize=2, label=model)
    ax.set_xticks(range(len(targets)))
    ax.set_xticklabels([target_title(t) for t in targets])
    ax.set_ylabel("zero-shot top-1 (%)")
    ax.set_title(f"Toy world: teacher and students ({subtitle})", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def machine_description():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), no GPU used"


