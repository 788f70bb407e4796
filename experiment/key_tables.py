"""What the keys of our YAMLs may hold: ranges, choices, input files and folders (tables, no logic).

:mod:`experiment.checks` checks every ``--key=value`` of a run against these
tables and the type of the key's default, before the YAML builds anything:

- :data:`RANGES`: the range a key's meaning has (positive batch sizes, cosine
  thresholds in [-1, 1], probabilities in [0, 1], ...); this table is the one
  place these ranges are written;
- :data:`CHOICES`: keys whose value is one of a few names;
- :data:`INPUT_FILES` and :data:`EMBEDDING_FOLDERS`: inputs that must exist
  and hold rows when given on the command line.

A key any YAML has is looked up here by name, whatever the YAML.
"""

import dataclasses
import math

from dataset.clips import EVAL_CROPS
from experiment.checkpoints import SELECTIONS
from models.loss import LOGIT_CLAMPS, SOFTCLAP_TARGETS
from models.projection import PROJECTIONS
from models.text_encoder import TEXT_POOLINGS

__all__ = ["Range", "RANGES", "CHOICES", "MAPPINGS", "CAPTION_CSV", "PATH_LIST", "LABEL_FILE", "INPUT_FILES",
           "EMBEDDING_FOLDERS"]


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a key's meaning allows: ``text`` says it in words ("a positive integer").

    Example
    -------
    >>> RANGES["batch_size"].accepts(-4), RANGES["sim_threshold"].accepts(0.75), RANGES["sim_threshold"].accepts(2)
    (False, True, False)
    >>> RANGES["base_lr"].accepts(float("inf")), RANGES["base_lr"].accepts(float("nan"))
    (False, False)
    """

    text: str
    integer: bool = False
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False  # null has a meaning (e.g. "no cap") even where the YAML's default is a number

    def accepts(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):  # .inf and .nan: no key's meaning has them
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


_POSITIVE_INT = Range("a positive integer", integer=True, low=1)
_NON_NEGATIVE_INT = Range("an integer >= 0", integer=True, low=0)
_COSINE = Range("a cosine in [-1, 1]", low=-1.0, high=1.0)
_PROBABILITY = Range("a probability in [0, 1]", low=0.0, high=1.0)
_BELOW_ONE = Range("a number in [0, 1)", low=0.0, high=1.0, high_open=True)
_ABOVE_ZERO = Range("a fraction in (0, 1]", low=0.0, high=1.0, low_open=True)
_POSITIVE = Range("a positive number", low=0.0, low_open=True)
_NON_NEGATIVE = Range("a number >= 0", low=0.0)

#: The range of every key whose meaning has one (any YAML that has the key). A key not listed here
#: only has to match the type of its default.
RANGES = {
    # counts and sizes
    **dict.fromkeys(
        ("batch_size", "number_of_epochs", "teacher_epochs", "student_steps", "jobs", "text_batch_size",
         "shard_size", "audio_bs", "text_bs", "caption_bs", "top_k", "sample_rate", "text_max_length",
         "window_size", "hop_size", "mel_bins", "classes_num", "out_emb", "txt_emb_dim", "d_proj",
         "nproc_per_node", "nnodes"),
        _POSITIVE_INT),
    "max_chunks": dataclasses.replace(_POSITIVE_INT, text="a positive integer (or null: no cap)", nullable=True),
    **dict.fromkeys(("num_workers", "warmup_steps"), _NON_NEGATIVE_INT),
    # cosine thresholds
    **dict.fromkeys(
        ("sim_threshold", "du_threshold", "ads_threshold_esc50", "ads_threshold_us8k", "ads_threshold_tut17",
         "ds_threshold_esc50", "ds_threshold_us8k", "ds_threshold_tut17"),
        _COSINE),
    # probabilities and fractions
    "softclap_beta": _PROBABILITY,
    **dict.fromkeys(("valid_pct", "proj_dropout"), _BELOW_ONE),
    "curation_prob": _PROBABILITY,  # 1 only with curation_mixing=replace (training.run.check_options)
    **dict.fromkeys(("subset_pct", "du_clip_fraction", "ads_clip_fraction"), _ABOVE_ZERO),
    # optimisation
    **dict.fromkeys(("base_lr", "teacher_lr", "student_lr", "max_grad_norm", "max_logit_scale"), _POSITIVE),
    **dict.fromkeys(("final_lr", "weight_decay"), _NON_NEGATIVE),
    "lr_plateau_factor": Range("a factor in (0, 1]", low=0.0, high=1.0, low_open=True),
    **dict.fromkeys(("lr_plateau_patience", "lr_plateau_dont_halve_until_epoch"), _NON_NEGATIVE_INT),
    # audio
    **dict.fromkeys(("train_duration", "eval_duration", "audio_width", "fmax"), _POSITIVE),
    "fmin": _NON_NEGATIVE,
}

# The paper code's training keys that are keys of ours (experiment/paper_keys.py).
RANGES.update({
    "num_ckpt_keep": _POSITIVE_INT,
    "num_epoch_save": _POSITIVE_INT,
    "overfit_size": dataclasses.replace(_POSITIVE_INT, text="a positive number of pairs (or null: off)", nullable=True),
})

#: Keys whose value is one of a few names (any YAML that has the key).
CHOICES = {
    "softclap_targets": SOFTCLAP_TARGETS,
    # replace: the paper code's mixing; insert: ours (training.mixer)
    "curation_mixing": ("replace", "insert"),
    "caption_cleaning": ("paper", "none"),  # dataset.corpora.cleaning.CAPTION_CLEANING
    # AudioCaps' training split (the paper code's index) or ours, with its validation split
    "audiocaps_splits": ("train", "train+val"),  # dataset.prepare_insper.AUDIOCAPS_SPLITS
    # the paper code's per-epoch ReduceLROnPlateau, or our per-step cosine (training.schedule)
    "lr_schedule": ("plateau", "cosine"),
    # torch.optim.Adam (the paper's code) or AdamW (training.schedule.make_optimizer)
    "optimizer": ("adam", "adamw"),
    # null: the paper code's use_maxacc_ep / use_minloss_ep decide (experiment.checkpoints.resolve_selection)
    "ssl_select": SELECTIONS + (None,),
    # deterministic crops of a long clip (dataset.clips); paper: the paper code's curation-embedding crop
    "eval_crop": EVAL_CROPS,
    "curation_eval_crop": EVAL_CROPS,  # the toy pipeline's eval_crop of the embedding step
    # evaluation protocols (evaluation.protocols.PROTOCOLS): ours, LAION-CLAP's, msclap's, transformers';
    # null: the checkpoint's own (evaluation.protocols.checkpoint_protocol)
    "protocol": ("paper", "laion", "msclap", "hf", None),
    # per_row: the paper code's DU/ADS pair multiplicity; distinct: ours (curation.builders.CAPTION_ROWS)
    "caption_rows": ("per_row", "distinct"),
    # logits: the paper code's clamp of each scaled cosine; scale: ours, of the temperature (models.loss)
    "logit_clamp": LOGIT_CLAMPS,
    # the text tower's token pooling and both towers' head (models.text_encoder, models.projection)
    "text_pooling": TEXT_POOLINGS,
    "projection": PROJECTIONS,
    # where the pipeline's stages run (pipeline.launch: EXECUTORS, CLUSTERS)
    "executor": ("local", "slurm"),
    "slurm_cluster": (None, "slurm", "local"),
}

#: Keys whose value is a whole mapping, given on the command line as one YAML flow mapping (read by
#: :func:`models.factory.audio_options_mapping`), with the form the error names.
MAPPINGS = {
    "audio_options": ("a mapping of the audio backbone's options, e.g. --audio_options='{size: base, "
                      "enable_fusion: true}' (or --audio_options=null: none)"),
}

#: What an input file holds (the text of the error that names it); PATH_LIST and LABEL_FILE are read line by
#: line, CAPTION_CSV as a CSV.
CAPTION_CSV = "a caption CSV with a header ID,wav_path,caption (or wav_path,caption) and one row per pair"
PATH_LIST = "a text file with one audio path per line"
LABEL_FILE = ("a label file: the paper code's label_encoder_*.txt ('label' => index lines, SpeechBrain's "
              "CategoricalEncoder) or one label per line")
#: Keys naming an input file, checked when given on the command line in a YAML where the key is an input
#: (its default is null or !PLACEHOLDER; where it is a !ref, the run writes it).
INPUT_FILES = {
    "train_csv_path": CAPTION_CSV,
    "curation_csv": CAPTION_CSV,
    "user_csvs": CAPTION_CSV,
    "text_pathfile": CAPTION_CSV,
    "target_csv_path": CAPTION_CSV,
    "audio_pathfile": PATH_LIST,
    "aud_ds_path": PATH_LIST,
    "txt_ds_path": CAPTION_CSV,
    "label_encoder_path": LABEL_FILE,
    "zs_label_encoder_path": LABEL_FILE,
}
#: Keys naming an embedding folder (read by the curation joins), with the command that writes it.
EMBEDDING_FOLDERS = {
    "emb_dir": (
        "It is the 'save' folder written by the embedding step, recipes/microsoft_curation_toemb.py "
        "(<its --output_folder>/save): run that first, and give --emb_dir=<output_folder>/save. "
        "(retrieve_ds_t2t.py may also start a new folder: create it first.)"
    ),
}
