"""The leakage audit of a seed: is any evaluation clip in the audio the students train on?

Before students train, the unpaired pool and the pair training set (the
caption pool's clips: the teacher's training pairs, from which the DS pairs
come) are compared, by content, with the clips of every scored target set
(:mod:`curation.leakage`: the same decoded samples, or the teacher's embedding
cosine confirmed by a log-mel correlation over the aligned overlap). Two
stages per seed: the teacher embeds the evaluation clips and the pair set's
clips (``recipes/microsoft_curation_toemb.py``, the curation embedding step's
recipe and YAML; the pool's embeddings are the curation step's own), then the
audit writes ``leakage/leakage.csv`` and, with ``leakage: drop``, every CSV a
student reads loses the rows whose clip leaked (a copy in ``leakage/clean/``;
a CSV with nothing to drop is given as it is, so a clean run's commands are
those of a run without the audit). ``leakage: warn`` keeps them and says so;
``leakage: fail`` stops the run before any student trains.

The audit runs once per seed with the round-1 teacher: later rounds curate
the same audio, so the same clips are dropped there.
"""

import json
import os
import sys

import numpy as np

from curation.audit import LEAKAGE_FIELDS, audit_sets, drop_leaked, read_embeddings, write_leakage_csv
from dataset.manifest import atomic_write, read_caption_csv, read_csv

__all__ = ["POLICIES", "LEAKAGE_FIELDS", "check_leakage_keys", "audit_policy", "audit_settings", "write_audit_list",
           "run_audit", "clean_csv", "leaked_paths", "read_leakage_rows"]

POLICIES = ("drop", "warn", "fail", "off")


def audit_policy(hparams):
    """The YAML's ``leakage`` policy (``drop`` when the YAML has no such key)."""
    return str(hparams.get("leakage") or "drop")


def audit_settings(hparams):
    """``(policy, cosine, mel_corr, top_k, wave_corr)`` from the YAML's ``leakage*`` keys (defaults:
    :func:`curation.leakage.find_leaks`'s)."""
    from curation.leakage import find_leaks
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(find_leaks).parameters.items()
                if p.default is not inspect.Parameter.empty}
    policy = audit_policy(hparams)
    cosine = hparams.get("leakage_cosine")
    mel = hparams.get("leakage_mel_corr")
    top_k = hparams.get("leakage_top_k")
    wave = hparams.get("leakage_wave_corr")
    return (policy, float(defaults["cosine"] if cosine is None else cosine),
            float(defaults["mel_corr"] if mel is None else mel), int(defaults["top_k"] if top_k is None else top_k),
            float(defaults["wave_corr"] if wave is None else wave))


def check_leakage_keys(hparams):
    """Fails early, naming the key, when a ``leakage*`` value is not one the audit takes."""
    policy = audit_policy(hparams)
    if policy not in POLICIES:
        raise SystemExit(f"--leakage must be one of {', '.join(POLICIES)}; got {policy!r}.")
    for key, low, high in (("leakage_cosine", -1.0, 1.0), ("leakage_mel_corr", -1.0, 1.0),
                           ("leakage_wave_corr", 0.0, 1.0)):
        value = hparams.get(key)
        if value is not None and not low <= float(value) <= high:
            raise SystemExit(f"--{key} must be a correlation in [{low}, {high}]; got {value}.")
    top_k = hparams.get("leakage_top_k")
    if top_k is not None and int(top_k) < 1:
        raise SystemExit(f"--leakage_top_k must be at least 1; got {top_k}.")


def _pair_clips(caption_csv):
    """The distinct clips of a caption CSV's rows (a text-only row has none), in order."""
    seen = {}
    for row in read_caption_csv(caption_csv):
        path = (row.get("wav_path") or "").strip()
        if path:
            seen.setdefault(path, None)
    return list(seen)


def write_audit_list(folder, targets, caption_csv):
    """Writes ``folder/audit_paths.txt`` (evaluation clips, then the pair set's clips) and the references per target.

    ``targets``: ``{name: (dataset, data folder)}`` of the scored target sets
    (every clip their zero-shot score uses). Returns the digest of the list.
    """
    from dataset.prepare_zeroshot import prepare_zeroshot
    from embeddings.keys import list_digest
    from embeddings.lists import write_path_list

    os.makedirs(folder, exist_ok=True)
    references = {}
    for name, (dataset, data_folder) in targets.items():
        prepared = prepare_zeroshot(dataset, data_folder, os.path.join(folder, f"prepared_{name}"), check_audio=False)
        references[name] = [row["wav_path"] for row in read_csv(prepared["csv"])]
    pairs = _pair_clips(caption_csv) if caption_csv and os.path.isfile(caption_csv) else []
    paths = list(dict.fromkeys([p for refs in references.values() for p in refs] + pairs))
    write_path_list(os.path.join(folder, "audit_paths.txt"), paths)
    atomic_write(os.path.join(folder, "audit_sets.json"),
                 lambda f: f.write(json.dumps({"references": references, "pairs": pairs}) + "\n"), "w",
                 encoding="utf-8")
    return list_digest(paths)


def run_audit(folder, pool_emb_dir, seed, hparams):
    """Compares the pool and the pair set with every target's clips; writes ``leakage.csv``; returns the counts.

    Raises
    ------
    RuntimeError
        With ``leakage: fail``, when a clip leaked (naming the count and the CSV).
    """
    policy, cosine, mel_corr, top_k, wave_corr = audit_settings(hparams)
    with open(os.path.join(folder, "audit_sets.json"), encoding="utf-8") as f:
        sets = json.load(f)
    audit_paths, audit_emb = read_embeddings(os.path.join(folder, "save"))
    row = {p: i for i, p in enumerate(audit_paths)}
    pool = read_embeddings(pool_emb_dir)

    def subset(paths):
        paths = [p for p in paths if p in row]  # a clip the teacher could not read has no row
        return paths, audit_emb[[row[p] for p in paths]] if paths else np.zeros((0, audit_emb.shape[1]))

    pairs = subset(sets["pairs"])
    rows = audit_sets({"unpaired": pool, "pairs": pairs}, {t: subset(r) for t, r in sets["references"].items()},
                      policy=policy, cosine=cosine, mel_corr=mel_corr, top_k=top_k, wave_corr=wave_corr,
                      cache_path=os.path.join(folder, "digests.json"), progress=sys.stderr.isatty(), seed=seed)
    csv_path = write_leakage_csv(os.path.join(folder, "leakage.csv"), rows)
    counts = {
        "csv": csv_path, "policy": policy,
        "unpaired": len({r["path"] for r in rows if r["set"] == "unpaired"}),
        "pairs": len({r["path"] for r in rows if r["set"] == "pairs"}),
        "exact": sum(r["kind"] == "exact" for r in rows), "near": sum(r["kind"] == "near" for r in rows),
        "checked_unpaired": len(pool[0]), "checked_pairs": len(pairs[0]),
        "references": sum(len(v) for v in sets["references"].values()),
    }
    if rows and policy == "fail":
        raise RuntimeError(
            f"leakage: {counts['unpaired']} unpaired clip(s) and {counts['pairs']} training pair clip(s) are "
            f"evaluation clips (listed in {csv_path}); remove them, or set --leakage=drop (or warn) to go on")
    if rows and policy == "warn":
        print(f"    WARNING: {counts['unpaired']} unpaired clip(s) and {counts['pairs']} training pair clip(s) are "
              f"evaluation clips; kept (leakage: warn). See {csv_path}", flush=True)
    return counts


def leaked_paths(audit_stage):
    """The clips a finished audit stage drops (empty unless its policy is ``drop``)."""
    out = ((audit_stage.result or {}).get("outputs") or {}) if audit_stage is not None else {}
    if out.get("policy") != "drop" or not out.get("csv"):
        return set()
    return {row["path"] for row in read_csv(out["csv"])}


def clean_csv(path, dropped, folder):
    """``path`` itself when none of its rows' clips is in ``dropped``; else a copy without them in ``folder``."""
    if not dropped or not any(r.get("wav_path") in dropped for r in read_csv(path)):
        return path
    import hashlib

    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    tag = hashlib.sha1(os.path.abspath(path).encode("utf-8")).hexdigest()[:8]
    target = os.path.join(folder, f"{stem}_{tag}.csv")
    drop_leaked(path, dropped, target)
    return target


def read_leakage_rows(plans):
    """Every seed's audit rows (for the results and the report)."""
    rows = []
    for plan in plans:
        stage = getattr(plan, "audit", None)
        out = ((stage.result or {}).get("outputs") or {}) if stage is not None else {}
        if out.get("csv") and os.path.isfile(out["csv"]):
            rows += read_csv(out["csv"])
    return rows
