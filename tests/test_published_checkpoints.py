"""Published checkpoint layouts through the inference API: LAION .pt, Hugging Face ClapModel folders, MS CLAP 2023.

- ``ClapEmbedder.from_laion`` on a LAION-layout ``.pt`` written as LAION's training saves it (``module.``,
  ``position_ids``, ``attn_mask``, numpy scalars, pickle protocol 4) from a random reference
  ``clap_module`` CLAP gives the reference's audio and text embeddings (1e-4 relative);
- a random transformers ``ClapModel`` saved with ``save_pretrained`` loads through the same call and gives
  transformers' own ``get_audio_features`` / ``get_text_features`` on the same log-mel and tokens, and the
  same embeddings as its LAION ``.pt`` layout;
- an MS CLAP 2023 layout ``.pth`` round-trips through ``from_ms_clap`` (``version="2022"`` still works);
- a wrong file gets the key-listing error; a long file embeds identically twice, fused and unfused.
"""

import os

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F
import transformers.utils.import_utils  # noqa: F401 (before the reference fixture stubs torchvision)

from inference.embedder import ClapEmbedder
from models.checkpoints import CheckpointMismatchError
from models.convert import hf_to_laion, read_checkpoint
from models.factory import create_model
from models.text_encoder import load_tokenizer, tokenize
from test_text_towers import laion_model_module, laion_tokenize, write_tiny_gpt2, write_tiny_roberta  # noqa: F401

CAPTIONS = ["a dog barks", "rain falls on the car", "birds"]
SMALL = dict(size=None, spec_size=64, patch_size=4, patch_stride=4, embed_dim=16, depths=[1, 2, 1, 1],
             num_heads=[1, 2, 2, 4], swin_window_size=8)
# transformers allocates every stage's bias table for the configured window, LAION's code (and ours) for the
# window clipped to the stage: the published sizes never clip; this one neither (window 2, last stage 2x2).
HF_SMALL = dict(SMALL, swin_window_size=2)
SMALL_FRONT = dict(sample_rate=16000, window_size=512, hop_size=160, mel_bins=32, fmin=50, fmax=8000)


def _rel(ours, theirs):
    return float((ours - theirs).abs().max() / theirs.norm(dim=-1).max())


def _laion_file(path, state, protocol=4):
    """As LAION's training code saves: DDP prefix, epoch, optimizer state with numpy scalars; protocol 4."""
    obj = {"epoch": 45, "name": "test", "state_dict": {"module." + k: v for k, v in state.items()},
           "optimizer": {"state": {}, "param_groups": [{"lr": np.float64(1e-4), "params": [0]}]}}
    torch.save(obj, path, pickle_protocol=protocol)
    return str(path)


# ------------------------------------------------------------------ LAION .pt
@pytest.fixture(scope="module")
def laion_reference(laion_model_module, tmp_path_factory):  # noqa: F811
    """A random LAION CLAP (HTS-AT tiny, 48 kHz front end, 1-layer 768-wide RoBERTa) and its .pt file."""
    from transformers import AutoConfig, RobertaModel

    folder = write_tiny_roberta(tmp_path_factory.mktemp("laion") / "roberta")
    config = AutoConfig.from_pretrained(folder)
    module = laion_model_module
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "RobertaModel", type("R", (), {"from_pretrained": staticmethod(
            lambda name: RobertaModel(config))}))
        torch.manual_seed(0)
        audio_cfg = dict(audio_length=1024, clip_samples=480000, mel_bins=64, sample_rate=48000, window_size=1024,
                         hop_size=480, fmin=50, fmax=14000, class_num=527, model_type="HTSAT", model_name="tiny")
        text_cfg = dict(context_length=77, vocab_size=config.vocab_size, width=768, heads=12, layers=1,
                        model_type="roberta")
        ref = module.CLAP(embed_dim=768, audio_cfg=audio_cfg, text_cfg=text_cfg, joint_embed_shape=512).eval()
    state = dict(ref.state_dict())
    state["text_branch.embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]
    path = _laion_file(tmp_path_factory.mktemp("laion") / "630k-audioset-best.pt", state)
    return ref, path, folder


@pytest.mark.slow  # LAION's published HTS-AT tiny against the reference model
def test_from_laion_matches_the_reference(laion_reference):
    ref, path, folder = laion_reference
    clap = ClapEmbedder.from_laion(path, text_model=folder, enable_fusion=False, amodel="HTSAT-tiny")
    assert clap.config["audio_options"]["size"] == "tiny" and clap.config["d_proj"] == 512
    assert (clap.sample_rate, clap.config["hop_size"], clap.config["projection"]) == (48000, 480, "laion")
    torch.manual_seed(3)
    wav = torch.randn(2, 48000 * 3) * 0.1
    with torch.no_grad():
        theirs = F.normalize(ref.audio_projection(ref.encode_audio({"waveform": wav}, device="cpu")["embedding"]),
                             dim=-1)
        mine = clap.model.encode_audio(wav)
        assert _rel(mine, theirs) < 1e-4
        theirs_t = F.normalize(ref.encode_text(laion_tokenize(folder, CAPTIONS), device="cpu"), dim=-1)
    mine_t = clap.embed_text(CAPTIONS, return_tensors="pt")
    assert _rel(mine_t, theirs_t) < 1e-4
    with pytest.raises(ValueError, match="enable_fusion"):
        ClapEmbedder.from_laion(path, text_model=folder, enable_fusion=True)


def test_laion_text_model_prefix_is_tolerated(laion_reference, tmp_path):
    """Some exports name the text branch text_model.*; both load to the same weights."""
    ref, _, folder = laion_reference
    state = {("text_model." + k[len("text_branch."):] if k.startswith("text_branch.") else k): v
             for k, v in ref.state_dict().items()}
    path = tmp_path / "renamed.pt"
    torch.save({"state_dict": state}, path)
    fmt, ours, arch = read_checkpoint(path)
    assert fmt == "laion" and arch["text_model"] == "roberta-base" and arch["txt_emb_dim"] == 768
    assert any(k.startswith("caption_encoder.base.encoder.") for k in ours)
    assert not any(k.endswith(("attn_mask", "relative_position_index", "position_ids")) for k in ours)


# ------------------------------------------------------------ Hugging Face
def _hf_model(folder, roberta):
    from transformers import AutoConfig, ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig

    text = AutoConfig.from_pretrained(roberta).to_dict()
    text_cfg = ClapTextConfig(**{k: text[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                      "num_attention_heads", "intermediate_size",
                                                      "max_position_embeddings", "type_vocab_size",
                                                      "layer_norm_eps", "pad_token_id")})
    audio_cfg = ClapAudioConfig(spec_size=64, patch_size=4, patch_stride=[4, 4], patch_embeds_hidden_size=16,
                                hidden_size=128, depths=[1, 2, 1, 1], num_attention_heads=[1, 2, 2, 4],
                                window_size=2, num_mel_bins=32, num_classes=5)
    torch.manual_seed(4)
    model = ClapModel(ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(),
                                 projection_dim=16)).eval()
    with torch.no_grad():  # random BatchNorm statistics, so that bn0 is not the identity
        model.audio_model.audio_encoder.batch_norm.running_mean.normal_()
        model.audio_model.audio_encoder.batch_norm.running_var.uniform_(0.5, 2)
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    pytest.importorskip("transformers.models.clap")
    root = tmp_path_factory.mktemp("hf")
    roberta = write_tiny_roberta(root / "roberta", hidden=32, heads=2)
    model = _hf_model(root / "clap", roberta)
    return model, str(root / "clap"), roberta


def test_hf_folder_matches_transformers(hf_folder):
    model, folder, roberta = hf_folder
    clap = ClapEmbedder.from_laion(folder, text_model=roberta, **SMALL_FRONT, eval_duration=1.0)
    assert clap.config["audio_options"]["embed_dim"] == 16 and clap.config["d_proj"] == 16
    base = clap.model.audio_encoder.base
    wav = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        mel = base.logmel(wav)  # [B, 1, frames, mel]: the same input for both
        theirs = F.normalize(_features(model.get_audio_features(
            input_features=mel, is_longer=torch.zeros(2, 1, dtype=torch.bool))), dim=-1)
        mine = F.normalize(clap.model.audio_encoder.projection(base.forward_mel(mel)["embedding"]), dim=-1)
        assert _rel(mine, theirs) < 1e-4
        assert _rel(clap.model.encode_audio(wav), theirs) < 1e-4
        tokens = tokenize(load_tokenizer(roberta), CAPTIONS, max_length=77)
        theirs_t = F.normalize(_features(model.get_text_features(input_ids=tokens["input_ids"],
                                                                 attention_mask=tokens["attention_mask"])), dim=-1)
        assert _rel(clap.model.encode_text(**tokens), theirs_t) < 1e-4


def _features(output):
    """The projected features of ``get_audio_features`` / ``get_text_features``: a tensor in transformers 4, the
    output's ``pooler_output`` in transformers 5."""
    return output if torch.is_tensor(output) else output.pooler_output


def test_hf_folder_equals_its_laion_layout(hf_folder, tmp_path):
    model, folder, roberta = hf_folder
    from safetensors.torch import load_file

    laion = hf_to_laion(load_file(os.path.join(folder, "model.safetensors")))
    torch.manual_seed(5)
    laion["audio_branch.tscam_conv.weight"] = torch.randn(5, 128, 1, 3)  # a LAION file has the token-semantic head
    laion["audio_branch.tscam_conv.bias"] = torch.randn(5)
    laion["audio_branch.head.weight"], laion["audio_branch.head.bias"] = torch.randn(5, 5), torch.randn(5)
    pt = _laion_file(tmp_path / "from_hf.pt", laion)
    a = ClapEmbedder.from_laion(folder, text_model=roberta, **SMALL_FRONT, eval_duration=1.0)
    b = ClapEmbedder.from_laion(pt, text_model=roberta, **SMALL_FRONT, eval_duration=1.0, audio_options=HF_SMALL)
    wav = torch.randn(3, 16000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(a.model.encode_audio(wav), b.model.encode_audio(wav), rtol=0, atol=1e-6)
    torch.testing.assert_close(a.embed_text(CAPTIONS), b.embed_text(CAPTIONS), rtol=0, atol=1e-6)


# --------------------------------------------------------------- MS CLAP 2023
def test_ms_clap_2023_layout_round_trip(tmp_path):
    gpt2 = write_tiny_gpt2(tmp_path / "gpt2")
    torch.manual_seed(6)
    source = create_model("HTSAT", **dict(SMALL_FRONT, sample_rate=44100), classes_num=5, out_emb=128,
                          text_model=gpt2, txt_emb_dim=32, d_proj=16, text_pooling="last_token",
                          audio_options=dict(SMALL, filterbank_sample_rate=32000)).eval()
    state = {}
    for key, value in source.state_dict().items():
        if key.startswith("audio_encoder.base."):
            key = "audio_encoder.base.htsat." + key[len("audio_encoder.base."):]
        state["module." + key] = value
    state["module.caption_encoder.base.h.0.attn.bias"] = torch.ones(1, 1, 128, 128)  # older transformers' buffer
    path = tmp_path / "CLAP_weights_2023.pth"
    torch.save({"model": state}, path)
    clap = ClapEmbedder.from_ms_clap(str(path), text_model=gpt2, **dict(SMALL_FRONT, sample_rate=44100),
                                     classes_num=5, audio_options=dict(SMALL, filterbank_sample_rate=32000),
                                     txt_emb_dim=32, d_proj=16, eval_duration=1.0)
    assert clap.config["text_pooling"] == "last_token" and clap.config["projection"] == "ms"
    wav = torch.randn(2, 20000) * 0.1  # within the small model's 128 frames
    with torch.no_grad():
        torch.testing.assert_close(clap.model.encode_audio(wav), source.encode_audio(wav))
    laion = tmp_path / "laion.pt"
    torch.save({"state_dict": {"audio_branch.bn0.weight": torch.ones(2)}}, laion)
    with pytest.raises(CheckpointMismatchError, match="from_laion"):
        ClapEmbedder.from_ms_clap(str(laion), text_model=gpt2)


@pytest.mark.parametrize("version", ["2022", "2023"])
def test_from_ms_clap_2022_still_loads(tmp_path, tiny_bert, version):
    """The 2022 layout loads as 2022 whatever version says (the file decides; existing callers pass none)."""
    torch.manual_seed(7)
    kwargs = dict(SMALL_FRONT, classes_num=5, out_emb=32, txt_emb_dim=32, d_proj=16, audio_width=1 / 16)
    source = create_model("Cnn14", text_model=tiny_bert, **kwargs).eval()
    path = tmp_path / "CLAP_weights_2022.pth"
    torch.save({"model": source.state_dict()}, path)
    clap = ClapEmbedder.from_ms_clap(str(path), version=version, text_model=tiny_bert, **kwargs)
    assert clap.config["audioenc_name"] == "Cnn14" and clap.config["text_max_length"] == 100
    wav = torch.randn(1, 16000)
    with torch.no_grad():
        torch.testing.assert_close(clap.model.encode_audio(wav), source.encode_audio(wav))


# ------------------------------------------------------------------ errors
def test_wrong_file_gets_the_key_listing(tmp_path, laion_reference):
    _, _, folder = laion_reference
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"encoder.conv.weight": torch.ones(1), "decoder.fc.bias": torch.ones(1)}}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        ClapEmbedder.from_laion(str(path), text_model=folder)
    assert "encoder.conv.weight" in str(info.value) and "no known layout" in str(info.value)
    # a LAION file into a model of another architecture: the listing and the preset the file implies
    from experiment.weights import load_weights

    model = create_model("HTSAT", **SMALL_FRONT, classes_num=5, out_emb=128, text_model=folder, txt_emb_dim=768,
                         d_proj=512, text_pooling="pooler", projection="laion", audio_options=SMALL)
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(model, {"laion_ckpt_path": laion_reference[1]})
    message = str(info.value)
    assert "--laion_ckpt_path" in message and "mis-shaped keys" in message and "--model=laion_630k" in message


# ---------------------------------------------------------------- long files
@pytest.mark.parametrize("fused", [False, True])
def test_long_file_embeds_identically_twice(tmp_path, tiny_bert, fused):
    torch.manual_seed(8)
    options = dict(SMALL, enable_fusion=fused, frontend="htk" if fused else "panns", clip_samples=16000)
    model = create_model("HTSAT", **SMALL_FRONT, classes_num=5, out_emb=128, text_model=tiny_bert, txt_emb_dim=32,
                         d_proj=16, audio_options=options)
    clap = ClapEmbedder(model, load_tokenizer(tiny_bert), 16000, eval_duration=1.0)
    assert clap.fused is fused
    path = str(tmp_path / "long.wav")
    soundfile.write(path, np.random.default_rng(0).standard_normal(16000 * 5 + 123).astype("float32") * 0.1, 16000)
    first = clap.embed_audio([path, path], batch_size=2)
    second = clap.embed_audio([path], batch_size=1)
    np.testing.assert_array_equal(first[0], first[1])
    np.testing.assert_allclose(first[0], second[0], rtol=0, atol=1e-6)
    if fused:  # the whole file goes to the model, which builds the global view + chunks
        from dataset.audio import load_audio

        with torch.no_grad():
            whole = clap.model.encode_audio(load_audio(path, 16000)[None]).numpy()
        np.testing.assert_allclose(first[:1], whole, rtol=0, atol=1e-6)
