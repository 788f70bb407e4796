"""Loading PANNs / MS CLAP checkpoint files: layouts, tolerances, errors."""

import logging
import math
import os
import pickle

import pytest
import torch

from conftest import tiny_clap, write_tiny_bert
import models.checkpoints as checkpoints
from models.checkpoints import (
    CheckpointMismatchError,
    load_clap_checkpoint,
    load_pann_checkpoint,
    read_state_dict,
)
from models.cnn14 import Cnn14

AUDIO = dict(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000, classes_num=7)


def tiny_cnn14(seed):
    torch.manual_seed(seed)
    model = Cnn14(**AUDIO, out_emb=16, width=1 / 16)
    # Non-trivial BN statistics, so that loading them is actually checked.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture
def tiny_bert_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), tokenizer=False)


def seeded_clap(text_model, seed):
    model = tiny_clap(text_model, seed, classes_num=7, out_emb=16, d_proj=8)
    with torch.no_grad():
        model.logit_scale.fill_(seed + 0.5)
    return model


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def assert_different_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------- PANNs


@pytest.mark.parametrize("layout", ["model", "module_prefix", "state_dict", "bare"])
def test_pann_roundtrip(tmp_path, layout):
    source, target = tiny_cnn14(0), tiny_cnn14(1)
    assert_different_state(source, target)
    sd = source.state_dict()
    if layout == "module_prefix":
        obj = {"model": {f"module.{k}": v for k, v in sd.items()}}
    elif layout == "state_dict":
        obj = {"state_dict": sd, "epoch": 3}
    elif layout == "bare":
        obj = sd
    else:
        obj = {"model": sd, "iteration": 660000}
    path = tmp_path / "Cnn14_mAP=0.431.pth"
    torch.save(obj, path)
    assert load_pann_checkpoint(target, path) is target
    assert_same_state(source, target)
    wav = torch.randn(2, 16000)
    with torch.no_grad():
        torch.testing.assert_close(source.eval()(wav), target.eval()(wav))


def test_pann_missing_bn_counters_tolerated(tmp_path):
    source, target = tiny_cnn14(0), tiny_cnn14(1)
    sd = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"model": sd}, tmp_path / "old.pth")
    load_pann_checkpoint(target, tmp_path / "old.pth")
    torch.testing.assert_close(target.bn0.running_mean, source.bn0.running_mean)


def test_loaded_melw_is_used(tmp_path):
    source, target = tiny_cnn14(0), tiny_cnn14(0)
    sd = source.state_dict()
    sd["logmel_extractor.melW"] = sd["logmel_extractor.melW"] * 0.5
    torch.save({"model": sd}, tmp_path / "melw.pth")
    load_pann_checkpoint(target, tmp_path / "melw.pth")
    wav = 0.1 * torch.randn(2, 16000)
    with torch.no_grad():
        before = source.logmel(wav)
        after = target.logmel(wav)
        out_before = source.eval()(wav)["embedding"]
        out_after = target.eval()(wav)["embedding"]
    torch.testing.assert_close(after, before + 10 * math.log10(0.5), atol=1e-4, rtol=0)
    assert not torch.allclose(out_before, out_after)


def test_loaded_stft_kernels_are_used(tmp_path):
    source, target = tiny_cnn14(0), tiny_cnn14(0)
    sd = source.state_dict()
    sd["spectrogram_extractor.stft.conv_imag.weight"] = torch.zeros_like(
        sd["spectrogram_extractor.stft.conv_imag.weight"]
    )
    torch.save({"model": sd}, tmp_path / "kernels.pth")
    load_pann_checkpoint(target, tmp_path / "kernels.pth")
    assert not target.spectrogram_extractor.stft.uses_fft
    wav = 0.1 * torch.randn(1, 16000)
    with torch.no_grad():
        real, _ = source.spectrogram_extractor.stft(wav)
        torch.testing.assert_close(target.spectrogram_extractor(wav), real.square(), atol=1e-4, rtol=1e-4)


def test_pann_mismatch_names_every_problem(tmp_path):
    sd = tiny_cnn14(0).state_dict()
    sd["conv_block1.conv_1.weight"] = sd.pop("conv_block1.conv1.weight")
    sd["extra_head.weight"] = torch.zeros(3)
    sd["fc_audioset.weight"] = torch.zeros(9, 16)
    path = tmp_path / "wrong.pth"
    torch.save({"model": sd}, path)
    target = tiny_cnn14(1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        load_pann_checkpoint(target, path)
    message = str(info.value)
    assert str(path) in message
    assert "PANNs Cnn14" in message
    assert "missing keys (1)" in message and "conv_block1.conv1.weight" in message
    assert "unexpected keys (2)" in message
    assert "conv_block1.conv_1.weight" in message and "extra_head.weight" in message
    assert "fc_audioset.weight: file (9, 16) vs model (7, 16)" in message
    assert info.value.missing == ["conv_block1.conv1.weight"]
    # Nothing was loaded.
    for key, value in target.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_mismatch_lists_are_truncated(tmp_path):
    path = tmp_path / "clap_as_pann.pth"
    torch.save({"model": {f"audio_encoder.base.{k}": v for k, v in tiny_cnn14(0).state_dict().items()}}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_pann_checkpoint(tiny_cnn14(1), path)
    message = str(info.value)
    n = len(tiny_cnn14(1).state_dict())
    assert f"missing keys ({n})" in message
    assert f"... and {n - 20} more" in message
    assert len(message.splitlines()) < 60


def test_file_without_state_dict(tmp_path):
    torch.save({"epoch": 3, "note": "no weights"}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointMismatchError, match="expected a PANNs Cnn14 checkpoint"):
        load_pann_checkpoint(tiny_cnn14(0), tmp_path / "empty.pth")


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope" / "Cnn14_mAP=0.431.pth"
    with pytest.raises(FileNotFoundError, match="Cnn14_mAP=0.431.pth"):
        load_pann_checkpoint(tiny_cnn14(0), path)


class _Payload:
    """Unpickling this calls os.makedirs(marker): arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": tiny_cnn14(0).state_dict(), "extra": _Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        read_state_dict(path)
    with pytest.raises(pickle.UnpicklingError):
        load_pann_checkpoint(tiny_cnn14(0), path)
    assert not marker.exists()
    # The payload is real: an unsafe load would have run it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_torch_load_called_with_weights_only(tmp_path, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "load", spy)
    torch.save({"model": {"w": torch.zeros(1)}}, tmp_path / "w.pth")
    read_state_dict(tmp_path / "w.pth")
    assert calls and calls[0].get("weights_only") is True
    assert calls[0].get("map_location") == "cpu"


# ------------------------------------------------------------------ MS CLAP


def clap_file_state(model):
    """The model's state dict as an MS CLAP file has it (older transformers
    also saved the BERT position_ids buffer)."""
    sd = dict(model.state_dict())
    sd["caption_encoder.base.embeddings.position_ids"] = torch.arange(512)[None]
    return sd


@pytest.mark.parametrize("prefix", ["", "module."])
def test_clap_roundtrip(tmp_path, tiny_bert_dir, prefix, caplog):
    source, target = seeded_clap(tiny_bert_dir, 0), seeded_clap(tiny_bert_dir, 1)
    assert_different_state(source, target)
    sd = clap_file_state(source)
    assert "caption_encoder.base.embeddings.position_ids" not in target.state_dict()
    assert any(k.startswith("caption_encoder.base.pooler.") for k in sd)
    path = tmp_path / "CLAP_weights_2022.pth"
    torch.save({"model": {prefix + k: v for k, v in sd.items()}}, path)
    with caplog.at_level(logging.INFO, logger="models.checkpoints"):
        assert load_clap_checkpoint(target, path) is target
    assert "position_ids" in caplog.text
    assert_same_state(source, target)
    wav = torch.randn(2, 16000)
    ids = torch.randint(0, 1000, (2, 5))
    with torch.no_grad():
        a = source.eval()(wav, ids, torch.ones_like(ids))
        b = target.eval()(wav, ids, torch.ones_like(ids))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


def test_clap_pooler_absent_from_file(tmp_path, tiny_bert_dir, caplog):
    source, target = seeded_clap(tiny_bert_dir, 0), seeded_clap(tiny_bert_dir, 1)
    sd = {k: v for k, v in clap_file_state(source).items() if ".pooler." not in k}
    torch.save({"model": sd}, tmp_path / "nopooler.pth")
    with caplog.at_level(logging.INFO, logger="models.checkpoints"):
        load_clap_checkpoint(target, tmp_path / "nopooler.pth")
    assert "pooler" in caplog.text
    torch.testing.assert_close(target.caption_encoder.projection.linear1.weight,
                               source.caption_encoder.projection.linear1.weight)


def test_clap_pooler_absent_from_model(tmp_path, tiny_bert_dir, caplog):
    source, target = seeded_clap(tiny_bert_dir, 0), seeded_clap(tiny_bert_dir, 1)
    target.caption_encoder.base.pooler = None
    torch.save({"model": clap_file_state(source)}, tmp_path / "pooler.pth")
    with caplog.at_level(logging.INFO, logger="models.checkpoints"):
        load_clap_checkpoint(target, tmp_path / "pooler.pth")
    assert "caption_encoder.base.pooler.dense.weight" in caplog.text
    ids = torch.randint(0, 1000, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(
            target.eval().encode_text(ids, torch.ones_like(ids)), source.eval().encode_text(ids, torch.ones_like(ids))
        )


def test_clap_mismatch(tmp_path, tiny_bert_dir):
    sd = clap_file_state(seeded_clap(tiny_bert_dir, 0))
    del sd["logit_scale"]
    sd["caption_encoder.base.encoder.layer.2.output.dense.weight"] = torch.zeros(32, 37)
    sd["audio_encoder.projection.linear1.weight"] = torch.zeros(8, 2048)
    path = tmp_path / "bad_clap.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_clap_checkpoint(seeded_clap(tiny_bert_dir, 1), path)
    message = str(info.value)
    assert "MS CLAP checkpoint" in message and str(path) in message
    assert "missing keys (1)" in message and "logit_scale" in message
    assert "unexpected keys (1)" in message and "caption_encoder.base.encoder.layer.2.output.dense.weight" in message
    assert "audio_encoder.projection.linear1.weight: file (8, 2048) vs model (8, 16)" in message
    # Tolerated keys are not reported.
    assert "position_ids" not in message and "pooler" not in message


def test_pann_file_is_not_a_clap_file(tmp_path, tiny_bert_dir):
    torch.save({"model": tiny_cnn14(0).state_dict()}, tmp_path / "pann.pth")
    with pytest.raises(CheckpointMismatchError, match="logit_scale"):
        load_clap_checkpoint(seeded_clap(tiny_bert_dir, 0), tmp_path / "pann.pth")
