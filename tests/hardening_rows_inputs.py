"""Rows 1-6 of the hardening table (:mod:`test_hardening_defects`): inputs that must be refused in one line.

Each row runs a real entry point in this process as the command line does (``run_cli(main)``: a
checkpoint error becomes ``ERROR: <message>``) and returns the message of the ``SystemExit`` the user
sees. The damaged inputs are built by hand: no row trains a model.
"""

import os

import numpy as np
import soundfile
import torch
import yaml

from conftest import TOY_MODEL, load_script, tiny_clap, write_tiny_bert
from dataset.manifest import write_csv
from hardening_table import Row

TOY_TRAIN = "hparams/toy/microsoft_clap_train.yaml"
TOEMB = "hparams/curation/microsoft_audioset_insper_toemb.yaml"
CKPT = "CKPT+2026-01-01+00-00-00+00"


def _message(script, argv):
    """The text of the ``SystemExit`` that ``python recipes/<script>.py <argv>`` ends with."""
    from experiment.safety import run_cli

    module = load_script(script)
    try:
        run_cli(lambda: module.main([str(a) for a in argv]))
    except SystemExit as err:
        return str(err)
    raise AssertionError(f"{script} {argv} did not stop")


def _clip_and_csv(d):
    """One clip and a caption CSV naming it (a valid training input)."""
    wav = d / "clip.wav"
    soundfile.write(str(wav), 0.1 * np.random.default_rng(0).standard_normal(16000).astype("float32"), 16000)
    write_csv(str(d / "pairs.csv"), [{"ID": "a", "wav_path": str(wav), "caption": "a dog barks"}])
    return wav


def _interrupted_run(d, brain_text="avg_train_loss: 1.0\nstep: 10\noptimizer_step: 10\n", model_bytes=None):
    """``d/runs/run``: a training run interrupted after one complete checkpoint (completion marker written)."""
    _clip_and_csv(d)
    ckpt = d / "runs" / "run" / "save" / CKPT
    ckpt.mkdir(parents=True)
    (ckpt / "CKPT.yaml").write_text(yaml.dump({"loss": 1.0, "unixtime": 1.0, "end-of-epoch": True}))
    torch.save({"w": torch.zeros(4)}, ckpt / "model.ckpt")
    if model_bytes is not None:
        (ckpt / "model.ckpt").write_bytes(model_bytes((ckpt / "model.ckpt").read_bytes()))
    (ckpt / "brain.ckpt").write_text(brain_text)
    (ckpt / "zz_complete.ckpt").write_text("complete\n")
    return {"d": d, "runs": d / "runs", "ckpt": ckpt}


def _resume(ctx):
    d = ctx["d"]
    return _message("microsoft_clap_train", [
        TOY_TRAIN, f"--output_base={ctx['runs']}", "--experiment_name=run", "--data_annot_folder=",
        f"--train_csv_path={d / 'pairs.csv'}", "--resume_interrupt=True", "--noprogressbar",
    ])


# 1. a model.ckpt cut in half (a torch zip without its central directory) in a complete checkpoint
def _damaged_model(tmp_path):
    return _interrupted_run(tmp_path, model_bytes=lambda data: data[: len(data) // 2])


# 3. a brain.ckpt (SpeechBrain's YAML) holding a tag that would run a command under an unsafe loader
def _tagged_brain(tmp_path):
    payload = tmp_path / "payload_ran"
    return dict(_interrupted_run(tmp_path, brain_text=f"step: !!python/object/apply:os.mkdir ['{payload}']\n"),
                payload=payload)


# 2. 4. a flag of the toy teacher's YAML
def _toy_inputs(tmp_path):
    _clip_and_csv(tmp_path)
    return {"d": tmp_path, "runs": tmp_path / "runs"}


def _train_with(flag):
    def act(ctx):
        return _message("microsoft_clap_train", [
            TOY_TRAIN, f"--output_base={ctx['runs']}", "--data_annot_folder=",
            f"--train_csv_path={ctx['d'] / 'pairs.csv'}", "--noprogressbar", flag,
        ])

    return act


# 5. build_index with an architecture preset and a text model of another width
def _index_inputs(tmp_path):
    (tmp_path / "audio").mkdir()
    _clip_and_csv(tmp_path)
    os.replace(tmp_path / "clip.wav", tmp_path / "audio" / "clip.wav")
    bert = write_tiny_bert(tmp_path / "tiny_bert", vocab_words="a dog barks".split())
    torch.save({"model": tiny_clap(bert, seed=0).state_dict()}, tmp_path / "CLAP_tiny.pth")
    return {"d": tmp_path, "bert": bert, "index": tmp_path / "index", "audio": tmp_path / "audio"}


def _index_act(ctx):
    return _message("build_index", [
        f"--audio_folder={ctx['audio']}", f"--output_folder={ctx['index']}",
        f"--clap_ckpt_path={ctx['d'] / 'CLAP_tiny.pth'}", "--model=laion_630k", f"--text_model={ctx['bert']}",
    ])


# 6. the embedding step given a caption CSV whose header has 'text' where 'caption' belongs
def _bad_caption_csv(tmp_path):
    wav = _clip_and_csv(tmp_path)
    (tmp_path / "list.txt").write_text(f"{wav}\n", encoding="utf-8")
    (tmp_path / "captions.csv").write_text(f"ID,wav_path,text\na,{wav},a dog barks\n", encoding="utf-8")
    return {"d": tmp_path, "out": tmp_path / "toemb", "csv": tmp_path / "captions.csv"}


def _toemb_act(ctx):
    d = ctx["d"]
    return _message("microsoft_curation_toemb", [
        TOEMB, f"--output_folder={ctx['out']}", f"--audio_pathfile={d / 'list.txt'}",
        f"--text_pathfile={ctx['csv']}", *TOY_MODEL,
    ])


ROWS = [
    Row("01-damaged-model-ckpt", _damaged_model, _resume,
        names=lambda ctx: [ctx["ckpt"] / "model.ckpt", "damaged", f"Delete that checkpoint folder ({ctx['ckpt']})"],
        watched=lambda ctx: [ctx["runs"]]),
    Row("02-non-finite-float", _toy_inputs, _train_with("--base_lr=.inf"),
        names=lambda ctx: ["--base_lr=.inf", "expected a positive number", "not a finite number", TOY_TRAIN],
        watched=lambda ctx: [ctx["runs"]]),
    Row("03-yaml-tags-in-brain-ckpt", _tagged_brain, _resume,
        names=lambda ctx: [ctx["ckpt"] / "brain.ckpt", "!!python/object/apply:os.mkdir", "nothing in it ran",
                           f"Delete that checkpoint folder ({ctx['ckpt']})"],
        watched=lambda ctx: [ctx["runs"], ctx["payload"]]),
    Row("04-bad-audio-options", _toy_inputs, _train_with("--audio_options={bad"),
        names=lambda ctx: ["--audio_options={bad", "expected a mapping", "--audio_options='{size: base",
                           "not valid YAML"],
        watched=lambda ctx: [ctx["runs"]]),
    Row("05-conflicting-index-flags", _index_inputs, _index_act,
        names=lambda ctx: [f"--text_model={ctx['bert']}", "--model=laion_630k", "conflict", "hidden size 32",
                           "width 768"],
        watched=lambda ctx: [ctx["index"], ctx["audio"]]),
    Row("06-bad-caption-csv-before-output", _bad_caption_csv, _toemb_act,
        names=lambda ctx: [f"--text_pathfile={ctx['csv']}", "lacks the column(s) caption", "ID,wav_path,caption"],
        watched=lambda ctx: [ctx["out"]]),
]
