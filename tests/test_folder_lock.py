"""One writer per output folder (experiment.lock): a second run on a folder in use stops at once, leaving nothing.

The first run is a child process holding the lock through :func:`experiment.lock.hold_folder_lock`, which is
what every recipe does on its output folder before writing anything.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import torch

from conftest import FIXTURES, REPO, TINY_CLAP, TOY_MODEL, check_ok, load_script, run_script, tiny_clap, write_tiny_bert
from experiment.lock import LOCK_FILE, hold_folder_lock

# A process that locks argv[1] and waits; argv[2] marks its command line (the refusal must show it).
HOLDER = ("import sys, time; from experiment.lock import hold_folder_lock; "
          "hold_folder_lock(sys.argv[1], 'the test holder'); print('held', flush=True); time.sleep(600)")


def start_holder(folder, marker="holder-marker"):
    """A child process holding the lock on ``folder`` (returns once it holds it)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), marker], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read()[-3000:]
    return proc


def kill(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def snapshot(folder):
    """Every path below ``folder`` with its size and modification time, and the lock file's bytes."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.stat(path)
            found[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    lock = os.path.join(folder, LOCK_FILE)
    return found, open(lock, "rb").read() if os.path.exists(lock) else None


def test_second_writer_is_refused_with_the_holder_named(tmp_path):
    folder = tmp_path / "out"
    before = time.strftime("%Y-%m-%d %H:%M:%S")
    holder = start_holder(folder)
    after = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        with pytest.raises(SystemExit) as refused:
            hold_folder_lock(str(folder), "the second writer")
        message = str(refused.value.code)
        assert os.path.realpath(folder) in message
        assert f"PID {holder.pid}" in message and "holder-marker" in message, message
        # ... on which host, started when (its start, to the second).
        started = re.search(rf"PID {holder.pid} on host {re.escape(socket.gethostname())}, started "
                            r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d): ", message)
        assert started and before <= started.group(1) <= after, message
        assert "the second writer stopped before writing anything" in message
        # A separate process is refused too, with exit status 1 and the message on stderr.
        proc = subprocess.run([sys.executable, "-c", "import sys; from experiment.lock import hold_folder_lock; "
                               "hold_folder_lock(sys.argv[1], 'a third writer')", str(folder)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and f"PID {holder.pid}" in proc.stderr, proc.stderr[-2000:]
        assert os.listdir(folder) == [LOCK_FILE]
        # Locks are per exact folder: the holder of out/ does not block a run writing out/teacher.
        with hold_folder_lock(str(folder / "teacher"), "a stage") as sub:
            assert sub is not None and (folder / "teacher" / LOCK_FILE).exists()
        assert os.listdir(folder / "teacher") == []
    finally:
        kill(holder)


def test_lock_of_a_killed_run_does_not_block_the_next(tmp_path):
    folder = tmp_path / "out"
    holder = start_holder(folder)
    kill(holder)
    # SIGKILL leaves the lock file behind, but the kernel released the lock with the process.
    assert os.listdir(folder) == [LOCK_FILE]
    lock = hold_folder_lock(str(folder), "the next run")
    try:
        assert f'"pid": {os.getpid()}' in (folder / LOCK_FILE).read_text()
        # Re-entrant within one process.
        assert hold_folder_lock(str(folder), "the next run") is lock
        lock.release()
        assert (folder / LOCK_FILE).exists()
    finally:
        lock.release()
    # Released normally, the lock file goes: nothing is left behind.
    assert os.listdir(folder) == []


def test_holder_ending_normally_leaves_nothing(tmp_path):
    folder = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", "import sys; from experiment.lock import hold_folder_lock; "
                           "hold_folder_lock(sys.argv[1], 'a run')", str(folder)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    check_ok(proc)
    assert os.listdir(folder) == []


DDP_WORKER = """
import sys, torch.distributed as dist
from experiment.lock import hold_folder_lock
dist.init_process_group("gloo")
hold_folder_lock(sys.argv[1], "the DDP run")
dist.barrier()
print(f"rank {dist.get_rank()} holds", flush=True)
dist.destroy_process_group()
"""


@pytest.mark.slow  # two torchrun launches of two ranks each
def test_ranks_of_one_torchrun_share_the_lock_and_stop_together(tmp_path):
    """Under torchrun rank 0 locks for the run: its ranks do not refuse each other; all stop if it is taken."""
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    folder = tmp_path / "out"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
                str(folder)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.run(torchrun, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    check_ok(proc)
    assert "rank 0 holds" in proc.stdout and "rank 1 holds" in proc.stdout
    assert os.listdir(folder) == []

    holder = start_holder(folder)
    try:
        proc = subprocess.run(torchrun, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode != 0 and "holds" not in proc.stdout, proc.stdout
        assert f"PID {holder.pid}" in proc.stderr, proc.stderr[-3000:]
    finally:
        kill(holder)


@pytest.mark.slow  # runs the embedding recipe to the end; test_second_writer_is_refused_with_the_holder_named is fast
def test_second_embedding_run_stops_at_once_and_leaves_nothing(tmp_path):
    """The issue's case: microsoft_curation_toemb.py on a folder another run writes stops before writing."""
    bert = write_tiny_bert(tmp_path / "bert", vocab_words="a dog barks".split())
    ckpt = tmp_path / "CLAP_tiny.pth"
    torch.save({"model": tiny_clap(bert, seed=0).state_dict()}, ckpt)
    rng = np.random.default_rng(0)
    clips = []
    for i in range(3):
        clips.append(str(tmp_path / f"clip{i}.wav"))
        soundfile.write(clips[-1], (0.1 * rng.standard_normal(16000)).astype("float32"), 16000)
    pathfile = tmp_path / "paths.txt"
    pathfile.write_text("".join(p + "\n" for p in clips))
    out = tmp_path / "emb"
    command = ["recipes/microsoft_curation_toemb.py", "hparams/curation/microsoft_audioset_insper_toemb.yaml",
               f"--output_folder={out}", f"--clap_ckpt_path={ckpt}", "--ssl_checkpoints_dir=",
               f"--audio_pathfile={pathfile}", f"--text_model={bert}", "--eval_duration=1.0", "--batch_size=2",
               "--shard_size=2", "--num_workers=0", "--noprogressbar"]
    command += [f"--{key}={value}" for key, value in TINY_CLAP.items()]

    holder = start_holder(out)
    try:
        before = snapshot(out)
        begin = time.monotonic()
        proc = run_script(command, timeout=300)
        seconds = time.monotonic() - begin
        assert proc.returncode != 0, proc.stdout[-2000:]
        assert os.path.realpath(out) in proc.stderr and f"PID {holder.pid}" in proc.stderr, proc.stderr[-3000:]
        assert "microsoft_curation_toemb.py stopped before writing anything" in proc.stderr
        assert "Embedding" not in proc.stdout and seconds < 120, (seconds, proc.stdout[-2000:])
        assert snapshot(out) == before, "the refused run left files behind"
    finally:
        kill(holder)

    # The killed holder's lock file is still there; the same command now runs to the end.
    assert os.listdir(out) == [LOCK_FILE]
    check_ok(run_script(command, timeout=600))
    assert (out / "save" / "audio_emb.npy").exists() and not (out / "save" / "shards").exists()
    assert not (out / LOCK_FILE).exists()


def test_parallel_section_updates_of_one_embedding_folder_are_all_kept(tmp_path):
    """DS stages of several target sets run at once and each adds its section to one embeddings.json."""
    import multiprocessing

    from embeddings.store import load_embedding_info

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_sections, args=(str(tmp_path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    info = load_embedding_info(str(tmp_path))
    assert sorted(info) == sorted(f"ds_{w}_{i}" for w in range(4) for i in range(25))


def _add_sections(folder, worker):
    from embeddings.store import update_info

    for i in range(25):
        update_info(folder, f"ds_{worker}_{i}", {"rows": i})


# ------------------------------------------------ every script that writes a folder takes its lock first
TOY_TRAIN = "hparams/toy/microsoft_clap_train.yaml"
CURATION = "hparams/curation"


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    """A clip, a caption CSV, a path list, a Clotho-layout split, a tiny CLAP file and its YAML, pipeline inputs."""
    d = tmp_path_factory.mktemp("lock inputs")
    wav = str(d / "clip.wav")
    soundfile.write(wav, 0.1 * np.random.default_rng(0).standard_normal(16000).astype("float32"), 16000)
    (d / "pairs.csv").write_text(f"ID,wav_path,caption\na,{wav},a dog barks\n", encoding="utf-8")
    (d / "list.txt").write_text(wav + "\n", encoding="utf-8")
    (d / "labels.txt").write_text("dog\nrain\n", encoding="utf-8")
    (d / "clotho" / "evaluation").mkdir(parents=True)
    soundfile.write(str(d / "clotho" / "evaluation" / "a.wav"), np.zeros(8000, dtype="float32"), 16000)
    (d / "clotho" / "clotho_captions_evaluation.csv").write_text(
        "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\na.wav,a,b,c,d,e\n", encoding="utf-8")
    bert = write_tiny_bert(d / "bert", vocab_words="a dog barks".split())
    torch.save({"model": tiny_clap(bert, seed=0).state_dict()}, d / "tiny.pth")
    (d / "tiny.yaml").write_text("".join(f"{k}: {v}\n" for k, v in dict(TINY_CLAP, text_model=bert).items()))
    torch.save({"model": {"audio_encoder.base.bn0.weight": torch.ones(64)}}, d / "ours.pt")
    (d / "unpaired").mkdir()
    soundfile.write(str(d / "unpaired" / "u.wav"), np.zeros(1600, dtype="float32"), 16000)
    return {"d": str(d), "bert": bert, "esc": os.path.join(FIXTURES, "esc50"),
            "tiny_flags": " ".join(f"--{k}={v}" for k, v in dict(TINY_CLAP, text_model=bert).items()
                                   if k != "audioenc_name")}


# (row id, script, its flags, the folder it writes and the empty folders that SpeechBrain's Checkpointer creates
# when the training YAML is loaded, before the lock can be taken; relative to the test's folder {out})
SCRIPTS = [
    ("training", "microsoft_clap_train", [TOY_TRAIN, "--output_base={out}", "--experiment_name=run",
                                          "--data_annot_folder=", "--train_csv_path={d}/pairs.csv",
                                          "--noprogressbar"], "run", ["run/save"]),
    ("training-checkpoint-folder", "microsoft_clap_train", [
        TOY_TRAIN, "--output_base={out}", "--experiment_name=resumed", "--data_annot_folder=",
        "--train_csv_path={d}/pairs.csv", "--resume_interrupt=True", "--prev_ckpt_dir={out}/first/save",
        "--noprogressbar"], "first/save", ["resumed", "resumed/save"]),
    ("softclap-training", "softclap_train", ["hparams/toy/softclap_train.yaml", "--output_base={out}",
                                             "--experiment_name=run", "--data_annot_folder=",
                                             "--train_csv_path={d}/pairs.csv", "--noprogressbar"], "run",
     ["run/save"]),
    ("embedding-step", "microsoft_curation_toemb", [f"{CURATION}/microsoft_audioset_insper_toemb.yaml",
                                                    "--output_folder={out}/emb", "--audio_pathfile={d}/list.txt",
                                                    *TOY_MODEL], "emb", []),
    ("zero-shot", "microsoft_zeroshot", ["hparams/toy/microsoft_zeroshot.yaml", "--data_folder={esc}",
                                         "--output_base={out}", "--experiment_name=zs", "--noprogressbar"], "zs", []),
    ("retrieval", "retrieval_eval", ["hparams/toy/retrieval_eval.yaml", "--data_folder={d}/clotho",
                                     "--clap_ckpt_path={d}/tiny.pth", "--ssl_checkpoints_dir=",
                                     "--output_base={out}", "--experiment_name=retr", "--noprogressbar"], "retr", []),
    ("ds", "retrieve_ds_t2t", [f"{CURATION}/esc_insper_t2t_retr.yaml", "--emb_dir={out}",
                               "--log_folder={out}/logs", "--target_csv_path={d}/pairs.csv", *TOY_MODEL], "logs", []),
    ("du", "retrieve_from_emb_thresh", [f"{CURATION}/audioset_insper_duv2_retr.yaml", "--emb_dir={out}",
                                        "--log_folder={out}/logs", "--sim_threshold=0.5"], "logs", []),
    ("ads", "retrieve_from_emb_thresh", [f"{CURATION}/esc_insper_audioset_dudsv3_retr.yaml", "--emb_dir={out}",
                                         "--log_folder={out}/logs"], "logs", []),
    ("index", "build_index", ["--audio_pathfile={d}/list.txt", "--output_folder={out}/index",
                              "--clap_ckpt_path={d}/tiny.pth", "--model_hparams={d}/tiny.yaml"], "index", []),
    ("toy-pipeline", "toy_pipeline", ["hparams/toy/pipeline.yaml", "--output_folder={out}/toy"], "toy", []),
    ("pipeline-runner", "pipeline", ["hparams/pipeline/laion_own_audio.yaml", "--teacher={d}/ours.pt",
                                     "--unpaired_audio={d}/unpaired", "--caption_pool=[{d}/pairs.csv]",
                                     "--label_list={d}/labels.txt", "--output_folder={out}/mine"], "mine", []),
]


def files_and_folders(root):
    """``({file: (size, mtime)}, {folder: its entries})`` below ``root``."""
    files, folders = {}, {}
    for path, (size, mtime) in snapshot(root)[0].items():
        if os.path.isdir(os.path.join(root, path)):
            folders[path] = sorted(os.listdir(os.path.join(root, path)))
        else:
            files[path] = (size, mtime)
    return files, folders


@pytest.mark.parametrize("script, flags, locked, made_by_yaml", [row[1:] for row in SCRIPTS],
                         ids=[row[0] for row in SCRIPTS])
def test_every_script_stops_at_once_on_a_folder_in_use_naming_it_and_its_holder(tiny_inputs, tmp_path, script, flags,
                                                                                 locked, made_by_yaml):
    """Each entry point, given a folder another run holds, stops before writing anything: the message names the
    folder and the holder's PID; no file in the test's folder is written or changed (the holder's lock file
    included), and the only new folders are the empty ones a training YAML's Checkpointer makes."""
    out = tmp_path / "out"
    folder = out / locked
    holder = start_holder(folder)
    try:
        files, folders = files_and_folders(out)
        with pytest.raises(SystemExit) as refused:
            load_script(script).main([f.format(out=out, **tiny_inputs) for f in flags])
        message = str(refused.value.code)
        assert f"{os.path.realpath(folder)} is in use by another run: PID {holder.pid} on host" in message, message
        assert "holder-marker" in message and "stopped before writing anything" in message, message
        files_after, folders_after = files_and_folders(out)
        assert files_after == files
        new = {f: entries for f, entries in folders_after.items() if f not in folders}
        assert sorted(new) == sorted(made_by_yaml), new
        assert all(os.path.join(f, name) in new for f, entries in new.items() for name in entries), new  # empty
    finally:
        kill(holder)
