"""Every bad input stops with an error naming the input and what to do, before any long work starts (issue 14).

One table: each row runs a real entry point (a recipe's ``main``, ``experiment.command_line.setup``
with a real YAML of hparams/, or the Python API) on tiny inputs and expects a ``SystemExit`` or
``ValueError`` (never a ``KeyError`` or a library's own error) whose message names the input:
the flag and its value, the file or the folder.
"""

import os

import numpy as np
import pytest
import soundfile
import torch
import yaml

from conftest import TINY_CLAP, TOY_MODEL, load_script, tiny_clap, write_tiny_bert
from dataset.manifest import write_csv

TOY_TRAIN = "hparams/toy/microsoft_clap_train.yaml"
TOY_ZEROSHOT = "hparams/toy/microsoft_zeroshot.yaml"
TOY_SOFTCLAP = "hparams/toy/softclap_train.yaml"
TOEMB = "hparams/curation/microsoft_audioset_insper_toemb.yaml"
DU = "hparams/curation/audioset_insper_duv2_retr.yaml"
ADS = "hparams/curation/esc_insper_audioset_dudsv3_retr.yaml"
DS = "hparams/curation/esc_insper_t2t_retr.yaml"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Tiny inputs: a clip, a caption CSV, header-only CSVs, a blank list, an ESC-50 folder with an empty index."""
    d = tmp_path_factory.mktemp("bad inputs")
    wav = str(d / "clip.wav")
    soundfile.write(wav, 0.1 * np.random.default_rng(0).standard_normal(16000).astype("float32"), 16000)
    write_csv(str(d / "pairs, part 1.csv"), [{"ID": "a", "wav_path": wav, "caption": "a dog barks"}])
    (d / "no caption column.csv").write_text(f"ID,wav_path,text\na,{wav},a dog barks\n", encoding="utf-8")
    for name in ("empty.csv", "a,b.csv"):
        write_csv(str(d / name), [], fieldnames=["ID", "wav_path", "caption"])
    (d / "blank.txt").write_text("\n  \n", encoding="utf-8")
    (d / "list.txt").write_text(wav + "\n", encoding="utf-8")
    (d / "emb").mkdir()
    (d / "ESC-50" / "meta").mkdir(parents=True)
    (d / "ESC-50" / "meta" / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\n")
    bert = write_tiny_bert(d / "tiny_bert", vocab_words="a dog barks rain falls".split())
    model = tiny_clap(bert, seed=0).eval()
    torch.save({"model": model.state_dict()}, d / "CLAP_tiny.pth")
    return {"d": str(d), "wav": wav, "bert": bert}


def run(script, *args):
    """``recipes/<script>.py``'s ``main`` with these flags, in this process."""
    return lambda ctx: load_script(script).main([a.format(**ctx) for a in args])


def setup(*args):
    def call(ctx):
        from experiment.command_line import setup as experiment_setup

        experiment_setup([a.format(**ctx) for a in args])

    return call


def classify(**kwargs):
    def call(ctx):
        from inference import ClapEmbedder

        clap = ClapEmbedder.from_ms_clap(os.path.join(ctx["d"], "CLAP_tiny.pth"), text_model=ctx["bert"],
                                         eval_duration=1.0, **TINY_CLAP)
        clap.classify([ctx["wav"]], **kwargs)

    return call


OUT = "--output_base={d}/runs"
# (row id, entry point, words the message must hold, a folder that must not exist afterwards)
ROWS = [
    # a. an override of the wrong type or out of range, checked when the YAML is loaded
    ("a-epochs-not-an-integer", setup(TOY_TRAIN, OUT, "--data_annot_folder={d}", "--number_of_epochs=two"),
     ["--number_of_epochs=two", "expected a positive integer", TOY_TRAIN], None),
    ("a-threshold-not-a-number", setup(DU, "--emb_dir={d}/emb", "--sim_threshold=abc"),
     ["--sim_threshold=abc", "[-1, 1]", DU], None),
    ("a-negative-batch-size", setup(TOY_TRAIN, OUT, "--data_annot_folder={d}", "--batch_size=-4"),
     ["--batch_size=-4", "expected a positive integer"], None),
    ("a-softclap-targets-not-a-choice", setup(TOY_SOFTCLAP, OUT, "--data_annot_folder={d}",
                                               "--softclap_targets=soft"),
     ["--softclap_targets=soft", "expected one of paper, normalized", TOY_SOFTCLAP], None),
    ("a-nan", setup(TOY_TRAIN, OUT, "--data_annot_folder={d}", "--proj_dropout=.nan"),
     ["--proj_dropout=.nan", "expected a number in [0, 1)", "not a finite number"], None),
    ("a-minus-inf", setup(TOY_TRAIN, OUT, "--data_annot_folder={d}", "--final_lr=-.inf"),
     ["--final_lr=-.inf", "not a finite number"], None),
    ("a-audio-options-list", setup(TOY_TRAIN, OUT, "--data_annot_folder={d}", "--audio_options=[1, 2]"),
     ["--audio_options=[1, 2]", "expected a mapping", "got a list", TOY_TRAIN], None),
    ("a-audio-options-word", setup(TOY_TRAIN, OUT, "--data_annot_folder={d}", "--audio_options=size=base"),
     ["--audio_options=size=base", "expected a mapping", "got the text 'size=base'"], None),
    # b. an unknown key: the closest keys of the YAML
    ("b-unknown-key", setup(TOY_TRAIN, OUT, "--data_annot_folder={d}", "--numbr_of_epochs=3"),
     ["--numbr_of_epochs=3", "did you mean --number_of_epochs", TOY_TRAIN], None),
    # c. search and classify
    ("c-search-topk-zero", run("search", "--index_folder={d}/emb", "--topk=0", "a dog barks"),
     ["--topk", "positive integer", "'0'"], None),
    ("c-search-topk-negative", run("search", "--index_folder={d}/emb", "--topk=-2", "a dog barks"),
     ["--topk", "positive integer", "'-2'"], None),
    ("c-search-empty-query", run("search", "--index_folder={d}/emb", "a dog barks", "  "),
     ["query 2 is empty", "'  '"], None),
    ("c-classify-topk-zero", classify(labels=["dog", "rain"], topk=0), ["topk=0", "positive integer"], None),
    ("c-classify-no-labels", classify(labels=[]), ["labels=[]", "at least one class name"], None),
    # d. user CSVs: a YAML list keeps a comma inside a path; the comma form takes an existing path whole
    ("d-user-csvs-yaml-list",
     setup(TOY_TRAIN, OUT, "--data_annot_folder=", '--user_csvs=["{d}/pairs, part 1.csv", {d}/missing.csv]'),
     ["--user_csvs={d}/missing.csv: file not found"], None),
    ("d-user-csvs-path-with-comma", setup(TOY_TRAIN, OUT, "--data_annot_folder=", "--user_csvs={d}/a,b.csv"),
     ["--user_csvs={d}/a,b.csv", "no rows in {d}/a,b.csv"], None),
    # e. empty or header-only inputs: "no rows in FILE"
    ("e-training-csv", run("microsoft_clap_train", TOY_TRAIN, OUT, "--data_annot_folder=",
                           "--train_csv_path={d}/empty.csv", "--noprogressbar"),
     ["--train_csv_path={d}/empty.csv", "no rows in {d}/empty.csv"], "{d}/runs"),
    ("e-curation-csv", run("microsoft_clap_train", TOY_TRAIN, OUT, "--data_annot_folder=",
                           "--train_csv_path={d}/pairs, part 1.csv", "--curation_prob=0.5",
                           "--curation_csv={d}/empty.csv", "--noprogressbar"),
     ["--curation_csv={d}/empty.csv", "no rows in {d}/empty.csv"], "{d}/runs"),
    ("e-ds-target-csv", run("retrieve_ds_t2t", DS, "--emb_dir={d}/emb", "--target_csv_path={d}/empty.csv",
                            *TOY_MODEL),
     ["--target_csv_path={d}/empty.csv", "no rows in {d}/empty.csv"], "{d}/emb/logs"),
    ("e-toemb-text-pathfile", run("microsoft_curation_toemb", TOEMB, "--output_folder={d}/toemb",
                                  "--audio_pathfile={d}/list.txt", "--text_pathfile={d}/empty.csv", *TOY_MODEL),
     ["--text_pathfile={d}/empty.csv", "no rows in {d}/empty.csv"], "{d}/toemb"),
    ("e-toemb-audio-pathfile", run("microsoft_curation_toemb", TOEMB, "--output_folder={d}/toemb",
                                   "--audio_pathfile={d}/blank.txt", *TOY_MODEL),
     ["--audio_pathfile={d}/blank.txt", "no rows in {d}/blank.txt"], "{d}/toemb"),
    ("e-ads-path-list", run("retrieve_from_emb_thresh", ADS, "--emb_dir={d}/emb", "--aud_ds_path={d}/blank.txt"),
     ["--aud_ds_path={d}/blank.txt", "no rows in {d}/blank.txt"], "{d}/emb/logs"),
    ("e-index-path-list", run("build_index", "--audio_pathfile={d}/blank.txt", "--output_folder={d}/index",
                              "--clap_ckpt_path={d}/CLAP_tiny.pth"),
     ["--audio_pathfile={d}/blank.txt", "no rows in {d}/blank.txt"], "{d}/index"),
    ("e-search-query-file", run("search", "--index_folder={d}/emb", "--query_file={d}/blank.txt"),
     ["--query_file={d}/blank.txt", "no rows in {d}/blank.txt"], None),
    ("e-zeroshot-metadata", run("microsoft_zeroshot", TOY_ZEROSHOT, "--data_folder={d}/ESC-50", OUT,
                                "--experiment_name=zs", "--noprogressbar"),
     ["no rows in {d}/ESC-50/meta/esc50.csv", "--data_folder"], None),
    # e'. a caption CSV whose header lacks a column: named before the output folder is created
    ("e-training-csv-without-caption-column",
     run("microsoft_clap_train", TOY_TRAIN, "--output_base={d}/student runs", "--data_annot_folder=",
         "--train_csv_path={d}/no caption column.csv", "--noprogressbar"),
     ["--train_csv_path={d}/no caption column.csv", "lacks the column(s) caption", "ID,wav_path,caption"],
     "{d}/student runs"),
    ("e-ds-target-csv-without-caption-column",
     run("retrieve_ds_t2t", DS, "--emb_dir={d}/emb", "--target_csv_path={d}/no caption column.csv", *TOY_MODEL),
     ["--target_csv_path={d}/no caption column.csv", "lacks the column(s) caption"], "{d}/emb/logs"),
    ("e-curation-csv-without-caption-column",
     setup(TOY_TRAIN, "--output_base={d}/curation runs", "--data_annot_folder=",
           "--train_csv_path={d}/pairs, part 1.csv", "--curation_prob=0.5", "--curation_csv={d}/no caption column.csv"),
     ["--curation_csv={d}/no caption column.csv", "lacks the column(s) caption"], "{d}/curation runs"),
    ("e-user-csvs-without-caption-column",
     setup(TOY_TRAIN, "--output_base={d}/user runs", "--data_annot_folder=", "--user_csvs={d}/no caption column.csv"),
     ["--user_csvs={d}/no caption column.csv", "lacks the column(s) caption"], "{d}/user runs"),
    ("e-du-txt-ds-path-without-caption-column",
     setup(DU, "--emb_dir={d}/emb", "--txt_ds_path={d}/no caption column.csv"),
     ["--txt_ds_path={d}/no caption column.csv", "lacks the column(s) caption"], "{d}/emb/logs"),
    # c'. build_index flags that contradict each other, named before the index folder is created
    ("c-index-nlist-with-flat", run("build_index", "--audio_pathfile={d}/list.txt", "--output_folder={d}/index",
                                    "--clap_ckpt_path={d}/CLAP_tiny.pth", "--nlist=4", "--nprobe=2"),
     ["--nlist=4 --nprobe=2 and --index_type=flat conflict", "--index_type=ivf"], "{d}/index"),
    ("c-index-more-cells-than-files", run("build_index", "--audio_pathfile={d}/list.txt", "--output_folder={d}/index",
                                          "--clap_ckpt_path={d}/CLAP_tiny.pth", "--index_type=ivf", "--nlist=4"),
     ["--nlist=4 and the 1 files listed conflict"], "{d}/index"),
    ("c-index-model-and-model-hparams",
     run("build_index", "--audio_pathfile={d}/list.txt", "--output_folder={d}/index",
         "--clap_ckpt_path={d}/CLAP_tiny.pth", "--model=ms_clap_2022", f"--model_hparams={TOY_ZEROSHOT}"),
     ["--model=ms_clap_2022 and --model_hparams=" + TOY_ZEROSHOT, "give one of them"], "{d}/index"),
    ("c-index-model-that-cannot-be-built",
     run("build_index", "--audio_pathfile={d}/list.txt", "--output_folder={d}/index",
         "--clap_ckpt_path={d}/CLAP_tiny.pth", "--text_model={bert}"),
     ["Cannot load the model that --clap_ckpt_path={d}/CLAP_tiny.pth --text_model={bert} describe",
      "has hidden size 32"], "{d}/index"),
    # f. a missing embedding folder: nothing is created in it, and the command that writes it is named
    ("f-du-emb-dir", run("retrieve_from_emb_thresh", DU, "--emb_dir={d}/no emb", "--sim_threshold=0.5"),
     ["--emb_dir={d}/no emb", "no such folder", "microsoft_curation_toemb.py"], "{d}/no emb"),
    ("f-ds-emb-dir", run("retrieve_ds_t2t", DS, "--emb_dir={d}/no emb", "--target_csv_path={d}/pairs, part 1.csv",
                         *TOY_MODEL),
     ["--emb_dir={d}/no emb", "no such folder", "microsoft_curation_toemb.py"], "{d}/no emb"),
    ("f-search-index-folder", run("search", "--index_folder={d}/no index", "a dog barks"),
     ["--index_folder={d}/no index", "no such folder", "build_index.py"], "{d}/no index"),
]


@pytest.mark.parametrize("call,words,absent", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_input_is_named_before_any_work(call, words, absent, inputs, capsys):
    with pytest.raises((SystemExit, ValueError)) as caught:
        call(inputs)
    message = f"{caught.value}\n{capsys.readouterr().err}"
    for word in words:
        assert word.format(**inputs) in message, f"{word.format(**inputs)!r} not in:\n{message}"
    if absent:
        assert not os.path.exists(absent.format(**inputs)), "the run created its output before stopping"


def test_search_nprobe_on_a_flat_index_names_both(inputs, tmp_path):
    """--nprobe sets the cells an IVF index searches: on a flat index it is refused, naming the flag and the index
    (it was a faiss traceback)."""
    d = inputs["d"]
    index, keys = tmp_path / "flat index", tmp_path / "tiny.yaml"
    keys.write_text(yaml.safe_dump(dict(TINY_CLAP, text_model=inputs["bert"], eval_duration=1.0)))
    load_script("build_index").main([f"--audio_pathfile={d}/list.txt", f"--output_folder={index}",
                                     f"--clap_ckpt_path={d}/CLAP_tiny.pth", f"--model_hparams={keys}",
                                     "--noprogressbar"])
    with pytest.raises(SystemExit) as caught:
        load_script("search").main([f"--index_folder={index}", "--nprobe=2", "a dog barks"])
    message = str(caught.value)
    assert f"--nprobe=2 and the flat index in {index} conflict" in message and "drop --nprobe" in message, message


def test_the_example_of_the_hardening_page_is_what_the_command_prints(tmp_path, monkeypatch):
    """docs/hardening.md's example (two bad flags): every problem is reported at once, as the page shows it, and
    nothing is written (the run is started in an empty folder, its output_base relative to it)."""
    import re
    import shlex

    from conftest import REPO

    with open(os.path.join(REPO, "docs", "hardening.md"), encoding="utf-8") as f:
        block = re.search(r"```\n\$ python (recipes/\S+) (.*?)\n(.*?)```", f.read(), flags=re.S)
    script, args, shown = block.group(1), shlex.split(block.group(2)), block.group(3).strip()
    monkeypatch.chdir(tmp_path)
    args[0] = os.path.join(REPO, args[0])  # the YAML, from the repository
    with pytest.raises(SystemExit) as caught:
        load_script(os.path.basename(script)[:-3]).main(args)
    assert str(caught.value.code).replace(REPO + os.sep, "") == shown
    assert os.listdir(tmp_path) == []
