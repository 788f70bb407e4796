"""A full disk (issue 25, defect 7): embeddings, pairs and checkpoints stop in one line naming the folder and how
much was written, leave no partial file under a final name, and the same command resumes once space is freed.

The disk is filled in-process (:mod:`disk_faults`): the writes below one folder fail with ``ENOSPC`` once a
byte budget is spent, as ``write(2)`` does, and ``torch.save`` fails as PyTorch does on a full disk. The
hardening table (``tests/hardening_rows_storage.py``, row 07) holds the build_index.py case seen by a user.
The last test is defect 8's other case: a read-only folder that still holds a killed run's lock file.
"""

import filecmp
import functools
import os
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import tiny_clap as build_tiny_clap, write_tiny_bert
from dataset.disk import DiskFullError
from disk_faults import full_disk
from embeddings.extract import embed_audio_files
from embeddings.options import AudioEmbeddingOptions
from embeddings.store import AUDIO_EMB, AUDIO_PATHS, AUDIO_SKIPPED, AUDIO_STAT, INFO, SHARD_DIR

SR = 16000
OUTPUTS = [AUDIO_EMB, AUDIO_PATHS, AUDIO_SKIPPED, AUDIO_STAT]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    bert = write_tiny_bert(tmp_path_factory.mktemp("bert") / "bert", vocab_words="rain dog barks".split())
    return build_tiny_clap(bert, seed=0).eval()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for k in range(7):
        path = str(folder / f"clip{k}.wav")
        sf.write(path, (0.1 * np.random.default_rng(k).standard_normal(int(SR * (0.3 + 0.1 * k)))).astype("float32"),
                 SR)
        paths.append(path)
    return paths


def embed(model, paths, out):
    options = AudioEmbeddingOptions(sample_rate=SR, duration=0.5, batch_size=2, shard_size=2, progress=False,
                                    model_id="m", dtype="float32")
    return embed_audio_files(model, paths, str(out), options)


def leftovers(folder):
    """Temporary files anywhere below ``folder`` (a write cut short must remove its own)."""
    return [os.path.join(root, n) for root, _, files in os.walk(folder) for n in files if n.endswith(".tmp")]


def test_embedding_stops_naming_the_folder_keeps_finished_shards_and_resumes_to_the_same_bytes(model, clips, tmp_path):
    """The disk fills while the third of four shards is written; freed, the rerun ends as an uninterrupted run.

    Nothing partial is left as if complete: no temporary file, none of the embedding folder's outputs, and
    every shard left in ``shards/`` is whole (it loads, with its rows); those shards are what the rerun keeps.
    """
    embed(model, clips, tmp_path / "uninterrupted")
    out = tmp_path / "resumed"
    # Free: the shard options, the shard layout (list + keys) and two shards; then no byte more.
    with full_disk(out, budget=0, free_files=5) as disk, pytest.raises(DiskFullError) as caught:
        embed(model, clips, out)
    message = str(caught.value)
    shards = os.path.realpath(out / SHARD_DIR)
    assert disk.fills >= 1 and "\n" not in message
    assert f"No space left on device in {shards}: writing audio-0000000004-0000000006.npz stopped after 0 B" in message
    assert "2 of 4 'audio' shards are complete" in message and "run the same command again" in message
    assert leftovers(out) == [] and not any(os.path.exists(out / name) for name in OUTPUTS + [INFO])
    finished = sorted(n for n in os.listdir(shards) if n.endswith(".npz"))
    assert finished == ["audio-0000000000-0000000002.npz", "audio-0000000002-0000000004.npz"]
    for name in finished:
        with np.load(os.path.join(shards, name)) as shard:
            assert shard["emb"].shape == (2, 16) and shard["ok"].all()

    info = embed(model, clips, out)  # space freed: the same call
    assert info["rows"] == 7 and not os.path.exists(shards)
    assert all(filecmp.cmp(tmp_path / "uninterrupted" / n, out / n, shallow=False) for n in OUTPUTS)


def test_a_full_disk_while_merging_keeps_every_shard(model, clips, tmp_path, monkeypatch):
    """The merged matrix reserves its blocks first: a full disk is an error there, never a SIGBUS mid-write."""
    import errno

    embed(model, clips, tmp_path / "uninterrupted")
    out = tmp_path / "merge"
    real = os.posix_fallocate

    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    with pytest.raises(DiskFullError, match=r"every 'audio' shard is complete .* \(a rerun only merges them\)"):
        embed(model, clips, out)
    assert leftovers(out) == [] and not os.path.exists(out / AUDIO_EMB)
    monkeypatch.setattr(os, "posix_fallocate", real)
    embed(model, clips, out)
    assert all(filecmp.cmp(tmp_path / "uninterrupted" / n, out / n, shallow=False) for n in OUTPUTS)


def test_pairs_writer_leaves_no_csv_and_a_rerun_writes_the_same_pairs(tmp_path):
    """DU / ADS (write_curated_pairs) and DS (write_csv): the CSV is written whole or not at all."""
    from curation.builders import write_curated_pairs

    rng = np.random.default_rng(0)
    audio = rng.standard_normal((40, 8)).astype(np.float32)
    text = rng.standard_normal((30, 8)).astype(np.float32)
    audio /= np.linalg.norm(audio, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    paths = [f"/pool/Y{k}.wav" for k in range(40)]
    table = [{"ID": f"c{k}", "caption": f"caption {k}, with a comma"} for k in range(30)]

    def write(folder):
        return write_curated_pairs(str(folder / "du.csv"), audio, text, paths, table, 0.2, progress=False)

    whole = write(tmp_path / "whole")
    assert whole["pairs"] > 20
    out = tmp_path / "curation"
    with full_disk(out, budget=500), pytest.raises(DiskFullError) as caught:
        write(out)
    assert str(caught.value).startswith(f"No space left on device in {os.path.realpath(out)}: writing du.csv "
                                        "stopped after 500 B (removed, not left as complete)")
    assert os.listdir(out) == []
    assert write(out) == whole
    assert filecmp.cmp(tmp_path / "whole" / "du.csv", out / "du.csv", shallow=False)


def test_a_checkpoint_cut_by_a_full_disk_is_removed_and_the_last_one_kept(tmp_path):
    """torch.save fails on a full disk (PyTorch's RuntimeError): the partial CKPT+ folder goes, the last stays."""
    from speechbrain.utils.checkpoints import Checkpointer

    from experiment.checkpoints import (
        COMPLETION_MARKER, CompletionMarker, checkpoint_dirs, find_checkpoint, is_complete_checkpoint,
    )
    from training.brain import CLAPBrain

    save = tmp_path / "save"
    layer = torch.nn.Linear(64, 64)
    checkpointer = Checkpointer(save, recoverables={"model": layer, COMPLETION_MARKER: CompletionMarker()})
    brain = types.SimpleNamespace(checkpointer=checkpointer,
                                  hparams=types.SimpleNamespace(num_epoch_save=1, num_ckpt_keep=2))
    brain._checkpoint_disk_full = functools.partial(CLAPBrain._checkpoint_disk_full, brain)
    CLAPBrain._save_checkpoint(brain, {"loss": 2.0}, 1)
    (epoch1,) = checkpoint_dirs(str(save))
    with torch.no_grad():
        layer.weight.add_(1.0)
    with full_disk(save, budget=1000) as disk, pytest.raises(DiskFullError) as caught:
        CLAPBrain._save_checkpoint(brain, {"loss": 1.0}, 2)
    message = str(caught.value)
    assert disk.fills == 1 and "\n" not in message
    assert message.startswith(f"No space left on device in {os.path.realpath(save)}: writing the checkpoint of "
                              "epoch 2 stopped after ")
    assert "1 complete checkpoint(s) of earlier epochs kept, from which the run resumes" in message
    assert checkpoint_dirs(str(save)) == [epoch1] and find_checkpoint(str(save), "latest") == epoch1

    CLAPBrain._save_checkpoint(brain, {"loss": 1.0}, 2)  # space freed: the next save is whole
    latest = find_checkpoint(str(save), "latest")
    assert latest != epoch1 and is_complete_checkpoint(latest)
    saved = torch.load(os.path.join(latest, "model.ckpt"), weights_only=True)
    assert torch.equal(saved["weight"], layer.weight.detach())


def test_run_cli_prints_a_full_disk_in_one_line(tmp_path):
    """What a recipe's user reads: ours names folder and file; a library's bare ENOSPC names what it can."""
    import errno

    from experiment.safety import run_cli

    def ours():
        raise DiskFullError(str(tmp_path), "du.csv", 2048, "nothing else was written")

    def theirs():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "log.txt"))

    with pytest.raises(SystemExit) as first:
        run_cli(ours)
    with pytest.raises(SystemExit) as second:
        run_cli(theirs)
    assert str(first.value) == (
        f"ERROR: No space left on device in {tmp_path}: writing du.csv stopped after 2.0 KiB (removed, not left as "
        "complete); nothing else was written. Free space there (or give another output folder) and run the same "
        "command again: it goes on from what is complete.")
    assert str(second.value).startswith(f"ERROR: No space left on device in {tmp_path} (")
    assert "\n" not in str(second.value) and "log.txt" in str(second.value)


def test_a_read_only_folder_with_a_lock_file_left_by_a_killed_run_is_refused(tmp_path):
    """The lock file opens (it is writable) though its folder is not: refused before anything is written."""
    from disk_faults import read_only
    from experiment.lock import LOCK_FILE, hold_folder_lock

    folder = tmp_path / "out"
    os.makedirs(folder)
    (folder / LOCK_FILE).write_text("{}\n")
    os.chmod(folder / LOCK_FILE, 0o666)
    with read_only(folder), pytest.raises(SystemExit) as caught:
        hold_folder_lock(str(folder), "build_index.py")
    assert str(caught.value).startswith(f"ERROR: {os.path.realpath(folder)} is not writable (")
    assert sorted(os.listdir(folder)) == [LOCK_FILE] and (folder / LOCK_FILE).read_text() == "{}\n"
