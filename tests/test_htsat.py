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
    a, b = small_htsat(seed=1).eval(), small_htsat(seed=1, use_sdpa=True).eval()
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
    with pytest.raises(ValueError, match=r"audio_options \['fusion'\] are not options of HTSAT"):
        build_audio_backbone("HTSAT", out_emb=128, **front, **SMALL, fusion=True)
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


# ---------------------------------------------------------------- reference code (laion-clap, msclap)
def _reference_root(package):
    import importlib.util

    spec = importlib.util.find_spec(package)  # finds the package without running its __init__
    if spec is None:
        pytest.skip(f"reference package {package} not installed (pip install --no-deps -r requirements-refs.txt)")
    return spec.submodule_search_locations[0]


def _import_reference(module, packages, stubs=()):
    """Import ``module`` of a reference package without running the packages' ``__init__`` files.

    ``laion_clap/__init__.py`` and ``msclap/__init__.py`` import everything (tokenizers downloaded at import
    time, h5py, torchvision, wget ...). Their packages are replaced by empty package objects while the one
    module is imported, the heavy optional modules in ``stubs`` by empty modules; every name added to
    ``sys.modules`` is removed afterwards, so other tests see an untouched interpreter.
    """
    import importlib
    import importlib.util
    import sys
    import types

    before = dict(sys.modules)
    try:
        for name, attrs in stubs:
            stub = types.ModuleType(name)
            stub.__dict__.update(attrs)
            sys.modules[name] = stub
        for name in packages:
            pkg = types.ModuleType(name)
            pkg.__path__ = list(importlib.util.find_spec(name).submodule_search_locations)
            sys.modules[name] = pkg
        return importlib.import_module(module)
    finally:
        for name in set(sys.modules) - set(before):
            del sys.modules[name]
        sys.modules.update(before)  # a stubbed module that was already imported gets its real self back


@pytest.fixture(scope="module")
def laion():
    """LAION-CLAP's ``clap_module.htsat`` and its fused data pipeline (``get_mel``, ``get_audio_features``)."""
    import ast
    import os
    from contextlib import suppress

    import numpy as np
    import torch.nn.functional as F
    import torchaudio

    root = _reference_root("laion_clap")
    htsat = _import_reference(
        "laion_clap.clap_module.htsat", ["laion_clap", "laion_clap.clap_module"],
        stubs=[("h5py", {}), ("torchvision", {}), ("torchvision.ops", {}),
               ("torchvision.ops.misc", {"FrozenBatchNorm2d": torch.nn.BatchNorm2d})])
    # laion_clap/training/data.py downloads tokenizers when imported: run only its two functions' source.
    with open(os.path.join(root, "training", "data.py"), encoding="utf-8") as f:
        text = f.read()
    source = "\n\n".join(ast.get_source_segment(text, node) for node in ast.parse(text).body
                         if isinstance(node, ast.FunctionDef) and node.name in ("get_mel", "get_audio_features"))

    class Resize:  # torchvision.transforms.Resize on a tensor: bilinear, no antialias (see the contract)
        def __init__(self, size):
            self.size = list(size)

        def __call__(self, x):
            return F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False, antialias=False)[0]

    namespace = {"np": np, "torch": torch, "F": F, "torchaudio": torchaudio, "suppress": suppress,
                 "torchvision": type("tv", (), {"transforms": type("tr", (), {"Resize": Resize})})}
    exec(compile(source, "laion_clap/training/data.py", "exec"), namespace)
    return {"htsat": htsat, "get_mel": namespace["get_mel"], "get_audio_features": namespace["get_audio_features"]}


@pytest.fixture(scope="module")
def msclap_htsat():
    """MS CLAP's ``models.htsat`` (the 2023 audio tower) and its ``config`` module."""
    _reference_root("msclap")
    return _import_reference("msclap.models.htsat", ["msclap", "msclap.models"])


def _randomise(module, seed):
    """Perturb every parameter and BatchNorm statistic so that parity cannot hold by accident."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "extractor" in name:  # the front end's frozen kernels stay the formula
                continue
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.5 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return module


def _laion_model(laion, front, arch, classes=5, fusion=False, seed=0):
    from types import SimpleNamespace

    cfg = SimpleNamespace(model_name="tiny", class_num=classes, **front)
    torch.manual_seed(seed)
    if arch.get("size"):
        cfg.model_name = arch["size"]
        ref = laion["htsat"].create_htsat_model(cfg, enable_fusion=fusion, fusion_type="aff_2d" if fusion else "None")
    else:
        ref = laion["htsat"].HTSAT_Swin_Transformer(
            spec_size=arch["spec_size"], patch_size=arch["patch_size"], patch_stride=(arch["patch_stride"],) * 2,
            num_classes=classes, embed_dim=arch["embed_dim"], depths=list(arch["depths"]),
            num_heads=list(arch["num_heads"]), window_size=arch["swin_window_size"], config=cfg,
            enable_fusion=fusion, fusion_type="aff_2d" if fusion else "None")
    return _randomise(ref, seed).eval()


def _ours_from(ref, front, arch, classes=5, prefix="", **options):
    from models.htsat import from_reference_state_dict

    ours = HTSAT(**front, classes_num=classes, **arch, **options).eval()
    ours.load_state_dict(from_reference_state_dict(ref.state_dict(), prefix=prefix), strict=True)
    return ours


def _audio(batch, samples, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000.0
    tones = torch.sin(2 * torch.pi * 440.0 * t * (1 + torch.rand(batch, 1, generator=gen)))
    return 0.3 * tones + 0.05 * torch.randn(batch, samples, generator=gen)


def test_frontend_matches_torchlibrosa_and_torchaudio(laion):
    front = dict(sample_rate=48000, window_size=1024, hop_size=480, mel_bins=64, fmin=50, fmax=14000)
    ref = _laion_model(laion, front, SMALL_FOR_64_MELS)
    wav = _audio(2, 48000)
    with torch.no_grad():
        ref_logmel = ref.logmel_extractor(ref.spectrogram_extractor(wav))
        ours = HTSAT(**front, classes_num=5, **SMALL_FOR_64_MELS).eval()
        assert rel_diff(ours.logmel(wav), ref_logmel) < 1e-4
        htk = HTSAT(**front, classes_num=5, frontend="htk", **SMALL_FOR_64_MELS).eval()
        ref_htk = torch.stack([laion["get_mel"](w, front) for w in wav])[:, None]
        assert rel_diff(htk.logmel(wav), ref_htk) < 1e-4
        assert rel_diff(htk.logmel(wav), ref_logmel) > 1e-3  # the two mel scales do differ


# 64 mel bins need a spec_size of 128 at least (freq_ratio 2) in a small model.
SMALL_FOR_64_MELS = dict(SMALL, spec_size=128)


def test_parity_laion_small(laion):
    ref = _laion_model(laion, SMALL_FRONT, SMALL)
    ours = _ours_from(ref, SMALL_FRONT, SMALL)
    wav = _audio(3, 16000)
    with torch.no_grad():
        expected, got = ref({"waveform": wav}), ours(wav)
    assert rel_diff(got["embedding"], expected["embedding"]) < 1e-4
    assert rel_diff(got["clipwise_output"], expected["clipwise_output"]) < 1e-4


def test_parity_msclap_small(msclap_htsat):
    from types import SimpleNamespace

    # MS CLAP 2023's front-end fact in small: 44.1 kHz audio, filterbank designed for 32 kHz.
    cfg = SimpleNamespace(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=32, fmin=50, fmax=14000,
                          enable_tscam=True, htsat_attn_heatmap=False, loss_type="clip_bce",
                          enable_repeat_mode=False)
    torch.manual_seed(0)
    ref = msclap_htsat.HTSAT_Swin_Transformer(
        spec_size=64, patch_size=4, patch_stride=(4, 4), num_classes=5, embed_dim=16, depths=[1, 2, 1, 1],
        num_heads=[1, 2, 2, 4], window_size=8, config=cfg)
    ref = _randomise(ref, 1).eval()
    front = dict(sample_rate=44100, window_size=1024, hop_size=320, mel_bins=32, fmin=50, fmax=14000)
    # Saved as MS CLAP stores it (audio_encoder.base.htsat.*), converted by prefix.
    wrapped = {f"htsat.{k}": v for k, v in ref.state_dict().items()}
    ours = HTSAT(**front, classes_num=5, filterbank_sample_rate=32000, **SMALL).eval()
    from models.htsat import from_reference_state_dict

    ours.load_state_dict(from_reference_state_dict(wrapped, prefix="htsat."), strict=True)
    wav = _audio(2, 30000)  # 94 frames: within the small model's 128-frame window
    with torch.no_grad():
        expected, got = ref(wav), ours(wav)
    assert rel_diff(got["embedding"], expected["latent_output"]) < 1e-4
    assert rel_diff(got["clipwise_output"], expected["clipwise_output"]) < 1e-4


# ---------------------------------------------------------------- feature fusion
FUSION_CLIP = 160 * 120  # 121 frames per window, within the small model's 128


def test_fusion_input_is_laions_mel_fusion_with_our_chunks(laion, monkeypatch):
    import numpy as np

    net = small_htsat(enable_fusion=True, frontend="htk", clip_samples=FUSION_CLIP).eval()
    wav = _audio(1, 3 * FUSION_CLIP + 77)
    with torch.no_grad():
        mel = net.logmel(wav)
        ours, longer = net.fusion_input(mel)
    starts = fusion_chunk_starts(mel.shape[2], net.chunk_frames())
    pending = iter(starts)

    def choice(candidates):  # LAION draws each start at random: give it ours, which must be a candidate
        start = next(pending)
        assert start in np.asarray(candidates)
        return start

    monkeypatch.setattr(np.random, "choice", choice)
    sample = laion["get_audio_features"]({}, wav[0], FUSION_CLIP, "fusion", "repeatpad", SMALL_FRONT)
    assert longer and bool(sample["longer"]) and len(set(starts)) == 3
    assert ours.shape == (1, 4, net.chunk_frames(), 32)
    assert rel_diff(ours[0], sample["mel_fusion"]) < 1e-4
    # A clip of exactly one window: LAION stacks four copies and longer=False; so do we.
    with torch.no_grad():
        one, longer = net.fusion_input(net.logmel(wav[:, :FUSION_CLIP]))
    sample = laion["get_audio_features"]({}, wav[0, :FUSION_CLIP], FUSION_CLIP, "fusion", "repeatpad", SMALL_FRONT)
    assert not longer and not bool(sample["longer"])
    assert rel_diff(one[0], sample["mel_fusion"]) < 1e-4


@pytest.mark.parametrize("samples", [3 * FUSION_CLIP + 77, FUSION_CLIP - 3000])
def test_parity_laion_fused_small(laion, samples):
    ref = _laion_model(laion, SMALL_FRONT, SMALL, fusion=True, seed=2)
    ours = _ours_from(ref, SMALL_FRONT, SMALL, enable_fusion=True, frontend="htk", clip_samples=FUSION_CLIP)
    wav = _audio(2, samples, seed=3)
    with torch.no_grad():
        mel_fusion, longer = ours.fusion_input(ours.logmel(wav))
        expected = ref({"mel_fusion": mel_fusion.contiguous(), "longer": torch.tensor([longer] * 2)})
        got = ours(wav)
    assert longer == (samples > FUSION_CLIP)
    assert rel_diff(got["embedding"], expected["embedding"]) < 1e-4
    assert rel_diff(got["clipwise_output"], expected["clipwise_output"]) < 1e-4


def test_same_long_file_same_embedding():
    fused = small_htsat(seed=4, enable_fusion=True, frontend="htk", clip_samples=FUSION_CLIP).eval()
    _randomise(fused, 4)
    unfused = small_htsat(seed=4).eval()
    long_wav = _audio(2, 4 * FUSION_CLIP + 500, seed=5)
    with torch.no_grad():
        first, second = fused(long_wav)["embedding"], fused(long_wav)["embedding"]
        assert torch.equal(first, second)
        # The chunks matter (the fused embedding is not the global view's alone).
        mel_fusion, _ = fused.fusion_input(fused.logmel(long_wav))
        assert rel_diff(fused.forward_mel(mel_fusion, longer=False)["embedding"], first) > 1e-3
        window = long_wav[:, : 160 * (unfused.max_frames - 1)]
        assert torch.equal(unfused(window)["embedding"], unfused(window)["embedding"])


# ---------------------------------------------------------------- published sizes and front ends
LAION_FRONT = dict(sample_rate=48000, window_size=1024, hop_size=480, mel_bins=64, fmin=50, fmax=14000)
MSCLAP_2023_FRONT = dict(sample_rate=44100, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000)


@pytest.mark.slow  # a published size (the small parity tests above are fast)
def test_parity_laion_tiny_full(laion):
    ref = _laion_model(laion, LAION_FRONT, {"size": "tiny"}, classes=527, seed=5)
    ours = _ours_from(ref, LAION_FRONT, {"size": "tiny"}, classes=527)
    wav = _audio(2, 480000, seed=6)  # 10 s at 48 kHz: 1001 frames, stretched to 1024
    with torch.no_grad():
        expected, got = ref({"waveform": wav}), ours(wav)
    assert rel_diff(got["embedding"], expected["embedding"]) < 1e-4
    assert rel_diff(got["clipwise_output"], expected["clipwise_output"]) < 1e-4


@pytest.mark.slow  # a published size (the small parity tests above are fast)
def test_parity_msclap_2023_tiny_full(msclap_htsat):
    # msclap's HTSATWrapper builds HTSAT_Swin_Transformer(config=config): msclap/models/config.py
    # (32 kHz filterbank, hop 320, tiny), fed 7 s read at 44.1 kHz.
    torch.manual_seed(7)
    ref = _randomise(msclap_htsat.HTSAT_Swin_Transformer(config=msclap_htsat.config), 7).eval()
    from models.htsat import from_reference_state_dict

    ours = HTSAT(**MSCLAP_2023_FRONT, classes_num=527, size="tiny", filterbank_sample_rate=32000).eval()
    ours.load_state_dict(from_reference_state_dict({f"htsat.{k}": v for k, v in ref.state_dict().items()},
                                                   prefix="htsat."), strict=True)
    wav = _audio(2, 7 * 44100, seed=8)  # 965 frames
    with torch.no_grad():
        expected, got = ref(wav), ours(wav)
    assert rel_diff(got["embedding"], expected["latent_output"]) < 1e-4
    assert rel_diff(got["clipwise_output"], expected["clipwise_output"]) < 1e-4


@pytest.mark.slow  # a published size (the small parity tests above are fast)
def test_parity_laion_fused_tiny_full(laion):
    ref = _laion_model(laion, LAION_FRONT, {"size": "tiny"}, classes=527, fusion=True, seed=9)
    ours = _ours_from(ref, LAION_FRONT, {"size": "tiny"}, classes=527, enable_fusion=True, frontend="htk")
    wav = _audio(1, 480000 * 2 + 1234, seed=10)  # ~20 s: global view + 3 chunks
    with torch.no_grad():
        mel_fusion, longer = ours.fusion_input(ours.logmel(wav))
        expected = ref({"mel_fusion": mel_fusion.contiguous(), "longer": torch.tensor([longer])})
        got = ours(wav)
    assert longer and mel_fusion.shape == (1, 4, 1001, 64)
    assert rel_diff(got["embedding"], expected["embedding"]) < 1e-4


@pytest.mark.slow  # a published size (the small parity tests above are fast)
def test_parity_laion_base_full(laion):
    ref = _laion_model(laion, LAION_FRONT, {"size": "base"}, classes=527, seed=11)
    ours = _ours_from(ref, LAION_FRONT, {"size": "base"}, classes=527)
    assert ours.num_features == 1024
    wav = _audio(1, 480000, seed=12)
    with torch.no_grad():
        expected, got = ref({"waveform": wav}), ours(wav)
    assert rel_diff(got["embedding"], expected["embedding"]) < 1e-4
