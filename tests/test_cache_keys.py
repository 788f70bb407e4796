"""Caches keyed on the files, not their names: a file rewritten in place is embedded again, a deleted one dropped,
a new one added, the others kept; for the embedding step, the index, the retrieval evaluation and the manifests."""

import csv
import filecmp
import json
import logging
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import TINY_CLAP, load_script, tiny_clap, write_tiny_bert
from dataset.manifest import read_csv, write_csv
from embeddings import extract, shards, update
from embeddings.extract import embed_audio_files
from embeddings.options import AudioEmbeddingOptions
from embeddings.store import (
    AUDIO_EMB, AUDIO_PATHS, AUDIO_SKIPPED, AUDIO_STAT, INFO, load_audio_set, load_embedding_info, read_skipped,
)

SR = 16000
UPDATE = "2 unchanged, 1 changed (re-embedded), 1 new, 1 removed"
COUNTS = {"unchanged": 2, "changed": 1, "new": 1, "removed": 1}


# ------------------------------------------------------------------ helpers
def write_clip(path, seed, seconds=0.7):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    wav = (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype("float32")
    sf.write(path, wav, SR)
    return str(path)


def rewrite_in_place(path, seed):
    """New content, same size, and a modification time 1 s later (coarse file-system clocks cannot hide it)."""
    before = os.stat(path)
    write_clip(path, seed)
    assert os.stat(path).st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def fresh_rows(model, paths, out):
    """The embeddings of ``paths`` in a new cache (what the stored rows must equal)."""
    run(model, paths, out)
    return np.array(load_audio_set(str(out))[0])


def change_collection(a, b, c, d, e, seed=99):
    """The one change every cache sees: b rewritten, c deleted, e created (a and d untouched)."""
    rewrite_in_place(b, seed)
    os.remove(c)
    write_clip(e, 5)


@pytest.fixture
def loaded(monkeypatch):
    """The files the embedding step decodes (every file that goes through the model)."""
    seen = []
    real = extract.AudioClips

    class Spy(real):
        def __init__(self, paths, *args, **kwargs):
            seen.extend(paths)
            super().__init__(paths, *args, **kwargs)

    monkeypatch.setattr(extract, "AudioClips", Spy)
    return seen


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tests' tiny CLAP: the model, an MS-CLAP-shaped file of it and a YAML with its architecture."""
    folder = tmp_path_factory.mktemp("tiny")
    bert = write_tiny_bert(folder / "bert", vocab_words="rain dog barks".split())
    model = tiny_clap(bert, seed=0).eval()
    ckpt = folder / "tiny.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    yaml_path = folder / "tiny.yaml"
    yaml_path.write_text("".join(f"{k}: {v}\n" for k, v in dict(TINY_CLAP, text_model=bert).items()))
    # The same architecture as recipe flags (the YAMLs' keys).
    flags = [f"--{k}={v}" for k, v in dict(TINY_CLAP, text_model=bert, txt_emb_dim=32).items() if k != "audioenc_name"]
    return {"model": model, "bert": bert, "ckpt": str(ckpt), "yaml": str(yaml_path), "flags": flags}


def five_clips(folder, written=0):
    """Five clip paths in ``folder``; the first ``written`` of them written (clip ``k`` from seed ``k``)."""
    paths = [str(folder / n) for n in ["a.wav", "b.wav", "c.wav", "d.wav", "e.wav"]]
    for k, path in enumerate(paths[:written]):
        write_clip(path, k)
    return paths


# ------------------------------------------------------------- embeddings
def run(model, paths, out, **kwargs):
    opts = dict(sample_rate=SR, duration=0.5, batch_size=2, shard_size=2, progress=False, model_id="m",
                dtype="float32")
    opts.update(kwargs)
    return embed_audio_files(model, paths, str(out), AudioEmbeddingOptions(**opts))


def test_changed_removed_and_new_files_are_followed(tiny, tmp_path, caplog, loaded):
    """The cache of embed_audio_files (the embedding step, build_index.py, retrieval_eval.py)."""
    model = tiny["model"]
    a, b, c, d, e = five_clips(tmp_path / "audio", written=4)
    out = tmp_path / "emb"
    run(model, [a, b, c, d], out)
    before, _, _ = load_audio_set(str(out))
    before = np.array(before)

    # The silent error of a cache keyed on names: b rewritten in place, the same list, its old row kept.
    rewrite_in_place(b, 50)
    loaded.clear()
    with caplog.at_level(logging.INFO, logger="embeddings"):
        run(model, [a, b, c, d], out)
    np.testing.assert_allclose(load_audio_set(str(out))[0][1], fresh_rows(model, [b], tmp_path / "b50")[0], atol=1e-6)
    assert "3 unchanged, 1 changed (re-embedded), 0 new, 0 removed" in caplog.text and loaded == [b, b]

    change_collection(a, b, c, d, e)
    loaded.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="embeddings"):
        info = run(model, [a, b, d, e], out)
    assert UPDATE in caplog.text and info["update"] == COUNTS
    assert loaded == [b, e]  # a and d were not decoded again
    emb, paths, _ = load_audio_set(str(out))
    assert paths == [a, b, d, e] and info["rows"] == 4 and info["skipped"] == 0
    fresh = fresh_rows(model, [b, e], tmp_path / "fresh")
    np.testing.assert_allclose(emb[1], fresh[0], atol=1e-6)  # b: its new content
    assert np.abs(emb[1] - before[1]).max() > 1e-3  # ... not its old one
    np.testing.assert_allclose(emb[3], fresh[1], atol=1e-6)  # e: new
    assert np.array_equal(emb[0], before[0]) and np.array_equal(emb[2], before[3])  # a, d: kept as they were
    stat = np.load(out / AUDIO_STAT)
    assert stat.tolist() == [[os.stat(p).st_size, os.stat(p).st_mtime_ns] for p in paths]

    # Nothing changed since: nothing is decoded.
    loaded.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="embeddings"):
        again = run(model, [a, b, d, e], out)
    assert loaded == [] and "up to date" in caplog.text and again == info


def test_a_listed_file_deleted_or_restored_and_a_new_order(tiny, tmp_path, caplog, loaded):
    """In a path list a deleted file stays listed: it becomes unreadable (changed); restored, it is embedded."""
    model = tiny["model"]
    a, b, c, _, _ = five_clips(tmp_path / "audio", written=3)
    out = tmp_path / "emb"
    run(model, [a, b, c], out)
    first = np.array(load_audio_set(str(out))[0])
    os.remove(b)
    with caplog.at_level(logging.INFO, logger="embeddings"):
        info = run(model, [a, b, c], out)
    assert "2 unchanged, 1 changed (re-embedded), 0 new, 0 removed" in caplog.text
    assert info["rows"] == 2 and [int(r["index"]) for r in read_skipped(str(out))] == [1]
    # Unchanged and still missing: kept as skipped, not retried.
    loaded.clear()
    run(model, [a, b, c], out)
    assert loaded == []
    write_clip(b, 1)  # the same content again, a new modification time
    loaded.clear()
    run(model, [c, b, a], out)  # and another order: rows follow the list
    assert loaded == [b]
    emb, paths, _ = load_audio_set(str(out))
    assert paths == [c, b, a] and read_skipped(str(out)) == []
    np.testing.assert_allclose(emb, first[::-1], atol=1e-6)


def test_a_cache_of_an_older_version_is_embedded_again(tiny, tmp_path, caplog, loaded):
    """embeddings.json without the files' keys (an older version) is not trusted: logged, embedded again."""
    model = tiny["model"]
    a, b, c, _, _ = five_clips(tmp_path / "audio", written=3)
    out = tmp_path / "emb"
    run(model, [a, b, c], out)
    reference = {n: open(out / n, "rb").read() for n in (AUDIO_EMB, AUDIO_PATHS)}
    info = load_embedding_info(str(out))
    for k in ("cache_key", "files_digest", "update"):
        info["audio"].pop(k)
    (out / INFO).write_text(json.dumps(info))
    os.remove(out / AUDIO_STAT)
    rows = read_csv(out / AUDIO_SKIPPED)
    write_csv(out / AUDIO_SKIPPED, rows, fieldnames=["index", "wav_path", "error"])
    loaded.clear()
    with caplog.at_level(logging.INFO, logger="embeddings"):
        run(model, [a, b, c], out)
    assert "older version" in caplog.text and loaded == [a, b, c]
    assert all(open(out / n, "rb").read() == data for n, data in reference.items())
    assert os.path.isfile(out / AUDIO_STAT)


def test_a_deleted_audio_stat_embeds_every_clip_again(tiny, tmp_path, caplog, loaded):
    """The one change the key misses (same size, old modification time restored) is undone by deleting
    audio_stat.npy: every clip is embedded again, and the rewritten clip gets its new content."""
    model = tiny["model"]
    a, b, c, _, _ = five_clips(tmp_path / "audio", written=3)
    out = tmp_path / "emb"
    run(model, [a, b, c], out)
    before = os.stat(b)
    write_clip(b, 77)  # new content, the same size ...
    os.utime(b, ns=(before.st_atime_ns, before.st_mtime_ns))  # ... and its old modification time (touch -d)
    loaded.clear()
    run(model, [a, b, c], out)
    assert loaded == []  # the key cannot see it
    os.remove(out / AUDIO_STAT)
    with caplog.at_level(logging.INFO, logger="embeddings"):
        run(model, [a, b, c], out)
    assert loaded == [a, b, c] and "audio_stat.npy missing" in caplog.text, caplog.text
    np.testing.assert_allclose(load_audio_set(str(out))[0], fresh_rows(model, [a, b, c], tmp_path / "fresh"),
                               atol=1e-6)
    assert os.path.isfile(out / AUDIO_STAT)


def test_killed_update_resumes_to_the_same_files(tiny, tmp_path, monkeypatch):
    """Killed while embedding the changed files, or while moving the new files into place: rerun, same files."""
    import shutil

    model = tiny["model"]
    a, b, c, d, e = five_clips(tmp_path / "audio", written=4)
    run(model, [a, b, c, d], tmp_path / "one", batch_size=1, shard_size=1)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    shutil.copytree(tmp_path / "one", tmp_path / "three")
    change_collection(a, b, c, d, e)
    new_list = [a, b, d, e]
    run(model, new_list, tmp_path / "one", batch_size=1, shard_size=1)

    real_save = shards._save_shard
    saved = []

    def dying_save(path, *args):
        if saved:
            raise KeyboardInterrupt
        saved.append(path)
        real_save(path, *args)

    monkeypatch.setattr(shards, "_save_shard", dying_save)
    with pytest.raises(KeyboardInterrupt):
        run(model, new_list, tmp_path / "two", batch_size=1, shard_size=1)
    monkeypatch.setattr(shards, "_save_shard", real_save)
    run(model, new_list, tmp_path / "two", batch_size=1, shard_size=1)

    real_update = update.update_info
    monkeypatch.setattr(update, "update_info", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run(model, new_list, tmp_path / "three", batch_size=1, shard_size=1)
    with pytest.raises(SystemExit, match="half updated"):
        load_audio_set(str(tmp_path / "three"))
    monkeypatch.setattr(update, "update_info", real_update)
    run(model, new_list, tmp_path / "three", batch_size=1, shard_size=1)

    names = [AUDIO_EMB, AUDIO_PATHS, AUDIO_STAT, AUDIO_SKIPPED]
    for other in ("two", "three"):
        assert all(filecmp.cmp(tmp_path / "one" / n, tmp_path / other / n, shallow=False) for n in names), other
        assert not os.path.exists(tmp_path / other / "shards")
        assert load_embedding_info(str(tmp_path / other)) == load_embedding_info(str(tmp_path / "one"))


# ------------------------------------------------------------ the recipes
def test_build_index_follows_the_folder(tiny, tmp_path, caplog, loaded):
    """build_index.py on a folder: run again after a change, the index holds the new content, nothing stale."""
    from inference import ClapEmbedder
    from inference.index import load_index

    build_index = load_script("build_index")
    folder = tmp_path / "collection"
    a, b, c, d, e = five_clips(folder, written=4)
    out = tmp_path / "index"
    argv = [f"--audio_folder={folder}", f"--output_folder={out}", f"--clap_ckpt_path={tiny['ckpt']}",
            f"--model_hparams={tiny['yaml']}", "--eval_duration=0.5", "--batch_size=2", "--shard_size=2",
            "--noprogressbar"]
    build_index.main(argv)
    _, first_paths, _ = load_index(str(out))
    first = np.load(out / "embeddings" / AUDIO_EMB)
    assert first_paths == [a, b, c, d]
    clap = ClapEmbedder.from_pretrained(clap_ckpt_path=tiny["ckpt"], model_hparams=tiny["yaml"], eval_duration=0.5)

    rewrite_in_place(b, 50)  # the same folder listing, b's content changed
    build_index.main(argv)
    index, _, _ = load_index(str(out))
    np.testing.assert_allclose(index.reconstruct(1), clap.embed_audio([b])[0], atol=1e-5)

    change_collection(a, b, c, d, e)
    loaded.clear()
    with caplog.at_level(logging.INFO, logger="embeddings"):
        info = build_index.main(argv)
    assert UPDATE in caplog.text and loaded == [b, e]
    index, paths, _ = load_index(str(out))
    assert paths == [a, b, d, e] and info["count"] == 4
    vectors = index.reconstruct_n(0, index.ntotal)
    np.testing.assert_allclose(vectors[[1, 3]], clap.embed_audio([b, e]), atol=1e-5)
    assert np.abs(vectors[1] - first[1]).max() > 1e-3
    assert np.array_equal(vectors[[0, 2]], first[[0, 3]])


def clotho_layout(folder, clips):
    """A Clotho-layout evaluation split: the caption CSV lists ``clips`` (file names), audio under evaluation/."""
    os.makedirs(folder / "evaluation", exist_ok=True)
    with open(folder / "clotho_captions_evaluation.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name"] + [f"caption_{k}" for k in range(1, 6)])
        for i, name in enumerate(clips):
            writer.writerow([name] + [f"{'rain' if i % 2 else 'a dog barks'} take {k}" for k in range(5)])
    return [str(folder / "evaluation" / name) for name in clips]


@pytest.mark.slow  # five whole runs of retrieval_eval.py; the cache it uses (embed_audio_files) is tested fast above
def test_retrieval_eval_cache_follows_the_split(tiny, tmp_path, capsys, loaded):
    """retrieval_eval.py's embeddings/: the rewritten clip is scored with its new content, the deleted one is gone."""
    retrieval = load_script("retrieval_eval")
    data = tmp_path / "clotho"
    a, b, c, d, e = clotho_layout(data, ["a.wav", "b.wav", "c.wav", "d.wav", "e.wav"])
    for k, p in enumerate((a, b, c, d)):
        write_clip(p, k)  # e is listed but not on disk yet

    def argv(name):
        return ["hparams/toy/retrieval_eval.yaml", f"--data_folder={data}", f"--clap_ckpt_path={tiny['ckpt']}",
                "--ssl_checkpoints_dir=", f"--output_base={tmp_path}", f"--experiment_name={name}",
                "--eval_duration=0.5", "--max_chunks=4", "--batch_size=2", "--noprogressbar"] + tiny["flags"]

    first = retrieval.main(argv("run"))
    emb_dir = tmp_path / "run" / "embeddings"
    before = np.array(load_audio_set(str(emb_dir))[0])
    assert first["clips_scored"] == 4 and first["clips_missing"] == 1

    rewrite_in_place(b, 50)  # the same split, b's content changed: scored with its new content
    changed = retrieval.main(argv("run"))
    reference = retrieval.main(argv("reference"))
    np.testing.assert_allclose(load_audio_set(str(emb_dir))[0],
                               load_audio_set(str(tmp_path / "reference" / "embeddings"))[0], atol=1e-6)
    assert changed["text_to_audio"] == pytest.approx(reference["text_to_audio"])

    change_collection(a, b, c, d, e)
    loaded.clear()
    capsys.readouterr()
    second = retrieval.main(argv("run"))
    assert UPDATE in "".join(capsys.readouterr()) and loaded == [b, e]  # SpeechBrain's log handler prints it
    assert load_embedding_info(str(emb_dir))["audio"]["update"] == COUNTS
    emb, paths, _ = load_audio_set(str(emb_dir))
    assert paths == [a, b, d, e] and second["clips_scored"] == 4 and second["clips_missing"] == 1
    fresh = retrieval.main(argv("fresh"))
    fresh_emb, fresh_paths, _ = load_audio_set(str(tmp_path / "fresh" / "embeddings"))
    assert fresh_paths == paths
    np.testing.assert_allclose(emb, fresh_emb, atol=1e-6)
    assert np.abs(emb[1] - before[1]).max() > 1e-3
    assert second["text_to_audio"] == pytest.approx(fresh["text_to_audio"])
    assert second["audio_to_text"] == pytest.approx(fresh["audio_to_text"])


@pytest.mark.slow  # three whole runs of the embedding recipe; the cache it uses is tested fast above
def test_embedding_step_follows_the_path_list(tiny, tmp_path, capsys, loaded):
    """microsoft_curation_toemb.py: a new path list after the pool changed embeds only what changed."""
    toemb = load_script("microsoft_curation_toemb")
    a, b, c, d, e = five_clips(tmp_path / "pool", written=4)
    pathfile = tmp_path / "paths.txt"
    pathfile.write_text("".join(p + "\n" for p in (a, b, c, d)))
    out = tmp_path / "toemb"
    argv = ["hparams/curation/microsoft_audioset_insper_toemb.yaml", f"--output_folder={out}",
            f"--audio_pathfile={pathfile}", f"--clap_ckpt_path={tiny['ckpt']}", "--eval_duration=0.5",
            "--batch_size=2", "--shard_size=2", "--num_workers=0", "--emb_dtype=float32",
            "--eval_crop=center",  # the crop fresh_rows uses (the YAML's default is the paper code's)
            "--noprogressbar"] + tiny["flags"]
    toemb.main(argv)
    before = np.array(load_audio_set(str(out / "save"))[0])

    rewrite_in_place(b, 50)  # the same list, b's content changed
    toemb.main(argv)
    fresh_b = fresh_rows(tiny["model"], [b], tmp_path / "b50")[0]
    np.testing.assert_allclose(load_audio_set(str(out / "save"))[0][1], fresh_b, atol=1e-5)

    change_collection(a, b, c, d, e)
    pathfile.write_text("".join(p + "\n" for p in (a, b, d, e)))
    loaded.clear()
    capsys.readouterr()
    toemb.main(argv)
    assert UPDATE in "".join(capsys.readouterr()) and loaded == [b, e]
    emb, paths, info = load_audio_set(str(out / "save"))
    assert paths == [a, b, d, e] and info["update"] == COUNTS
    np.testing.assert_allclose(emb[[1, 3]], fresh_rows(tiny["model"], [b, e], tmp_path / "fresh"), atol=1e-5)
    assert np.abs(emb[1] - before[1]).max() > 1e-3
    assert np.array_equal(emb[[0, 2]], before[[0, 3]])


# ------------------------------------------------------------- manifests
def esc50_layout(folder, files):
    os.makedirs(folder / "meta", exist_ok=True)
    os.makedirs(folder / "audio", exist_ok=True)
    with open(folder / "meta" / "esc50.csv", "w", encoding="utf-8") as f:
        f.write("filename,fold,target,category,esc10,src_file,take\n")
        for k, name in enumerate(files):
            f.write(f"{name},1,{k % 2},{'rain' if k % 2 else 'dog'},False,{k},A\n")


def test_zeroshot_manifest_is_rebuilt_when_its_sources_change(tmp_path, caplog):
    from dataset.prepare_zeroshot import prepare_esc50

    data, out = tmp_path / "esc", tmp_path / "out"
    names = ["1-1-A-0.wav", "1-2-A-1.wav", "1-3-A-0.wav"]
    esc50_layout(data, names)
    for k, name in enumerate(names[:2]):
        write_clip(data / "audio" / name, k)
    first = prepare_esc50(str(data), str(out))
    assert first["stats"]["kept"] == 2 and prepare_esc50(str(data), str(out))["reused"]

    rewrite_in_place(str(data / "audio" / names[0]), 7)  # same size, new mtime: probed again
    with caplog.at_level(logging.INFO, logger="dataset.prepare_zeroshot"):
        assert not prepare_esc50(str(data), str(out))["reused"]
    assert "changed since" in caplog.text
    write_clip(data / "audio" / names[2], 2)  # a listed clip appears
    again = prepare_esc50(str(data), str(out))
    assert not again["reused"] and again["stats"]["kept"] == 3
    assert len(read_csv(again["csv"])) == 3
    esc50_layout(data, names[:2])  # the metadata drops a clip
    assert prepare_esc50(str(data), str(out))["stats"]["kept"] == 2
    assert prepare_esc50(str(data), str(out))["reused"]

    # A manifest of an older version (no record of its sources) is rebuilt, with a log line.
    json_path = out / "zeroshot_esc50.json"
    saved = json.loads(json_path.read_text())
    saved.pop("sources")
    json_path.write_text(json.dumps(saved))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dataset.prepare_zeroshot"):
        assert not prepare_esc50(str(data), str(out))["reused"]
    assert "older version" in caplog.text


def test_insper_manifests_are_rebuilt_when_their_sources_change(tmp_path, caplog):
    from dataset.prepare_insper import prepare_insper

    data, out = tmp_path / "pairs", tmp_path / "out"
    clips = [str(data / f"{k}.wav") for k in range(5)]
    for k, p in enumerate(clips[:4]):
        write_clip(p, k)
    write_csv(data / "pairs.csv", [{"wav_path": os.path.basename(p), "caption": f"sound {k}"}
                                   for k, p in enumerate(clips)])

    def prepare():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="dataset.prepare_insper"):
            result = prepare_insper(None, str(out), user_csvs=[str(data / "pairs.csv")], valid_pct=0.2)
        return result, "skipping preparation" in caplog.text

    first, skipped = prepare()
    assert not skipped and first["stats"]["train_clips"] + first["stats"]["valid_clips"] == 4
    assert prepare()[1]
    rewrite_in_place(clips[0], 9)
    assert not prepare()[1] and "changed since" in caplog.text
    write_clip(clips[4], 4)  # the missing clip arrives
    again, skipped = prepare()
    assert not skipped and again["stats"]["train_clips"] + again["stats"]["valid_clips"] == 5
    os.remove(clips[1])
    again, skipped = prepare()
    assert not skipped and again["stats"]["train_clips"] + again["stats"]["valid_clips"] == 4
    assert prepare()[1]

    json_path = out / "prepare_insper.json"
    saved = json.loads(json_path.read_text())
    saved.pop("sources")
    json_path.write_text(json.dumps(saved))
    assert not prepare()[1] and "older version" in caplog.text
