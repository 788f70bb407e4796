"""Rows 7-12 of the hardening table (:mod:`test_hardening_defects`).

Full disks, read-only folders, damaged indexes and odd audio folders, each
through a real entry point (``build_index.py`` or ``search.py``, in-process,
as ``run_cli`` runs them for a user) on the tests' tiny CLAP. Rows 7-9 return
the error line the user sees; rows 10-12 are not errors any more, and return
the one line that tells the user what happened (the build's count, or the
warning with the count and the folder).

What each row watches (nothing there may change):

- 07: a build killed after its first shard, then resumed on a full disk. The
  watched embedding folder holds the interrupted run's finished shard; the
  resumed run fails at its first write and must leave that folder as it was:
  no partial shard, nothing new under a final name. (A run that fills the
  disk after writing shards keeps them: complete, and resumed from. That,
  and the rerun giving the bytes of an uninterrupted run, are asserted in
  ``tests/test_disk_full.py``.)
- 08: the read-only folder and the audio: nothing created.
- 09: the damaged index folder: ``search.py`` only reads it.
- 10-12: the audio folder (and for 12 its parent, where the link leads):
  the index is written in its own output folder only.
"""

import contextlib
import errno
import io
import logging
import os
from unittest import mock

import numpy as np
import soundfile as sf
import torch

from conftest import TINY_CLAP, load_script, tiny_clap, write_tiny_bert
from disk_faults import full_disk
from test_hardening_defects import Row

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


def killed_after_first_shard(argv):
    """Runs build_index.py and kills it (KeyboardInterrupt) while it writes its second shard."""
    from embeddings import shards

    real, calls = shards._save_shard, []

    def dying(path, *args):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, *args)

    with mock.patch.object(shards, "_save_shard", dying), contextlib.suppress(KeyboardInterrupt):
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


@contextlib.contextmanager
def read_only(folder):
    """``folder`` made read-only (mode 555).

    Permission bits do not stop root, so when the tests run as root,
    creating anything below ``folder`` is refused as the kernel refuses it
    to other users (``PermissionError``, EACCES, naming the path).
    """
    folder = os.path.realpath(folder)
    os.chmod(folder, 0o555)
    real_makedirs, real_open = os.makedirs, os.open

    def below(path):
        path = os.path.realpath(os.fspath(path))
        return path.startswith(folder + os.sep) and not os.path.exists(path)

    def makedirs(path, *args, **kwargs):
        if below(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_makedirs(path, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and below(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    patches = [mock.patch("os.makedirs", makedirs), mock.patch("os.open", open_)] if os.geteuid() == 0 else []
    try:
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch)
            yield folder
    finally:
        os.chmod(folder, 0o755)


# --------------------------------------------------------------- 07 disk full
def disk_full_setup(tmp_path):
    tiny = tiny_files(tmp_path / "tiny")
    audio = tmp_path / "audio"
    write_clips(audio, ["a.wav", "b.wav", "c.wav", "d.wav"])
    out = tmp_path / "index"
    argv = index_argv(audio, out, tiny)
    killed_after_first_shard(argv)  # shards/ holds the first of its two shards
    return {"argv": argv, "out": out, "audio": audio, "shards": os.path.realpath(out / "embeddings" / "shards")}


def disk_full_act(ctx):
    with full_disk(ctx["out"], budget=0):
        return user_error(lambda: script("build_index").main(ctx["argv"]))


# --------------------------------------------------------- 08 read-only output
def read_only_setup(tmp_path):
    tiny = tiny_files(tmp_path / "tiny")
    audio = tmp_path / "audio"
    write_clips(audio, ["a.wav", "b.wav"])
    locked = tmp_path / "read-only"
    os.makedirs(locked)
    out = locked / "index"
    return {"argv": index_argv(audio, out, tiny), "locked": locked, "audio": audio,
            "out": os.path.join(os.path.realpath(locked), "index")}


def read_only_act(ctx):
    with read_only(ctx["locked"]):
        return user_error(lambda: script("build_index").main(ctx["argv"]))


# ---------------------------------------------------------- 09 damaged index
def damaged_index_setup(tmp_path):
    tiny = tiny_files(tmp_path / "tiny")
    audio = tmp_path / "audio"
    write_clips(audio, ["a.wav", "b.wav", "c.wav"])
    out = tmp_path / "index"
    script("build_index").main(index_argv(audio, out, tiny))
    paths_txt = out / "paths.txt"
    paths_txt.write_text("".join(paths_txt.read_text().splitlines(keepends=True)[:-1]))  # one line cut off
    return {"out": out, "paths": os.path.abspath(paths_txt)}


def damaged_index_act(ctx):
    return user_error(lambda: script("search").main([f"--index_folder={ctx['out']}", "a dog barks"]))


# ------------------------------------------------------ 10 newline in a name
def newline_setup(tmp_path):
    tiny = tiny_files(tmp_path / "tiny")
    audio = tmp_path / "audio"
    write_clips(audio, ["a.wav", "two\nlines.wav", "c.wav"])
    out = tmp_path / "index"
    return {"argv": index_argv(audio, out, tiny), "audio": audio, "out": os.path.abspath(out)}


def newline_act(ctx):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        script("build_index").main(ctx["argv"])
    return next(line for line in printed.getvalue().splitlines() if line.startswith("Indexed"))


# ---------------------------------------------- 11 input deleted after a kill
def deleted_setup(tmp_path):
    tiny = tiny_files(tmp_path / "tiny")
    audio = tmp_path / "audio"
    clips = write_clips(audio, ["a.wav", "b.wav", "c.wav", "d.wav", "e.wav", "f.wav"])
    out = tmp_path / "index"
    argv = index_argv(audio, out, tiny)
    killed_after_first_shard(argv)
    os.remove(clips[1])  # embedded in the finished shard
    os.remove(clips[4])  # not embedded yet
    return {"argv": argv, "audio": audio, "emb": os.path.realpath(out / "embeddings"), "gone": clips[1]}


def deleted_act(ctx):
    with log_lines("embeddings") as lines:
        script("build_index").main(ctx["argv"])
    return "\n".join(lines)


# ---------------------------------------------- 12 a link out of the folder
def link_setup(tmp_path):
    tiny = tiny_files(tmp_path / "tiny")
    world = tmp_path / "world"
    audio = world / "audio"
    write_clips(audio, ["a.wav", "b.wav"])
    write_clips(world / "elsewhere", ["x.wav", "y.wav", "z.wav"])
    os.symlink("..", audio / "up")
    out = tmp_path / "index"
    return {"argv": index_argv(audio, out, tiny), "world": world, "audio": os.path.abspath(audio)}


def link_act(ctx):
    with log_lines("dataset") as lines:
        script("build_index").main(ctx["argv"])
    return "\n".join(lines)


ROWS = [
    Row("07-disk-full", disk_full_setup, disk_full_act,
        lambda ctx: ["No space left on device in " + ctx["shards"], "after 0 B",
                     "1 of 2 'audio' shards are complete", "run the same command again"],
        lambda ctx: [ctx["out"] / "embeddings", ctx["audio"]]),
    Row("08-read-only-output", read_only_setup, read_only_act,
        lambda ctx: [ctx["out"], "not writable", "build_index.py"],
        lambda ctx: [ctx["locked"], ctx["audio"]]),
    Row("09-damaged-index", damaged_index_setup, damaged_index_act,
        lambda ctx: [ctx["paths"], "rebuild the index", "python recipes/build_index.py"],
        lambda ctx: [ctx["out"]]),
    Row("10-newline-in-file-name", newline_setup, newline_act,
        lambda ctx: ["Indexed 3 files", ctx["out"]],
        lambda ctx: [ctx["audio"]]),
    Row("11-input-deleted-after-kill", deleted_setup, deleted_act,
        lambda ctx: [ctx["emb"], "2 file(s) of the interrupted run are gone", ctx["gone"], "dropped"],
        lambda ctx: [ctx["audio"]]),
    Row("12-symlink-out-of-audio-folder", link_setup, link_act,
        lambda ctx: ["Skipped 1 symbolic link(s) in " + ctx["audio"], "lead out of it"],
        lambda ctx: [ctx["world"]]),
]
