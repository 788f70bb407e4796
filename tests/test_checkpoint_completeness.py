"""A kill during a checkpoint save must never leave a checkpoint that resume or selection would load.

SpeechBrain writes ``CKPT.yaml`` before the parameter files; a kill in
between leaves a folder whose metadata looks fine. CI once caught a resume
that chose such a folder (``model.ckpt`` cut short, no ``brain.ckpt`` yet).
"""

import os

import torch

from experiment.checkpoints import (COMPLETION_MARKER, find_checkpoint, is_complete_checkpoint,
                                    remove_incomplete_checkpoints)


def write_checkpoint(save, name, files, meta="loss: 1.0\n"):
    ckpt = save / f"CKPT+2026-01-01+00-00-{name}+00"
    ckpt.mkdir(parents=True)
    (ckpt / "CKPT.yaml").write_text(f"# yamllint disable\n{meta}end-of-epoch: true\nunixtime: {name}\n")
    for fname, content in files.items():
        path = ckpt / f"{fname}.ckpt"
        if isinstance(content, dict):
            torch.save(content, path)
        else:
            path.write_bytes(content)
    return ckpt


def truncated_state(tmp_path):
    full = tmp_path / "full.pt"
    torch.save({"w": torch.randn(64, 64)}, full)
    return full.read_bytes()[: full.stat().st_size // 2]


def test_a_truncated_or_empty_parameter_file_is_incomplete(tmp_path):
    save = tmp_path / "save"
    cut = write_checkpoint(save, "01", {"model": truncated_state(tmp_path), "counter": b"3"})
    empty = write_checkpoint(save, "02", {"model": b""})
    whole = write_checkpoint(save, "03", {"model": {"w": torch.zeros(2)}, "counter": b"3"})
    assert not is_complete_checkpoint(str(cut))
    assert not is_complete_checkpoint(str(empty))
    # A checkpoint folder written by another tool (no marker, no brain.ckpt) with intact files is usable.
    assert is_complete_checkpoint(str(whole))
    assert find_checkpoint(str(save), "latest") == str(whole)


def test_our_run_folder_requires_every_recoverable_or_the_marker(tmp_path):
    """What CI caught: killed after model.ckpt, before brain.ckpt. The rerun must drop it, not load it."""
    save = tmp_path / "save"
    done = write_checkpoint(save, "01", {"model": {"w": torch.zeros(2)}, "counter": b"1", "brain": b"step: 0\n",
                                         COMPLETION_MARKER: b"complete\n"})
    killed = write_checkpoint(save, "02", {"model": {"w": torch.ones(2)}, "counter": b"2"})
    killed_later = write_checkpoint(save, "03", {"model": {"w": torch.ones(2)}, "counter": b"2",
                                                 "brain": b"step: 0\n", "optimizer": {"s": torch.ones(1)}})
    removed = remove_incomplete_checkpoints(str(save), expected=["model", "counter", "brain", "optimizer"])
    assert sorted(removed) == sorted([str(killed), str(killed_later)])
    assert os.listdir(save) == [done.name]
    assert find_checkpoint(str(save), "latest") == str(done)


def test_resume_of_a_run_killed_while_saving_skips_the_cut_checkpoint(tmp_path):
    """Same folder shape through SpeechBrain's recover_if_possible, after our Brain's clean-up rule."""
    from speechbrain.utils.checkpoints import Checkpointer

    save = tmp_path / "save"
    write_checkpoint(save, "01", {"model": {"weight": torch.zeros(2, 2), "bias": torch.zeros(2)},
                                  COMPLETION_MARKER: b"complete\n"})
    write_checkpoint(save, "02", {"model": truncated_state(tmp_path)})
    model = torch.nn.Linear(2, 2)
    checkpointer = Checkpointer(save, recoverables={"model": model})
    remove_incomplete_checkpoints(str(save), expected=list(checkpointer.recoverables))
    checkpointer.recover_if_possible()
    assert float(model.weight.detach().abs().sum()) == 0.0
