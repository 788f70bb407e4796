"""Every key of the paper code's YAMLs is accepted by ours, with its meaning (experiment/paper_keys.py).

``tests/fixtures/paper_code_yaml_keys.json`` lists the top-level keys of the
paper code's YAMLs used by its README commands (read from
zhepeiw/clap_curation). Each key must be a key of our YAML of the same path
(or of its toy / TUT copy), an alias of one, or an ignored key with a
reason; an alias must change exactly what our key changes (the YAMLs are
resolved, nothing is built); ``time_stamp`` names the paper code's run folder
only when given.
"""

import functools
import json
import os
import re

import pytest

from conftest import FIXTURES, REPO
from experiment.checks import check_overrides
from experiment.command_line import classify, parse_arguments
from experiment.paper_keys import PAPER_KEYS, Alias, Elsewhere, Ignored
from test_hparams_variants import load_hparams_data

with open(os.path.join(FIXTURES, "paper_code_yaml_keys.json"), encoding="utf-8") as _f:
    PAPER = json.load(_f)["files"]

#: Our YAML -> the paper code's YAML whose keys it takes (same path, or the file it is a copy of).
MATCHING = {path: path for path in PAPER}
MATCHING.update({
    "hparams/tut/microsoft_zeroshot.yaml": "hparams/tut17/microsoft_zeroshot.yaml",
    "hparams/toy/microsoft_clap_train.yaml": "hparams/insper/microsoft_clap_train.yaml",
    "hparams/toy/softclap_train.yaml": "hparams/insper/softclap_train.yaml",
    "hparams/toy/microsoft_zeroshot.yaml": "hparams/esc/microsoft_zeroshot.yaml",
})


def test_fixture_covers_the_papers_commands():
    """The paper's README commands use these 17 YAMLs; each has ours at the same path."""
    assert len(PAPER) == 17
    assert all(os.path.isfile(os.path.join(REPO, p)) for p in PAPER), [p for p in PAPER if not os.path.isfile(p)]
    assert sum(len(v) for v in PAPER.values()) == 869


@pytest.mark.parametrize("ours", sorted(MATCHING))
def test_every_paper_key_is_taken(ours):
    """Each key: ours, an alias of ours, ignored with a reason, or provided by another part of the project."""
    keys = our_keys(ours)
    unknown = [k for k in PAPER[MATCHING[ours]] if classify(k, keys)[0] == "unknown"]
    assert not unknown, f"{ours}: keys of {MATCHING[ours]} in the paper code that nothing takes: {unknown}"


@pytest.mark.parametrize("ours", sorted(MATCHING))
def test_keys_provided_elsewhere_are_keys_of_the_yaml(ours):
    keys = our_keys(ours)
    missing = [k for k in PAPER[MATCHING[ours]] if classify(k, keys)[0] == "elsewhere"]
    assert not missing, f"{ours}: {missing}"


def test_table_entries_are_well_formed():
    for key, entries in PAPER_KEYS.items():
        assert entries, key
        for entry in entries:
            assert isinstance(entry, (Alias, Ignored, Elsewhere)), key
            if isinstance(entry, Ignored):
                assert len(entry.reason) > 20, key
        # Nothing may come after an entry that applies to every YAML.
        for entry in entries[:-1]:
            assert isinstance(entry, Alias) or entry.needs is not None, key


# A value of each alias a command line may give, and what it means in our keys (known answers).
SAMPLES = {
    "shared_emb_dim": ("512", {"d_proj": 512}),
    "aud_emb_dim": ("1024", {"out_emb": 1024}),
    "aud_emb_classes_num": ("10", {"classes_num": 10}),
    "freeze_txt_emb": ("True", {"freeze_text_base": True}),
    "freeze_aud_emb": ("True", {"freeze_audio_base": True}),
    "!freeze_txt_emb": ("False", {"freeze_text_base": False}),  # where our default is True (toy)
    "zs_valid_folds": ("[1, 2]", {"zs_folds": [1, 2]}),
    "zs_text_prompt": ("a recording of ", {"zs_prompt_templates": ["a recording of {label}"]}),
    "duration": ("4.0", {"eval_duration": 4.0}),
    "train_duration": ("4.0", {"eval_duration": 4.0}),
    "text_prompt": ("a recording of ", {"prompt_templates": ["a recording of {label}"],
                                        "prompt_prefix": "a recording of "}),
    "test_folds": ("[1, 2]", {"folds": [1, 2]}),
    "valid_dataloader_opts": ("{batch_size: 8, num_workers: 2}", {"test_dataloader_opts": {"batch_size": 8,
                                                                                          "num_workers": 2}}),
    "audio_batch_size": ("8", {"batch_size": 8}),
    "audio_dataloader_opts": ("{batch_size: 8, num_workers: 2, shuffle: False, drop_last: False}",
                              {"batch_size": 8, "num_workers": 2}),
    "text_dataloader_opts": ("{batch_size: 64, num_workers: 2, shuffle: False, drop_last: False}",
                             {"text_batch_size": 64}),
    "output_csv_path": ("/tmp/ds.csv", {"ds_pairs_csv": "/tmp/ds.csv"}),
    "output_path": ("/tmp/pairs.csv", {"curation_csv": "/tmp/pairs.csv"}),
}
# Placeholders our YAMLs need filled to be resolved.
FILL = {"data_zs_folder": "/zs", "data_annot_folder": "/annot", "data_folder": "/data", "audio_pathfile": "/list.txt",
        "target_csv_path": "/t.csv", "emb_dir": "/emb"}


@functools.cache
def our_data(path):
    return load_hparams_data(path)


def our_keys(path):
    return {str(k) for k in our_data(path)}


def resolved(path, args, tmp_path):
    """Our YAML resolved with these command-line flags (references substituted, nothing built), as data."""
    from hyperpyyaml import resolve_references

    keys = our_keys(path)
    fill = [f"--{k}={v}" for k, v in FILL.items() if k in keys and not any(a.startswith(f"--{k}=") for a in args)]
    placeholder = getattr(our_data(path).get("output_folder"), "tag", None) == "!PLACEHOLDER"
    if placeholder and not any(a.startswith(("--output_folder=", "--output_base=")) for a in args):
        fill.append("--output_folder=/out")
    _, _, overrides = parse_arguments([os.path.join(REPO, path)] + fill + list(args))
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        text = resolve_references(f, overrides).getvalue()
    out = tmp_path / f"resolved_{len(list(tmp_path.iterdir()))}.yaml"
    out.write_text(text, encoding="utf-8")
    return load_hparams_data(str(out))


def alias_cases():
    """One case per (paper key, our key, our default): each translation once, on the first YAML that has it."""
    cases, seen = [], set()
    for ours, paper in sorted(MATCHING.items()):
        keys = our_keys(ours)
        for key in PAPER[paper]:
            kind, entry = classify(key, keys)
            default = repr(our_data(ours).get(entry.key)) if kind == "alias" else None
            if kind == "alias" and (key, entry.key, default) not in seen:
                seen.add((key, entry.key, default))
                cases.append(pytest.param(ours, key, entry, id=f"{ours}:{key}"))
    return cases


def test_every_alias_has_a_known_answer():
    missing = {c.values[1] for c in alias_cases()} - set(SAMPLES)
    assert not missing, f"add a sample value and its meaning for {sorted(missing)}"


@pytest.mark.parametrize("ours, key, entry", alias_cases())
def test_alias_changes_what_our_key_changes(ours, key, entry, tmp_path):
    """``--<paper key>=v`` resolves to the same YAML as ``--<our key>=v'`` (the known answer), unlike the default."""
    value, meaning = SAMPLES[key]
    if all(our_data(ours).get(k) == v for k, v in meaning.items()):
        value, meaning = SAMPLES["!" + key]  # the sample is our default here: use the other value
    expected = {k: v for k, v in meaning.items() if k in our_keys(ours)}
    assert expected and entry.key in expected, (key, entry.key, meaning)
    with_alias = resolved(ours, [f"--{key}={value}"], tmp_path)
    with_ours = resolved(ours, [f"--{k}={json.dumps(v)}" for k, v in expected.items()], tmp_path)
    default = resolved(ours, [], tmp_path)
    assert with_alias == with_ours
    for k, v in expected.items():
        assert with_alias[k] == v != default[k], (k, with_alias[k], default[k])


@pytest.mark.parametrize("ours", sorted(MATCHING))
def test_all_paper_keys_on_one_command_line(ours, capfd):
    """Every alias and ignored key of the paper code's YAML passes our checks at once; ignored ones warn why."""
    keys = our_keys(ours)
    args, ignored = [], []
    for key in PAPER[MATCHING[ours]]:
        kind, entry = classify(key, keys)
        if kind == "alias":
            args.append(f"--{key}={SAMPLES[key][0]}")
        elif kind == "ignored":
            args.append(f"--{key}=x")
            ignored.append((key, entry.reason))
        elif kind == "run_option":
            args.append(f"--{key}=False")
    param_file, _, overrides = parse_arguments([os.path.join(REPO, ours)] + args)
    check_overrides(param_file, overrides)
    err = capfd.readouterr().err
    for key, reason in ignored:
        assert f"--{key} (a key of the paper code's YAML) is ignored: {reason}" in err
        assert not re.search(rf"^{key}:", overrides, flags=re.M)


@pytest.mark.parametrize("ours", ["hparams/insper/softclap_train.yaml", "hparams/esc/microsoft_zeroshot.yaml",
                                  "hparams/curation/microsoft_audioset_insper_toemb.yaml"])
def test_auto_mix_prec_is_the_speechbrain_switch(ours):
    """The paper code's ``auto_mix_prec: False`` YAML key, given as a flag with a value, is SpeechBrain's switch."""
    path = os.path.join(REPO, ours)
    _, off, overrides = parse_arguments([path, "--auto_mix_prec=False"])
    _, on, _ = parse_arguments([path, "--auto_mix_prec=True"])
    assert (off["auto_mix_prec"], on["auto_mix_prec"], overrides) == (False, True, "")
    with pytest.raises(SystemExit, match="--auto_mix_prec=maybe"):
        parse_arguments([path, "--auto_mix_prec=maybe"])


# ----------------------------------------------------------------- conflicts and errors
def test_alias_and_our_key_with_different_values_is_an_error_naming_both():
    path = os.path.join(REPO, "hparams/insper/softclap_train.yaml")
    with pytest.raises(SystemExit) as err:
        parse_arguments([path, "--freeze_txt_emb=True", "--freeze_text_base=False"])
    assert "--freeze_txt_emb and --freeze_text_base both set freeze_text_base" in str(err.value)
    # The same value twice is no conflict.
    _, _, overrides = parse_arguments([path, "--freeze_txt_emb=True", "--freeze_text_base=True"])
    assert overrides == "freeze_text_base: True"
    # Two aliases of one key, too.
    zs = os.path.join(REPO, "hparams/curation/microsoft_audioset_insper_toemb.yaml")
    with pytest.raises(SystemExit, match="--audio_batch_size and --audio_dataloader_opts both set batch_size"):
        parse_arguments([zs, "--audio_batch_size=8", "--audio_dataloader_opts={batch_size: 16}"])


def test_unknown_keys_are_still_refused():
    path = os.path.join(REPO, "hparams/insper/softclap_train.yaml")
    _, _, overrides = parse_arguments([path, "--freeze_txt_emb_typo=True"])
    with pytest.raises(SystemExit, match="has no key 'freeze_txt_emb_typo'"):
        check_overrides(path, overrides)


def test_a_key_provided_elsewhere_but_absent_is_a_clear_error(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("seed: 1\n", encoding="utf-8")
    message = r"--use_maxacc_ep: a key of the paper code's YAMLs that .*h.yaml does not have yet \(i12-ckpt"
    with pytest.raises(SystemExit, match=message):
        parse_arguments([str(path), "--use_maxacc_ep=True"])


def test_prompt_keeps_its_space():
    """``"this is a sound of "`` loses its trailing space in YAML; the label is still a separate word."""
    path = os.path.join(REPO, "hparams/esc/microsoft_zeroshot.yaml")
    for value in ("this is a sound of ", "this is a sound of"):
        _, _, overrides = parse_arguments([path, f"--text_prompt={value}"])
        assert overrides == 'prompt_templates: ["this is a sound of {label}"]'
    ds = os.path.join(REPO, "hparams/curation/esc_insper_t2t_retr.yaml")
    assert parse_arguments([ds, "--text_prompt=this is a sound of"])[2] == 'prompt_prefix: "this is a sound of "'


def test_bad_loader_options_are_named():
    path = os.path.join(REPO, "hparams/curation/microsoft_audioset_insper_toemb.yaml")
    with pytest.raises(SystemExit, match="--audio_dataloader_opts=.*shuffle: True is not supported"):
        parse_arguments([path, "--audio_dataloader_opts={batch_size: 8, shuffle: True}"])


# ----------------------------------------------------------------- time_stamp
TRAIN = "hparams/insper/microsoft_clap_train.yaml"
TOEMB = "hparams/curation/microsoft_audioset_insper_toemb.yaml"


def test_time_stamp_names_the_papers_folder_only_when_given(tmp_path):
    base = ["--output_base=/o", "--experiment_name=e", "--seed=7"]
    assert resolved(TRAIN, base, tmp_path)["output_folder"] == "/o/e"
    stamped = resolved(TRAIN, base + ["--time_stamp=2024-05-01+13-45-10"], tmp_path)
    assert stamped["output_folder"] == "/o/2024-05-01+13-45-10_seed_7+e"
    assert stamped["save_folder"] == "/o/2024-05-01+13-45-10_seed_7+e/save"
    assert stamped["train_log"] == "/o/2024-05-01+13-45-10_seed_7+e/train_log.txt"
    now = resolved(TRAIN, base + ["--time_stamp=now"], tmp_path)
    assert re.fullmatch(r"/o/\d{4}-\d\d-\d\d\+\d\d-\d\d-\d\d_seed_7\+e", now["output_folder"]), now["output_folder"]
    assert now["output_folder"] == f"/o/{now['time_stamp']}_seed_7+e"
    # An explicit --output_folder wins; the stamp is only recorded.
    explicit = resolved(TRAIN, base + ["--time_stamp=T1", "--output_folder=/mine"], tmp_path)
    assert (explicit["output_folder"], explicit["time_stamp"]) == ("/mine", "T1")
    zeroshot = resolved("hparams/esc/microsoft_zeroshot.yaml", base + ["--time_stamp=T1"], tmp_path)
    assert zeroshot["output_folder"] == "/o/T1_seed_7+e"


def test_embedding_step_takes_the_papers_output_keys(tmp_path):
    """The paper code's embedding YAML names its folder with output_base, experiment_name and time_stamp."""
    fill = ["--audio_pathfile=/l.txt"]
    assert resolved(TOEMB, fill + ["--output_folder=/x"], tmp_path)["output_folder"] == "/x"
    assert resolved(TOEMB, fill + ["--output_base=/o"], tmp_path)["output_folder"] == "/o/audioset_insper_curation"
    stamped = resolved(TOEMB, fill + ["--output_base=/o", "--time_stamp=T", "--seed=2022"], tmp_path)
    assert stamped["output_folder"] == "/o/T_seed_2022+audioset_insper_curation"
    assert stamped["save_folder"] == "/o/T_seed_2022+audioset_insper_curation/save"
    with pytest.raises(SystemExit, match="--time_stamp names a folder under --output_base"):
        parse_arguments([os.path.join(REPO, TOEMB), "--time_stamp=T"])


def test_time_stamp_must_be_a_folder_name_and_now_is_refused_under_torchrun(monkeypatch):
    path = os.path.join(REPO, TRAIN)
    with pytest.raises(SystemExit, match="--time_stamp=a/b: a folder-name suffix"):
        parse_arguments([path, "--time_stamp=a/b"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit, match="--time_stamp=now under torchrun"):
        parse_arguments([path, "--time_stamp=now"])
