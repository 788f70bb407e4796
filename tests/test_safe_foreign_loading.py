"""Safe loading of checkpoints written by other training code (LAION-CLAP's .pt files), and the --model presets.

LAION's released ``.pt`` files pickle numpy scalars (a learning rate in the
optimizer state) and are reported to use pickle protocol 4, whose ``FRAME``
opcode PyTorch's weights-only unpickler lacks. They load through
:func:`models.checkpoints.safe_torch_load`'s restricted unpickler; anything
outside its allowlist is refused by name and never run.
"""

import os

import numpy as np
import pytest
import torch
import yaml

from experiment.command_line import parse_arguments
from models.checkpoints import (
    RESTRICTED_GLOBALS, UnreadableCheckpointError, read_state_dict, restricted_torch_load, safe_torch_load,
)
from models.factory import audio_options_mapping, ARCHITECTURE_KEYS
from models.presets import PRESET_DIR, PRESET_KEYS, PRESETS, load_preset, preset_names


class _Payload:
    """Unpickling this calls os.makedirs(marker): arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _laion_like(tmp_path, protocol, extra=None):
    """A checkpoint laid out as LAION's training saves it: state_dict, epoch, optimizer with numpy scalars."""
    state = {"module.audio_branch.bn0.weight": torch.arange(4.0), "module.logit_scale_a": torch.tensor(2.5)}
    obj = {"epoch": 45, "name": "run", "state_dict": state,
           "optimizer": {"state": {}, "param_groups": [{"lr": np.float64(1e-5), "betas": (0.9, 0.99),
                                                        "step": np.int64(7), "params": [0, 1]}]},
           "scores": np.arange(3, dtype=np.float32)}
    obj.update(extra or {})
    path = tmp_path / f"laion_p{protocol}.pt"
    torch.save(obj, path, pickle_protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [2, 4])
def test_numpy_scalars_load_safely(tmp_path, protocol):
    path = _laion_like(tmp_path, protocol)
    obj = safe_torch_load(path, map_location="cpu")
    assert obj["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-5)
    assert int(obj["optimizer"]["param_groups"][0]["step"]) == 7
    assert obj["scores"].tolist() == [0.0, 1.0, 2.0]
    state = read_state_dict(path)
    assert sorted(state) == ["audio_branch.bn0.weight", "logit_scale_a"]
    torch.testing.assert_close(state["audio_branch.bn0.weight"], torch.arange(4.0))


def test_protocol_4_needs_the_fallback(tmp_path):
    """The reason for the fallback: PyTorch's weights-only unpickler cannot read protocol 4 at all."""
    path = tmp_path / "p4.pt"
    torch.save({"w": torch.ones(1)}, path, pickle_protocol=4)
    with pytest.raises(Exception, match="Unsupported operand 149|Weights only load failed"):
        torch.load(path, weights_only=True)
    assert restricted_torch_load(path)["w"].tolist() == [1.0]


@pytest.mark.parametrize("protocol", [2, 4])
def test_forbidden_global_is_refused_by_name(tmp_path, protocol):
    marker = tmp_path / "payload_ran"
    path = _laion_like(tmp_path, protocol, {"hook": _Payload(marker)})
    with pytest.raises(UnreadableCheckpointError) as info:
        read_state_dict(path, "expected a LAION-CLAP checkpoint")
    message = str(info.value)
    assert "os.makedirs" in message and "refused" in message and str(path) in message, message
    assert "weights_only=False" not in message
    assert not marker.exists()
    assert "os.makedirs" not in RESTRICTED_GLOBALS and "builtins.eval" not in RESTRICTED_GLOBALS


def test_fallback_ignores_the_force_variable(tmp_path, monkeypatch):
    """Recipes set TORCH_FORCE_WEIGHTS_ONLY_LOAD=1; the restricted unpickler still reads protocol 4, and restores it."""
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    path = _laion_like(tmp_path, 4)
    assert "audio_branch.bn0.weight" in read_state_dict(path)
    assert os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1"


# ------------------------------------------------------------------ presets
EXPECTED_PRESETS = {
    "ms_clap_2022", "ms_clap_2023", "laion_630k", "laion_630k_audioset", "laion_630k_fusion",
    "laion_630k_audioset_fusion", "laion_music_audioset", "laion_clap_htsat_unfused", "laion_clap_htsat_fused",
    "laion_larger_clap_general",
}


def test_every_preset_holds_exactly_the_model_keys():
    assert EXPECTED_PRESETS <= set(preset_names())
    assert set(ARCHITECTURE_KEYS) <= set(PRESET_KEYS)
    for name in EXPECTED_PRESETS:
        assert set(PRESETS[name]) == set(PRESET_KEYS), name


def test_preset_values_match_the_reference_configs():
    """Known answers from laion_clap/clap_module/model_configs/HTSAT-*.json, msclap's configs, HF ClapConfig."""
    from models.factory import MS_CLAP_2022

    assert {k: PRESETS["ms_clap_2022"][k] for k in MS_CLAP_2022} == MS_CLAP_2022
    laion_dir = None
    try:
        import importlib.util

        spec = importlib.util.find_spec("laion_clap")
        laion_dir = os.path.join(os.path.dirname(spec.origin), "clap_module", "model_configs") if spec else None
    except (ImportError, ValueError):
        pass
    for name, config_name in (("laion_630k_audioset", "HTSAT-tiny"), ("laion_music_audioset", "HTSAT-base")):
        preset = PRESETS[name]
        if laion_dir and os.path.isdir(laion_dir):
            with open(os.path.join(laion_dir, config_name + ".json")) as f:
                audio = yaml.safe_load(f)["audio_cfg"]
            assert (preset["sample_rate"], preset["window_size"], preset["hop_size"], preset["mel_bins"],
                    preset["fmin"], preset["fmax"], preset["classes_num"]) == (
                audio["sample_rate"], audio["window_size"], audio["hop_size"], audio["mel_bins"], audio["fmin"],
                audio["fmax"], audio["class_num"])
            assert preset["audio_options"]["size"] == audio["model_name"]
            assert preset["eval_duration"] * preset["sample_rate"] == audio["clip_samples"]
        assert (preset["text_model"], preset["d_proj"], preset["projection"], preset["text_pooling"]) == (
            "roberta-base", 512, "laion", "pooler")
    assert PRESETS["laion_music_audioset"]["out_emb"] == 1024 and PRESETS["laion_630k"]["out_emb"] == 768
    for name in ("laion_630k_fusion", "laion_630k_audioset_fusion", "laion_clap_htsat_fused"):
        assert PRESETS[name]["audio_options"]["enable_fusion"] is True
    ms = PRESETS["ms_clap_2023"]
    assert (ms["sample_rate"], ms["hop_size"], ms["eval_duration"], ms["text_model"], ms["text_max_length"],
            ms["d_proj"], ms["out_emb"], ms["audio_options"]["filterbank_sample_rate"], ms["fmax"]) == (
        44100, 320, 7.0, "gpt2", 77, 1024, 768, 32000, 14000)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(SystemExit, match="laion_630k_audioset"):
        load_preset("laion_nonexistent")


def _yaml_with_model_keys(tmp_path, keys=PRESET_KEYS):
    path = tmp_path / "h.yaml"
    path.write_text("".join(f"{k}: null\n" for k in keys) + "d_proj_paper: 1\nmodel: null\nseed: 1\n")
    return str(path)


def test_model_flag_expands_with_explicit_flags_winning(tmp_path):
    path = _yaml_with_model_keys(tmp_path)
    _, _, overrides = parse_arguments([path, "--model=laion_630k_fusion", "--d_proj=256", "--seed=3"])
    values = yaml.safe_load(overrides)
    assert values["d_proj"] == 256 and values["seed"] == 3 and "model" not in values
    # A mapping flag reaches the YAML whole, as a YAML string (experiment.command_line._whole_mappings).
    assert audio_options_mapping(values["audio_options"]) == PRESETS["laion_630k_fusion"]["audio_options"]
    assert values["sample_rate"] == 48000 and values["text_model"] == "roberta-base"
    # a YAML file of model keys is a preset too
    _, _, overrides = parse_arguments([path, f"--model={os.path.join(PRESET_DIR, 'ms_clap_2023.yaml')}"])
    assert "text_pooling: last_token" in overrides.splitlines()


def test_model_flag_needs_the_keys_in_the_yaml(tmp_path):
    path = _yaml_with_model_keys(tmp_path, [k for k in PRESET_KEYS if k != "audio_options"])
    with pytest.raises(SystemExit, match="audio_options"):
        parse_arguments([path, "--model=laion_630k"])
    nomodel = tmp_path / "join.yaml"
    nomodel.write_text("emb_dir: null\n")
    with pytest.raises(SystemExit, match="builds no model"):
        parse_arguments([str(nomodel), "--model=laion_630k"])


def test_model_flag_is_accepted_by_every_recipe_yaml():
    """Every YAML that builds a model takes every preset: keys present, values of the right type and choice."""
    import glob

    from experiment.checks import check_overrides

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    yamls = [p for p in sorted(glob.glob(os.path.join(repo, "hparams", "*", "*.yaml")))
             if "models.factory.create_model" in open(p).read()]
    assert len(yamls) >= 20
    for path in yamls:
        for name in ("laion_630k_audioset_fusion", "ms_clap_2023", "laion_music_audioset"):
            _, _, overrides = parse_arguments([path, f"--model={name}", "--laion_ckpt_path=/x/630k-audioset-best.pt"])
            check_overrides(path, overrides)
            values = yaml.safe_load(overrides)
            assert values["audioenc_name"] == "HTSAT" and values["laion_ckpt_path"] == "/x/630k-audioset-best.pt"
