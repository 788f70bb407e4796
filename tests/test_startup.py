"""What a recipe prints before it runs: ``--help``, no third-party start-up noise, every real warning.

``python recipes/<script>.py --help`` runs as users type it, from an empty
folder: it exits 0, shows the run command of the script's docstring and the
keys of its YAML with their defaults and the YAML's comments, writes nothing
and prints nothing on stderr. Third-party messages that say nothing about the
run (SpeechBrain's "torchvision is not available", transformers 5's "Loading
weights" bar) are kept from the user (:mod:`experiment.quiet`,
:func:`models.text_encoder.build_text_model`); warnings of the run itself,
ours or the libraries', still reach stderr.
"""

import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO, load_script
from experiment.command_line import CommandLine, tokenize

RECIPES = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "recipes")) if f.endswith(".py"))

# script: (its run command, [(key, default, the start of its meaning)]); build_index and search take flags.
EXPECTED = {
    "microsoft_clap_train": (
        "python recipes/microsoft_clap_train.py hparams/insper/microsoft_clap_train.yaml \\",
        [("curation_prob", "0.0", "probability that a step uses a curated batch"),
         ("batch_size", "32", "caption-clip pairs per step"),
         ("lr_schedule", "plateau", "plateau (the paper's code) | cosine (ours)"),
         ("data_annot_folder", "null", "Root holding any of clotho/, audiocaps/, macs/, fsd50k/")]),
    "softclap_train": (
        "python recipes/softclap_train.py hparams/insper/softclap_train.yaml \\",
        [("softclap_beta", "0.3", "Targets from the frozen teacher's within-modality cosines"),
         ("softclap_targets", "paper", "the targets: paper | normalized (see above)"),
         ("number_of_epochs", "100", "training epochs")]),
    "microsoft_zeroshot": (
        "python recipes/microsoft_zeroshot.py hparams/$DATASET/microsoft_zeroshot.yaml \\",
        [("data_folder", "!PLACEHOLDER", "folder holding audio/ and meta/esc50.csv"),
         ("use_maxacc_ep", "True", "the paper code's key: highest zero-shot acc"),
         ("prompt_templates", '["this is a sound of {label}"]', "{label} is replaced by the class name")]),
    "microsoft_curation_toemb": (
        "python recipes/microsoft_curation_toemb.py hparams/curation/microsoft_audioset_insper_toemb.yaml \\",
        [("audio_pathfile", "!PLACEHOLDER", "text file: one audio path per line"),
         ("eval_crop", "paper", "The deterministic crop of a longer clip"),
         ("shard_size", "4096", "clips per resumable shard")]),
    "retrieve_from_emb_thresh": (
        "python recipes/retrieve_from_emb_thresh.py hparams/curation/audioset_insper_duv2_retr.yaml \\",
        [("sim_threshold", "0.75", "keep pairs with cosine >= this"),
         ("caption_rows", "per_row", "Rows per (clip, caption) match"),
         ("top_k", "null", "at most this many captions per clip")]),
    "retrieve_ds_t2t": (
        "python recipes/retrieve_ds_t2t.py hparams/curation/esc_insper_t2t_retr.yaml \\",
        [("sim_threshold", "0.7", "keep captions whose best prompt cosine >= this"),
         ("emb_dtype", "float16", "float16 | float32 storage of the DS caption embeddings")]),
    "pipeline": (
        "python recipes/pipeline.py hparams/pipeline/laion_own_audio.yaml --teacher=/ckpt/630k-audioset-best.pt \\",
        [("rounds", "2", "self-training rounds"),
         ("unpaired_audio", "null", "your audio: a folder"),
         ("label_list_name", "own", "the name of that domain")]),
    "retrieval_eval": (
        "python recipes/retrieval_eval.py hparams/$DATASET/retrieval_eval.yaml \\",
        [("audio_chunking", "True", "embed every eval_duration window"),
         ("max_chunks", "12", "cap on windows per clip")]),
    "toy_pipeline": (
        "python recipes/toy_pipeline.py hparams/toy/pipeline.yaml --output_folder=toy_results",
        [("jobs", "2", "independent stages run side by side"),
         ("world_size", "demo", "tiny | demo"),
         ("student_steps", "60", "optimizer steps per student")]),
    "build_index": (
        "python recipes/build_index.py --audio_folder=$AUDIO_DIR --output_folder=$INDEX_DIR \\",
        [("--index_type", "flat", "flat: exact search; ivf: approximate, for large collections."),
         ("--batch_size", "16", "Windows embedded per batch."),
         ("--ssl_select", "loss", "Checkpoint of ssl_checkpoints_dir.")]),
    "search": (
        'python recipes/search.py --index_folder=$INDEX_DIR "a dog barks" "rain on a roof" --topk=10',
        [("--topk", "10", "Files returned per query."),
         ("--device", "cuda when present, else cpu", "cpu, cuda or cuda:N")]),
}
# The keys of a YAML given on the command line (the toy one instead of the docstring's first).
GIVEN_YAML = ("microsoft_zeroshot", "hparams/toy/microsoft_zeroshot.yaml",
              [("audio_width", "0.0625", "CNN14 channel multiplier"), ("num_workers", "0", "")])


def _help(args, folder):
    return subprocess.run([sys.executable, os.path.join(REPO, "recipes", f"{args[0]}.py")] + args[1:], cwd=folder,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def helps(tmp_path_factory):
    """``{name: (process, its empty working folder)}`` of every recipe's ``--help``, run side by side."""
    runs = {name: [name, "--help"] for name in RECIPES}
    runs["given yaml"] = [GIVEN_YAML[0], os.path.join(REPO, GIVEN_YAML[1]), "-h"]
    folders = {name: tmp_path_factory.mktemp("help") for name in runs}
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        procs = dict(zip(runs, pool.map(lambda name: _help(runs[name], folders[name]), runs)))
    return {name: (procs[name], folders[name]) for name in runs}


def flat(text):
    """The text with every run of whitespace as one space (help lines are wrapped)."""
    return " ".join(text.split())


def test_every_recipe_has_expected_help():
    assert sorted(EXPECTED) == RECIPES, "add the new recipe's run command and a few of its keys to EXPECTED"


@pytest.mark.parametrize("name", RECIPES)
def test_help_shows_the_run_command_and_the_keys(name, helps):
    proc, folder = helps[name]
    assert proc.returncode == 0, proc.stderr[-3000:]
    command, keys = EXPECTED[name]
    assert command in proc.stdout
    out = flat(proc.stdout)
    for key, default, meaning in keys:
        if key.startswith("--"):  # argparse: "--key KEY  meaning (default: value)"
            assert f"{key} " in out and f"{meaning} (default: {default})" in out, (key, default, meaning)
        else:  # the YAML's key: "--key=default  its comment"
            assert f"--{key}={default} {meaning}" in out, (key, default, meaning)
    if not name.startswith(("build_index", "search")):
        assert "--device" in out and "--precision=fp32" in out and "--noprogressbar" in out  # SpeechBrain's options
    assert not os.listdir(folder), f"--help wrote {os.listdir(folder)}"
    assert proc.stderr == "", f"--help printed on stderr:\n{proc.stderr[-3000:]}"


def test_help_of_a_given_yaml_shows_its_keys(helps):
    proc, folder = helps["given yaml"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = flat(proc.stdout)
    assert f"Keys of {os.path.join(REPO, GIVEN_YAML[1])}" in out
    for key, default, meaning in GIVEN_YAML[2]:
        assert f"--{key}={default} {meaning}".strip() in out, key
    assert "--audio_width=1.0" not in out  # not the docstring's first YAML (esc)
    assert not os.listdir(folder) and proc.stderr == ""


def test_help_anywhere_on_the_line_builds_nothing(tmp_path, capsys):
    """``-h`` / ``--help`` among flags: the help, exit status 0, before the YAML or the flags are checked."""
    yaml_path = tmp_path / "h.yaml"
    yaml_path.write_text("seed: 1   # the seed\nmodel: !new:nonexistent.Module\n", encoding="utf-8")
    assert tokenize([str(yaml_path), "--seed=2", "-h"])[3] and tokenize(["--help"]) == (None, [], {}, True)
    for argv in ([str(yaml_path), "--no_such_key=1", "--help"], ["-h"]):
        with pytest.raises(SystemExit) as stop:
            CommandLine(argv)
        assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "--seed=1" in out and "the seed" in out and "Built by the YAML from the keys above: model" in out


def test_flag_recipes_keep_their_parsers():
    """build_index.py and search.py: their flags parse as before (the help only gained defaults and run commands)."""
    args = load_script("search").parse_arguments(["--index_folder", REPO, "a dog", "--topk=3"])
    # --device: None, resolved to CUDA when present, else CPU (tests/test_default_device.py)
    assert (args.queries, args.topk, args.nprobe, args.device) == (["a dog"], 3, None, None)


# ----------------------------------------------------------------- quiet start-up
def test_third_party_noise_is_filtered_and_other_records_pass(caplog):
    """The filter drops exactly the noisy message: another record of the same logger, and SpeechBrain's others, pass."""
    import experiment  # noqa: F401  (installs the filter)

    noisy = logging.getLogger("speechbrain.utils.train_logger")
    with caplog.at_level(logging.INFO):
        noisy.warning("torchvision is not available - cannot save figures")
        noisy.warning("a real warning of the train logger")
        logging.getLogger("speechbrain.core").warning("a real warning of the run")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["a real warning of the train logger", "a real warning of the run"]


def test_a_run_shows_its_warnings_without_the_noise(tmp_path):
    """A real start-up (setup, the warnings of the run, then an error on its data): our warnings reach stderr, the
    noise SpeechBrain's train_logger module logs on import (this recipe imports it) does not."""
    meta = tmp_path / "ESC-50" / "meta"
    meta.mkdir(parents=True)
    (meta / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\n")
    proc = subprocess.run(
        [sys.executable, "recipes/microsoft_zeroshot.py", "hparams/toy/microsoft_zeroshot.yaml",
         f"--data_folder={tmp_path / 'ESC-50'}", f"--output_base={tmp_path / 'out'}", "--precision=fp16",
         "--emb_norm_type=l2", "--noprogressbar"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode != 0 and "no rows in" in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert "WARNING: --auto_mix_prec / --precision=fp16 need a CUDA GPU" in proc.stderr
    assert "WARNING: --emb_norm_type (a key of the paper code's YAML) is ignored" in proc.stderr
    assert "torchvision is not available" not in proc.stderr + proc.stdout


def test_pretrained_text_model_loads_without_the_weights_bar(tmp_path, capfd):
    """transformers 5 draws a "Loading weights" bar for every from_pretrained; ours loads without it."""
    from transformers import BertConfig, BertModel

    from models.text_encoder import build_text_model

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    full = BertModel(config, add_pooling_layer=False)
    full.save_pretrained(tmp_path)
    capfd.readouterr()
    model = build_text_model(str(tmp_path))
    err = capfd.readouterr().err
    assert model.config.hidden_size == 16
    assert "Loading weights" not in err


def test_cuda_only_options_fall_back_on_a_cpu_with_a_warning(monkeypatch, capsys):
    """SpeechBrain 1.1.2 raises on --auto_mix_prec / --data_parallel_backend without CUDA; the scripts warn and
    run without them (the paper's commands pass both)."""
    import torch
    from speechbrain.utils.run_opts import RunOptions

    from experiment.runtime import cpu_fallbacks

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    opts = cpu_fallbacks(RunOptions(auto_mix_prec=True, data_parallel_backend=True))
    assert (opts.auto_mix_prec, opts.precision, opts.data_parallel_backend) == (False, "fp32", False)
    err = capsys.readouterr().err
    assert "WARNING: --auto_mix_prec / --precision=fp16 need a CUDA GPU; no GPU here, so training runs in fp32" in err
    assert "WARNING: --data_parallel_backend needs CUDA GPUs; none here, so it is ignored." in err
