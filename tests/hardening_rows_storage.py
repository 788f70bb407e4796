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
import io
import os

from disk_faults import full_disk, read_only
from index_helpers import index_argv, killed_after_first_shard, log_lines, script, tiny_files, user_error, write_clips
from hardening_table import Row

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
