"""The ``laion`` and ``msclap`` zero-shot protocols against the reference code itself (random weights).

Clips of 1 s, 7 s and 30 s at 16, 44.1 and 48 kHz (and a stereo one) are scored

- by LAION-CLAP's own ``CLAP_Module.get_audio_embedding_from_filelist`` (``laion_clap/hook.py``, its source
  run as is on a reference ``CLAP`` with a small HTS-AT, unfused and fused), ``get_audio_features`` /
  ``get_mel`` / the int16 round trip of ``training/data.py``, and the logits of
  ``evaluate/eval_zeroshot_classification.py`` (``logit_scale_a.exp() * audio @ text.T``, prompt
  "This is a sound of {}.");
- by msclap's own ``CLAPWrapper`` methods (``preprocess_audio``, ``load_audio_into_tensor``, ``read_audio``,
  ``preprocess_text``, ``compute_similarity``) and the softmax of its ``zero_shot_classification.py``;

and by ``ClapEmbedder.zero_shot_logits(protocol=...)`` of the same weights loaded with ``from_laion`` /
``from_ms_clap``, with the references' random generators seeded alike: the per-clip logits agree within 1e-4.

Substitutions, each of a third-party call the installed environment cannot make: ``torchaudio.load`` (needs
torchcodec on torchaudio 2.9) reads with soundfile (the same float32 samples); ``torchvision.transforms.Resize``
(torchvision is not installed) is its tensor path before torchvision 0.17, bilinear without antialiasing;
transformers 5's tokenizers have no ``encode_plus``, whose call is the tokenizer's own.
msclap's wrapper runs on our network of the MS CLAP 2023 layout (``self.clap``): the network's parity with
msclap's is tests/test_htsat.py's and tests/test_text_towers.py's; what is tested here is the wrapper.
"""

import ast
import os
import random
import types

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F
import transformers.utils.import_utils  # noqa: F401 (before the reference fixture stubs torchvision)

from inference.embedder import ClapEmbedder
from models.factory import create_model
from test_htsat import _reference_root
from test_published_checkpoints import _laion_file
from test_text_towers import laion_model_module, laion_tokenize, write_tiny_gpt2, write_tiny_roberta  # noqa: F401

SLOW = pytest.mark.slow  # each ~10-30 s: 10 clips through a reference and ours

LABELS = ["dog", "sea_waves", "crying_baby", "rain"]
# A 10-s window at 48 kHz / hop 480 (1001 frames) and 7 s at 44.1 kHz / hop 320 (965) fit 1024 frames.
SMALL256 = dict(size=None, spec_size=256, patch_size=4, patch_stride=4, embed_dim=16, depths=[1, 1, 1, 1],
                num_heads=[1, 2, 2, 4], swin_window_size=8)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """1 s, 7 s, 30 s at 16 / 44.1 / 48 kHz (a tone over noise, so that crops differ) and a stereo clip."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    paths = []
    for seconds in (1, 7, 30):
        for rate in (16000, 44100, 48000):
            t = np.arange(int(seconds * rate)) / rate
            wav = 0.3 * np.sin(2 * np.pi * (220 + 40 * seconds) * t * (1 + 0.01 * t))
            wav += 0.1 * rng.standard_normal(len(t))
            path = root / f"clip_{seconds}s_{rate}.wav"
            soundfile.write(path, wav.astype("float32"), rate, subtype="PCM_16")
            paths.append(str(path))
    stereo = 0.2 * rng.standard_normal((int(3.5 * 22050), 2))
    path = root / "stereo_3.5s_22050.flac"
    soundfile.write(path, stereo, 22050)
    paths.append(str(path))
    return paths


# ------------------------------------------------------------------ LAION-CLAP
def _data_functions():
    """``get_mel``, ``get_audio_features``, ``int16_to_float32``, ``float32_to_int16`` of training/data.py (which
    downloads tokenizers when imported): their source, run in a namespace of what they use."""
    from contextlib import suppress

    import torchaudio

    root = _reference_root("laion_clap")
    with open(os.path.join(root, "training", "data.py"), encoding="utf-8") as f:
        text = f.read()
    names = ("get_mel", "get_audio_features", "int16_to_float32", "float32_to_int16")
    source = "\n\n".join(ast.get_source_segment(text, node) for node in ast.parse(text).body
                         if isinstance(node, ast.FunctionDef) and node.name in names)

    class Resize:  # torchvision.transforms.Resize on a tensor before 0.17: bilinear, no antialias
        def __init__(self, size):
            self.size = list(size)

        def __call__(self, x):
            return F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False, antialias=False)[0]

    namespace = {"np": np, "torch": torch, "F": F, "torchaudio": torchaudio, "suppress": suppress,
                 "torchvision": types.SimpleNamespace(transforms=types.SimpleNamespace(Resize=Resize))}
    exec(compile(source, "laion_clap/training/data.py", "exec"), namespace)
    return namespace


def _hook_method(namespace):
    """``CLAP_Module.get_audio_embedding_from_filelist`` of laion_clap/hook.py, its source run as is."""
    import librosa

    root = _reference_root("laion_clap")
    with open(os.path.join(root, "hook.py"), encoding="utf-8") as f:
        text = f.read()
    cls = next(n for n in ast.parse(text).body if isinstance(n, ast.ClassDef) and n.name == "CLAP_Module")
    name = "get_audio_embedding_from_filelist"
    method = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name)
    scope = dict(namespace, librosa=librosa)
    exec(compile(ast.get_source_segment(text, method), "laion_clap/hook.py", "exec"), scope)
    return scope["get_audio_embedding_from_filelist"]


@pytest.fixture(scope="module")
def laion_pair(laion_model_module, tmp_path_factory):  # noqa: F811
    """For fused and unfused: the reference CLAP (small HTS-AT, tiny RoBERTa), its hook method and our model."""
    from transformers import AutoConfig, RobertaModel

    root = tmp_path_factory.mktemp("laion_protocol")
    roberta = write_tiny_roberta(root / "roberta")  # LAION's text head is wired to 768 wide
    config = AutoConfig.from_pretrained(roberta)
    module = laion_model_module
    swin = module.create_htsat_model.__globals__["HTSAT_Swin_Transformer"]

    def small_htsat(audio_cfg, enable_fusion=False, fusion_type="None"):
        return swin(spec_size=256, patch_size=4, patch_stride=(4, 4), num_classes=5, embed_dim=16,
                    depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], window_size=8, config=audio_cfg,
                    enable_fusion=enable_fusion, fusion_type=fusion_type)

    data = _data_functions()
    hook = _hook_method(data)
    out = {}
    audio_cfg = dict(audio_length=1024, clip_samples=480000, mel_bins=64, sample_rate=48000, window_size=1024,
                     hop_size=480, fmin=50, fmax=14000, class_num=5, model_type="HTSAT", model_name="tiny")
    for fused in (False, True):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(module, "RobertaModel", types.SimpleNamespace(from_pretrained=lambda name: RobertaModel(config)))
            mp.setattr(module, "create_htsat_model", small_htsat)
            torch.manual_seed(10 + fused)
            text_cfg = dict(context_length=77, vocab_size=config.vocab_size, width=768, heads=12, layers=1,
                            model_type="roberta")
            ref = module.CLAP(embed_dim=128, audio_cfg=audio_cfg, text_cfg=text_cfg, joint_embed_shape=24,
                              enable_fusion=fused, fusion_type="aff_2d").eval()
        with torch.no_grad():  # random BatchNorm statistics and a logit scale other than the initial one
            ref.audio_branch.bn0.running_mean.normal_()
            ref.audio_branch.bn0.running_var.uniform_(0.5, 2)
            ref.logit_scale_a.fill_(2.5)
        state = dict(ref.state_dict())
        state["text_branch.embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]
        path = _laion_file(root / f"laion_{'fused' if fused else 'unfused'}.pt", state)
        options = dict(SMALL256, enable_fusion=fused, frontend="htk" if fused else "panns")
        ours = ClapEmbedder.from_laion(path, text_model=roberta, audio_options=options)
        self = types.SimpleNamespace(model=ref, enable_fusion=fused, model_cfg={"audio_cfg": audio_cfg})
        out[fused] = (ref, (lambda files, self=self: hook(self, files, use_tensor=True)), ours, roberta)
    return out


def _laion_reference_logits(ref, embed_files, roberta, files, seed):
    np.random.seed(seed)
    with torch.no_grad():
        audio = embed_files(files)
        texts = laion_tokenize(roberta, [f"This is a sound of {label.replace('_', ' ')}." for label in LABELS])
        text = F.normalize(ref(None, texts, "cpu"), dim=-1)
        logit_scale_a, _ = ref(None, None, "cpu")
    return (logit_scale_a * audio @ text.t()).detach()


@SLOW
@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_laion_protocol_matches_laion_clap(laion_pair, clips, fused):
    ref, embed_files, ours, roberta = laion_pair[fused]
    assert ours.protocol == "laion" and ours.fused is fused
    expected = _laion_reference_logits(ref, embed_files, roberta, clips, seed=1234)
    got = ours.zero_shot_logits(clips, LABELS, rng=np.random.RandomState(1234))
    assert got.shape == (len(clips), len(LABELS))
    print(f"laion (fused={fused}) vs laion_clap: {len(clips)} clips, max |logit difference| "
          f"{(got - expected).abs().max():.2e}")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    # The 30-s clips are cropped (and fused) at random: the same seed, the same draws; another seed, others.
    other = ours.zero_shot_logits(clips, LABELS, rng=np.random.RandomState(7))
    long_rows = [i for i, p in enumerate(clips) if "30s" in p]
    assert (other[long_rows] - got[long_rows]).abs().max() > 1e-4
    short_rows = [i for i, p in enumerate(clips) if "_1s_" in p or "_7s_" in p]
    torch.testing.assert_close(other[short_rows], got[short_rows], rtol=0, atol=1e-5)
    # Without a generator: one seeded per file, so a file's row does not depend on the batch around it.
    alone = ours.zero_shot_logits(clips[6:7], LABELS)
    torch.testing.assert_close(ours.zero_shot_logits(clips, LABELS)[6:7], alone, rtol=0, atol=1e-5)


# ------------------------------------------------------------------ MS CLAP
@pytest.fixture(scope="module")
def msclap_pair(tmp_path_factory):
    """msclap's CLAPWrapper methods (without __init__, which downloads) around an MS CLAP 2023 layout model, and
    our ClapEmbedder.from_ms_clap of the same file."""
    from transformers import AutoTokenizer

    import collections

    import torchaudio.transforms

    with open(os.path.join(_reference_root("msclap"), "CLAPWrapper.py"), encoding="utf-8") as f:
        text = f.read()
    cls = next(n for n in ast.parse(text).body if isinstance(n, ast.ClassDef) and n.name == "CLAPWrapper")
    # The module imports its captioning model and the Hub at import time: its class's methods run alone.
    wrapper_module = types.SimpleNamespace(torch=torch, np=np, random=random, collections=collections,
                                          T=torchaudio.transforms, torchaudio=None)
    methods = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name != "__init__":
            scope = wrapper_module.__dict__
            exec(compile(ast.get_source_segment(text, node), "msclap/CLAPWrapper.py", "exec"), scope)
            methods[node.name] = scope.pop(node.name)
    wrapper_class = type("CLAPWrapper", (), methods)
    root = tmp_path_factory.mktemp("msclap_protocol")
    gpt2 = write_tiny_gpt2(root / "gpt2")
    front = dict(sample_rate=44100, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=8000)
    options = dict(SMALL256, filterbank_sample_rate=32000)
    torch.manual_seed(12)
    source = create_model("HTSAT", **front, classes_num=5, out_emb=128, text_model=gpt2, txt_emb_dim=32, d_proj=16,
                          text_pooling="last_token", audio_options=options).eval()
    with torch.no_grad():
        source.audio_encoder.base.bn0.running_mean.normal_()
        source.logit_scale.fill_(3.0)
    state = {}
    for key, value in source.state_dict().items():
        if key.startswith("audio_encoder.base."):
            key = "audio_encoder.base.htsat." + key[len("audio_encoder.base."):]
        state[key] = value
    path = root / "CLAP_weights_2023.pth"
    torch.save({"model": state}, path)
    ours = ClapEmbedder.from_ms_clap(str(path), text_model=gpt2, **front, classes_num=5, audio_options=options,
                                     txt_emb_dim=32, d_proj=16, eval_duration=7.0)

    wrapper = wrapper_class()
    wrapper.__dict__.update(
        np_str_obj_array_pattern=__import__("re").compile(r"[SaUO]"), use_cuda=False,
        default_collate_err_msg_format="default_collate: {}", token_keys=["input_ids", "attention_mask"],
        args=types.SimpleNamespace(sampling_rate=44100, duration=7, text_model="gpt2", text_len=77))
    tokenizer = AutoTokenizer.from_pretrained(gpt2)
    tokenizer.add_special_tokens({"pad_token": "!"})
    if not hasattr(tokenizer, "encode_plus"):  # transformers 5 keeps only the call, which is the same
        tokenizer.encode_plus = tokenizer.__call__
    wrapper.tokenizer = tokenizer
    wrapper.clap = types.SimpleNamespace(
        audio_encoder=source.audio_encoder, logit_scale=source.logit_scale,
        caption_encoder=lambda x: source.caption_encoder(x["input_ids"], x["attention_mask"]))

    def load(path):  # torchaudio.load (torchcodec-less here): [C, T] float32, the rate
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return torch.from_numpy(np.ascontiguousarray(data.T)), rate

    return wrapper, wrapper_module, load, ours


@SLOW
def test_msclap_protocol_matches_msclap(msclap_pair, clips, monkeypatch):
    wrapper, wrapper_module, load, ours = msclap_pair
    assert ours.protocol == "msclap"
    monkeypatch.setattr(wrapper_module, "torchaudio", types.SimpleNamespace(load=load))
    prompts = ["this is the sound of " + label.replace("_", " ") for label in LABELS]
    random.seed(99)
    with torch.no_grad():
        text = wrapper.get_text_embeddings(prompts)
        audio = wrapper.get_audio_embeddings(clips, resample=True)
        expected = F.softmax(wrapper.compute_similarity(audio, text).detach().cpu(), dim=1)
    got = ours.zero_shot_logits(clips, LABELS, rng=random.Random(99))
    print(f"msclap vs msclap: {len(clips)} clips, max |softmax difference| {(got - expected).abs().max():.2e}")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    # The logits before the softmax, too (compute_similarity), so that a flat softmax cannot hide a difference.
    with torch.no_grad():
        sims = wrapper.compute_similarity(audio, text)
    cos = ours.embed_audio(clips, return_tensors="pt", rng=random.Random(99)) @ ours.label_embeddings(LABELS).T
    print(f"msclap vs msclap: max |logit difference| {(ours.model.logit_scale.exp() * cos - sims).abs().max():.2e}")
    torch.testing.assert_close(ours.model.logit_scale.exp() * cos, sims, rtol=0, atol=1e-4)


# ------------------------------------------------------------------ defaults
@SLOW
def test_protocol_is_the_loaders_and_part_of_the_fingerprint(laion_pair, msclap_pair, clips):
    _, _, ours, _ = laion_pair[False]
    laion_fp = ours.fingerprint
    ours.protocol = "paper"
    try:
        paper = ours.embed_audio(clips[:2])
        assert ours.fingerprint != laion_fp
    finally:
        ours.protocol = "laion"
    assert ours.fingerprint == laion_fp
    assert np.abs(ours.embed_audio(clips[:2]) - paper).max() > 1e-3  # 1-s clips: repeat-pad vs our tiling
    np.testing.assert_allclose(ours.embed_audio(clips[:2], protocol="paper"), paper, rtol=0, atol=1e-6)
    ranked = ours.classify(clips[:1], LABELS, topk=2)
    logits = ours.zero_shot_logits(clips[:1], LABELS)
    assert [s for _, s in ranked[0]] == pytest.approx(sorted(logits[0].tolist(), reverse=True)[:2], abs=1e-6)
    with pytest.raises(ValueError, match="protocol='clip' is not one of paper, laion, msclap, hf"):
        ours.classify(clips[:1], LABELS, protocol="clip")


# ------------------------------------------------------------------ transformers
def _hf_folder(root, roberta, fused, truncation):
    """A random ClapModel (LAION's front end, a small Swin) and a ClapFeatureExtractor saved in one folder."""
    from transformers import AutoConfig, ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig

    text = AutoConfig.from_pretrained(roberta).to_dict()
    text_cfg = ClapTextConfig(**{k: text[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                      "num_attention_heads", "intermediate_size",
                                                      "max_position_embeddings", "type_vocab_size",
                                                      "layer_norm_eps", "pad_token_id")})
    audio_cfg = ClapAudioConfig(spec_size=256, patch_size=4, patch_stride=[4, 4], patch_embeds_hidden_size=16,
                                hidden_size=128, depths=[1, 1, 1, 1], num_attention_heads=[1, 2, 2, 4],
                                window_size=8, num_mel_bins=64, num_classes=5, enable_fusion=fused)
    torch.manual_seed(20 + fused)
    model = ClapModel(ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(),
                                 projection_dim=16)).eval()
    with torch.no_grad():
        model.audio_model.audio_encoder.batch_norm.running_mean.normal_()
        model.audio_model.audio_encoder.batch_norm.running_var.uniform_(0.5, 2)
    folder = root / f"hf_{'fused' if fused else 'unfused'}_{truncation}"
    model.save_pretrained(folder)
    extractor = ClapFeatureExtractor(feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=10,
                                     fft_window_size=1024, frequency_min=50, frequency_max=14000,
                                     truncation=truncation, padding="repeatpad")
    extractor.save_pretrained(folder)
    return model, extractor, str(folder)


@SLOW
@pytest.mark.parametrize("fused,truncation", [(False, "rand_trunc"), (True, "fusion")],
                         ids=["unfused-rand_trunc", "fused-fusion"])
def test_hf_folder_embeds_as_transformers_processor_and_model(clips, tmp_path, fused, truncation):
    """ClapEmbedder.from_laion(HF folder).embed_audio = librosa.load(sr=48000) (LAION's reading) + the folder's
    ClapFeatureExtractor (ClapProcessor's audio path), one file per call, + ClapModel.get_audio_features."""
    pytest.importorskip("transformers.models.clap")
    import librosa

    roberta = write_tiny_roberta(tmp_path / "roberta", hidden=32, heads=2)
    model, extractor, folder = _hf_folder(tmp_path, roberta, fused, truncation)
    ours = ClapEmbedder.from_laion(folder, text_model=roberta)
    assert ours.protocol == "hf" and ours.fused is fused and ours.config["fmin"] == 50
    assert ours.hf_options == {"truncation": truncation, "padding": "repeatpad", "max_length_s": 10}
    np.random.seed(5)
    expected = []
    with torch.no_grad():
        for path in clips:
            wav, _ = librosa.load(path, sr=48000)
            features = extractor(wav, sampling_rate=48000, return_tensors="pt")
            out = model.get_audio_features(input_features=features["input_features"],
                                           is_longer=features["is_longer"])
            expected.append(F.normalize(out if torch.is_tensor(out) else out.pooler_output, dim=-1)[0])
    expected = torch.stack(expected)
    got = ours.embed_audio(clips, return_tensors="pt", rng=np.random.RandomState(5))
    print(f"hf ({truncation}) vs ClapFeatureExtractor + ClapModel: {len(clips)} clips, max |embedding difference| "
          f"{(got - expected).abs().max():.2e}")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    # Our windows (a named option) differ on the short clips: transformers repeat-pads them to 10 s.
    paper = ours.embed_audio(clips[:3], return_tensors="pt", protocol="paper")
    assert (paper - expected[:3]).abs().max() > 1e-3


def test_hf_folder_processor_options(tmp_path):
    """An unfused folder without a processor config gets rand_trunc (transformers' default 'fusion' makes its
    ClapModel fail on a 4-channel input); a config saying 'fusion' for it is refused in one line."""
    pytest.importorskip("transformers.models.clap")
    roberta = write_tiny_roberta(tmp_path / "roberta", hidden=32, heads=2)
    _, _, folder = _hf_folder(tmp_path, roberta, False, "fusion")
    with pytest.raises(ValueError, match=r"preprocessor_config.json says truncation 'fusion' but the model is "
                                         r"unfused .* set it to 'rand_trunc'"):
        ClapEmbedder.from_laion(folder, text_model=roberta)
    os.remove(os.path.join(folder, "preprocessor_config.json"))
    clap = ClapEmbedder.from_laion(folder, text_model=roberta)
    assert (clap.protocol, clap.hf_options) == ("hf", {"truncation": "rand_trunc"})


@SLOW
def test_build_index_embeds_a_laion_file_as_laion_clap(laion_pair, clips, tmp_path):
    """build_index.py --laion_ckpt_path: the default protocol is LAION's (recorded in index.json, part of the
    fingerprint), and the rows are the API's; --protocol=paper is our windows, another fingerprint."""
    from conftest import load_script
    from embeddings.store import load_audio_set
    from inference.embedder import ClapEmbedder as Embedder

    ref, _, ours, roberta = laion_pair[False]
    path = ours.source.split(" ", 1)[1]
    listing = tmp_path / "paths.txt"
    listing.write_text("\n".join(clips[:4]) + "\n", encoding="utf-8")
    build = load_script("build_index").main
    info = build([f"--audio_pathfile={listing}", f"--output_folder={tmp_path / 'laion'}", f"--laion_ckpt_path={path}",
                  f"--text_model={roberta}", "--noprogressbar"])
    assert info["protocol"] == "laion" and info["model"]["load"]["protocol"] == "laion"
    assert info["model"]["fingerprint"] == ours.fingerprint
    emb, kept, _ = load_audio_set(str(tmp_path / "laion" / "embeddings"))
    np.testing.assert_allclose(emb, ours.embed_audio([clips[i] for i in range(4)]), rtol=0, atol=1e-5)
    paper = build([f"--audio_pathfile={listing}", f"--output_folder={tmp_path / 'paper'}", f"--laion_ckpt_path={path}",
                   f"--text_model={roberta}", "--noprogressbar", "--protocol=paper"])
    assert paper["protocol"] == "paper" and paper["model"]["fingerprint"] != info["model"]["fingerprint"]
    loaded = Embedder.from_pretrained(laion_ckpt_path=path, text_model=roberta)
    assert (loaded.protocol, loaded.fingerprint) == ("laion", ours.fingerprint)


def test_protocol_errors_name_the_input(tiny_bert, tmp_path):
    """A protocol name that does not exist, and 'hf' on a model transformers' ClapModel cannot be: one line each,
    before any audio is read."""
    from conftest import tiny_clap
    from models.text_encoder import load_tokenizer

    clap = ClapEmbedder(tiny_clap(tiny_bert, seed=0), load_tokenizer(tiny_bert), 16000, 1.0)
    wav = str(tmp_path / "a.wav")
    soundfile.write(wav, np.zeros(16000, dtype="float32"), 16000)
    with pytest.raises(ValueError, match=r"protocol='clip' is not one of paper, laion, msclap, hf"):
        clap.embed_audio([wav], protocol="clip")
    with pytest.raises(ValueError, match=r"protocol 'hf' is transformers' ClapModel: an HTS-AT model, not Cnn14"):
        clap.embed_audio([wav], protocol="hf")
    with pytest.raises(ValueError, match=r"protocol='tile' is not one of"):
        ClapEmbedder(clap.model, clap.tokenizer, 16000, 1.0, protocol="tile")


@SLOW
def test_curation_embedding_follows_a_laion_teacher(laion_pair, clips, tmp_path):
    """microsoft_curation_toemb.py with a LAION .pt teacher (protocol: null, the curation YAML's): the rows are
    LAION-CLAP's (the API's laion protocol), recorded so; --protocol=paper gives our windows, another fingerprint."""
    import json

    from conftest import load_script
    from embeddings.store import load_audio_set

    _, _, ours, roberta = laion_pair[False]
    path = ours.source.split(" ", 1)[1]
    listing = tmp_path / "paths.txt"
    listing.write_text("\n".join(clips[:3]) + "\n", encoding="utf-8")
    options = ("{size: null, spec_size: 256, patch_size: 4, patch_stride: 4, swin_window_size: 8, embed_dim: 16, "
               "depths: [1, 1, 1, 1], num_heads: [1, 2, 2, 4]}")

    def run(name, *flags):
        load_script("microsoft_curation_toemb").main([
            "hparams/curation/microsoft_audioset_insper_toemb.yaml", f"--output_folder={tmp_path / name}",
            "--clap_ckpt_path=", f"--laion_ckpt_path={path}", "--model=laion_630k_audioset",
            f"--text_model={roberta}", f"--audio_options={options}", "--out_emb=128", "--d_proj=24",
            "--classes_num=5", f"--audio_pathfile={listing}", "--batch_size=2", "--num_workers=0",
            "--emb_dtype=float32", "--noprogressbar", *flags])
        with open(tmp_path / name / "save" / "embeddings.json", encoding="utf-8") as f:
            return load_audio_set(str(tmp_path / name / "save"))[0], json.load(f)["audio"]

    emb, info = run("laion")
    assert info["protocol"] == "laion" and info["model"] == ours.fingerprint
    np.testing.assert_allclose(emb, ours.embed_audio(clips[:3]), rtol=0, atol=1e-5)
    paper, paper_info = run("paper", "--protocol=paper")
    assert "protocol" not in paper_info and paper_info["model"] != info["model"]
    assert np.abs(paper - emb).max() > 1e-3
