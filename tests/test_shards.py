"""Audio in webdataset tar shards (LAION audio-dataset layout): member paths, shard lists, exact decoding,
resumable listing, damaged shards, and the embedding step giving the same rows as for files on disk."""

import gzip
import io
import json
import os
import shutil
import tarfile

import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

from conftest import tiny_clap as build_tiny_clap, write_tiny_bert
from dataset import shard_index
from dataset.audio import AudioReadError, load_audio, probe_audio, read_audio_mono
from dataset.corpora.user_csv import read_user_csv
from dataset.manifest import file_key, write_csv
from dataset.shard_index import index_shards
from dataset.shards import (
    ShardReadError, ShardSpecError, audio_exists, expand_shards, member_path, read_member_bytes, split_member_path,
)
from embeddings.extract import embed_audio_files
from embeddings.options import AudioEmbeddingOptions
from embeddings.store import load_audio_set, read_skipped

SR = 16000


def clip(seed, frames, channels=2):
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal((frames, channels))).astype("float32")


def encode(data, fmt, subtype):
    buf = io.BytesIO()
    sf.write(buf, data, SR, format=fmt, subtype=subtype)
    return buf.getvalue()


def write_shard(path, samples):
    """``samples``: ``[(key, extension, bytes)]`` written as LAION's audio-dataset does (audio + json)."""
    with wds.TarWriter(str(path)) as sink:
        for key, ext, data in samples:
            sink.write({"__key__": key, ext: data, "json": {"text": f"caption of {key}", "original_data": {}}})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Nine clips (WAV and FLAC, stereo and mono, 0.1 to 1.3 s) on disk and in three shards, same bytes."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "files").mkdir()
    (root / "shards").mkdir()
    files, members, per_shard = [], [], [[], [], []]
    for i in range(9):
        ext, fmt, subtype = ("flac", "FLAC", "PCM_16") if i % 2 else ("wav", "WAV", "FLOAT")
        data = encode(clip(i, int(SR * (0.1 + 0.15 * i)), channels=2 if i % 3 else 1), fmt, subtype)
        key = f"Y{i:03d}clip"
        path = root / "files" / f"{key}.{ext}"
        path.write_bytes(data)
        files.append(str(path))
        per_shard[i // 3].append((key, ext, data))
    for s, samples in enumerate(per_shard):
        tar = root / "shards" / f"shard-{s:06d}.tar"
        write_shard(tar, samples)
        members += [member_path(str(tar), f"{key}.{ext}") for key, ext, _ in samples]
    return dict(root=root, files=files, members=members)


def test_member_paths_round_trip(tmp_path):
    assert split_member_path(member_path("/d/shard-000003.tar", "Y1a2b.flac")) == ("/d/shard-000003.tar", "Y1a2b.flac")
    assert split_member_path("/d/x.TAR#sub/k.wav") == ("/d/x.TAR", "sub/k.wav")
    assert split_member_path("/d/a.tar#") is None and split_member_path("/d/.tar#k.wav") is None
    assert split_member_path("/d/clip#1.wav") is None and split_member_path("/d/a.tar.gz#k.wav") is None
    odd = tmp_path / "a.tar#k.wav"  # an ordinary file whose name contains .tar#
    sf.write(str(odd), clip(0, 100), SR)
    assert split_member_path(str(odd)) is None and probe_audio(str(odd)) == (100, SR, 2)
    with pytest.raises(ValueError):
        member_path("/d/x.zip", "k.wav")


def test_expand_shards_file_folder_glob_brace(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    names = ["a/shard-000000.tar", "a/shard-000001.tar", "a/b/shard-000002.tar", "a/notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    s0, s1, s2 = (str(tmp_path / n) for n in names[:3])
    assert expand_shards(tmp_path / "a") == [s2, s0, s1]  # sorted paths: a/b/... before a/shard-...
    assert expand_shards(str(tmp_path / "a" / "shard-000001.tar")) == [s1]
    assert expand_shards(str(tmp_path / "a" / "*.tar")) == [s0, s1]
    assert expand_shards(str(tmp_path / "a" / "**" / "*.tar")) == [s2, s0, s1]
    assert expand_shards(str(tmp_path / "a" / "shard-{000000..000001}.tar")) == [s0, s1]
    assert expand_shards([str(tmp_path / "a" / "b"), s0]) == [s2, s0]
    for spec, words in [(tmp_path / "none.tar", "not found"), (tmp_path / "a" / "*.tgz", "No shard matches"),
                        (tmp_path / "a" / "b" / "shard-{000000..000003}.tar", "3 of the 4 shards")]:
        with pytest.raises(ShardSpecError, match=words) as err:
            expand_shards(str(spec))
        assert str(spec) in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardSpecError, match="No .tar shard below"):
        expand_shards(tmp_path / "empty")


def test_every_member_decodes_exactly_as_its_file(corpus):
    for path, member in zip(corpus["files"], corpus["members"]):
        assert audio_exists(member) and read_member_bytes(member) == open(path, "rb").read()
        assert probe_audio(member) == probe_audio(path)
        frames = probe_audio(path)[0]
        for start, count in [(0, -1), (7, 100), (frames // 2, -1), (frames - 5, 5)]:
            a, sr_a = read_audio_mono(member, start, count)
            b, sr_b = read_audio_mono(path, start, count)
            assert sr_a == sr_b and np.array_equal(a, b)
        for duration, crop in [(None, "random"), (0.25, "start"), (0.25, "center"), (0.25, "paper"), (2.0, "start")]:
            assert np.array_equal(load_audio(member, 22050, duration, crop=crop).numpy(),
                                  load_audio(path, 22050, duration, crop=crop).numpy())
        assert file_key(member) == (os.path.getsize(path), os.stat(member.split("#")[0]).st_mtime_ns)


def test_missing_members_and_shards_are_named(corpus, tmp_path):
    tar = corpus["members"][0].split("#")[0]
    for path, words in [(tar + "#Ynothere.flac", "not found"), (str(tmp_path / "gone.tar#k.flac"), "not found")]:
        assert not audio_exists(path) and file_key(path) == (-1, -1)
        with pytest.raises(AudioReadError, match=words) as err:
            load_audio(path, SR, 0.5)
        assert path in str(err.value)
    gz = tmp_path / "packed.tar"
    gz.write_bytes(gzip.compress(open(tar, "rb").read()))
    with pytest.raises(AudioReadError, match="gzip") as err:
        probe_audio(str(gz) + "#Y000clip.wav")
    assert str(gz) in str(err.value)


def test_a_rewritten_shard_is_indexed_again(tmp_path):
    tar = tmp_path / "s.tar"
    write_shard(tar, [("a", "wav", encode(clip(1, 800), "WAV", "FLOAT"))])
    before = read_audio_mono(f"{tar}#a.wav")[0]
    write_shard(tar, [("b", "wav", b"x" * 10), ("a", "wav", encode(clip(2, 1600), "WAV", "FLOAT"))])
    os.utime(tar, ns=(1, 10**18))  # a different mtime even on a coarse clock
    after = read_audio_mono(f"{tar}#a.wav")[0]
    assert before.shape == (800,) and after.shape == (1600,) and audio_exists(f"{tar}#b.wav")


def test_index_shards_lists_in_order_and_resumes_by_shard(corpus, tmp_path, monkeypatch):
    shards = tmp_path / "shards"
    shutil.copytree(corpus["root"] / "shards", shards)
    want = [m.replace(str(corpus["root"] / "shards"), str(shards)) for m in corpus["members"]]
    real, reads = shard_index._stream_shard, []
    monkeypatch.setattr(shard_index, "_stream_shard", lambda tar: (reads.append(tar), real(tar))[1])
    paths, report = index_shards(str(shards), index_dir=tmp_path / "index")
    assert paths == want and len(reads) == 3
    assert [(r["samples"], r["audio"], r["unreadable"], r["error"], r["reused"]) for r in report] == [
        (3, 3, 0, None, False)] * 3
    assert sorted(os.listdir(tmp_path / "index")) == [f"shard-00000{i}.tar.json" for i in range(3)]
    again, report = index_shards(str(shards / "shard-{000000..000002}.tar"), index_dir=tmp_path / "index")
    assert again == want and len(reads) == 3 and all(r["reused"] for r in report)
    rewritten = shards / "shard-000001.tar"
    write_shard(rewritten, [("Ynew", "flac", encode(clip(9, 500), "FLAC", "PCM_16"))])
    os.utime(rewritten, ns=(1, 10**18))
    third, report = index_shards(str(shards), index_dir=tmp_path / "index")
    assert reads[3:] == [str(rewritten)] and [r["reused"] for r in report] == [True, False, True]
    assert third == want[:3] + [f"{rewritten}#Ynew.flac"] + want[6:]
    assert index_shards(str(shards))[0] == third and len(reads) == 7  # without index_dir every shard is read


def test_a_truncated_shard_keeps_its_readable_samples(corpus, tmp_path):
    data = open(corpus["members"][3].split("#")[0], "rb").read()
    # Cut inside the data of the third sample's audio member.
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        third = [m for m in t.getmembers() if m.name.endswith((".wav", ".flac"))][2]
    cut = third.offset_data + third.size // 2
    (tmp_path / "d").mkdir()
    bad = tmp_path / "d" / "shard-000001.tar"
    bad.write_bytes(data[:cut])
    junk = tmp_path / "d" / "shard-000002.tar"
    junk.write_bytes(b"this is not a tar file\n" * 100)
    good = tmp_path / "d" / "shard-000000.tar"
    shutil.copy(corpus["members"][0].split("#")[0], good)
    paths, report = index_shards(str(tmp_path / "d"), index_dir=tmp_path / "index")
    assert [p.split("#")[1] for p in paths] == [m.split("#")[1] for m in corpus["members"][:5]]
    ok, truncated, broken = report
    assert ok["error"] is None and ok["unreadable"] == 0
    assert truncated["shard"] == str(bad) and (truncated["samples"], truncated["audio"], truncated["unreadable"]) == (
        2, 2, 1)
    assert f"truncated at byte {cut}" in truncated["error"]
    assert broken["shard"] == str(junk) and broken["audio"] == 0 and broken["unreadable"] == 1
    assert "not a tar file" in broken["error"]
    # The listed members read exactly; the cut one is named when read; the report survives a rerun.
    for member, listed in zip(corpus["members"][3:5], paths[3:5]):
        assert np.array_equal(read_audio_mono(member)[0], read_audio_mono(listed)[0])
    with pytest.raises(AudioReadError, match="truncated") as err:
        read_audio_mono(f"{bad}#{third.name}")
    assert f"{bad}#{third.name}" in str(err.value)
    with pytest.raises(ShardReadError):
        read_member_bytes(f"{bad}#{third.name}")
    again, report_again = index_shards(str(tmp_path / "d"), index_dir=tmp_path / "index")
    assert again == paths and [r["error"] for r in report_again] == [r["error"] for r in report]
    record = json.loads((tmp_path / "index" / "shard-000001.tar.json").read_text())
    assert record["shard"] == str(bad) and record["unreadable"] == 1


def test_caption_csv_rows_with_member_paths_are_kept(corpus, tmp_path):
    csv_path = tmp_path / "pairs.csv"
    write_csv(csv_path, [{"wav_path": corpus["members"][0], "caption": "noise"},
                         {"wav_path": corpus["members"][0][:-5] + "x.flac", "caption": "gone"}])
    rows, n_missing = read_user_csv(str(csv_path))
    assert [r["wav_path"] for r in rows] == [corpus["members"][0]] and n_missing == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = write_tiny_bert(tmp_path_factory.mktemp("bert") / "bert", vocab_words="rain dog".split())
    return build_tiny_clap(folder, seed=0, spec_augment=False).eval()


def test_embedding_rows_of_members_equal_those_of_files(tiny, corpus, tmp_path, monkeypatch):
    opts = dict(sample_rate=SR, duration=0.5, crop="paper", batch_size=4, shard_size=4, progress=False, model_id="m",
                dtype="float32")
    missing = corpus["members"][0].rsplit("#", 1)[0] + "#Ymissing.flac"
    members = corpus["members"][:4] + [missing] + corpus["members"][4:]
    files = corpus["files"][:4] + [str(corpus["root"] / "files" / "Ymissing.flac")] + corpus["files"][4:]
    info_files = embed_audio_files(tiny, files, str(tmp_path / "files"), AudioEmbeddingOptions(**opts))
    info_members = embed_audio_files(tiny, members, str(tmp_path / "members"), AudioEmbeddingOptions(**opts))
    emb_files, _, _ = load_audio_set(str(tmp_path / "files"))
    emb_members, kept, _ = load_audio_set(str(tmp_path / "members"))
    assert info_files["rows"] == info_members["rows"] == 9 and np.array_equal(emb_files, emb_members)
    assert kept == corpus["members"]
    assert [int(r["index"]) for r in read_skipped(str(tmp_path / "members"))] == [4]
    # Run again: every member's key is unchanged, so nothing is read or embedded.
    monkeypatch.setattr("dataset.clips.load_audio", lambda *a, **k: pytest.fail("a member was read again"))
    again = embed_audio_files(tiny, members, str(tmp_path / "members"), AudioEmbeddingOptions(**opts))
    assert again["rows"] == 9 and np.array_equal(load_audio_set(str(tmp_path / "members"))[0], emb_members)
