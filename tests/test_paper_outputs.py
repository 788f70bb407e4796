"""The paper code's embedding files, written on request: ``aud_svpth``, ``txt_svpth``, ``output_emb_path``.

Row ``i`` of each file must be the embedding of line ``i`` of the audio list,
of row ``i`` of the caption CSV (repeats and empty captions too), of row
``i`` of the DS CSV: checked against our own embedding files and the model.
"""

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import TINY_CLAP, load_script, tiny_clap, write_tiny_bert
from curation.paper_outputs import write_audio_rows, write_caption_rows
from dataset.manifest import read_caption_csv, write_csv
from embeddings.encoders import encode_texts
from embeddings.lists import read_path_list
from embeddings.store import load_audio_set, load_caption_set

SR = TINY_CLAP["sample_rate"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper_outputs")
    bert = write_tiny_bert(folder / "bert", vocab_words="rain dog barks a sound".split())
    model = tiny_clap(bert, seed=0).eval()
    torch.save({"model": model.state_dict()}, folder / "tiny.pth")
    flags = [f"--{k}={v}" for k, v in dict(TINY_CLAP, text_model=bert).items() if k != "audioenc_name"]
    clips = []
    for k in range(3):
        path = str(folder / f"clip{k}.wav")
        sf.write(path, (0.1 * np.random.default_rng(k).standard_normal(int(0.7 * SR))).astype("float32"), SR)
        clips.append(path)
    return {"folder": folder, "bert": bert, "model": model, "ckpt": str(folder / "tiny.pth"), "flags": flags,
            "clips": clips}


def test_caption_rows_expand_distinct_captions_to_csv_rows(tmp_path):
    table = [{"caption": "rain"}, {"caption": "dog barks"}]
    emb = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    rows = [{"caption": "dog barks"}, {"caption": ""}, {"caption": " rain "}, {"caption": "dog barks"}]
    path = str(tmp_path / "t.npy")
    assert write_caption_rows(path, emb, table, rows, embed_empty=lambda: np.array([0.6, 0.8])) == 4
    out = np.load(path)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, np.array([[0, 1], [0.6, 0.8], [1, 0], [0, 1]], dtype=np.float16))
    with pytest.raises(SystemExit, match="1 row"):
        write_caption_rows(path, emb, table, rows[:2])


def test_audio_rows_follow_the_list_and_name_unreadable_clips(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("/a.wav\n/b.wav\n/c.wav\n/a.wav\n", encoding="utf-8")
    emb = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # /b.wav was unreadable: no row
    path = str(tmp_path / "audio.npy")
    assert write_audio_rows(path, emb, ["/a.wav", "/c.wav"], str(listing)) == 3
    np.testing.assert_array_equal(np.load(path), np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float16))
    assert read_path_list(str(tmp_path / "audio_paths.txt")) == ["/a.wav", "/c.wav", "/a.wav"]
    # All readable: exactly the paper code's file, no list beside it.
    write_audio_rows(str(tmp_path / "all.npy"), np.eye(3), ["/a.wav", "/b.wav", "/c.wav"], str(listing))
    np.testing.assert_array_equal(np.load(tmp_path / "all.npy"), np.eye(3)[[0, 1, 2, 0]])
    assert not (tmp_path / "all_paths.txt").exists()


def test_embedding_step_writes_the_papers_files(tiny, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("".join(p + "\n" for p in tiny["clips"] + [tiny["clips"][0]]), encoding="utf-8")
    captions = tmp_path / "captions.csv"
    write_csv(str(captions), [{"ID": str(i), "wav_path": tiny["clips"][i % 3], "caption": c}
                              for i, c in enumerate(["rain", "dog barks", "", "rain"])])
    out = tmp_path / "toemb"
    load_script("microsoft_curation_toemb").main([
        "hparams/curation/microsoft_audioset_insper_toemb.yaml", f"--output_folder={out}",
        f"--audio_pathfile={listing}", f"--text_pathfile={captions}", f"--clap_ckpt_path={tiny['ckpt']}",
        "--eval_duration=0.5", "--batch_size=2", "--num_workers=0", "--emb_dtype=float32",
        f"--aud_svpth={tmp_path / 'paper' / 'audio_audioset_embeddings.npy'}",
        f"--txt_svpth={tmp_path / 'paper' / 'text_insper_embeddings.npy'}", "--noprogressbar"] + tiny["flags"])
    save = str(out / "save")
    ours, paths, _ = load_audio_set(save)
    audio = np.load(tmp_path / "paper" / "audio_audioset_embeddings.npy")
    assert audio.dtype == np.float16 and audio.shape == (4, ours.shape[1])
    expected = np.asarray(ours)[[paths.index(p) for p in read_path_list(str(listing))]]
    np.testing.assert_allclose(audio, expected, atol=1e-3)
    text = np.load(tmp_path / "paper" / "text_insper_embeddings.npy")
    table_emb, table, _ = load_caption_set(save, "text")
    assert text.shape == (4, table_emb.shape[1])
    by_caption = {t["caption"]: np.asarray(table_emb)[i] for i, t in enumerate(table)}
    np.testing.assert_allclose(text[0], by_caption["rain"], atol=1e-3)
    np.testing.assert_allclose(text[1], by_caption["dog barks"], atol=1e-3)
    np.testing.assert_array_equal(text[3], text[0])
    from models.text_encoder import load_tokenizer

    empty = encode_texts(tiny["model"], load_tokenizer(tiny["bert"]), [""])[0]
    np.testing.assert_allclose(text[2], empty, atol=1e-3)
    assert abs(np.linalg.norm(text[2].astype(np.float32)) - 1) < 1e-2


def test_ds_step_writes_one_embedding_row_per_ds_csv_row(tiny, tmp_path):
    captions = tmp_path / "train.csv"
    write_csv(str(captions), [{"ID": str(i), "wav_path": tiny["clips"][i % 3], "caption": c}
                              for i, c in enumerate(["rain", "dog barks", "rain", "a sound"])])
    emb_dir = tmp_path / "emb"
    emb_dir.mkdir()
    out_csv, out_emb = tmp_path / "esc_insper_t2t_ds.csv", tmp_path / "esc_insper_t2t_embeddings.npy"
    load_script("retrieve_ds_t2t").main([
        "hparams/curation/esc_insper_t2t_retr.yaml", f"--target_csv_path={captions}", f"--emb_dir={emb_dir}",
        f"--clap_ckpt_path={tiny['ckpt']}", "--sim_threshold=-1", "--text_prompt=this is a sound of ",
        f"--output_csv_path={out_csv}", f"--output_emb_path={out_emb}", "--noprogressbar"] + tiny["flags"])
    pairs = read_caption_csv(str(out_csv))
    assert [p["caption"] for p in pairs] == ["rain", "dog barks", "rain", "a sound"]  # threshold -1: every row
    emb = np.load(out_emb)
    assert emb.dtype == np.float16 and emb.shape[0] == len(pairs)
    ds_emb, ds_table, _ = load_caption_set(str(emb_dir), "ds_esc50")
    by_caption = {t["caption"]: np.asarray(ds_emb)[i] for i, t in enumerate(ds_table)}
    for row, vector in zip(pairs, emb):
        np.testing.assert_allclose(vector, by_caption[row["caption"]], atol=1e-3)
    assert os.path.isfile(emb_dir / "ds_esc50_pairs.csv") is False  # output_csv_path replaced ds_pairs_csv
