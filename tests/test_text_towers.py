"""Text towers of LAION-CLAP (RoBERTa + MLP head) and MS CLAP 2023 (GPT-2, last token): parity with the references.

The references are built from their own code with random weights (``laion_clap.clap_module.model.CLAP``,
``msclap.models.clap.TextEncoder``), their state dict is loaded into ours, and the normalised text
embeddings of the same captions, each tokenised the reference's way and ours, agree within 1e-4
relative (max abs difference over norm). No Hub access: the GPT-2 and RoBERTa tokenizers are tiny
byte-level BPE vocabularies written here (GPT-2's byte order, so ``'!'`` is id 0 as in GPT-2).
"""

import importlib.util
import json
import os
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TINY_CLAP, write_tiny_bert
from models.factory import create_model
from models.projection import LaionProjection, Projection, build_projection
from models.registry import TEXT_ENCODERS, build_text_encoder
from models.text_encoder import (
    MS_CLAP_2023_PAD_ID,
    TEXT_POOLINGS,
    TextEncoder,
    laion_text_state_dict,
    load_tokenizer,
    tokenize,
)

CAPTIONS = [
    "a dog barks",
    "rain falls on a metal roof while a dog barks in the distance",
    "dog",
    "birds sing! a car passes",  # '!' is GPT-2 id 0: MS CLAP 2023's pooling counts it as padding
]
LONG = " ".join(["a dog barks and rain falls"] * 30)  # well over 77 tokens
WORDS = ("dog", "barks", "rain", "falls", "bark", "bird", "birds", "car", "the", "a")


def _rel(ours, theirs):
    return float((ours - theirs).abs().max() / theirs.norm(dim=-1).max())


# --------------------------------------------------------------- tiny tokenizers
def _gpt2_byte_symbols():
    """GPT-2's byte -> symbol table in its order: printable bytes as themselves ('!' first), then the others
    mapped from U+0100 on (transformers 5 no longer exports its ``bytes_to_unicode``)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
                 + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def _byte_bpe(words):
    """A byte-level BPE vocabulary (GPT-2's byte order: '!' first) with merges spelling ``' ' + word``."""
    tokens = _gpt2_byte_symbols()
    merges = []
    for word in words:
        symbols = ["Ġ"] + list(word)
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            merged = pair[0] + pair[1]
            if " ".join(pair) not in merges:
                merges.append(" ".join(pair))
            if merged not in tokens:
                tokens.append(merged)
            symbols = [merged] + symbols[2:]
    return tokens, merges


def _write_bpe(folder, head, tail, words=WORDS):
    os.makedirs(folder, exist_ok=True)
    tokens, merges = _byte_bpe(words)
    vocab = {tok: i for i, tok in enumerate(head + tokens + tail)}
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab


def write_tiny_gpt2(folder, hidden=32, layers=2, heads=2, weights=True, full=False):
    """GPT-2 tokenizer files + config (+ random weights) in ``folder`` (MS CLAP's code needs 'gpt' in the name)."""
    from transformers import GPT2Config, GPT2Model

    vocab = _write_bpe(folder, [], ["<|endoftext|>"])
    eot = vocab["<|endoftext|>"]
    if full:  # gpt2: 768 wide, 12 layers, 12 heads, 1024 positions
        config = GPT2Config(bos_token_id=eot, eos_token_id=eot)
    else:
        config = GPT2Config(vocab_size=len(vocab), n_embd=hidden, n_layer=layers, n_head=heads, n_positions=128,
                            bos_token_id=eot, eos_token_id=eot)
    if weights:
        torch.manual_seed(1)
        GPT2Model(config).save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    return str(folder)


def write_tiny_roberta(folder, hidden=768, layers=1, heads=12, full=False):
    """RoBERTa tokenizer files + config in ``folder`` (LAION's head is hard-wired to a 768-wide RoBERTa)."""
    from transformers import RobertaConfig

    vocab = _write_bpe(folder, ["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"])
    if full:  # roberta-base: 768 wide, 12 layers, 12 heads, 514 positions
        config = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                               layer_norm_eps=1e-5)
    else:
        config = RobertaConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=heads, intermediate_size=64, max_position_embeddings=90,
                               type_vocab_size=1, layer_norm_eps=1e-5)
    config.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return write_tiny_gpt2(tmp_path_factory.mktemp("towers") / "tiny_gpt2")


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
    return write_tiny_roberta(tmp_path_factory.mktemp("towers") / "tiny_roberta")


# --------------------------------------------------------------- the references
@pytest.fixture(scope="module")
def laion_model_module():
    """``laion_clap.clap_module.model`` imported alone: not the package, whose import loads tokenizers.

    Its package ``__init__`` files are bypassed, and the optional imports of its ``utils`` (torchvision's
    FrozenBatchNorm2d, h5py, used by code paths not run here) are stubbed while it imports.
    """
    spec = importlib.util.find_spec("laion_clap")
    if spec is None:
        pytest.skip("laion-clap (test-only reference, requirements-refs.txt) is not installed")
    root = os.path.dirname(spec.origin)
    with pytest.MonkeyPatch.context() as mp:
        for name, path in (("laion_clap", root), ("laion_clap.clap_module", os.path.join(root, "clap_module"))):
            if name not in sys.modules:
                package = types.ModuleType(name)
                package.__path__ = [path]
                mp.setitem(sys.modules, name, package)
        absent = [name for name in ("torchvision", "h5py") if importlib.util.find_spec(name) is None]
        for name in ("torchvision", "torchvision.ops", "torchvision.ops.misc", "h5py"):
            if name.split(".")[0] in absent:
                stub = types.ModuleType(name)
                stub.FrozenBatchNorm2d = nn.BatchNorm2d
                mp.setitem(sys.modules, name, stub)
        from laion_clap.clap_module import model
    return model


def laion_clap_text(model_module, monkeypatch, roberta_config, joint=64):
    """LAION's CLAP as its code builds it (RoBERTa text branch), random weights; the audio branch a stub."""
    from transformers import RobertaModel

    torch.manual_seed(0)
    monkeypatch.setattr(model_module, "RobertaModel",
                        types.SimpleNamespace(from_pretrained=lambda name: RobertaModel(roberta_config)))
    monkeypatch.setattr(model_module, "create_htsat_model", lambda *args, **kwargs: nn.Identity())
    audio_cfg = model_module.CLAPAudioCfp(model_type="HTSAT", model_name="tiny")
    text_cfg = model_module.CLAPTextCfg(context_length=77, vocab_size=roberta_config.vocab_size, width=768,
                                        heads=12, layers=roberta_config.num_hidden_layers, model_type="roberta")
    return model_module.CLAP(embed_dim=32, audio_cfg=audio_cfg, text_cfg=text_cfg, joint_embed_shape=joint).eval()


def laion_tokenize(folder, texts):
    """laion_clap/hook.py's tokenizer: RobertaTokenizer, padding to 77, truncation."""
    from transformers import RobertaTokenizer

    return RobertaTokenizer.from_pretrained(folder)(texts, padding="max_length", truncation=True, max_length=77,
                                                    return_tensors="pt")


def msclap_tokenize(folder, texts):
    """msclap/CLAPWrapper.py's load_clap + preprocess_text for a GPT-2 model (config_2023.yml: text_len 77)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"pad_token": "!"})
    # msclap's encode_plus(text=..., ...) on one caption (transformers 5 has only the call, which is the same).
    toks = [tokenizer(text=t + " <|endoftext|>", add_special_tokens=True, max_length=77,
                      padding="max_length", return_tensors="pt") for t in texts]
    return {k: torch.cat([t[k] for t in toks]) for k in ("input_ids", "attention_mask")}


def _ours(text_model, hidden, d_proj, pooling, projection):
    tiny = dict(TINY_CLAP, txt_emb_dim=hidden, d_proj=d_proj)
    return create_model(**dict(tiny, text_model=text_model, text_pooling=pooling, projection=projection)).eval()


def _laion_parity(model_module, monkeypatch, folder):
    from transformers import AutoConfig

    ref = laion_clap_text(model_module, monkeypatch, AutoConfig.from_pretrained(folder))
    ours = _ours(folder, 768, 64, "pooler", "laion")
    missing, unexpected = ours.load_state_dict(laion_text_state_dict(ref.state_dict()), strict=False)
    assert unexpected == []
    assert missing and all(k.startswith("audio_encoder.") or k == "logit_scale" for k in missing), missing
    texts = CAPTIONS + [LONG]
    with torch.no_grad():
        theirs = F.normalize(ref.encode_text(laion_tokenize(folder, texts), device="cpu"), dim=-1)
        tokens = tokenize(load_tokenizer(folder), texts, max_length=100)  # the paper YAMLs' text_max_length
        mine = ours.encode_text(**tokens)
    assert tokens["input_ids"].shape[1] == 77  # LONG: cut at LAION's 77 tokens
    assert _rel(mine, theirs) < 1e-4


def _ms_clap_2023_parity(folder, hidden, monkeypatch=None, config=None):
    clap = pytest.importorskip("msclap.models.clap")
    if config is not None:  # build from the config (no 500-MB weight file to write and read)
        from transformers import AutoModel

        torch.manual_seed(1)
        monkeypatch.setattr(clap, "AutoModel", types.SimpleNamespace(
            from_pretrained=lambda name: AutoModel.from_config(config)))
    torch.manual_seed(2)
    ref = clap.TextEncoder(16, folder, hidden).eval()
    ours = build_text_encoder(folder, hidden, 16, pooling="last_token", pretrained=False).eval()
    ours.load_state_dict(ref.state_dict())
    with torch.no_grad():
        x = msclap_tokenize(folder, CAPTIONS)
        theirs = F.normalize(ref(x), dim=-1)
        tokens = tokenize(load_tokenizer(folder), CAPTIONS, max_length=100)
        mine = F.normalize(ours(**tokens), dim=-1)
    assert x["input_ids"].shape[1] == 77 and tokens["input_ids"].shape[1] < 77  # theirs padded to 77, ours 'longest'
    assert _rel(mine, theirs) < 1e-4
    return tokens


# --------------------------------------------------------------- projection heads
def test_laion_projection_is_laions_mlp():
    torch.manual_seed(0)
    head = build_projection("laion", 8, 4)
    assert isinstance(head, LaionProjection) and sorted(head.state_dict()) == ["0.bias", "0.weight", "2.bias",
                                                                                 "2.weight"]
    x = torch.randn(3, 8)
    expected = F.linear(F.relu(F.linear(x, head[0].weight, head[0].bias)), head[2].weight, head[2].bias)
    torch.testing.assert_close(head(x), expected, rtol=0, atol=0)
    assert isinstance(build_projection("ms", 8, 4), Projection)
    with pytest.raises(ValueError, match="projection must be one of ms, laion"):
        build_projection("mlp", 8, 4)


def test_projection_key_sets_both_heads(tmp_path):
    bert = write_tiny_bert(tmp_path / "bert", tokenizer=False)
    keys = set(create_model(**dict(TINY_CLAP, text_model=bert, projection="laion")).state_dict())
    for tower in ("audio_encoder", "caption_encoder"):
        assert {f"{tower}.projection.0.weight", f"{tower}.projection.2.bias"} <= keys
        assert not any(k.startswith(f"{tower}.projection.linear") for k in keys)
    keys = set(create_model(**dict(TINY_CLAP, text_model=bert)).state_dict())  # default: MS CLAP's head
    assert {"audio_encoder.projection.linear1.weight", "caption_encoder.projection.layer_norm.bias"} <= keys


# --------------------------------------------------------------- preprocessing
def test_gpt2_preprocessing_is_ms_clap_2023s(gpt2_dir):
    tokenizer = load_tokenizer(gpt2_dir)
    assert tokenizer.pad_token == "!" and tokenizer.pad_token_id == MS_CLAP_2023_PAD_ID == 0
    suffix = tokenizer(" <|endoftext|>")["input_ids"]
    assert suffix[-1] == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    tokens = tokenize(tokenizer, ["a dog barks", "dog"], max_length=100)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    assert set(tokens) == {"input_ids", "attention_mask"}
    assert ids[0, : int(mask[0].sum())].tolist() == tokenizer("a dog barks")["input_ids"] + suffix
    assert ids[1, : int(mask[1].sum())].tolist() == tokenizer("dog")["input_ids"] + suffix
    assert (ids[1, int(mask[1].sum()):] == 0).all()  # right padding with '!'
    # the same ids as msclap's preprocess_text, before its padding to 77
    ref = msclap_tokenize(gpt2_dir, ["a dog barks", "dog"])
    for row in range(2):
        n = int(mask[row].sum())
        assert ref["input_ids"][row, :n].tolist() == ids[row, :n].tolist()
        assert int(ref["attention_mask"][row].sum()) == n
    # 77 tokens at most, whatever text_max_length says above it; a smaller text_max_length still applies
    assert tokenize(tokenizer, [LONG], max_length=100)["input_ids"].shape == (1, 77)
    assert tokenize(tokenizer, [LONG], max_length=10)["input_ids"].shape == (1, 10)


def test_roberta_and_bert_preprocessing(roberta_dir, tmp_path):
    tokenizer = load_tokenizer(roberta_dir)
    assert tokenizer.clap_preprocessing == {"max_length": 77}
    tokens = tokenize(tokenizer, ["a dog barks", LONG], max_length=100)
    assert tokens["input_ids"].shape == (2, 77) and set(tokens) == {"input_ids", "attention_mask"}
    assert tokens["input_ids"][0, : int(tokens["attention_mask"][0].sum())].tolist() == tokenizer("a dog barks")[
        "input_ids"]
    bert = load_tokenizer(write_tiny_bert(tmp_path / "bert", vocab_words=["dog"]))
    assert bert.clap_preprocessing == {}  # MS CLAP 2022: as before (100 tokens, no suffix)
    long = tokenize(bert, [" ".join(["dog"] * 150)], max_length=100)
    assert long["input_ids"].shape == (1, 100) and "token_type_ids" in long


def test_gpt2_vocabulary_without_bang_at_zero_is_refused(tmp_path):
    folder = tmp_path / "other_gpt2"
    write_tiny_gpt2(folder, weights=False)
    with open(folder / "vocab.json", encoding="utf-8") as f:
        vocab = json.load(f)
    vocab["!"], vocab['"'] = vocab['"'], vocab["!"]
    with open(folder / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f)
    with pytest.raises(ValueError, match="counts the tokens that are not id 0"):
        load_tokenizer(folder)


# --------------------------------------------------------------- pooling
def test_last_token_pooling_is_ms_clap_2023s_formula(gpt2_dir):
    enc = build_text_encoder(gpt2_dir, 32, 16, pooling="last_token").eval()
    enc.projection = nn.Identity()
    tokens = tokenize(load_tokenizer(gpt2_dir), CAPTIONS, max_length=100)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    with torch.no_grad():
        pooled = enc(**tokens)
        hidden = enc.base(input_ids=ids, attention_mask=mask).last_hidden_state
    index = (ids != 0).sum(-1) - 1
    torch.testing.assert_close(pooled, hidden[torch.arange(len(ids)), index], rtol=0, atol=0)
    # the '!' of the last caption is id 0: the pooled position is one before its last token, as in MS CLAP 2023
    assert (ids[3] == 0).sum() > (mask[3] == 0).sum() and index[3] == mask[3].sum() - 2
    assert (index[:3] == mask[:3].sum(-1) - 1).all()


def test_pooler_is_roberta_pooler_output(roberta_dir):
    enc = build_text_encoder(roberta_dir, 768, 16, pooling="pooler", projection="laion").eval()
    enc.projection = nn.Identity()
    tokens = tokenize(load_tokenizer(roberta_dir), CAPTIONS, max_length=100)
    with torch.no_grad():
        torch.testing.assert_close(enc(**tokens), enc.base(**tokens).pooler_output, rtol=0, atol=0)


def test_poolings_that_do_not_apply_are_refused(gpt2_dir, roberta_dir, tmp_path):
    from transformers import DistilBertConfig

    assert TEXT_POOLINGS == ("cls", "mean", "pooler", "last_token")
    assert {"bert", "roberta", "gpt2"} <= set(TEXT_ENCODERS)
    for pooling in ("cls", "pooler"):
        with pytest.raises(ValueError, match="set text_pooling: last_token"):
            build_text_encoder(gpt2_dir, 32, 16, pooling=pooling)
    with pytest.raises(ValueError, match="pads with id 1"):
        build_text_encoder(roberta_dir, 768, 16, pooling="last_token")
    distil = tmp_path / "distilbert"
    DistilBertConfig(vocab_size=50, dim=32, n_layers=1, n_heads=2, hidden_dim=32).save_pretrained(distil)
    with pytest.raises(ValueError, match="needs a transformer with a pooler layer"):
        build_text_encoder(str(distil), 32, 16, pooling="pooler")
    with pytest.raises(ValueError, match="text_pooling must be one of"):
        TextEncoder(str(distil), 32, 16, pooling="max")
    assert build_text_encoder(gpt2_dir, 32, 16, pooling="mean") is not None


def test_text_pooling_and_projection_are_checked_choices():
    from experiment.key_tables import CHOICES

    assert CHOICES["text_pooling"] == TEXT_POOLINGS and CHOICES["projection"] == ("ms", "laion")


# --------------------------------------------------------------- parity with the references
def test_laion_roberta_text_tower_parity(laion_model_module, monkeypatch, roberta_dir):
    _laion_parity(laion_model_module, monkeypatch, roberta_dir)


def test_ms_clap_2023_gpt2_text_tower_parity(gpt2_dir):
    tokens = _ms_clap_2023_parity(gpt2_dir, 32)
    assert (tokens["input_ids"][3] == 0).sum() > (tokens["attention_mask"][3] == 0).sum()  # the '!' caption is in


@pytest.mark.slow  # published size (RoBERTa-base); the tiny parity test is fast
def test_laion_roberta_base_parity(laion_model_module, monkeypatch, tmp_path):
    _laion_parity(laion_model_module, monkeypatch, write_tiny_roberta(tmp_path / "roberta_base", full=True))


@pytest.mark.slow  # published size (GPT-2); the tiny parity test is fast
def test_ms_clap_2023_gpt2_full_size_parity(tmp_path, monkeypatch):
    from transformers import AutoConfig

    folder = write_tiny_gpt2(tmp_path / "gpt2_full", weights=False, full=True)
    _ms_clap_2023_parity(folder, 768, monkeypatch, AutoConfig.from_pretrained(folder))
