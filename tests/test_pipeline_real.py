"""``recipes/pipeline.py`` on a real-layout miniature: the method on data a user has, in one command.

The miniature: the tiny toy world's ESC-50 folder as the scored target set, its
unpaired clips as a nested folder of WAV and FLAC files and as webdataset shards
of the same clips, a random tiny LAION-layout ``.pt`` as teacher, a label list
of one's own, the world's Clotho-layout captions as caption pool and its
validation captions as the held-out set that ranks the students. The pipeline
runs teacher zero-shot -> curation -> ADS students -> zero-shot, two rounds.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import torch

from conftest import REPO, check_ok, run_script
from dataset.audio import list_audio_files
from dataset.corpora.clotho import read_clotho
from dataset.manifest import read_caption_csv, write_csv
from models.convert import ours_to_laion
from models.factory import create_model
from test_text_towers import write_tiny_roberta

PIPELINE = ["recipes/pipeline.py", "hparams/pipeline/laion_own_audio.yaml"]
FRONT = dict(sample_rate=16000, window_size=512, hop_size=160, mel_bins=32, fmin=50, fmax=8000)
HTSAT_SMALL = dict(spec_size=64, patch_size=4, patch_stride=4, embed_dim=16, depths=[1, 2, 1, 1],
                   num_heads=[1, 2, 2, 4], swin_window_size=8)


def write_laion_checkpoint(path, roberta):
    """A random HTS-AT + RoBERTa CLAP saved as LAION's training saves it (``module.``, ``state_dict``)."""
    torch.manual_seed(0)
    model = create_model("HTSAT", classes_num=5, out_emb=128, text_model=roberta, txt_emb_dim=32, d_proj=16,
                         text_pooling="pooler", projection="laion", audio_options=dict(HTSAT_SMALL, size=None),
                         **FRONT)
    state = ours_to_laion(model.state_dict())
    torch.save({"epoch": 3, "state_dict": state}, path)
    return str(path)


@pytest.fixture(scope="module")
def miniature(toy_world, tmp_path_factory):
    import webdataset

    root = tmp_path_factory.mktemp("miniature")
    audio = root / "my_audio"
    shards = root / "shards"
    shards.mkdir()
    with open(os.path.join(toy_world, "unpaired_paths.txt"), encoding="utf-8") as f:
        clips = [line.strip() for line in f if line.strip()][:48]
    for i, clip in enumerate(clips):
        wav, sr = soundfile.read(clip, dtype="float32")
        stem = os.path.splitext(os.path.basename(clip))[0]
        # Nested folders, half WAV and half FLAC.
        sub = audio / ("a" if i % 2 else os.path.join("b", "c"))
        sub.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(sub / f"{stem}.{'flac' if i % 2 else 'wav'}"), wav, sr, subtype="PCM_16")
    # The shards hold the same files' bytes, in the folder's listing order (so that batches are the same).
    writer = None
    for i, path in enumerate(list_audio_files(str(audio))):
        if i % 16 == 0:
            if writer:
                writer.close()
            writer = webdataset.TarWriter(str(shards / f"shard-{i // 16:06d}.tar"))
        stem, ext = os.path.splitext(os.path.basename(path))
        with open(path, "rb") as f:
            writer.write({"__key__": stem, ext[1:]: f.read(), "json": {"source": "toy", "index": i}})
    writer.close()
    rows, _ = read_clotho(os.path.join(toy_world, "clotho"), splits=("development",))
    write_csv(str(root / "captions.csv"), rows[:64], fieldnames=["ID", "wav_path", "caption"])
    held_out = read_clotho(os.path.join(toy_world, "clotho"), splits=("validation",))[0][:40]
    write_csv(str(root / "held_out.csv"), held_out, fieldnames=["ID", "wav_path", "caption"])
    (root / "labels.txt").write_text("dog\nrain\nchirping birds\nsiren\nengine\n", encoding="utf-8")
    roberta = write_tiny_roberta(root / "roberta", hidden=32, heads=2)
    teacher = write_laion_checkpoint(root / "630k-tiny.pt", roberta)
    model_flags = "[" + ", ".join([f"--{k}={v}" for k, v in FRONT.items()]
                                  + [f"--text_model={roberta}", "--eval_duration=1.0", "--train_duration=1.0",
                                     # The small spectrogram is not in the file (LAION's configuration holds it).
                                     "'--audio_options={" + ", ".join(f"{k}: {v}" for k, v in HTSAT_SMALL.items())
                                     + "}'"]) + "]"
    flags = [f"--teacher={teacher}", f"--unpaired_audio={audio}", f"--caption_pool=[{root / 'captions.csv'}]",
             "--target_sets=[esc50]", f"--esc50_folder={os.path.join(toy_world, 'ESC-50')}",
             f"--label_list={root / 'labels.txt'}", "--label_list_name=mine",
             f"--selection_csv={root / 'held_out.csv'}",
             f"--model_flags={model_flags}", "--ds_threshold=-1.0", "--student_steps=4", "--batch_size=8",
             "--jobs=1"]
    return {"root": root, "audio": str(audio), "shards": str(shards), "flags": flags, "clips": clips}


def _run(miniature, out, extra=(), timeout=1800):
    proc = run_script(PIPELINE + [f"--output_folder={out}"] + miniature["flags"] + list(extra), timeout=timeout)
    check_ok(proc)
    return proc


@pytest.fixture(scope="module")
def folder_run(miniature):
    out = miniature["root"] / "run_folder"
    begin = time.perf_counter()
    proc = _run(miniature, out)
    print(f"two rounds on the miniature: {time.perf_counter() - begin:.0f} s")
    return out, proc


@pytest.mark.slow
def test_two_rounds_on_a_laion_teacher_and_own_audio(folder_run):
    out, proc = folder_run
    per_seed = list(__import__("csv").DictReader(open(out / "results_per_seed.csv", encoding="utf-8")))
    rows = {(r["model"], r["round"], r["dataset"]) for r in per_seed}
    assert rows == {("teacher", "1", "esc50"), ("ADS", "1", "esc50"), ("ADS (round 2)", "2", "esc50")}, rows
    for row in per_seed:
        assert 0.0 <= float(row["top1"]) <= 1.0
    # The teacher's architecture was read from the LAION file and given to every stage.
    arch = open(out / "inputs" / "teacher_model.yaml", encoding="utf-8").read()
    assert "audioenc_name: HTSAT" in arch and "projection: laion" in arch
    # Round 2's teacher is the round-1 student with the best held-out R@1 (never the target's clips).
    selection = json.load(open(out / "seed1234" / "stages" / "r1_selection.json", encoding="utf-8"))["outputs"]
    scores = {name: json.load(open(out / "seed1234" / "stages" / f"r1_select_{name}.json"))["outputs"]["r1"]
              for name in ("ads_esc50", "ads_mine")}
    best = max(scores, key=lambda k: (scores[k], k == "ads_esc50"))
    assert selection["save"].endswith(os.path.join("students", best, "save")), (selection, scores)
    r2 = open(out / "seed1234" / "logs" / "r2_embeddings.log", encoding="utf-8").read()
    assert "--ssl_checkpoints_dir" not in r2 or best in r2
    marker = json.load(open(out / "seed1234" / "stages" / "r2_embeddings.json", encoding="utf-8"))
    assert f"--ssl_checkpoints_dir={selection['save']}" in marker["argv"]
    # Own labels: DS and ADS pairs named after the list; the derived ADS threshold is recorded.
    ads = json.load(open(out / "seed1234" / "stages" / "curation_ads_mine.json", encoding="utf-8"))["outputs"]
    assert ads["pairs"] > 0 and ads["threshold"] is not None and "ads_mine_pairs" in ads["csv"]
    assert "Curation thresholds:" in open(out / "results.md", encoding="utf-8").read()


@pytest.mark.slow
def test_folder_and_shards_give_the_same_embeddings_and_pairs(miniature, folder_run):
    out, _ = folder_run
    shard_out = miniature["root"] / "run_shards"
    _run(miniature, shard_out, [f"--unpaired_audio={miniature['shards']}", "--rounds=1"])

    def by_key(run):
        save = run / "seed1234" / "curation" / "save"
        paths = [line.strip() for line in open(run / "inputs" / "unpaired_paths.txt", encoding="utf-8")]
        keys = [os.path.splitext(os.path.basename(p.split("#")[-1]))[0] for p in paths]
        emb = np.load(save / "audio_emb.npy")
        return dict(zip(keys, emb)), save

    a, save_a = by_key(out)
    b, save_b = by_key(shard_out)
    assert sorted(a) == sorted(b) and len(a) == len(miniature["clips"])
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    def pairs(save, name):
        [path] = [p for p in os.listdir(save) if p.startswith(f"{name}_pairs_thr") and p.endswith(".csv")]
        return sorted((os.path.splitext(os.path.basename(r["wav_path"].split("#")[-1]))[0], r["caption"],
                       r.get("similarity")) for r in read_caption_csv(os.path.join(save, path)))

    for name in ("ads_esc50", "ads_mine"):
        assert pairs(save_a, name) == pairs(save_b, name), name


@pytest.mark.slow
def test_killed_run_finishes_with_identical_results(miniature, folder_run):
    out, _ = folder_run
    killed = miniature["root"] / "run_killed"
    args = [sys.executable] + PIPELINE + [f"--output_folder={killed}"] + miniature["flags"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    marker = killed / "seed1234" / "stages" / "student_ads_esc50.json"
    deadline = time.time() + 1200
    while time.time() < deadline and not marker.exists():
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.csv").exists()
    again = _run(miniature, killed)
    assert "already done, skipped" in again.stdout
    for name in ("results.csv", "results_per_seed.csv"):
        assert (killed / name).read_bytes() == (out / name).read_bytes(), name


# ------------------------------------------------------------------ leakage audit
def _plant_leaks(miniature, toy_world):
    """The unpaired folder plus one ESC-50 clip re-encoded (Vorbis, 22.05 kHz) and trimmed under another name,
    and a caption pool whose extra pair's clip is another ESC-50 clip as FLAC (the same samples)."""
    import shutil

    from dataset.audio import read_audio_mono, resample

    root = miniature["root"]
    audio = root / "leaky_audio"
    if not audio.exists():
        shutil.copytree(miniature["audio"], audio)
    esc = sorted(os.listdir(os.path.join(toy_world, "ESC-50", "audio")))
    near_src, exact_src = (os.path.join(toy_world, "ESC-50", "audio", esc[i]) for i in (3, 7))
    wav, sr = read_audio_mono(near_src)
    wav = resample(torch.from_numpy(wav), sr, 22050).numpy()
    planted = audio / "a" / "Yfound-on-the-web.ogg"
    soundfile.write(str(planted), wav[int(1.37 * 22050):-int(0.81 * 22050)], 22050, format="OGG", subtype="VORBIS")
    wav, sr = soundfile.read(exact_src, dtype="int16")
    pair_clip = root / "pair_clips" / "renamed.flac"
    pair_clip.parent.mkdir(exist_ok=True)
    soundfile.write(str(pair_clip), wav, sr, subtype="PCM_16")
    rows = read_caption_csv(str(root / "captions.csv"))
    rows.append({"ID": "leaky_pair", "wav_path": str(pair_clip), "caption": "A dog barks twice in the yard."})
    write_csv(str(root / "leaky_captions.csv"), rows, fieldnames=["ID", "wav_path", "caption"])
    return {"audio": str(audio), "planted": str(planted), "near_src": near_src, "pair_clip": str(pair_clip),
            "exact_src": exact_src, "captions": str(root / "leaky_captions.csv")}


@pytest.mark.slow
def test_a_planted_evaluation_clip_is_found_by_content_and_dropped(miniature, toy_world):
    leaks = _plant_leaks(miniature, toy_world)
    out = miniature["root"] / "run_leaky"
    proc = _run(miniature, out, [f"--unpaired_audio={leaks['audio']}", f"--caption_pool=[{leaks['captions']}]",
                                 "--rounds=1", "--ads_clip_fraction=1.0",
                                 # The random teacher's cosines are all about 0.99 and do not rank: every target clip
                                 # goes to the log-mel check, which alone must find the planted clip and nothing else.
                                 "--leakage_cosine=-1.0", "--leakage_top_k=1000"])
    rows = list(__import__("csv").DictReader(open(out / "leakage.csv", encoding="utf-8")))
    found = {(r["set"], r["path"], r["reference"], r["kind"], r["action"]) for r in rows}
    # Exactly the two planted clips: none of the 48 toy clips or 64 caption-pool clips is taken for a target clip.
    assert found == {("unpaired", leaks["planted"], leaks["near_src"], "near", "dropped"),
                     ("pairs", leaks["pair_clip"], leaks["exact_src"], "exact", "dropped")}, rows
    near = next(r for r in rows if r["kind"] == "near")
    # Where the planted clip starts in the target clip: the 1.37 s trimmed off.
    assert float(near["offset_s"]) == pytest.approx(1.37, abs=0.03) and float(near["mel_corr"]) >= 0.9, near
    # Dropped: the ADS pairs held the planted clip (every clip gets a caption) and the DS pairs the planted pair;
    # the students read copies without them.
    marker = json.load(open(out / "seed1234" / "stages" / "student_ads_esc50.json", encoding="utf-8"))
    flags = dict(a[2:].split("=", 1) for a in marker["argv"] if a.startswith("--") and "=" in a)
    for key, planted in (("curation_csv", leaks["planted"]), ("train_csv_path", leaks["pair_clip"])):
        assert os.path.dirname(flags[key]) == str(out / "seed1234" / "leakage" / "clean"), key
        assert planted not in {r["wav_path"] for r in read_caption_csv(flags[key])}, key
    ads = json.load(open(out / "seed1234" / "stages" / "curation_ads_esc50.json", encoding="utf-8"))["outputs"]
    assert leaks["planted"] in {r["wav_path"] for r in read_caption_csv(ads["csv"])}
    # Counted in the results and in the report.
    md = open(out / "results.md", encoding="utf-8").read()
    pair_clips = len({r["wav_path"] for r in read_caption_csv(leaks["captions"])})
    assert f"- seed 1234: 1 of 49 unpaired clips and 1 of {pair_clips} training-pair clips match" in md, md
    assert "1 exact, 1 near duplicates); policy drop, dropped before the students trained." in md
    html = open(out / "report.html", encoding="utf-8").read()
    assert "Yfound-on-the-web.ogg" in html and "renamed.flac" in html
    assert "1 exact, 1 near" in proc.stdout
