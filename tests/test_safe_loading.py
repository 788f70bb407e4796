"""Safe loading everywhere: weights-only loads whatever the environment says, and errors that name the file.

- a tampered ``optimizer.ckpt`` (SpeechBrain's recoverable) does not run its
  code on resume, even with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``;
- a checkpoint that is not one (random bytes, a pickle ``weights_only``
  refuses) gets an error naming the file and the flag, never suggesting
  ``weights_only=False``, and no traceback on the command line;
- a run checkpoint of another architecture through ``--ssl_checkpoints_dir``
  gets the same key-listing error as ``--clap_ckpt_path``, naming the
  checkpoint folder and the flags that set the architecture.
"""

import glob
import os
import shutil

import pytest
import torch
import yaml

from conftest import FIXTURES, check_ok, run_script, tiny_clap, write_tiny_bert
from experiment.weights import load_weights
from models.checkpoints import CheckpointMismatchError, UnreadableCheckpointError

TRAIN = "recipes/microsoft_clap_train.py"
ZS = "recipes/microsoft_zeroshot.py"


class _Payload:
    """Unpickling this object creates ``marker``: the proof that a load ran the file's code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _train(toy_world, out, epochs, extra=()):
    return run_script([TRAIN, "hparams/toy/microsoft_clap_train.yaml", f"--data_annot_folder={toy_world}",
                       f"--output_base={out}", "--experiment_name=run", f"--number_of_epochs={epochs}",
                       "--batch_size=16", "--subset_pct=0.3", "--noprogressbar", *extra],
                      env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})


@pytest.mark.slow
def test_tampered_optimizer_checkpoint_does_not_run_on_resume(toy_world, tmp_path):
    """With TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, resuming from a tampered optimizer.ckpt is refused, code not run."""
    check_ok(_train(toy_world, tmp_path, 1))
    save = tmp_path / "run" / "save"
    (ckpt,) = glob.glob(str(save / "CKPT+*"))
    (optimizer_file,) = glob.glob(os.path.join(ckpt, "optimizer*.ckpt"))
    state = torch.load(optimizer_file, weights_only=True)
    marker = tmp_path / "payload_ran"
    state["payload"] = _Payload(marker)
    torch.save(state, optimizer_file)

    proc = _train(toy_world, tmp_path, 2, ["--resume_interrupt=True", f"--prev_ckpt_dir={save}"])
    assert proc.returncode != 0
    assert not marker.exists(), "the tampered checkpoint's code ran"
    assert os.path.basename(optimizer_file) in proc.stderr and "refused" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "weights_only=False" not in proc.stderr, proc.stderr[-3000:]
    # The payload is real: an unsafe load runs it.
    torch.load(optimizer_file, weights_only=False)
    assert marker.exists()


def _garbage_files(tmp_path):
    random_bytes = tmp_path / "random.pth"
    random_bytes.write_bytes(os.urandom(4096))
    refused = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload(tmp_path / "payload_ran")}, refused)
    return {"random bytes": (random_bytes, "not a PyTorch checkpoint"), "refused pickle": (refused, "refused")}


@pytest.mark.parametrize("case", ["random bytes", "refused pickle"])
@pytest.mark.parametrize("flag", ["clap_ckpt_path", "pann_ckpt_path"])
def test_not_a_checkpoint_names_file_and_flag(tmp_path, case, flag):
    path, reason = _garbage_files(tmp_path)[case]
    model = tiny_clap(write_tiny_bert(tmp_path / "bert"), seed=0)
    with pytest.raises(UnreadableCheckpointError) as info:
        load_weights(model, {flag: str(path)})
    message = str(info.value)
    assert str(path) in message and f"--{flag}" in message and reason in message, message
    assert "weights_only=False" not in message
    assert not (tmp_path / "payload_ran").exists()


def _run_folder(tmp_path, name, model):
    """A ``save`` folder as our training runs write it, holding one checkpoint of ``model``."""
    ckpt = tmp_path / name / "save" / "CKPT+2026-01-01+00-00-00+00"
    ckpt.mkdir(parents=True)
    torch.save(model.state_dict(), ckpt / "model.ckpt")
    (ckpt / "CKPT.yaml").write_text(yaml.dump({"loss": 1.0, "unixtime": 1.0, "end-of-epoch": True}))
    return tmp_path / name / "save"


def test_run_checkpoint_of_another_architecture_lists_keys_and_flags(tmp_path):
    bert = write_tiny_bert(tmp_path / "bert")
    other = tiny_clap(bert, seed=0, d_proj=8)
    save = _run_folder(tmp_path, "other_run", other)
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(tiny_clap(bert, seed=0), {"ssl_checkpoints_dir": str(save)})
    message = str(info.value)
    assert str(save) in message and "--ssl_checkpoints_dir" in message
    assert "mis-shaped keys" in message and "--d_proj" in message and "--text_model" in message, message
    # The SoftCLAP teacher's folder comes from another flag, which the message names.
    with pytest.raises(CheckpointMismatchError, match="--teacher_checkpoints_dir"):
        load_weights(tiny_clap(bert, seed=0), {"ssl_checkpoints_dir": str(save)},
                     {"ssl_checkpoints_dir": "teacher_checkpoints_dir"})
    # The same kind of listing as a whole-model file of the wrong shape through --clap_ckpt_path.
    clap_file = tmp_path / "clap.pth"
    torch.save({"model": other.state_dict()}, clap_file)
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(tiny_clap(bert, seed=0), {"clap_ckpt_path": str(clap_file)})
    assert "mis-shaped keys" in str(info.value) and "--clap_ckpt_path" in str(info.value)


def test_command_line_prints_the_message_without_traceback(tmp_path):
    """Zero-shot with a random-bytes --clap_ckpt_path: exit status 1, the message, no traceback."""
    esc = tmp_path / "ESC-50-master"
    shutil.copytree(os.path.join(FIXTURES, "esc50"), esc)
    path, _ = _garbage_files(tmp_path)["random bytes"]
    bert = write_tiny_bert(tmp_path / "bert")
    proc = run_script([
        ZS, "hparams/esc/microsoft_zeroshot.yaml", f"--data_folder={esc}", f"--clap_ckpt_path={path}",
        "--ssl_checkpoints_dir=", f"--output_base={tmp_path / 'out'}", "--experiment_name=zs", f"--text_model={bert}",
        "--txt_emb_dim=32", "--batch_size=2", "--num_workers=0", "--noprogressbar",
    ])
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"cannot load checkpoint {path}" in proc.stderr and "--clap_ckpt_path" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_speechbrain_load_hooks_name_every_load_failure(tmp_path):
    """What a resumed run meets past the check of its checkpoint (a file damaged while it runs, a file the check
    cannot judge): SpeechBrain's guarded hooks name the file and the folder to delete, whatever failed."""
    from speechbrain.core import Brain
    from speechbrain.utils import checkpoints

    from experiment.safety import enforce_weights_only

    enforce_weights_only()
    ckpt = tmp_path / "CKPT+x"
    ckpt.mkdir()
    module_hook, brain_hook = checkpoints.DEFAULT_LOAD_HOOKS[torch.nn.Module], checkpoints.DEFAULT_LOAD_HOOKS[Brain]
    cut = ckpt / "model.ckpt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), cut)
    cut.write_bytes(cut.read_bytes()[:300])
    with pytest.raises(UnreadableCheckpointError) as info:
        module_hook(torch.nn.Linear(2, 2), cut, False)
    assert f"{cut}: it is damaged" in str(info.value) and f"Delete that checkpoint folder ({ckpt})" in str(info.value)
    tagged = ckpt / "brain.ckpt"
    tagged.write_text(f"step: !!python/object/apply:os.mkdir ['{tmp_path / 'payload_ran'}']\n")
    with pytest.raises(UnreadableCheckpointError, match="YAML tag !!python/object/apply:os.mkdir"):
        brain_hook(object(), tagged, False)
    assert not (tmp_path / "payload_ran").exists()
    other = ckpt / "other.ckpt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(CheckpointMismatchError, match="another architecture"):
        module_hook(torch.nn.Linear(2, 2), other, False)


def test_damaged_model_of_the_run_given_by_ssl_checkpoints_dir_is_named_before_the_output_folder(tmp_path):
    """The embedding step from a run whose chosen checkpoint's model.ckpt is cut short: one line naming the file,
    the flag and the folder to delete; the recipe's output folder is not created."""
    from conftest import TOY_MODEL, load_script
    from experiment.safety import run_cli

    model = tiny_clap(write_tiny_bert(tmp_path / "bert"), seed=0)
    save = _run_folder(tmp_path, "teacher", model)
    (ckpt,) = save.glob("CKPT+*")
    (ckpt / "zz_complete.ckpt").write_text("complete\n")
    data = (ckpt / "model.ckpt").read_bytes()
    (ckpt / "model.ckpt").write_bytes(data[: len(data) // 3])
    (tmp_path / "list.txt").write_text(os.path.join(FIXTURES, "esc50", "audio", "1-100032-A-0.wav") + "\n")
    toemb = load_script("microsoft_curation_toemb")
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: toemb.main([
            "hparams/curation/microsoft_audioset_insper_toemb.yaml", f"--output_folder={tmp_path / 'toemb'}",
            f"--audio_pathfile={tmp_path / 'list.txt'}", f"--ssl_checkpoints_dir={save}", "--ssl_select=loss",
            *TOY_MODEL]))
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert f"{ckpt / 'model.ckpt'}: it is damaged" in message and "--ssl_checkpoints_dir" in message, message
    assert f"delete that checkpoint folder ({ckpt})" in message and "--ssl_select" in message, message
    assert not (tmp_path / "toemb").exists()


def test_yaml_tags_in_a_checkpoints_yaml_files_are_refused_by_name(tmp_path):
    """CKPT.yaml (read to choose a checkpoint) and brain.ckpt (restored on resume) are plain YAML: a tag is named,
    its code not run, whether the folder is resumed or given by --ssl_checkpoints_dir."""
    from experiment.checkpoints import check_resume_checkpoint, check_selected_model_file

    save = _run_folder(tmp_path, "run", tiny_clap(write_tiny_bert(tmp_path / "bert"), seed=0))
    (ckpt,) = save.glob("CKPT+*")
    (ckpt / "zz_complete.ckpt").write_text("complete\n")
    assert check_resume_checkpoint(save) == str(ckpt)
    payload = tmp_path / "payload_ran"
    (ckpt / "CKPT.yaml").write_text(f"loss: !!python/object/apply:os.mkdir ['{payload}']\nunixtime: 1.0\n")
    for check in (lambda: check_resume_checkpoint(save), lambda: check_selected_model_file({
            "ssl_checkpoints_dir": str(save), "ssl_select": "loss"})):
        with pytest.raises(UnreadableCheckpointError) as info:
            check()
        message = str(info.value)
        assert f"{ckpt / 'CKPT.yaml'}: it holds the YAML tag !!python/object/apply:os.mkdir" in message, message
        assert f"elete that checkpoint folder ({ckpt})" in message
    assert "--ssl_checkpoints_dir" in message
    assert not payload.exists()


# A child process: torch.load(argv[1]) as SpeechBrain's recoverables call it (no weights_only argument).
_PLAIN_LOAD = ("import sys, torch\n"
               "try:\n    torch.load(sys.argv[1])\n    print('loaded')\n"
               "except Exception as err:\n    print('refused', type(err).__name__)\n")


def test_the_unsafe_variable_is_removed_with_a_warning_and_child_processes_load_weights_only(tmp_path, monkeypatch,
                                                                                              capsys):
    """enforce_weights_only() removes TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD (saying so) and sets
    TORCH_FORCE_WEIGHTS_ONLY_LOAD=1 in os.environ, so a process it starts (a pipeline stage) refuses a pickle
    holding a Python object, where the same child started with the variable would run its code."""
    import subprocess
    import sys

    from experiment.safety import enforce_weights_only

    evil = tmp_path / "evil.ckpt"
    marker = tmp_path / "payload_ran"
    torch.save({"w": torch.zeros(2), "extra": _Payload(marker)}, evil)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0")  # restored after the test
    unsafe_env = dict(os.environ)

    def child(env):
        return subprocess.run([sys.executable, "-c", _PLAIN_LOAD, str(evil)], capture_output=True, text=True,
                              env=env, timeout=120).stdout.strip()

    enforce_weights_only()
    warning = capsys.readouterr().err
    assert "WARNING: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is ignored: every checkpoint is loaded with " \
           "weights_only=True" in warning, warning
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ and os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1"
    assert child(dict(os.environ)) == "refused UnpicklingError" and not marker.exists()
    # The check can fail: a child given the variable runs the file's code.
    assert child(unsafe_env) == "loaded" and marker.exists()


PIPELINE_RUNNERS = ("pipeline.py", "toy_pipeline.py")  # load no checkpoint: their stages are the recipes below


def test_every_recipe_that_loads_a_checkpoint_runs_its_main_weights_only():
    """Each script of recipes/ but the pipeline runners runs ``main`` through ``run_cli`` (which calls
    enforce_weights_only first) in its ``if __name__ == "__main__":`` block."""
    import ast

    from conftest import REPO

    names = sorted(n for n in os.listdir(os.path.join(REPO, "recipes")) if n.endswith(".py"))
    assert set(PIPELINE_RUNNERS) < set(names) and len(names) > 5
    without = []
    for name in names:
        with open(os.path.join(REPO, "recipes", name), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        mains = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
        calls = {ast.unparse(call.func) for node in mains for call in ast.walk(node) if isinstance(call, ast.Call)}
        if name not in PIPELINE_RUNNERS and "run_cli" not in calls:
            without.append(name)
    assert not without, f"recipes whose main does not run through experiment.safety.run_cli: {without}"
