"""HTS-AT (models/htsat.py): shapes, options, errors, determinism and parity with the reference code.

The parity tests build the reference modules of ``laion-clap`` (its ``clap_module``) and ``msclap`` directly,
with random weights, load their state dict into ours and compare embeddings on the same waveforms
(max abs difference over the reference's norm, within 1e-4). They are skipped when the reference packages
are absent (CI installs them from requirements-refs.txt).
"""

from __future__ import annotations

import pytest
import torch

from models.htsat import HTSAT, fusion_chunk_starts, htsat_config

# A small HTS-AT for fast tests: 64x64 image, 16-wide tokens, one block per stage, freq_ratio 2
# (32 mel bins), window 8 (the last three stages are smaller than the window: no shift, whole stage).
SMALL = dict(size=None, spec_size=64, patch_size=4, patch_stride=4, embed_dim=16, depths=(1, 2, 1, 1),
             num_heads=(1, 2, 2, 4), swin_window_size=8)
SMALL_FRONT = dict(sample_rate=16000, window_size=512, hop_size=160, mel_bins=32, fmin=50, fmax=8000)


def small_htsat(seed=0, **options):
    torch.manual_seed(seed)
    return HTSAT(**SMALL_FRONT, classes_num=5, **dict(SMALL, **options))


def rel_diff(ours, ref):
    """Max abs difference over the reference's norm (the acceptance measure)."""
    return float((ours - ref).abs().max() / ref.norm())


def test_forward_shapes_and_buffers():
    net = small_htsat().eval()
    with torch.no_grad():
        out = net(torch.randn(3, 16000))
    assert out["embedding"].shape == (3, 128) and out["clipwise_output"].shape == (3, 5)
    assert torch.all((out["clipwise_output"] > 0) & (out["clipwise_output"] < 1))
    keys = net.state_dict().keys()
    assert not any(k.endswith(("attn_mask", "relative_position_index")) for k in keys)
    assert "spectrogram_extractor.stft.conv_real.weight" in keys and "logmel_extractor.melW" in keys
    assert net.long_audio == "chunk" and small_htsat(enable_fusion=True).long_audio == "fusion"


def test_training_step_backpropagates():
    net = small_htsat().train()
    out = net(torch.randn(2, 8000))
    out["embedding"].sum().backward()
    assert net.patch_embed.proj.weight.grad is not None
    assert net.layers[0].blocks[0].attn.relative_position_bias_table.grad.abs().sum() > 0


def test_sdpa_matches_explicit_attention():
    a, b = small_htsat(seed=1).eval(), small_htsat(seed=1, use_sdpa=False).eval()
    wav = torch.randn(2, 12000)
    with torch.no_grad():
        assert rel_diff(a(wav)["embedding"], b(wav)["embedding"]) < 1e-6


def test_too_long_input_is_refused_unless_fused():
    net = small_htsat().eval()
    too_long = torch.randn(1, 160 * net.max_frames)  # max_frames + 1 frames
    with pytest.raises(ValueError, match="chunk longer audio"):
        net(too_long)


def test_sizes():
    assert htsat_config("tiny")["num_features"] == 768
    assert htsat_config("base")["num_features"] == 1024 and htsat_config("base")["depths"] == (2, 2, 12, 2)
    assert htsat_config("large")["embed_dim"] == 256
    with pytest.raises(ValueError, match="size"):
        htsat_config("huge")


def test_registry_and_factory(tiny_bert):
    from models.factory import MODEL_KEYS, create_model
    from models.registry import build_audio_backbone

    assert "audio_options" in MODEL_KEYS
    front = dict(SMALL_FRONT, classes_num=5)
    with pytest.raises(ValueError, match="out_emb"):
        build_audio_backbone("HTSAT", out_emb=64, **front, **SMALL)
    with pytest.raises(ValueError, match="audio_width"):
        build_audio_backbone("HTSAT", out_emb=128, width=0.5, **front, **SMALL)
    with pytest.raises(ValueError, match="audio_options"):
        build_audio_backbone("Cnn14", out_emb=32, width=1 / 16, **front, size="tiny")
    model = create_model("HTSAT", **SMALL_FRONT, classes_num=5, out_emb=128, text_model=tiny_bert, txt_emb_dim=32,
                         d_proj=16, audio_options=dict(SMALL)).eval()
    assert type(model.audio_encoder.base).__name__ == "HTSAT"
    with torch.no_grad():
        emb = model.encode_audio(torch.randn(2, 16000))
    assert emb.shape == (2, 16) and torch.allclose(emb.norm(dim=-1), torch.ones(2))


def test_fusion_chunk_starts_are_middle_of_laion_ranges():
    # LAION: np.array_split(range(total - chunk + 1), 3), one random choice per part; ours: the middle.
    assert fusion_chunk_starts(1001 + 8, 1001) == [1, 4, 7]
    assert fusion_chunk_starts(1002, 1001) == [0, 1, 0]  # empty third part -> 0, as LAION's [0]
