"""Odd audio folders (issue 25, defects 10-12): any legal file name is indexed, a killed run resumes after its
inputs were deleted, and a link never leads the listing out of the folder given.

The hardening table (``tests/hardening_rows_storage.py``, rows 10-12) holds the line each case shows the
user; these tests check what ends up in the index and in the embedding folder.
"""

import json
import logging
import os

import numpy as np
import pytest
import soundfile as sf

from conftest import tiny_clap as build_tiny_clap, write_tiny_bert
from dataset.audio import list_audio_files, walk_audio_files
from embeddings import extract
from embeddings.extract import embed_audio_files
from embeddings.options import AudioEmbeddingOptions
from embeddings.store import SHARD_DIR, load_audio_set, read_skipped
from index_helpers import index_argv, script, shard_write_dies, tiny_files, write_clips

SR = 16000
#: Names a plain line of paths.txt could not hold, and one that is not UTF-8 (bytes 0xE9: Latin-1 "é").
ODD_NAMES = ["two\nlines.wav", "carriage\rreturn.wav", "tab\there.wav", '"quoted".wav', " leading space.wav",
             os.fsdecode(b"caf\xe9.wav")]


# ------------------------------------------------------------ 10: any name
def test_any_legal_file_name_is_indexed_and_found(tmp_path):
    """Every name of ODD_NAMES is indexed, its vector is its own clip's, and search.py returns it as it is."""
    from inference import ClapEmbedder
    from inference.index import format_table, load_index

    tiny = tiny_files(tmp_path / "tiny")
    audio = tmp_path / "audio"
    names = ["plain.wav"] + ODD_NAMES
    os.makedirs(audio)
    for k, name in enumerate(names):  # as bytes: soundfile cannot encode a name that is not UTF-8
        wav = (0.1 * np.random.default_rng(k).standard_normal(SR // 2)).astype("float32")
        sf.write(os.fsencode(os.path.join(audio, name)), wav, SR, format="WAV")
    out = tmp_path / "index"
    info = script("build_index").main(index_argv(audio, out, tiny))
    index, paths, _ = load_index(str(out))
    assert info["count"] == len(names) and info["skipped"] == 0
    assert sorted(paths) == sorted(os.path.join(str(audio), n) for n in names)
    lines = (out / "paths.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(names)
    # Control characters and bytes that are not UTF-8 are quoted; quotes and spaces inside a path stay plain.
    quoted = [n for n in ODD_NAMES if n not in ('"quoted".wav', " leading space.wav")]
    assert sorted(json.loads(line) for line in lines if line.startswith('"')) == sorted(
        os.path.join(str(audio), n) for n in quoted)

    clap = ClapEmbedder.from_pretrained(clap_ckpt_path=tiny["ckpt"], model_hparams=tiny["yaml"], eval_duration=0.5)
    np.testing.assert_allclose(index.reconstruct_n(0, index.ntotal), clap.embed_audio(paths), atol=1e-5)
    answers = script("search").main([f"--index_folder={out}", "a dog barks", f"--topk={len(names)}"])
    found = [r["path"] for r in answers[0]["results"]]
    assert sorted(found) == sorted(paths)
    table = format_table("a dog barks", answers[0]["results"])
    assert len(table.splitlines()) == 2 + len(names)  # one line per result, names with a line break quoted


# -------------------------------------------------- 11: deleted after a kill
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    bert = write_tiny_bert(tmp_path_factory.mktemp("bert") / "bert", vocab_words="rain dog barks".split())
    return build_tiny_clap(bert, seed=0).eval()


def embed(model, paths, out):
    options = AudioEmbeddingOptions(sample_rate=SR, duration=0.5, batch_size=2, shard_size=2, progress=False,
                                    model_id="m", dtype="float32")
    return embed_audio_files(model, paths, str(out), options)


@pytest.fixture
def decoded(monkeypatch):
    """The files the embedding step decodes, in order."""
    seen = []
    real = extract.AudioClips

    class Spy(real):
        def __getitem__(self, index):
            seen.append(self.paths[index])
            return super().__getitem__(index)

    monkeypatch.setattr(extract, "AudioClips", Spy)
    return seen


def kill_after_first_shard(model, paths, out):
    """Embeds ``paths`` into ``out``, killed while writing the second shard."""
    with shard_write_dies(2), pytest.raises(KeyboardInterrupt):
        embed(model, paths, out)


def test_a_killed_run_drops_what_is_gone_keeps_its_shards_and_ends_as_a_fresh_run(
        model, tmp_path, caplog, decoded):
    """Killed after shard 1 of 3; then c1 (embedded) and c4 (not yet) deleted, c3 rewritten, c6 added."""
    clips = write_clips(tmp_path / "audio", [f"c{k}.wav" for k in range(7)])
    out = tmp_path / "emb"
    kill_after_first_shard(model, clips[:6], out)
    os.remove(clips[1])
    os.remove(clips[4])
    sf.write(clips[3], np.zeros(SR // 2, dtype="float32") + 0.05, SR)  # rewritten: another size-preserving content
    os.utime(clips[3], ns=(0, os.stat(clips[3]).st_mtime_ns + 10**9))
    now = [clips[0], clips[2], clips[3], clips[5], clips[6]]
    decoded.clear()
    with caplog.at_level(logging.INFO, logger="embeddings"):
        info = embed(model, now, out)
    line = [r.getMessage() for r in caplog.records if r.name == "embeddings.resume"]
    assert line == [f"Audio embeddings in {out}: 3 file(s) of the interrupted run are gone or changed since "
                    f"(e.g. {clips[1]}) and dropped, 2 added; its 1 complete shard(s) are kept."]
    assert decoded == [clips[2], clips[5], clips[3], clips[6]]  # c0 kept from its shard; gone files not read
    emb, paths, _ = load_audio_set(str(out))
    assert paths == now and info["rows"] == 5 and not os.path.exists(out / SHARD_DIR)
    fresh = embed(model, now, tmp_path / "fresh")
    assert fresh["rows"] == 5
    np.testing.assert_allclose(emb, load_audio_set(str(tmp_path / "fresh"))[0], atol=1e-5)


def test_a_killed_run_whose_list_still_names_a_deleted_file_lists_it_as_unreadable(model, tmp_path):
    """The embedding step's path list unchanged, a listed file deleted: skipped as a fresh run skips it."""
    clips = write_clips(tmp_path / "audio", [f"c{k}.wav" for k in range(5)])
    out = tmp_path / "emb"
    kill_after_first_shard(model, clips, out)
    os.remove(clips[0])
    info = embed(model, clips, out)
    assert info["rows"] == 4 and info["skipped"] == 1
    assert [(int(r["index"]), r["wav_path"]) for r in read_skipped(str(out))] == [(0, clips[0])]
    embed(model, clips, tmp_path / "fresh")
    np.testing.assert_allclose(load_audio_set(str(out))[0], load_audio_set(str(tmp_path / "fresh"))[0], atol=1e-5)


# ----------------------------------------------- 12: links out of the folder
def test_links_out_of_the_folder_are_skipped_and_counted_links_within_it_followed_once(tmp_path, caplog):
    world = tmp_path / "world"
    audio = world / "audio"
    inside = write_clips(audio, ["a.wav"]) + write_clips(audio / "sub", ["b.wav"])
    outside = write_clips(world / "elsewhere", ["x.wav", "y.wav"])
    os.symlink("..", audio / "up")  # the case: the parent, with everything beside the folder
    os.symlink(outside[0], audio / "linked file.wav")  # a file link out
    os.symlink(str(world / "elsewhere"), audio / "absolute")  # an absolute link out
    os.symlink("sub", audio / "inner")  # within: followed (sub is then not walked twice)
    os.symlink("..", audio / "sub" / "loop")  # within, a loop back to the folder: ends
    with caplog.at_level(logging.WARNING, logger="dataset"):
        listed = list_audio_files(str(audio))
    assert listed == [inside[0], str(audio / "inner" / "b.wav")]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"Skipped 3 symbolic link(s) in {audio} that lead out of it (e.g. {audio / 'absolute'} -> "
                           f"{world / 'elsewhere'})")
    # The corpus preparation's walker follows links out, as documented (users link corpora into a data folder).
    assert set(outside) <= {os.path.realpath(p) for p in walk_audio_files(str(audio))}


def test_build_index_indexes_nothing_outside_the_folder(tmp_path):
    tiny = tiny_files(tmp_path / "tiny")
    world = tmp_path / "world"
    audio = world / "audio"
    inside = write_clips(audio, ["a.wav", "b.wav"])
    write_clips(world / "elsewhere", ["x.wav", "y.wav", "z.wav"])
    os.symlink("..", audio / "up")
    info = script("build_index").main(index_argv(audio, tmp_path / "index", tiny))
    from inference.index import load_index

    assert info["count"] == 2 and load_index(str(tmp_path / "index"))[1] == inside
