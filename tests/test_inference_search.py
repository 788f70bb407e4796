"""Tests of the inference API (inference.ClapEmbedder) and text-to-audio search (build_index.py, search.py)."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import soundfile
import torch

from conftest import TINY_CLAP, run_script, tiny_clap
from dataset.audio import AudioReadError, load_audio
from dataset.manifest import read_csv
from models.text_encoder import load_tokenizer, tokenize
from dataset.audio import list_audio_files
from inference import ClapEmbedder
from inference.index import load_index, make_index, search

SR = 16000
# Search precision must beat chance (0.10) by this much; measured on the toy teacher: see the test.
PRECISION_MARGIN = 0.10
# The tests' tiny CLAP, in the keys of the recipes' YAML files.
TINY = TINY_CLAP


def write_wav(path, seconds, sr=SR, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    wav = (0.1 * rng.standard_normal((int(seconds * sr), channels))).astype("float32")
    soundfile.write(path, wav if channels > 1 else wav[:, 0], sr)
    return str(path)


@pytest.fixture
def tiny_file(tiny_bert, tmp_path):
    """An MS-CLAP-shaped file {'model': state_dict} of a tiny random CLAP, and the model that wrote it."""
    model = tiny_clap(tiny_bert, seed=0).eval()
    path = tmp_path / "CLAP_tiny.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path), model


@pytest.fixture
def tiny_embedder(tiny_file, tiny_bert):
    return ClapEmbedder.from_ms_clap(tiny_file[0], text_model=tiny_bert, eval_duration=1.0, **TINY)


# ------------------------------------------------------------------- API
def test_ms_clap_shaped_file_gives_the_original_models_embeddings(tiny_file, tiny_embedder, tiny_bert, tmp_path):
    """Loaded through from_ms_clap, the file's model embeds audio and text exactly as the model that wrote it."""
    _, original = tiny_file
    clap = tiny_embedder
    assert clap.sample_rate == SR and clap.eval_duration == 1.0 and clap.dim == 16 and "MS CLAP" in clap.source
    wav = write_wav(tmp_path / "one second.wav", 1.0)
    texts = ["a dog barks", "rain falls", "a bird sings in the rain"]
    with torch.no_grad():
        want_audio = original.encode_audio(load_audio(wav, SR)[None]).numpy()
        want_text = original.encode_text(**tokenize(load_tokenizer(tiny_bert), texts)).numpy()
    np.testing.assert_allclose(clap.embed_audio([wav]), want_audio, atol=1e-6)
    np.testing.assert_allclose(clap.embed_text(texts), want_text, atol=1e-6)
    as_torch = clap.embed_text(texts, return_tensors="pt")
    assert isinstance(as_torch, torch.Tensor) and torch.allclose(as_torch, torch.from_numpy(want_text), atol=1e-6)
    # classify under our protocol (a named option since from_ms_clap defaults to msclap's) = the direct
    # computation: prompts embedded, audio ranked by cosine.
    labels = ["dog", "rain", "bird"]
    prompts = clap.embed_text([f"this is a sound of {label}" for label in labels])
    sims = (want_audio @ prompts.T)[0]
    ranking = clap.classify([wav], labels, topk=3, protocol="paper")[0]
    assert [label for label, _ in ranking] == [labels[i] for i in np.argsort(-sims, kind="stable")]
    np.testing.assert_allclose([score for _, score in ranking], np.sort(sims)[::-1], atol=1e-5)
    # The loader's default, msclap's: its prompt, softmax over the classes of exp(logit_scale) * cosine.
    assert clap.protocol == "msclap"
    prompts = clap.embed_text([f"this is the sound of {label}" for label in labels])
    logits = original.logit_scale.detach().exp() * torch.from_numpy(want_audio @ prompts.T)
    probs = torch.softmax(logits, dim=1)[0].numpy()
    ranking = clap.classify([wav], labels, topk=3)[0]
    assert [label for label, _ in ranking] == [labels[i] for i in np.argsort(-probs, kind="stable")]
    np.testing.assert_allclose([score for _, score in ranking], np.sort(probs)[::-1], atol=1e-5)


def test_bf16_embeddings_agree_with_fp32(tiny_file, tiny_bert, tmp_path):
    """precision="bf16" runs both towers under autocast: float32 rows, close to the fp32 ones, recorded."""
    kwargs = dict(text_model=tiny_bert, eval_duration=1.0, **TINY)
    fp32 = ClapEmbedder.from_ms_clap(tiny_file[0], **kwargs)
    bf16 = ClapEmbedder.from_ms_clap(tiny_file[0], precision="bf16", **kwargs)
    wavs = [write_wav(tmp_path / f"{i}.wav", 1.5, seed=i) for i in range(3)]
    a, b = fp32.embed_audio(wavs), bf16.embed_audio(wavs)
    assert b.dtype == np.float32 and bf16.precision == "bf16" and not np.array_equal(a, b)
    assert (a * b).sum(axis=1).min() > 0.98
    t, u = fp32.embed_text(["a dog barks", "rain"]), bf16.embed_text(["a dog barks", "rain"])
    assert (t * u).sum(axis=1).min() > 0.98
    with pytest.raises(ValueError, match="precision"):
        ClapEmbedder.from_ms_clap(tiny_file[0], precision="int8", **kwargs)


def test_wrong_architecture_names_the_mismatched_keys(tiny_file, tiny_bert):
    with pytest.raises(RuntimeError, match="mis-shaped keys"):
        ClapEmbedder.from_ms_clap(tiny_file[0], text_model=tiny_bert, **dict(TINY, d_proj=8))
    with pytest.raises(TypeError, match="Unknown model key"):
        ClapEmbedder.from_ms_clap(tiny_file[0], text_model=tiny_bert, dproj=8, **TINY)


def test_audio_embeddings_unit_norm_deterministic_and_batch_size_invariant(tiny_embedder, tmp_path):
    """Other rates, stereo, short and long clips: unit rows, two calls identical, batch 1 = batch 4."""
    paths = [
        write_wav(tmp_path / "short.wav", 0.4, seed=1),
        write_wav(tmp_path / "stereo 22k.flac", 1.0, sr=22050, channels=2, seed=2),
        write_wav(tmp_path / "long, ünïcode.ogg", 2.7, seed=3),
        write_wav(tmp_path / "exact.wav", 1.0, seed=4),
        write_wav(tmp_path / "five.wav", 1.5, sr=44100, seed=5),
    ]
    first = tiny_embedder.embed_audio(paths, batch_size=4)
    assert first.shape == (5, 16) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, tiny_embedder.embed_audio(paths, batch_size=4))
    np.testing.assert_allclose(tiny_embedder.embed_audio(paths, batch_size=1), first, atol=1e-5)
    assert torch.equal(tiny_embedder.embed_audio(paths, batch_size=4, return_tensors="pt"), torch.from_numpy(first))


def test_long_clip_is_the_renormalised_mean_of_its_windows(tiny_file, tiny_embedder, tmp_path):
    """3.5 s with 1-s windows: four windows spread from start to end, embeddings averaged, renormalised."""
    _, model = tiny_file
    path = write_wav(tmp_path / "long.wav", 3.5, seed=7)
    wav = torch.from_numpy(soundfile.read(path, dtype="float32")[0])
    starts = np.linspace(0, len(wav) - SR, 4).round().astype(int)  # ceil(3.5 / 1) windows, last one ends at the end
    with torch.no_grad():
        windows = model.encode_audio(torch.stack([wav[s : s + SR] for s in starts]))
    want = torch.nn.functional.normalize(windows.mean(0), dim=0).numpy()
    np.testing.assert_allclose(tiny_embedder.embed_audio([path], protocol="paper")[0], want, atol=1e-5)
    # The first window alone is not the answer (the test would pass on a plain crop otherwise).
    assert np.abs(windows[0].numpy() - want).max() > 1e-3
    # from_ms_clap's default protocol, msclap's: one 1-s crop at random.randrange(T - 1 s), seeded per file.
    import random

    from evaluation.protocols import clip_seed

    start = random.Random(clip_seed(path)).randrange(len(wav) - SR)
    with torch.no_grad():
        crop = model.encode_audio(wav[None, start:start + SR])[0].numpy()
    np.testing.assert_allclose(tiny_embedder.embed_audio([path])[0], crop, atol=1e-5)


def test_unreadable_files_raise_with_their_path_or_are_masked(tiny_embedder, tmp_path):
    good = write_wav(tmp_path / "good.wav", 1.0)
    broken = tmp_path / "broken, file.wav"
    broken.write_bytes(b"not audio at all")
    with pytest.raises(AudioReadError, match="broken, file.wav"):
        tiny_embedder.embed_audio([good, str(broken)])
    emb, ok = tiny_embedder.embed_audio([good, str(broken), str(tmp_path / "missing.wav")], on_error="mask")
    assert ok.tolist() == [True, False, False] and not emb[1:].any()
    np.testing.assert_allclose(emb[0], tiny_embedder.embed_audio([good])[0], atol=1e-6)
    ranked = tiny_embedder.classify([good, str(broken)], ["dog", "rain"], topk=1, on_error="mask")
    assert ranked[1] is None and ranked[0][0][0] in ("dog", "rain")


def test_ivf_needs_as_many_vectors_as_cells():
    x = np.eye(8, dtype="float32")
    with pytest.raises(ValueError, match="nlist=16 .* this collection has 8"):
        make_index(x, "ivf", nlist=16)
    index, opts = make_index(x, "ivf", nlist=4, nprobe=100)
    assert opts == {"index_type": "ivf", "nlist": 4, "nprobe": 4} and index.ntotal == 8


# ------------------------------------------------------ toy teacher (slow)
@pytest.mark.slow
def test_toy_teacher_api_matches_the_zeroshot_recipe(toy_world, toy_teacher, tmp_path):
    """classify() gives microsoft_zeroshot.py's predictions; embed_text() is the model's encode_text."""
    proc = run_script([
        "recipes/microsoft_zeroshot.py", "hparams/toy/microsoft_zeroshot.yaml", f"--data_folder={toy_world}/ESC-50",
        f"--ssl_checkpoints_dir={toy_teacher}/save", f"--output_base={tmp_path}", "--experiment_name=zs", "--folds=1",
        "--noprogressbar",
    ])
    assert proc.returncode == 0, proc.stderr[-3000:]
    predictions = read_csv(tmp_path / "zs" / "predictions.csv")
    with open(tmp_path / "zs" / "zeroshot_results.json", encoding="utf-8") as f:
        labels = json.load(f)["labels"]
    # The toy zero-shot YAML scores 5-s crops; the run's own hyperparams.yaml says 4 s.
    clap = ClapEmbedder.from_experiment(toy_teacher, eval_duration=5.0)
    assert clap.config["audio_width"] == 0.0625 and "CKPT+" in clap.source
    ranked = clap.classify([p["wav_path"] for p in predictions], labels, topk=5, batch_size=4)
    assert [r[0][0] for r in ranked] == [p["predicted"] for p in predictions]
    np.testing.assert_allclose([r[0][1] for r in ranked], [float(p["score"]) for p in predictions], atol=1e-4)
    assert [";".join(label for label, _ in r) for r in ranked] == [p["top5"] for p in predictions]

    texts = ["this is a sound of dog", "rain is falling on a roof"]
    with torch.no_grad():
        want = clap.model.encode_text(**tokenize(clap.tokenizer, texts)).numpy()
    np.testing.assert_allclose(clap.embed_text(texts), want, atol=1e-5)


def clotho_events(toy_world):
    """{path relative to clotho/: set of events} of the toy Clotho clips: the events its five captions name."""
    from dataset.toy import caption_events

    events = {}
    for split in ("development", "validation", "evaluation"):
        path = os.path.join(toy_world, "clotho", f"clotho_captions_{split}.csv")
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                named = set()
                for k in range(1, 6):
                    named.update(caption_events(row[f"caption_{k}"]))
                events[os.path.join(split, row["file_name"])] = named
    return events


@pytest.fixture(scope="module")
def collection(toy_world, tmp_path_factory):
    """A copy of the toy Clotho audio (names with spaces, commas, parentheses, non-ASCII) plus a broken file."""
    root = tmp_path_factory.mktemp("collection") / "clotho cöllection, 1"
    shutil.copytree(os.path.join(toy_world, "clotho"), root, ignore=shutil.ignore_patterns("*.csv"))
    (root / "broken.wav").write_bytes(b"RIFF but not really")
    (root / "readme.txt").write_text("not audio")
    events = {os.path.join(str(root), rel): ev for rel, ev in clotho_events(toy_world).items()}
    return str(root), events


@pytest.fixture(scope="module")
def flat_index(collection, toy_teacher, tmp_path_factory):
    folder, _ = collection
    out = tmp_path_factory.mktemp("index") / "flat index"
    before = sorted(os.walk(folder))
    proc = run_script(["recipes/build_index.py", f"--audio_folder={folder}", f"--output_folder={out}",
                       f"--ssl_checkpoints_dir={toy_teacher}/save", "--noprogressbar"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.walk(folder)) == before, "build_index.py wrote into the audio folder"
    return str(out), proc


def precision_at(answers, events, k):
    """Mean over queries of the fraction of the top k files that hold the queried event."""
    return float(np.mean([np.mean([a["event"] in events[r["path"]] for r in a["results"][:k]]) for a in answers]))


@pytest.mark.slow
def test_build_index_and_search_find_the_queried_event(collection, flat_index):
    """Every event query by subprocess on the toy Clotho audio: the top k hold that event well above chance.

    The toy teacher was trained on these clips' captions (clean recordings). On the toy ESC-50
    set (field recordings, the domain shift it never heard) its text-to-audio search is at
    chance (P@10 0.11 for 0.10), so that set would test nothing.
    """
    folder, events = collection
    out, proc = flat_index
    assert f"Indexed {len(events)} files (flat, dim 256), 1 unreadable" in proc.stdout, proc.stdout
    assert sorted(os.listdir(out)) == ["embeddings", "index.faiss", "index.json", "paths.txt"]
    index, paths, info = load_index(out)
    # The path list round-trips names with spaces, commas, parentheses and non-ASCII letters.
    assert sorted(paths) == sorted(events) and len(paths) == index.ntotal == info["count"]
    assert any("," in p for p in paths) and any(not p.isascii() for p in paths) and any(" (" in p for p in paths)
    assert info["listed"] == len(events) + 1 and info["skipped"] == 1 and info["index_type"] == "flat"
    assert info["dim"] == 256 and "CKPT+" in info["model"]["load"]["ssl_checkpoints_dir"]

    names = sorted({e for ev in events.values() for e in ev})
    queries = [f"this is a sound of {e.replace('_', ' ')}" for e in names]
    proc = run_script(["recipes/search.py", f"--index_folder={out}", "--topk=10", "--json"] + queries)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = json.loads(proc.stdout)
    assert [a["query"] for a in answers] == queries
    for a, event in zip(answers, names):
        a["event"] = event
        assert [r["rank"] for r in a["results"]] == list(range(1, 11))
        scores = [r["score"] for r in a["results"]]
        assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 + 1e-5 for s in scores)
    chance = float(np.mean([np.mean([a["event"] in ev for ev in events.values()]) for a in answers]))
    p1, p5, p10 = (precision_at(answers, events, k) for k in (1, 5, 10))
    print(f"toy teacher text->audio search, {len(names)} event queries on {len(paths)} clips: "
          f"P@1 {p1:.3f}, P@5 {p5:.3f}, P@10 {p10:.3f}; chance {chance:.3f}")
    # Measured: P@1 0.37, P@5 0.32, P@10 0.27 with chance 0.083 (19 queries, 96 clips).
    assert p5 >= chance + PRECISION_MARGIN and p10 >= chance + PRECISION_MARGIN

    # The table output, for a person.
    proc = run_script(["recipes/search.py", f"--index_folder={out}", "--topk=3", queries[0]])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == f"query: {queries[0]}" and len(lines) == 5 and lines[2].split()[0] == "1"


@pytest.mark.slow
def test_ivf_index_with_every_cell_probed_equals_flat(collection, flat_index, toy_teacher, tmp_path):
    """IVF (nprobe = nlist) from a path list returns the flat index's top-k; the embeddings are reused, not
    recomputed."""
    flat_out, _ = flat_index
    _, flat_paths, _ = load_index(flat_out)
    # The files the folder build listed (broken one included), as relative paths: the embeddings are reused.
    listing = tmp_path / "list dir" / "paths, ü.txt"
    listing.parent.mkdir()
    listed = list_audio_files(collection[0])
    listing.write_text("".join(os.path.relpath(p, listing.parent) + "\n" for p in listed), encoding="utf-8")
    out = tmp_path / "ivf"
    shutil.copytree(os.path.join(flat_out, "embeddings"), out / "embeddings")
    proc = run_script(["recipes/build_index.py", f"--audio_pathfile={listing}", f"--output_folder={out}",
                       f"--ssl_checkpoints_dir={toy_teacher}/save", "--index_type=ivf", "--nlist=8", "--nprobe=8",
                       "--noprogressbar"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "up to date" in proc.stderr + proc.stdout
    ivf, ivf_paths, info = load_index(out)
    assert ivf_paths == flat_paths and (info["index_type"], info["nlist"], info["nprobe"]) == ("ivf", 8, 8)
    flat, _, _ = load_index(flat_out)
    clap = ClapEmbedder.from_experiment(toy_teacher)
    queries = clap.embed_text(["this is a sound of dog", "rain", "a siren wails while a car horn honks", "wind"])
    for a, b in zip(search(flat, flat_paths, queries, 10), search(ivf, ivf_paths, queries, 10)):
        assert [r["path"] for r in a] == [r["path"] for r in b]
        np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-5)
    # The query embeddings of the API are those search.py uses: the flat index's own rows score 1 against themselves.
    emb = np.load(os.path.join(flat_out, "embeddings", "audio_emb.npy"))
    np.testing.assert_allclose(search(flat, flat_paths, emb[:3], 1)[0][0]["score"], 1.0, atol=1e-5)
