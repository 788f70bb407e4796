"""Where a run's statistics go: the file log, Weights & Biases or TensorBoard on request, and a PNG of the curves.

:func:`make_train_logger` replaces the YAML's ``train_logger`` (SpeechBrain's
``FileTrainLogger``, always kept) by a :class:`RunLogger` that also sends
every ``log_stats`` call to

- SpeechBrain's ``WandBLogger`` with ``use_wandb: True`` (``wandb.init`` with
  ``wandb_project``, ``wandb_entity``, the run folder's name and the YAML's
  plain values as config; the paper code's YAMLs have the same switch);
- SpeechBrain's ``TensorboardLogger`` with ``use_tensorboard: True``
  (``<output_folder>/tensorboard``);

and, for training runs, appends each epoch's statistics to
``train_curves.jsonl`` and redraws ``train_curves.png`` (loss; R@1 and
zero-shot accuracy per epoch) beside the train log, so a killed run keeps a
picture of its curves up to its last epoch and a resumed one continues them.

A missing ``wandb`` or ``tensorboard`` package stops the run at start with
the ``pip install`` to run.
"""

import json
import logging
import math
import os

from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.train_logger import TrainLogger

__all__ = ["RunLogger", "make_train_logger", "wandb_logger", "tensorboard_logger", "read_history", "plot_curves",
           "CURVES_PNG", "CURVES_HISTORY"]

logger = logging.getLogger(__name__)

CURVES_PNG = "train_curves.png"
CURVES_HISTORY = "train_curves.jsonl"
# The curves drawn: (panel, stage, statistic, line style).
_LINES = (
    ("loss", "train", "loss", "-"),
    ("loss", "valid", "loss", "-"),
    ("accuracy", "valid", "R@1", "-"),
    ("accuracy", "valid", "R@1_chance", ":"),
    ("accuracy", "valid", "acc", "-"),
)
_LABELS = {"R@1": "R@1 (audio→text, in batch)", "R@1_chance": "R@1 chance", "acc": "zero-shot top-1 (acc)"}


def _number(value):
    """A finite float of a statistic, or None (text, tensors of several values, NaN)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _numbers(stats):
    return {k: v for k, v in ((k, _number(v)) for k, v in (stats or {}).items()) if v is not None}


class _NumbersOnly(TrainLogger):
    """Passes only the numeric statistics on (TensorBoard's scalars cannot hold text such as a dataset name)."""

    def __init__(self, inner):
        self.inner = inner

    def log_stats(self, stats_meta, train_stats=None, valid_stats=None, test_stats=None, verbose=False):
        self.inner.log_stats(
            _numbers(stats_meta), *(None if s is None else _numbers(s) for s in (train_stats, valid_stats, test_stats)),
            verbose=verbose,
        )


class RunLogger(TrainLogger):
    """Sends every ``log_stats`` call to several SpeechBrain loggers and keeps the curves' PNG up to date.

    Arguments
    ---------
    loggers : list of TrainLogger
        The file logger first, then W&B / TensorBoard.
    curves_folder : str, optional
        Where ``train_curves.jsonl`` and ``train_curves.png`` go (None: no curves).
    title : str
        The PNG's title.
    """

    def __init__(self, loggers, curves_folder=None, title=""):
        self.loggers = list(loggers)
        self.curves_folder = curves_folder
        self.title = title
        self._warned = False

    def log_stats(self, stats_meta, train_stats=None, valid_stats=None, test_stats=None, verbose=False):
        """Logs to every logger; an epoch's statistics are added to the curves."""
        for one in self.loggers:
            one.log_stats(stats_meta, train_stats=train_stats, valid_stats=valid_stats, test_stats=test_stats,
                          verbose=verbose)
        epoch = stats_meta.get("epoch")
        if self.curves_folder is None or epoch is None or not (train_stats or valid_stats) or not if_main_process():
            return
        record = {"epoch": int(epoch), "lr": _number(stats_meta.get("lr")),
                  "train": _numbers(train_stats), "valid": _numbers(valid_stats)}
        os.makedirs(self.curves_folder, exist_ok=True)
        with open(os.path.join(self.curves_folder, CURVES_HISTORY), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        try:
            plot_curves(read_history(self.curves_folder), os.path.join(self.curves_folder, CURVES_PNG), self.title)
        except ImportError as err:  # matplotlib is a requirement; without it the run goes on, without the picture
            if not self._warned:
                logger.warning("No %s: matplotlib is missing (%s); pip install matplotlib.", CURVES_PNG, err)
                self._warned = True


def read_history(folder):
    """``{epoch: record}`` of ``train_curves.jsonl`` (the last record of an epoch logged twice, e.g. after a resume).

    A line cut short by a kill is skipped.
    """
    records = {}
    path = os.path.join(folder, CURVES_HISTORY)
    if not os.path.isfile(path):
        return records
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            records[int(record["epoch"])] = record
    return dict(sorted(records.items()))


def plot_curves(history, png_path, title=""):
    """Draws the loss and accuracy curves of ``history`` (:func:`read_history`) into ``png_path`` (atomically).

    Returns
    -------
    str
        ``png_path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    panels = {"loss": fig.add_subplot(1, 2, 1), "accuracy": fig.add_subplot(1, 2, 2)}
    epochs = list(history)
    for panel, stage, stat, style in _LINES:
        points = [(e, history[e].get(stage, {}).get(stat)) for e in epochs]
        points = [(e, v) for e, v in points if v is not None]
        if points:
            xs, ys = zip(*points)
            panels[panel].plot(xs, ys, style, marker="o", markersize=3, label=f"{stage} {_LABELS.get(stat, stat)}")
    for name, axis in panels.items():
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.grid(True, alpha=0.3)
        if axis.lines:
            axis.legend(fontsize="small")
        else:
            axis.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axis.transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = png_path + ".tmp"
    fig.savefig(tmp, format="png")
    os.replace(tmp, png_path)
    return png_path


def _plain_config(hparams):
    """The YAML's plain values (numbers, text, lists of them): the W&B run's config."""
    plain = (int, float, str, bool, type(None))
    return {k: v for k, v in hparams.items() if not k.startswith("__")
            and (isinstance(v, plain) or (isinstance(v, (list, tuple)) and all(isinstance(x, plain) for x in v)))}


def wandb_logger(hparams):
    """SpeechBrain's ``WandBLogger`` for this run (``wandb.init`` on the main process only)."""
    try:
        import wandb
    except ImportError:
        raise SystemExit("--use_wandb=True needs the wandb package: pip install wandb (and wandb login), "
                         "or run with --use_wandb=False.") from None
    from speechbrain.utils.train_logger import WandBLogger

    folder = hparams["output_folder"]
    kwargs = {"project": hparams.get("wandb_project") or "msclap", "name": os.path.basename(os.path.normpath(folder)),
              "dir": folder, "config": _plain_config(hparams)}
    if hparams.get("wandb_entity"):
        kwargs["entity"] = hparams["wandb_entity"]
    os.makedirs(folder, exist_ok=True)
    try:
        return WandBLogger(wandb.init, **kwargs)
    except Exception as err:  # SpeechBrain re-raises the cause as a TypeError; name the cause
        cause = err.__context__ or err
        raise SystemExit(
            f"--use_wandb=True: W&B did not start ({type(cause).__name__}: {cause}). "
            "Check wandb login / --wandb_entity / --wandb_project, or run with --use_wandb=False."
        ) from err


def tensorboard_logger(hparams):
    """SpeechBrain's ``TensorboardLogger`` writing to ``<output_folder>/tensorboard`` (numbers only)."""
    from speechbrain.utils.train_logger import TensorboardLogger

    try:
        inner = TensorboardLogger(os.path.join(hparams["output_folder"], "tensorboard"))
    except ImportError:
        raise SystemExit("--use_tensorboard=True needs the tensorboard package: pip install tensorboard, "
                         "or run with --use_tensorboard=False.") from None
    return _NumbersOnly(inner)


def make_train_logger(hparams, curves=True):
    """The run's logger: the YAML's ``train_logger`` plus W&B / TensorBoard as asked, and the curves' PNG.

    Arguments
    ---------
    hparams : dict
        The loaded YAML (``train_logger``, ``train_log``, ``output_folder``,
        ``use_wandb``, ``use_tensorboard``, ``wandb_project``, ``wandb_entity``).
    curves : bool
        Keep ``train_curves.png`` beside the train log (training runs).

    Returns
    -------
    RunLogger
    """
    loggers = [hparams["train_logger"]]
    if hparams.get("use_wandb"):
        loggers.append(wandb_logger(hparams))
    if hparams.get("use_tensorboard"):
        loggers.append(tensorboard_logger(hparams))
    folder = None
    if curves:
        folder = os.path.dirname(os.path.abspath(hparams.get("train_log") or os.path.join(hparams["output_folder"],
                                                                                            "train_log.txt")))
    return RunLogger(loggers, curves_folder=folder, title=os.path.basename(os.path.normpath(hparams["output_folder"])))
