"""Embedding extraction: aligned rows, skipped clips, rank sharding and resuming give the same bytes."""

import filecmp
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import tiny_clap as build_tiny_clap, write_tiny_bert
from embeddings import shards, update
from embeddings.extract import embed_audio_files, embed_captions
from embeddings.lists import caption_table
from embeddings.options import AudioEmbeddingOptions, CaptionEmbeddingOptions
from embeddings.store import AUDIO_EMB, AUDIO_PATHS, AUDIO_SKIPPED, load_audio_set, load_caption_set, read_skipped
from models.text_encoder import load_tokenizer

SR = 16000
FILES = [AUDIO_EMB, AUDIO_PATHS, AUDIO_SKIPPED]


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory):
    folder = write_tiny_bert(tmp_path_factory.mktemp("bert") / "bert", vocab_words="rain dog barks".split())
    model = build_tiny_clap(folder, seed=0, spec_augment=False).eval()
    return model, load_tokenizer(folder)


@pytest.fixture(scope="module")
def clip_list(tmp_path_factory):
    """Eleven clips of different lengths, a missing file and a corrupt one in the middle."""
    d = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(11):
        p = str(d / f"clip{i}.wav")
        sf.write(p, (0.1 * rng.standard_normal(int(SR * (0.2 + 0.15 * i)))).astype("float32"), SR)
        paths.append(p)
    corrupt = str(d / "corrupt.wav")
    with open(corrupt, "wb") as f:
        f.write(b"not a wav file")
    paths.insert(3, str(d / "missing.wav"))
    paths.insert(8, corrupt)
    return paths


def run(model, paths, out, **kwargs):
    opts = dict(sample_rate=SR, duration=0.5, batch_size=3, shard_size=3, progress=False, model_id="m")
    opts.update(kwargs)
    return embed_audio_files(model, paths, str(out), AudioEmbeddingOptions(**opts))


def same_files(a, b, names=FILES):
    return all(filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False) for n in names)


def test_rows_stay_aligned_and_unreadable_clips_are_listed(tiny_clap, clip_list, tmp_path):
    model, _ = tiny_clap
    info = run(model, clip_list, tmp_path)
    emb, paths, _ = load_audio_set(str(tmp_path))
    assert info["rows"] == 11 and info["skipped"] == 2 and emb.dtype == np.float16
    assert paths == [p for p in clip_list if "missing" not in p and "corrupt" not in p]
    skipped = read_skipped(str(tmp_path))
    assert [int(r["index"]) for r in skipped] == [3, 8] and "not found" in skipped[0]["error"]
    # Row k is the embedding of paths[k]: compare with embedding each clip alone.
    from dataset.audio import load_audio

    with torch.no_grad():
        alone = model.encode_audio(load_audio(paths[5], SR, 0.5, crop="center")[None]).numpy()[0]
    np.testing.assert_allclose(emb[5].astype(np.float32), alone, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert not os.path.exists(tmp_path / "shards")


def test_rank_shards_merge_to_the_single_process_bytes(tiny_clap, clip_list, tmp_path):
    model, _ = tiny_clap
    run(model, clip_list, tmp_path / "one")
    # Rank 1 writes its shards (1, 3), then rank 0 writes shards 0, 2, 4 and merges everything.
    assert run(model, clip_list, tmp_path / "two", rank=1, world_size=2).get("rows") is None
    assert sorted(os.listdir(tmp_path / "two" / "shards")) == [
        "audio-0000000003-0000000006.npz", "audio-0000000009-0000000012.npz"]
    run(model, clip_list, tmp_path / "two", rank=0, world_size=2)
    assert same_files(tmp_path / "one", tmp_path / "two")


def test_resume_uses_existing_shards_and_gives_the_same_bytes(tiny_clap, clip_list, tmp_path, monkeypatch):
    model, _ = tiny_clap
    run(model, clip_list, tmp_path / "full", dtype="float32")
    # Kill after two shards: the third shard write raises.
    real_save, calls = shards._save_shard, []

    def dying_save(path, *args):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_save(path, *args)

    monkeypatch.setattr(shards, "_save_shard", dying_save)
    with pytest.raises(KeyboardInterrupt):
        run(model, clip_list, tmp_path / "resumed", dtype="float32")
    monkeypatch.setattr(shards, "_save_shard", lambda path, *a: (calls.append(path), real_save(path, *a)))
    calls.clear()
    run(model, clip_list, tmp_path / "resumed", dtype="float32")
    assert len(calls) == 3  # 5 shards, 2 already there
    assert same_files(tmp_path / "full", tmp_path / "resumed")
    assert np.load(tmp_path / "full" / AUDIO_EMB).dtype == np.float32
    # Done and up to date: a third run embeds nothing.
    calls.clear()
    run(model, clip_list, tmp_path / "resumed", dtype="float32")
    assert calls == []


def test_resume_with_other_options_is_refused(tiny_clap, clip_list, tmp_path, monkeypatch):
    model, _ = tiny_clap
    monkeypatch.setattr(update, "merge_update", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run(model, clip_list, tmp_path)
    with pytest.raises(SystemExit, match="duration"):
        run(model, clip_list, tmp_path, duration=0.25)


def test_chunk_and_average(tiny_clap, tmp_path):
    model, _ = tiny_clap
    p = str(tmp_path / "long.wav")
    wav = (0.1 * np.random.default_rng(1).standard_normal(SR * 2)).astype("float32")
    sf.write(p, wav, SR)
    run(model, [p], tmp_path / "out", duration=0.5, chunking=True, max_chunks=8, dtype="float32")
    got = np.load(tmp_path / "out" / AUDIO_EMB)[0]
    with torch.no_grad():
        chunks = model.encode_audio(torch.from_numpy(wav).reshape(4, SR // 2))
    want = torch.nn.functional.normalize(chunks.mean(0), dim=0).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_caption_embeddings_and_table(tiny_clap, tmp_path):
    model, tokenizer = tiny_clap
    rows = [
        {"ID": "a", "wav_path": "/a.wav", "caption": 'A dog barks, "twice".', "source": "clotho", "source_id": "11"},
        {"ID": "b", "wav_path": "/b.wav", "caption": "rain", "source": "clotho", "source_id": "12"},
        {"ID": "c", "wav_path": "/c.wav", "caption": 'A dog barks, "twice".', "source": "fsd50k", "source_id": "13"},
    ]
    table = caption_table(rows)
    embed_captions(model, tokenizer, table, str(tmp_path),
                   CaptionEmbeddingOptions(batch_size=2, shard_size=2, progress=False, model_id="m"))
    emb, got, info = load_caption_set(str(tmp_path), "text")
    assert emb.shape == (2, 16) and info["rows"] == 2 and info["model"] == "m"
    assert [(t["caption"], t["source_ids"], t["n_rows"]) for t in got] == [('A dog barks, "twice".', "11;13", 2),
                                                                           ("rain", "12", 1)]


def test_precision_is_part_of_the_cache_key(tiny_clap, clip_list, tmp_path, caplog):
    """bf16 embeddings are recorded as such, never reused for an fp32 request (or the other way)."""
    model, _ = tiny_clap
    fp32 = run(model, clip_list, tmp_path)
    first = np.load(tmp_path / AUDIO_EMB).astype(np.float32)
    bf16 = run(model, clip_list, tmp_path, precision="bf16")
    assert "precision" not in fp32 and bf16["precision"] == "bf16"
    low = np.load(tmp_path / AUDIO_EMB).astype(np.float32)
    assert not np.array_equal(low, first)  # recomputed, not the fp32 files
    cosines = (low * first).sum(axis=1) / np.linalg.norm(low, axis=1) / np.linalg.norm(first, axis=1)
    assert cosines.min() > 0.98, cosines
    with caplog.at_level("INFO"):
        again = run(model, clip_list, tmp_path, precision="bf16")
    assert again == bf16 and "up to date" in caplog.text
    run(model, clip_list, tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / AUDIO_EMB).astype(np.float32), first)
