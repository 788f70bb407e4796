"""Run folders of the paper's code, and its checkpoint selection keys ``use_maxacc_ep`` / ``use_minloss_ep``.

The paper's code (zhepeiw/clap_curation, SpeechBrain 0.5.14) saves its model
as the recoverable ``clap``: ``save/CKPT+.../clap.ckpt`` (a bare state dict
of its ``models/microsoft_clap.py`` CLAP) beside ``epoch_counter``,
``datapoint_counter``, ``lr_scheduler``, ``optimizer``, ``brain`` and
``dataloader-TRAIN`` files, no completion marker, and ``CKPT.yaml`` with
``acc`` (runs validated zero-shot) or ``loss`` meta. Its experiment folder
holds a ``hyperparams.yaml`` in that code's key names.

Two such folders are built here with three checkpoints each, of known
weights (tiny models, as the other tests use), and every entry point is
shown to load the checkpoint each selection key asks for:

- ``teacher``: loss only (3.0, 1.0, 2.0 from oldest to newest);
- ``student``: acc only (0.9, 0.3, 0.5 from oldest to newest);

so the lowest loss is the second checkpoint, the highest acc the first and
the most recent the third, three different answers.
"""

import json
import os
import shutil

import pytest
import torch
import yaml

from conftest import FIXTURES, REPO, load_script, tiny_clap, write_tiny_bert
from experiment.checkpoints import find_checkpoint, is_complete_checkpoint, resolve_selection
from experiment.weights import load_weights

#: (checkpoint name, unixtime, model seed); oldest first.
CHECKPOINTS = [("CKPT+2023-01-01+00-00-00+00", 1000.0, 1), ("CKPT+2023-01-02+00-00-00+00", 2000.0, 2),
               ("CKPT+2023-01-03+00-00-00+00", 3000.0, 3)]
METAS = {"teacher": [{"loss": 3.0}, {"loss": 1.0}, {"loss": 2.0}],
         "student": [{"acc": 0.9}, {"acc": 0.3}, {"acc": 0.5}]}
OLDEST, MIN_LOSS, LATEST = 1, 2, 3  # seeds of the known answers
MAX_ACC = OLDEST
TINY_FLAGS = ["--sample_rate=16000", "--window_size=512", "--hop_size=160", "--fmax=8000", "--classes_num=5",
              "--out_emb=32", "--txt_emb_dim=32", "--d_proj=16", "--audio_width=0.0625", "--num_workers=0",
              "--noprogressbar"]
POSITION_IDS = "caption_encoder.base.embeddings.position_ids"


# ------------------------------------------------------------ the paper code's layout
def original_clap_keys(bert_folder):
    """The state-dict keys of the paper code's ``models.microsoft_clap.CLAP`` (written from that file).

    ``Cnn14`` (torchlibrosa front end, ``bn0``, six ``ConvBlock`` s, ``fc1``,
    ``fc_audioset``), one ``Projection`` per tower, ``AutoModel`` BERT as saved
    by its transformers 4.28.1 (``embeddings.position_ids`` was a persistent
    buffer then; ``pooler`` included) and ``logit_scale``.
    """
    from transformers import BertConfig, BertModel

    def bn(prefix):
        return [f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

    base = "audio_encoder.base"
    stft = f"{base}.spectrogram_extractor.stft"
    keys = [f"{stft}.conv_real.weight", f"{stft}.conv_imag.weight", f"{base}.logmel_extractor.melW"] + bn(f"{base}.bn0")
    for i in range(1, 7):
        block = f"{base}.conv_block{i}"
        keys += [f"{block}.conv1.weight", f"{block}.conv2.weight"] + bn(f"{block}.bn1") + bn(f"{block}.bn2")
    keys += [f"{base}.fc1.weight", f"{base}.fc1.bias", f"{base}.fc_audioset.weight", f"{base}.fc_audioset.bias"]
    for tower in ("audio_encoder", "caption_encoder"):
        keys += [f"{tower}.projection.{n}" for n in ("linear1.weight", "linear2.weight", "layer_norm.weight",
                                                      "layer_norm.bias")]
    bert = BertModel(BertConfig.from_pretrained(bert_folder))
    keys += ["caption_encoder.base." + k for k in bert.state_dict()]
    if POSITION_IDS not in keys:
        keys.append(POSITION_IDS)
    return keys + ["logit_scale"]


def original_state(model, keys):
    """``model``'s weights under the paper code's key names (what its checkpointer wrote as ``clap.ckpt``)."""
    ours = model.state_dict()
    positions = torch.arange(128)[None]  # max_position_embeddings of the tiny BERT
    return {k: (positions if k == POSITION_IDS else ours[k].clone()) for k in keys}


ORIGINAL_HPARAMS = """# Generated 2023-01-03 from:
# /home/user/clap_curation/hparams/insper/microsoft_clap_train.yaml
# yamllint disable
seed: 2022
__set_seed: !apply:torch.manual_seed [2022]
time_stamp: 2023-01-01+00-00-00
experiment_name: {name}
sample_rate: 16000
train_duration: 5.0
eval_duration: 5.0
use_zs_loader: {zs}
window_size: 512
hop_size: 160
mel_bins: 64
fmin: 50
fmax: 8000
aud_emb_classes_num: 5
emb_norm_type: bn
aud_emb_dim: 32
txt_emb_dim: 32
shared_emb_dim: 16
text_max_length: 100
use_maxacc_ep: false
use_minloss_ep: false
clap: !new:models.microsoft_clap.CLAP
  audioenc_name: Cnn14
  sample_rate: 16000
  window_size: 512
  hop_size: 160
  mel_bins: 64
  fmin: 50
  fmax: 8000
  classes_num: 5
  out_emb: 32
  text_model: {bert}
  transformer_embed_dim: 32
  d_proj: 16
modules:
  clap: !ref <clap>
recoverables:
  clap: !ref <clap>
  datapoint_counter: !ref <datapoint_counter>
"""


def write_original_run(root, name, bert, models, keys):
    """An experiment folder of the paper's code: ``hyperparams.yaml`` and ``save/CKPT+...`` of SpeechBrain 0.5."""
    save = root / name / "save"
    (root / name).mkdir(parents=True)
    (root / name / "hyperparams.yaml").write_text(
        ORIGINAL_HPARAMS.format(name=name, zs=name == "student", bert=bert), encoding="utf-8")
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))])
    for epoch, ((ckpt_name, unixtime, seed), meta) in enumerate(zip(CHECKPOINTS, METAS[name]), start=1):
        ckpt = save / ckpt_name
        ckpt.mkdir(parents=True)
        # SpeechBrain 0.5 writes CKPT.yaml first, then the recoverables in the order they were added.
        (ckpt / "CKPT.yaml").write_text("# yamllint disable\n" + yaml.dump(
            dict(meta, **{"end-of-epoch": True, "unixtime": unixtime})), encoding="utf-8")
        torch.save(original_state(models[seed], keys), ckpt / "clap.ckpt")
        (ckpt / "datapoint_counter.ckpt").write_text(str(128 * epoch))
        torch.save({"losses": [3.0, 1.0, 2.0][:epoch], "anchor": 1.0, "patience_counter": 0},
                   ckpt / "lr_scheduler.ckpt")
        (ckpt / "epoch_counter.ckpt").write_text(str(epoch))
        (ckpt / "brain.ckpt").write_text(yaml.dump({"avg_train_loss": 0.0, "optimizer_step": 0, "step": 0}))
        (ckpt / "dataloader-TRAIN.ckpt").write_text("40")
        torch.save(optimizer.state_dict(), ckpt / "optimizer.ckpt")
    return save


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """Two run folders of the paper's code and the source models of their checkpoints (by seed)."""
    root = tmp_path_factory.mktemp("original")
    bert = write_tiny_bert(root / "tiny_bert", vocab_words="a dog barks rain falls bird sings".split())
    models = {seed: tiny_clap(bert, seed=seed).eval() for _, _, seed in CHECKPOINTS}
    keys = original_clap_keys(bert)
    saves = {name: write_original_run(root, name, bert, models, keys) for name in METAS}
    return {"root": root, "bert": bert, "models": models, "keys": keys, **saves}


def same_weights(model, source):
    """True when every tensor of ``model`` equals the source model's."""
    a, b = model.state_dict(), source.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def loaded_seed(model, original):
    matches = [seed for seed, source in original["models"].items() if same_weights(model, source)]
    assert len(matches) == 1, matches
    return matches[0]


def ms_clap_file(original, seed, tmp_path):
    """The same weights as an MS CLAP file ``{'model': state_dict}`` (the reference the recipes also load)."""
    path = tmp_path / f"source_{seed}.pth"
    torch.save({"model": original["models"][seed].state_dict()}, path)
    return str(path)


# ------------------------------------------------------------------ layout
def test_the_paper_codes_key_names_are_ours_and_its_clap_ckpt_loads(original):
    """Our CLAP's keys are the paper code's, but for the BERT position_ids buffer old transformers saved."""
    ours = set(tiny_clap(original["bert"], seed=0).state_dict())
    assert set(original["keys"]) - ours == {POSITION_IDS}
    assert ours <= set(original["keys"])
    ckpt = os.path.join(original["teacher"], CHECKPOINTS[0][0])
    assert sorted(os.listdir(ckpt)) == sorted(
        ["CKPT.yaml", "clap.ckpt", "datapoint_counter.ckpt", "lr_scheduler.ckpt", "epoch_counter.ckpt",
         "brain.ckpt", "dataloader-TRAIN.ckpt", "optimizer.ckpt"])
    model = tiny_clap(original["bert"], seed=0)
    load_weights(model, {"ssl_checkpoints_dir": ckpt})  # one CKPT+ folder given directly
    assert loaded_seed(model, original) == OLDEST


def test_our_completeness_rule_accepts_the_paper_codes_checkpoints(original, tmp_path):
    """SpeechBrain 0.5's brain.ckpt without our marker is not a kill mark there; a cut clap.ckpt still is."""
    for name in METAS:
        for ckpt_name, _, _ in CHECKPOINTS:
            assert is_complete_checkpoint(os.path.join(original[name], ckpt_name))
    save = tmp_path / "save"
    shutil.copytree(original["teacher"], save)
    newest = save / CHECKPOINTS[-1][0] / "clap.ckpt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    assert not is_complete_checkpoint(str(newest.parent))
    assert os.path.basename(find_checkpoint(str(save), "latest")) == CHECKPOINTS[1][0]
    # Our own folders keep their rule: model.ckpt and brain.ckpt without the marker is a save a kill cut short.
    ours = tmp_path / "ours" / CHECKPOINTS[0][0]
    shutil.copytree(original["teacher"] / CHECKPOINTS[0][0], ours)
    os.rename(ours / "clap.ckpt", ours / "model.ckpt")
    assert not is_complete_checkpoint(str(ours))


# ------------------------------------------------------------- selection keys
@pytest.mark.parametrize("folder,keys,expected", [
    ("teacher", {}, LATEST),  # neither key: find_checkpoints()[0], the paper code's default for training
    ("teacher", {"use_maxacc_ep": False, "use_minloss_ep": False}, LATEST),
    ("teacher", {"use_minloss_ep": True}, MIN_LOSS),
    ("student", {"use_maxacc_ep": True}, MAX_ACC),
    ("student", {"use_maxacc_ep": False, "use_minloss_ep": False}, LATEST),
    # our key, alone or winning over the paper code's
    ("teacher", {"ssl_select": "loss"}, MIN_LOSS),
    ("student", {"ssl_select": "acc"}, MAX_ACC),
    ("student", {"ssl_select": "latest", "use_maxacc_ep": True}, LATEST),
    ("teacher", {"ssl_select": "loss", "use_maxacc_ep": True}, MIN_LOSS),
    ("teacher", {"ssl_select": None, "use_minloss_ep": True}, MIN_LOSS),
])
def test_each_selection_key_picks_its_known_checkpoint(original, folder, keys, expected):
    model = tiny_clap(original["bert"], seed=0)
    source = load_weights(model, {"ssl_checkpoints_dir": str(original[folder]), **keys})
    assert loaded_seed(model, original) == expected
    assert CHECKPOINTS[expected - 1][0] in source


@pytest.mark.parametrize("folder,keys,key,asked_by,recorded", [
    ("teacher", {"use_maxacc_ep": True}, "acc", "--use_maxacc_ep=True", "loss=1"),
    ("teacher", {"ssl_select": "acc"}, "acc", "--ssl_select=acc", "loss=3"),
    ("student", {"use_minloss_ep": True}, "loss", "--use_minloss_ep=True", "acc=0.9"),
])
def test_a_key_no_checkpoint_records_stops_with_what_they_have(original, folder, keys, key, asked_by, recorded):
    """The paper's code loads nothing here (recover_if_possible finds no checkpoint) and goes on: we stop."""
    model = tiny_clap(original["bert"], seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(SystemExit) as info:
        load_weights(model, {"ssl_checkpoints_dir": str(original[folder]), **keys})
    message = str(info.value)
    assert str(original[folder]) in message and f"records {key!r}" in message and asked_by in message, message
    assert recorded in message and all(name in message for name, _, _ in CHECKPOINTS), message
    other = "loss" if key == "acc" else "acc"
    assert f"--ssl_select={other}" in message and "--ssl_select=latest" in message, message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_both_original_keys_true_is_rejected():
    with pytest.raises(SystemExit, match="use_maxacc_ep=True and --use_minloss_ep=True"):
        resolve_selection({"use_maxacc_ep": True, "use_minloss_ep": True})
    assert resolve_selection({"ssl_select": "acc", "use_maxacc_ep": True, "use_minloss_ep": True})[0] == "acc"
    with pytest.raises(SystemExit, match="--teacher_select=best: expected one of loss, acc, latest"):
        resolve_selection({"teacher_select": "best"}, "teacher_select")


def test_a_selection_flag_outside_its_values_is_stopped_before_anything_runs():
    from experiment.checks import check_overrides

    yaml_path = os.path.join(REPO, "hparams/esc/microsoft_zeroshot.yaml")
    with pytest.raises(SystemExit, match="--ssl_select=best: expected one of loss, acc, latest, null"):
        check_overrides(yaml_path, "ssl_select: best")
    check_overrides(yaml_path, "ssl_select: null\nuse_maxacc_ep: False\nuse_minloss_ep: True")
    with pytest.raises(SystemExit, match="--use_minloss_ep=yes please: expected True or False"):
        check_overrides(yaml_path, "use_minloss_ep: yes please")


def _yaml_defaults(path):
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: (suffix, getattr(node, "value", None)))
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return yaml.load(f, Loader=Loader)


_ZS = ["hparams/esc/microsoft_zeroshot.yaml", "hparams/us8k/microsoft_zeroshot.yaml",
       "hparams/tut/microsoft_zeroshot.yaml", "hparams/tut17/microsoft_zeroshot.yaml",
       # not in the paper's code (it has their preparers only): as its other zero-shot YAMLs
       "hparams/vggsound/microsoft_zeroshot.yaml", "hparams/tau19/microsoft_zeroshot.yaml"]
_CURATION = ["hparams/curation/microsoft_audioset_insper_toemb.yaml", "hparams/curation/esc_insper_t2t_retr.yaml",
             "hparams/curation/us8k_insper_t2t_retr.yaml", "hparams/curation/tut_insper_t2t_retr.yaml"]
_TRAINING = [f"hparams/{d}/{n}.yaml" for d in ("insper", "us8k", "tut17")
             for n in ("microsoft_clap_train", "softclap_train")]
_OURS = ["hparams/toy/microsoft_clap_train.yaml", "hparams/toy/softclap_train.yaml",
         "hparams/toy/microsoft_zeroshot.yaml", "hparams/toy/retrieval_eval.yaml",
         "hparams/clotho/retrieval_eval.yaml", "hparams/audiocaps/retrieval_eval.yaml"]


@pytest.mark.parametrize("path,expected", [(p, "acc") for p in _ZS + _CURATION] + [(p, "latest") for p in _TRAINING]
                         + [(p, "loss") for p in _OURS])
def test_each_yaml_defaults_to_the_paper_codes_choice_for_its_script(path, expected):
    """Zero-shot and curation: highest acc (use_maxacc_ep: True there); training: the most recent; ours: loss."""
    data = _yaml_defaults(path)
    assert data["ssl_select"] is None
    assert resolve_selection(data)[0] == expected
    if "softclap" in path:
        # The teacher: the student's own start folder and selection, as the paper's YAMLs say.
        assert data["teacher_checkpoints_dir"] == ("ref", "<ssl_checkpoints_dir>")
        assert data["teacher_select"] == ("ref", "<ssl_select>")


def test_every_yaml_that_selects_a_checkpoint_takes_the_paper_codes_keys():
    import glob

    selecting = [os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "hparams", "*", "*.yaml"))
                 if "ssl_checkpoints_dir" in _yaml_defaults(os.path.relpath(p, REPO))]
    assert sorted(selecting) == sorted(_ZS + _CURATION + _TRAINING + _OURS)


# ------------------------------------------------------------ entry points
def _caption_csv(tmp_path):
    """Caption pairs on the five ESC-50 fixture clips (two captions each)."""
    import csv

    audio = os.path.join(FIXTURES, "esc50", "audio")
    path = tmp_path / "pairs.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "wav_path", "caption"])
        for i, name in enumerate(sorted(os.listdir(audio))):
            for j, caption in enumerate(("a dog barks", "rain falls")):
                writer.writerow([f"c{i}_{j}", os.path.join(audio, name), caption])
    return str(path)


class _Loaded(Exception):
    """Raised by a Brain at construction: training got as far as its initial weights."""

    def __init__(self, kwargs):
        super().__init__("loaded")
        self.model = kwargs["modules"]["model"]
        self.teacher = kwargs.get("teacher")


def _stop_at_brain(base):
    class Stop(base):
        def __init__(self, **kwargs):
            raise _Loaded(kwargs)

    return Stop


def _train_until_brain(brain_class, yaml_path, flags, original, tmp_path, brain_kwargs=None):
    from training.run import run_training

    argv = [yaml_path, f"--train_csv_path={_caption_csv(tmp_path)}", f"--output_base={tmp_path / 'out'}",
            "--experiment_name=run", "--number_of_epochs=1", "--batch_size=2", "--valid_pct=0.2",
            f"--text_model={original['bert']}", "--pretrained_text=False", *TINY_FLAGS, *flags]
    with pytest.raises(_Loaded) as info:
        run_training(argv, _stop_at_brain(brain_class), brain_kwargs=brain_kwargs)
    return info.value


@pytest.mark.parametrize("flags,expected", [
    ([], LATEST),  # the paper's training YAML: the most recent, as its code
    (["--use_minloss_ep=True"], MIN_LOSS),
    (["--ssl_select=loss"], MIN_LOSS),
])
def test_training_starts_from_the_selected_checkpoint_of_a_paper_code_run(original, tmp_path, flags, expected):
    from training.brain import CLAPBrain

    loaded = _train_until_brain(CLAPBrain, "hparams/insper/microsoft_clap_train.yaml",
                                [f"--ssl_checkpoints_dir={original['teacher']}"] + flags, original, tmp_path)
    assert loaded_seed(loaded.model, original) == expected


@pytest.mark.parametrize("flags,student,teacher", [
    # the paper's SoftCLAP YAML: the teacher is ssl_checkpoints_dir's checkpoint, chosen by the same keys
    ([], LATEST, LATEST),
    (["--use_minloss_ep=True"], MIN_LOSS, MIN_LOSS),
    # a teacher folder of its own, with its own selection
    (["--teacher_checkpoints_dir={student}", "--teacher_select=acc"], LATEST, MAX_ACC),
])
def test_softclap_teacher_and_student_from_paper_code_runs(original, tmp_path, flags, student, teacher):
    softclap = load_script("softclap_train")
    flags = [f.format(student=original["student"]) for f in flags]
    loaded = _train_until_brain(
        softclap.SoftCLAPBrain, "hparams/insper/softclap_train.yaml",
        [f"--ssl_checkpoints_dir={original['teacher']}", "--use_zs_loader=False",
         f"--data_zs_folder={_esc50(tmp_path)}"] + flags, original, tmp_path,
        brain_kwargs=softclap.load_teacher)
    assert loaded_seed(loaded.model, original) == student
    assert loaded_seed(loaded.teacher, original) == teacher


def test_softclap_teacher_error_names_the_teacher_flags(original, tmp_path):
    softclap = load_script("softclap_train")
    with pytest.raises(SystemExit) as info:
        _train_until_brain(
            softclap.SoftCLAPBrain, "hparams/insper/softclap_train.yaml",
            [f"--ssl_checkpoints_dir={original['teacher']}", "--use_zs_loader=False",
             f"--data_zs_folder={_esc50(tmp_path)}", f"--teacher_checkpoints_dir={original['teacher']}",
             "--teacher_select=acc"], original, tmp_path, brain_kwargs=softclap.load_teacher)
    assert "--teacher_select=acc" in str(info.value) and str(original["teacher"]) in str(info.value)


def _esc50(tmp_path):
    esc = tmp_path / "ESC-50-master"
    if not esc.exists():
        shutil.copytree(os.path.join(FIXTURES, "esc50"), esc)
    return str(esc)


def _zeroshot(original, tmp_path, name, model_flags):
    zeroshot = load_script("microsoft_zeroshot")
    zeroshot.main(["hparams/esc/microsoft_zeroshot.yaml", f"--data_folder={_esc50(tmp_path)}",
                   f"--output_base={tmp_path / 'zs'}", f"--experiment_name={name}", f"--text_model={original['bert']}",
                   "--batch_size=5", "--pretrained_text=False", *TINY_FLAGS, *model_flags])
    folder = tmp_path / "zs" / name
    with open(folder / "zeroshot_results.json", encoding="utf-8") as f:
        results = json.load(f)
    return results, (folder / "predictions.csv").read_text(encoding="utf-8")


@pytest.mark.slow  # three whole zero-shot runs; the selection itself is tested fast above
def test_zeroshot_scores_the_highest_acc_checkpoint_of_a_paper_code_run(original, tmp_path):
    """The paper's zero-shot YAML (use_maxacc_ep: True): the same predictions as the source file of that checkpoint."""
    results, predictions = _zeroshot(original, tmp_path, "original",
                                     ["--clap_ckpt_path=", f"--ssl_checkpoints_dir={original['student']}"])
    assert CHECKPOINTS[MAX_ACC - 1][0] in results["model_source"] and "use_maxacc_ep" in results["model_source"]
    source_file = ms_clap_file(original, MAX_ACC, tmp_path)
    _, reference = _zeroshot(original, tmp_path, "reference",
                             [f"--clap_ckpt_path={source_file}", "--ssl_checkpoints_dir="])
    assert predictions == reference
    _, latest = _zeroshot(original, tmp_path, "latest", ["--clap_ckpt_path=", "--use_maxacc_ep=False",
                                                         f"--ssl_checkpoints_dir={original['student']}"])
    assert latest != reference  # another checkpoint, other scores: the comparison can fail


def test_zeroshot_on_a_loss_only_run_stops_instead_of_scoring_other_weights(original, tmp_path):
    """The paper's command on a teacher validated without zero-shot: its code would score the MS CLAP file."""
    with pytest.raises(SystemExit) as info:
        _zeroshot(original, tmp_path, "teacher", [f"--ssl_checkpoints_dir={original['teacher']}"])
    assert "records 'acc', which --use_maxacc_ep=True asks for" in str(info.value)
    assert "--ssl_select=loss" in str(info.value)


def test_curation_embeds_with_the_selected_checkpoint_of_a_paper_code_run(original, tmp_path):
    """The paper's embedding YAML (use_maxacc_ep: True): the recorded model fingerprint is the source model's."""
    from embeddings.keys import model_fingerprint

    toemb = load_script("microsoft_curation_toemb")
    paths = tmp_path / "paths.txt"
    audio = os.path.join(FIXTURES, "esc50", "audio")
    paths.write_text("".join(os.path.join(audio, n) + "\n" for n in sorted(os.listdir(audio))), encoding="utf-8")
    out = tmp_path / "emb"
    toemb.main(["hparams/curation/microsoft_audioset_insper_toemb.yaml", f"--output_folder={out}",
                "--clap_ckpt_path=", f"--ssl_checkpoints_dir={original['student']}", f"--audio_pathfile={paths}",
                f"--text_pathfile={_caption_csv(tmp_path)}", f"--text_model={original['bert']}",
                "--batch_size=5", *TINY_FLAGS])
    with open(out / "save" / "embeddings.json", encoding="utf-8") as f:
        info = json.load(f)
    fingerprints = {seed: model_fingerprint(model) for seed, model in original["models"].items()}
    assert len(set(fingerprints.values())) == 3
    assert info["audio"]["model"] == info["text"]["model"] == fingerprints[MAX_ACC]


def test_inference_api_loads_a_paper_code_run_with_its_hyperparams(original, tmp_path):
    """ClapEmbedder reads the run's hyperparams.yaml in the paper code's key names and embeds as the source does."""
    from inference import ClapEmbedder

    experiment = os.path.dirname(original["student"])
    clap = ClapEmbedder.from_pretrained(ssl_checkpoints_dir=original["student"], ssl_select="acc",
                                        audio_width=1 / 16)  # the paper's code has only the full-width CNN14
    assert (clap.config["d_proj"], clap.config["out_emb"], clap.config["classes_num"]) == (16, 32, 5)
    assert clap.config["text_model"] == original["bert"] and clap.config["sample_rate"] == 16000
    assert loaded_seed(clap.model, original) == MAX_ACC
    reference = ClapEmbedder.from_pretrained(clap_ckpt_path=ms_clap_file(original, MAX_ACC, tmp_path),
                                             model_hparams=os.path.join(experiment, "hyperparams.yaml"),
                                             audio_width=1 / 16)
    texts = ["a dog barks", "rain falls"]
    wav = [os.path.join(FIXTURES, "esc50", "audio", "1-100032-A-0.wav")]
    assert torch.equal(torch.from_numpy(clap.embed_text(texts)), torch.from_numpy(reference.embed_text(texts)))
    assert torch.equal(torch.from_numpy(clap.embed_audio(wav)), torch.from_numpy(reference.embed_audio(wav)))
    latest = ClapEmbedder.from_experiment(experiment, select="latest", audio_width=1 / 16)
    assert loaded_seed(latest.model, original) == LATEST
    assert not torch.equal(torch.from_numpy(latest.embed_text(texts)), torch.from_numpy(reference.embed_text(texts)))
