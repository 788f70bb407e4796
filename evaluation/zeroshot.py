"""Zero-shot classification with a CLAP model: prompts, scoring, metrics and result files.

Each class label becomes a prompt (``"this is a sound of {label}"`` by
default, with the label's words: ``sea_waves`` → ``sea waves``); each clip
gets the labels ranked by the cosine between its audio embedding and the
prompt embeddings. With several templates (prompt ensembling) a label's
embedding is the renormalised mean of its unit-norm prompt embeddings.

Used by ``recipes/microsoft_zeroshot.py`` (the evaluation command), by
the training recipes (zero-shot accuracy as a validation metric,
``use_zs_loader``) and by the inference API. All feed :class:`ZeroShotEvaluator`, which
computes the prompt embeddings once per pass, accumulates the per-clip
rankings and writes ``zeroshot_results.json``, ``confusion_matrix.csv``,
``confusion_matrix.png`` and ``predictions.csv``.

Evaluation crops are deterministic (``center`` or ``start``), so the same
model gives the same numbers on every run.

"""

import io
import json
import logging
import os

import numpy as np
import torch
import speechbrain as sb
from sklearn.metrics import accuracy_score, confusion_matrix, top_k_accuracy_score
from speechbrain.utils.distributed import run_on_main
from tqdm import tqdm

from dataset.labels import labels_in_file_order, prompt_label
from dataset.manifest import atomic_write, write_csv
from dataset.pipelines import labelled_dataset
from dataset.prepare_zeroshot import prepare_zeroshot, read_prepared
from models.precision import autocast
from models.text_encoder import tokenize

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATES = ("this is a sound of {label}",)
RESULTS_JSON = "zeroshot_results.json"
CONFUSION_CSV = "confusion_matrix.csv"
CONFUSION_PNG = "confusion_matrix.png"
PREDICTIONS_CSV = "predictions.csv"
PREDICTION_FIELDS = ["ID", "wav_path", "fold", "true", "predicted", "score", "top5"]
#: Above this many classes the confusion PNG shows class indices instead of names.
PNG_NAMED_CLASSES = 60


# ----------------------------------------------------------------- prompts
def as_templates(templates):
    """A list of prompt templates, each holding ``{label}`` once or more.

    Arguments
    ---------
    templates : None, str or list of str
        None gives :data:`DEFAULT_TEMPLATES`; a string is one template.

    Example
    -------
    >>> as_templates(None), as_templates("a {label} sound")
    (['this is a sound of {label}'], ['a {label} sound'])
    >>> as_templates(["no placeholder"])
    Traceback (most recent call last):
    ...
    ValueError: Prompt template 'no placeholder' has no '{label}' placeholder.
    """
    if templates is None:
        return list(DEFAULT_TEMPLATES)
    if isinstance(templates, str):
        templates = [templates]
    templates = [str(t) for t in templates]
    if not templates:
        raise ValueError("prompt_templates is empty; give at least one template with '{label}'.")
    for template in templates:
        if "{label}" not in template:
            raise ValueError(f"Prompt template {template!r} has no '{{label}}' placeholder.")
    return templates


def build_prompts(labels, templates=None):
    """Prompts ``[template][class]``: each template with ``{label}`` replaced by the label's words.

    Only ``{label}`` is replaced, so other braces in a template stay as written.

    Example
    -------
    >>> build_prompts(["sea_waves", "cafe/restaurant"], ["this is a sound of {label}", "{label}"])
    [['this is a sound of sea waves', 'this is a sound of cafe restaurant'], ['sea waves', 'cafe restaurant']]
    """
    return [[t.replace("{label}", prompt_label(label)) for label in labels] for t in as_templates(templates)]


def unwrap(model):
    """The model inside a DataParallel / DistributedDataParallel wrapper (which hides ``encode_audio``)."""
    return model.module if hasattr(model, "module") and not hasattr(model, "encode_audio") else model


@torch.no_grad()
def prompt_embeddings(model, tokenizer, prompts, device="cpu", max_length=100, batch_size=64, precision="fp32"):
    """Class embeddings ``[C, D]`` from prompts ``[template][class]`` (see :func:`build_prompts`).

    Each template's embeddings are L2-normalised, averaged over templates and
    renormalised; with one template this is just its normalised embedding.
    The model runs in eval mode (its previous mode is restored).

    Arguments
    ---------
    model : torch.nn.Module
        Has ``encode_text(input_ids, attention_mask, token_type_ids=None)``.
    tokenizer : callable
        A Hugging Face tokenizer (see :func:`models.text_encoder.tokenize`).
    prompts : list of list of str
        ``[template][class]``.
    device : str or torch.device
    max_length : int
        Token limit (MS CLAP: 100).
    batch_size : int
        Prompts per forward pass.
    precision : str
        ``fp32``, ``bf16`` or ``fp16`` (:func:`models.precision.autocast`).

    Returns
    -------
    torch.Tensor
        ``[C, D]`` float32, unit-norm rows, on ``device``.

    Example
    -------
    >>> class Model(torch.nn.Module):
    ...     def encode_text(self, input_ids, attention_mask, token_type_ids=None):
    ...         return torch.nn.functional.one_hot(input_ids[:, 0], 3).float()
    >>> def tokenizer(texts, **kwargs):
    ...     return {"input_ids": torch.tensor([[len(t) % 3] for t in texts]),
    ...             "attention_mask": torch.ones(len(texts), 1)}
    >>> prompt_embeddings(Model(), tokenizer, [["a", "bb"], ["ccc", "bb"]])
    tensor([[0.7071, 0.7071, 0.0000],
            [0.0000, 0.0000, 1.0000]])
    """
    model = unwrap(model)
    was_training = model.training
    model.eval()
    try:
        total = None
        for row in prompts:
            parts = []
            for start in range(0, len(row), batch_size):
                tokens = tokenize(tokenizer, row[start : start + batch_size], max_length=max_length)
                tokens = {k: v.to(device) for k, v in tokens.items()}
                with autocast(precision, device):
                    parts.append(model.encode_text(**tokens).float())
            emb = torch.nn.functional.normalize(torch.cat(parts), dim=-1)
            total = emb if total is None else total + emb
        return torch.nn.functional.normalize(total / len(prompts), dim=-1)
    finally:
        model.train(was_training)


def rank_classes(audio_emb, text_emb, k):
    """The ``k`` best classes of each clip by cosine, best first; ties go to the lower class index.

    Arguments
    ---------
    audio_emb : torch.Tensor
        ``[B, D]`` (normalised here, so unnormalised input is fine).
    text_emb : torch.Tensor
        ``[C, D]`` unit-norm class embeddings.
    k : int
        Number of classes kept (at most ``C``).

    Returns
    -------
    scores : torch.Tensor
        ``[B, k]`` cosines.
    indices : torch.Tensor
        ``[B, k]`` class indices.

    Example
    -------
    >>> scores, idx = rank_classes(torch.tensor([[1.0, 1.0], [0.0, 2.0]]), torch.eye(2), 2)
    >>> idx.tolist()
    [[0, 1], [1, 0]]
    """
    audio_emb = torch.nn.functional.normalize(audio_emb.float(), dim=-1)
    sims = audio_emb @ text_emb.to(audio_emb.device, torch.float32).T
    # A stable sort makes tie-breaking deterministic (topk's order on ties is not specified).
    scores, indices = torch.sort(sims, dim=1, descending=True, stable=True)
    k = min(int(k), sims.shape[1])
    return scores[:, :k], indices[:, :k]


# ----------------------------------------------------------------- metrics
def _fold_key(fold):
    fold = str(fold)
    return (0, int(fold), "") if fold.isdigit() else (1, 0, fold)


def _hits(true, ranked, k, num_classes):
    """Clips whose true class is among their ``k`` best (``sklearn.metrics``), as a count."""
    if not true:
        return 0
    if k >= num_classes:
        return len(true)
    if k == 1 or num_classes <= 2:
        return int(accuracy_score(true, [r[0] for r in ranked], normalize=False))
    # Scores from the ranking: the ranked classes best first, every other class below them.
    scores = np.full((len(true), num_classes), -1.0)
    for row, classes in enumerate(ranked):
        scores[row, classes] = np.arange(len(classes), 0, -1, dtype=float)
    return int(top_k_accuracy_score(true, scores, k=k, labels=np.arange(num_classes), normalize=False))


def zeroshot_metrics(true, ranked, folds, labels, k=5):
    """Top-1 / top-k accuracy overall, per fold and per class, and the confusion matrix (``sklearn.metrics``).

    Arguments
    ---------
    true : list of int
        True class index of each clip.
    ranked : list of list of int
        The clip's classes, best first (at least ``min(k, C)`` of them).
    folds : list of str
        Fold of each clip.
    labels : list of str
        Class names, in the order of the indices.
    k : int
        The top-k of ``top5`` (capped at the number of classes).

    Returns
    -------
    dict
        ``top1``, ``top5``, ``per_fold`` ``{fold: {top1, top5, clips}}`` (folds
        in natural order), ``per_class`` ``{label: {top1, top5, clips}}`` (in
        ``labels`` order; accuracies None for a class without clips), and
        ``confusion`` ``[true][predicted]`` counts.

    Example
    -------
    >>> m = zeroshot_metrics([0, 1, 1], [[0, 1], [0, 1], [1, 0]], ["1", "1", "2"], ["a", "b"], k=1)
    >>> m["top1"], m["per_class"]["b"]["top1"], m["per_fold"]["2"], m["confusion"]
    (0.6666666666666666, 0.5, {'top1': 1.0, 'top5': 1.0, 'clips': 1}, [[1, 0], [1, 1]])
    """
    num_classes = len(labels)
    k = min(int(k), num_classes)
    true = [int(t) for t in true]
    ranked = [list(map(int, r)) for r in ranked]
    folds = [str(f) for f in folds]

    def summary(rows):
        if not rows:
            return {"top1": None, "top5": None, "clips": 0}
        t, r = [true[i] for i in rows], [ranked[i] for i in rows]
        return {"top1": _hits(t, r, 1, num_classes) / len(rows), "top5": _hits(t, r, k, num_classes) / len(rows),
                "clips": len(rows)}

    overall = summary(list(range(len(true))))
    by_fold = {}
    for i, fold in enumerate(folds):
        by_fold.setdefault(fold, []).append(i)
    by_class = {c: [i for i, t in enumerate(true) if t == c] for c in range(num_classes)}
    confusion = confusion_matrix(true, [r[0] for r in ranked], labels=np.arange(num_classes)) if true else \
        np.zeros((num_classes, num_classes), dtype=np.int64)
    return {
        "top1": overall["top1"],
        "top5": overall["top5"],
        "per_fold": {f: summary(by_fold[f]) for f in sorted(by_fold, key=_fold_key)},
        "per_class": {labels[c]: summary(by_class[c]) for c in range(num_classes)},
        "confusion": confusion.tolist(),
    }


# ---------------------------------------------------------------- evaluator
class ZeroShotEvaluator:
    """Scores clips against class prompts and accumulates the results of one pass.

    Arguments
    ---------
    labels : list of str
        Class names in the dataset's order (ESC-50 ``target``, US8K ``classID``, TUT sorted).
    templates : None, str or list of str
        Prompt template(s) with ``{label}``; several = prompt ensembling.
    topk : int
        The k of the top-k accuracy (``top5``).
    max_length : int
        Token limit of the prompts.

    Example
    -------
    >>> ev = ZeroShotEvaluator(["dog", "rain"])
    >>> ev.text_emb = torch.eye(2)  # normally: ev.encode_prompts(model, tokenizer, device)
    >>> ev.add_batch(torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.0, 1.0]]), ["a", "b", "c"],
    ...              ["/a.wav", "/b.wav", "/c.wav"], ["dog", "rain", "rain"], ["1", "1", "2"],
    ...              ok=[True, True, False])
    >>> r = ev.results()
    >>> r["top1"], r["clips_scored"], r["clips_skipped"], r["prompts"]["rain"]
    (0.5, 2, 1, ['this is a sound of rain'])
    """

    def __init__(self, labels, templates=None, topk=5, max_length=100):
        self.labels = list(labels)
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"Duplicate class names in {self.labels}.")
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.templates = as_templates(templates)
        self.prompts = build_prompts(self.labels, self.templates)
        self.topk = int(topk)
        self.max_length = int(max_length)
        self.text_emb = None
        self.reset()

    def reset(self):
        """Forgets the clips of a previous pass (the prompt embeddings are kept)."""
        self.records = []
        self.skipped = []

    def encode_prompts(self, model, tokenizer, device="cpu", precision="fp32"):
        """Computes the class embeddings once for the coming pass; returns them ``[C, D]``."""
        self.text_emb = prompt_embeddings(model, tokenizer, self.prompts, device, self.max_length,
                                          precision=precision)
        return self.text_emb

    def add_batch(self, audio_emb, ids, wav_paths, class_names, folds, ok=None):
        """Ranks the classes of a batch of clips; clips with ``ok`` False are counted as skipped.

        Arguments
        ---------
        audio_emb : torch.Tensor
            ``[B, D]`` audio embeddings.
        ids, wav_paths, class_names, folds : list of str
            Per clip.
        ok : list of bool or torch.Tensor, optional
            False for clips whose audio could not be read (their rows of
            ``audio_emb`` are ignored).
        """
        if self.text_emb is None:
            raise RuntimeError("Call encode_prompts() before add_batch(): the class embeddings are missing.")
        ok = [True] * len(ids) if ok is None else [bool(x) for x in (ok.tolist() if torch.is_tensor(ok) else ok)]
        keep = [i for i, good in enumerate(ok) if good]
        self.skipped.extend(ids[i] for i, good in enumerate(ok) if not good)
        if not keep:
            return
        for i in keep:
            if class_names[i] not in self.index:
                raise ValueError(f"Clip {ids[i]}: class {class_names[i]!r} is not one of the labels {self.labels}.")
        emb = audio_emb[torch.tensor(keep, device=audio_emb.device)].detach()
        scores, indices = rank_classes(emb, self.text_emb, max(self.topk, 1))
        for row, i in enumerate(keep):
            self.records.append({
                "ID": ids[i],
                "wav_path": wav_paths[i],
                "fold": str(folds[i]),
                "true": self.index[class_names[i]],
                "ranked": indices[row].tolist(),
                "scores": scores[row].tolist(),
            })

    def results(self, **extra):
        """Metrics of the clips added so far (see :func:`zeroshot_metrics`) plus counts, labels and prompts.

        ``extra`` keys (``dataset``, ``model_source``, ...) are added to the dict.
        """
        metrics = zeroshot_metrics(
            [r["true"] for r in self.records], [r["ranked"] for r in self.records],
            [r["fold"] for r in self.records], self.labels, self.topk,
        )
        out = dict(extra)
        out.update({
            "top1": metrics["top1"],
            "top5": metrics["top5"],
            "topk": min(self.topk, len(self.labels)),
            "clips_scored": len(self.records),
            "clips_skipped": len(self.skipped),
            "skipped_ids": list(self.skipped),
            "per_fold": metrics["per_fold"],
            "per_class": metrics["per_class"],
            "labels": list(self.labels),
            "templates": list(self.templates),
            "prompts": {label: [p[i] for p in self.prompts] for i, label in enumerate(self.labels)},
            "confusion": metrics["confusion"],
        })
        return out

    def write(self, folder, **extra):
        """Writes the four result files into ``folder`` (atomically); returns the results dict.

        Files: ``zeroshot_results.json`` (the results without the confusion
        matrix), ``confusion_matrix.csv`` (rows = true class, columns =
        predicted, both in label order), ``confusion_matrix.png`` and
        ``predictions.csv`` (per clip: ID, wav_path, fold, true, predicted,
        score, top5 (``;``-separated, best first)).
        """
        results = self.results(**extra)
        os.makedirs(folder, exist_ok=True)
        confusion = results.pop("confusion")
        atomic_write(
            os.path.join(folder, RESULTS_JSON),
            lambda f: f.write(json.dumps(results, indent=2, ensure_ascii=False) + "\n"),
            "w", encoding="utf-8",
        )
        header = ["true \\ predicted"] + self.labels
        write_csv(
            os.path.join(folder, CONFUSION_CSV),
            [dict(zip(header, [label] + row)) for label, row in zip(self.labels, confusion)],
            fieldnames=header,
        )
        write_confusion_png(os.path.join(folder, CONFUSION_PNG), confusion, self.labels,
                            title=_plot_title(results))
        k = min(self.topk, len(self.labels))
        write_csv(
            os.path.join(folder, PREDICTIONS_CSV),
            [
                {
                    "ID": r["ID"],
                    "wav_path": r["wav_path"],
                    "fold": r["fold"],
                    "true": self.labels[r["true"]],
                    "predicted": self.labels[r["ranked"][0]],
                    "score": f"{r['scores'][0]:.6f}",
                    "top5": ";".join(self.labels[j] for j in r["ranked"][:k]),
                }
                for r in self.records
            ],
            fieldnames=PREDICTION_FIELDS,
        )
        results["confusion"] = confusion
        return results


def _plot_title(results):
    name = results.get("dataset") or "zero-shot"
    top1 = results["top1"]
    return f"{name}: top-1 {top1:.3f} on {results['clips_scored']} clips" if top1 is not None else name


def write_confusion_png(path, confusion, labels, title=""):
    """Draws the row-normalised confusion matrix (counts written in small sets) to a PNG, atomically.

    Uses matplotlib's Agg canvas directly, so no display and no global backend change. Beyond
    :data:`PNG_NAMED_CLASSES` classes (VGGSound's 308) the axes show class indices, in the order of
    ``confusion_matrix.csv``, on a figure of bounded size: named, it would be ~90 inches wide and
    take most of a minute to draw.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(labels)
    counts = torch.tensor(confusion, dtype=torch.float64)
    rows = counts.sum(dim=1, keepdim=True).clamp(min=1)
    rates = (counts / rows).numpy()
    named = n <= PNG_NAMED_CLASSES
    side = max(4.0, 0.28 * n + 2.5) if named else 12.0
    fig = Figure(figsize=(side + 1.0, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if named:
        names = [prompt_label(label) for label in labels]
        fontsize = 8 if n <= 20 else 5
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(names, rotation=90, fontsize=fontsize)
        ax.set_yticklabels(names, fontsize=fontsize)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    else:
        ax.set_xlabel("predicted (class index, order of confusion_matrix.csv)")
        ax.set_ylabel("true (class index)")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if confusion[i][j]:
                    ax.text(j, i, str(confusion[i][j]), ha="center", va="center", fontsize=6,
                            color="white" if rates[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write(path, lambda f: f.write(buffer.getvalue()), "wb")


def summary_line(results, folder=None):
    """The one-line summary printed on stdout.

    Example
    -------
    >>> summary_line({"dataset": "esc50", "top1": 0.5, "top5": 0.75, "clips_scored": 4,
    ...               "clips_skipped": 1, "labels": ["a", "b"], "model_source": "random"})
    'Zero-shot esc50: top-1 0.5000, top-5 0.7500 on 4 clips (1 skipped), 2 classes; model: random'
    """
    def fmt(x):
        return "n/a" if x is None else f"{x:.4f}"

    line = (
        f"Zero-shot {results.get('dataset', '')}: top-1 {fmt(results['top1'])}, top-{results.get('topk', 5)} "
        f"{fmt(results['top5'])} on {results['clips_scored']} clips ({results['clips_skipped']} skipped), "
        f"{len(results['labels'])} classes; model: {results.get('model_source', '?')}"
    )
    prepared = results.get("preparation") or {}
    absent = (prepared.get("missing") or 0) + (prepared.get("unreadable") or 0)
    if absent:
        line += f"; {absent} listed clips missing or unreadable at preparation"
    if prepared.get("excluded"):
        line += f"; {prepared['excluded']} clips of classes outside the class list left out"
    if folder:
        line += f"; results in {folder}"
    return line


# ------------------------------------------------------------- training
@torch.no_grad()
def evaluate_zeroshot(model, tokenizer, dataset, evaluator, device="cpu", batch_size=32, num_workers=0,
                      progressbar=True):
    """One zero-shot pass of ``model`` over ``dataset`` outside a Brain (training validation).

    Computes the prompt embeddings once, embeds the audio in batches (model in
    eval mode, previous mode restored) and returns ``evaluator.results()``.
    """
    model = unwrap(model)
    evaluator.reset()
    evaluator.encode_prompts(model, tokenizer, device)
    loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=batch_size, num_workers=num_workers)
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(loader, desc="Zero-shot", dynamic_ncols=True, disable=not progressbar):
            batch = batch.to(device)
            evaluator.add_batch(model.encode_audio(batch.sig.data), batch.id, batch.wav_path,
                                batch.class_name, batch.fold, ok=batch.audio_ok)
    finally:
        model.train(was_training)
    return evaluator.results()


class ZeroShotValidation:
    """Zero-shot accuracy as a validation metric of training (``use_zs_loader``).

    Arguments
    ---------
    dataset : DynamicItemDataset
        From :func:`dataset.pipelines.labelled_dataset`.
    labels : list of str
        Class list.
    tokenizer : callable
        The training tokenizer.
    batch_size, num_workers : int
        Loader options.
    templates : None, str or list of str
        Prompt templates.
    max_length : int
        Token limit.
    """

    def __init__(self, dataset, labels, tokenizer, batch_size=32, num_workers=0, templates=None, max_length=100):
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.evaluator = ZeroShotEvaluator(labels, templates, max_length=max_length)

    def __call__(self, model, device="cpu", progressbar=False):
        """Results dict of one pass (``top1`` is the accuracy checkpoints are kept by)."""
        return evaluate_zeroshot(model, self.tokenizer, self.dataset, self.evaluator, device,
                                 self.batch_size, self.num_workers, progressbar)


def zeroshot_validation_from_hparams(hparams):
    """The :class:`ZeroShotValidation` a training run asks for, or None when ``use_zs_loader`` is off.

    Prepares ``zs_dataset`` (``esc50``, ``us8k``, ``tut17``, ``vggsound``, ``tau19``) from
    ``data_zs_folder`` into the output folder, keeping the folds ``zs_folds``
    (null: all; selecting checkpoints on the folds one reports is optimistic,
    so hold one out for selection). The classes are in the dataset's order, or
    in that of ``zs_label_encoder_path`` (the paper code's ``label_encoder_*.txt``).
    """
    if not hparams.get("use_zs_loader"):
        return None
    if not hparams.get("data_zs_folder"):
        raise SystemExit("--use_zs_loader=True needs --data_zs_folder=<root of the zero-shot set> (and --zs_dataset).")
    kwargs = {
        "dataset": hparams["zs_dataset"],
        "data_folder": hparams["data_zs_folder"],
        "save_folder": hparams["output_folder"],
        "folds": hparams.get("zs_folds"),
    }
    run_on_main(prepare_zeroshot, kwargs=kwargs)
    csv_path, labels, stats = read_prepared(hparams["output_folder"], hparams["zs_dataset"])
    labels = labels_in_file_order(labels, hparams.get("zs_label_encoder_path"), "zs_label_encoder_path")
    logger.info("Zero-shot validation on %s (%d clips, folds %s): checkpoints are kept by its accuracy.",
                hparams["zs_dataset"], stats.get("kept", -1), hparams.get("zs_folds") or "all")
    dataset = labelled_dataset(csv_path, hparams["sample_rate"], hparams["eval_duration"], hparams["eval_crop"])
    return ZeroShotValidation(
        dataset, labels, hparams["tokenizer"], batch_size=hparams["batch_size"],
        num_workers=hparams["num_workers"], max_length=hparams.get("text_max_length", 100),
        templates=hparams.get("zs_prompt_templates"),
    )
