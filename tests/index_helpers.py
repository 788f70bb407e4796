"""The tests' index builds: the tiny CLAP's files, clips, build_index.py's flags, and what a user reads.

Shared by the hardening table's storage rows and the tests of the index and the embedding folders.
"""

import contextlib
import logging
import os
from unittest import mock

import numpy as np
import soundfile as sf
import torch

from conftest import TINY_CLAP, load_script, tiny_clap, write_tiny_bert

SR = 16000
_SCRIPTS = {}


# ------------------------------------------------------------------ helpers
def script(name):
    """A recipe's module, loaded once."""
    if name not in _SCRIPTS:
        _SCRIPTS[name] = load_script(name)
    return _SCRIPTS[name]


def tiny_files(folder):
    """The tiny CLAP as an MS-CLAP-shaped file and a YAML with its architecture."""
    os.makedirs(folder, exist_ok=True)
    bert = write_tiny_bert(os.path.join(folder, "bert"), vocab_words="rain dog barks".split())
    ckpt = os.path.join(folder, "tiny.pth")
    torch.save({"model": tiny_clap(bert, seed=0).state_dict()}, ckpt)
    yaml_path = os.path.join(folder, "tiny.yaml")
    with open(yaml_path, "w", encoding="utf-8") as f:
        f.write("".join(f"{k}: {v}\n" for k, v in dict(TINY_CLAP, text_model=bert).items()))
    return {"ckpt": ckpt, "yaml": yaml_path}


def write_clips(folder, names, seconds=0.5):
    os.makedirs(folder, exist_ok=True)
    for k, name in enumerate(names):
        wav = (0.1 * np.random.default_rng(k).standard_normal(int(seconds * SR))).astype("float32")
        sf.write(os.path.join(folder, name), wav, SR, format="WAV")
    return [os.path.join(folder, name) for name in names]


def index_argv(audio, out, tiny):
    return [f"--audio_folder={audio}", f"--output_folder={out}", f"--clap_ckpt_path={tiny['ckpt']}",
            f"--model_hparams={tiny['yaml']}", "--eval_duration=0.5", "--batch_size=2", "--shard_size=2",
            "--noprogressbar"]


def user_error(main):
    """What the user reads when ``main`` fails: the one line ``run_cli`` prints (its SystemExit)."""
    from experiment.safety import run_cli

    try:
        run_cli(main)
    except SystemExit as err:
        return str(err)
    raise AssertionError("the command did not fail")


@contextlib.contextmanager
def shard_write_dies(at=2):
    """Within it, the ``at``-th shard written raises ``KeyboardInterrupt``: a run killed while writing it."""
    from embeddings import shards

    real, calls = shards._save_shard, []

    def dying(path, *args):
        calls.append(path)
        if len(calls) == at:
            raise KeyboardInterrupt
        real(path, *args)

    with mock.patch.object(shards, "_save_shard", dying):
        yield calls


def killed_after_first_shard(argv):
    """Runs build_index.py and kills it (KeyboardInterrupt) while it writes its second shard."""
    with shard_write_dies(2), contextlib.suppress(KeyboardInterrupt):
        script("build_index").main(argv)


@contextlib.contextmanager
def log_lines(logger_name):
    """The messages logged at WARNING or above by ``logger_name`` within the block."""
    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger, handler = logging.getLogger(logger_name), Keep(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
