"""pipeline.launch: where the runner's commands run (subprocess, submitit job, torchrun), not what they compute."""

import json
import os
import sys
import time

import pytest

from conftest import REPO, check_ok, kill_at_first_complete_checkpoint, run_script, trained_epochs
from pipeline.launch import (DEFAULT_TIMEOUT_MIN, HEAD_NODE, LocalLauncher, SubmititLauncher, make_launcher,
                             slurm_parameters, torchrun_argv, torchrun_nodes)
from pipeline.stages import Runner, Stage

ARGV = ["/r/recipes/microsoft_clap_train.py", "/r/hparams/toy/microsoft_clap_train.yaml", "--seed=1"]


def wait(handle, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        code = handle.poll()
        if code is not None:
            return code
        time.sleep(0.2)
    raise AssertionError("the command did not end")


# ------------------------------------------------------------------ torchrun
def test_torchrun_argv_is_the_command_itself_for_one_process():
    assert torchrun_argv(ARGV) == ARGV
    assert torchrun_argv(ARGV, nproc_per_node=1, nnodes=1) == ARGV
    assert torchrun_nodes(ARGV) == 1


def test_torchrun_argv_one_machine_several_processes():
    assert torchrun_argv(ARGV, nproc_per_node=2, nnodes=1) == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] + ARGV
    assert torchrun_nodes(torchrun_argv(ARGV, 2, 1)) == 1


def test_torchrun_argv_several_machines_meet_at_the_first_node():
    argv = torchrun_argv(ARGV, nproc_per_node=4, nnodes=2)
    assert argv == ["-m", "torch.distributed.run", "--nproc_per_node=4", "--nnodes=2", "--rdzv_backend=c10d",
                    f"--rdzv_endpoint={HEAD_NODE}:29500"] + ARGV
    assert torchrun_nodes(argv) == 2
    # A script flag named like torchrun's is the script's.
    assert torchrun_nodes(ARGV + ["--nnodes=3"]) == 1
    assert torchrun_argv(ARGV, 4, 2, rdzv_endpoint="node7:1234")[5] == "--rdzv_endpoint=node7:1234"
    for bad in (0, -1, "two", 1.5):
        with pytest.raises(ValueError, match="nproc_per_node"):
            torchrun_argv(ARGV, nproc_per_node=bad)


# -------------------------------------------------------------- make_launcher
def test_make_launcher_reads_the_pipeline_keys(tmp_path):
    assert isinstance(make_launcher({}, str(tmp_path)), LocalLauncher)
    assert isinstance(make_launcher({"executor": "local", "nproc_per_node": 2}, str(tmp_path)), LocalLauncher)
    launcher = make_launcher({"executor": "slurm", "slurm_cluster": "local", "slurm": {"timeout_min": 30}},
                             str(tmp_path))
    assert isinstance(launcher, SubmititLauncher) and launcher.cluster == "local"
    assert launcher.folder == os.path.join(str(tmp_path), "submitit")
    assert launcher.executor._executor.parameters["timeout_min"] == 30


@pytest.mark.parametrize("hparams, words", [
    ({"executor": "kubernetes"}, ["executor", "kubernetes", "local", "slurm"]),
    ({"executor": "slurm", "slurm_cluster": "local", "slurm": {"partitoin": "gpu"}}, ["slurm", "partitoin"]),
    ({"executor": "slurm", "slurm_cluster": "local", "slurm": {"nodes": 2}}, ["nodes", "nnodes"]),
    ({"executor": "slurm", "slurm_cluster": "local", "slurm": ["gpu"]}, ["slurm", "mapping"]),
    ({"executor": "slurm", "slurm_cluster": "local", "slurm": {"timeout_min": "1h"}}, ["slurm", "timeout_min"]),
    ({"executor": "slurm", "slurm_cluster": "pbs"}, ["slurm_cluster", "pbs"]),
    ({"executor": "local", "nnodes": 2}, ["nnodes", "slurm"]),
    ({"executor": "slurm", "slurm_cluster": "local", "nnodes": 2}, ["nnodes", "slurm"]),
    ({"nproc_per_node": 0}, ["nproc_per_node"]),
])
def test_make_launcher_errors_name_the_key(tmp_path, hparams, words):
    with pytest.raises(SystemExit) as err:
        make_launcher(hparams, str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_slurm_keys_get_submitits_names():
    params = slurm_parameters({"partition": "gpu", "timeout_min": 240, "gpus_per_node": 4, "cpus_per_task": 8,
                               "mem_gb": 64, "slurm_account": "lab"})
    assert params == {"slurm_partition": "gpu", "timeout_min": 240, "gpus_per_node": 4, "cpus_per_task": 8,
                      "mem_gb": 64, "slurm_account": "lab"}
    assert slurm_parameters(None) == {"timeout_min": DEFAULT_TIMEOUT_MIN}


def test_slurm_without_submitit_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    with pytest.raises(SystemExit, match="pip install submitit"):
        make_launcher({"executor": "slurm", "slurm_cluster": "local"}, str(tmp_path))
    assert isinstance(make_launcher({"executor": "local"}, str(tmp_path)), LocalLauncher)


# ----------------------------------------------------- launchers and the runner
class _Recorder:
    """A launcher that runs nothing: records each start and succeeds."""

    def __init__(self):
        self.started = {}

    def start(self, stage, argv, env, log_path):
        self.started[stage.name] = (list(argv), env["OMP_NUM_THREADS"])

        class Done:
            def poll(self):
                return 0

            def cancel(self):
                pass
        return Done()


def _two_stages(tmp_path):
    train = Stage("train", "train", command=lambda: ["train.py", "--lr=1"], distributed=True,
                  marker_dir=str(tmp_path / "m"), log_dir=str(tmp_path))
    score = Stage("score", "score", deps=[train], command=lambda: ["score.py"], marker_dir=str(tmp_path / "m"),
                  log_dir=str(tmp_path))
    return [train, score]


def test_runner_puts_torchrun_before_distributed_stages_only(tmp_path):
    plain = _Recorder()
    stages = _two_stages(tmp_path / "a")
    assert Runner(stages, launcher=plain).run()
    assert plain.started["train"][0] == ["train.py", "--lr=1"] and plain.started["score"][0] == ["score.py"]
    digests = [s.digest for s in stages]

    ddp = _Recorder()
    stages = _two_stages(tmp_path / "b")
    runner = Runner(stages, launcher=ddp, nproc_per_node=2)
    assert runner.run()
    assert ddp.started["train"][0] == torchrun_argv(["train.py", "--lr=1"], 2, 1)
    assert ddp.started["score"][0] == ["score.py"]
    # torchrun is part of what the training computes (its global batch); the scoring's own command is not changed.
    assert stages[0].digest != digests[0]
    # The two processes of the torchrun stage split its threads.
    assert int(ddp.started["train"][1]) == max(1, runner.cpus // 2)
    with pytest.raises(ValueError, match="nnodes"):
        Runner(stages, nnodes=0)


def test_in_process_stages_run_in_process_under_any_launcher(tmp_path):
    launcher = _Recorder()
    stage = Stage("world", "w", command=lambda: ["x"], run=lambda: {"pid": os.getpid()}, distributed=True,
                  marker_dir=str(tmp_path), log_dir=str(tmp_path))
    assert Runner([stage], launcher=launcher, nproc_per_node=2).run()
    assert launcher.started == {} and stage.result["outputs"]["pid"] == os.getpid()


def _command_stage(tmp_path, name, code, deps=()):
    return Stage(name, name, deps=deps, marker_dir=str(tmp_path / "stages"), log_dir=str(tmp_path / "logs"),
                 command=lambda: ["-c", f"import os, sys; print('hello from', os.getcwd()); sys.exit({code})"],
                 outputs=lambda stdout: {"said": stdout.split("hello from ", 1)[1].strip()})


@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_a_stage_succeeds_or_fails_with_its_exit_code_and_its_output_in_its_log(tmp_path, capsys, executor):
    launcher = make_launcher({"executor": executor, "slurm_cluster": "local"}, str(tmp_path))
    good = _command_stage(tmp_path, "good", 0)
    bad = _command_stage(tmp_path, "bad", 3)
    after = _command_stage(tmp_path, "after", 0, deps=[bad])
    assert not Runner([good, bad, after], jobs=2, launcher=launcher).run()
    printed = capsys.readouterr().out
    assert good.result["outputs"] == {"said": REPO}  # the same working directory as a local subprocess
    assert bad.result is None and after.result is None
    assert f"bad: FAILED (exit code 3); log: {bad.log_path}" in printed
    assert "hello from" in printed  # the failure's log tail
    assert open(bad.log_path).read().startswith("hello from ")
    job_file = os.path.join(tmp_path, "stages", "good.job")
    if executor == "slurm":
        job_id = open(job_file).read().split()[0]
        assert job_id.isdigit() and os.listdir(tmp_path / "submitit")
    else:
        assert not os.path.exists(job_file)


def test_a_submitit_job_can_be_cancelled(tmp_path):
    launcher = SubmititLauncher(str(tmp_path / "submitit"), cluster="local")
    stage = _command_stage(tmp_path, "slow", 0)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    handle = launcher.start(stage, ["-c", "import time; print('started', flush=True); time.sleep(300)"], env,
                            stage.log_path)
    deadline = time.time() + 60
    while "started" not in (open(stage.log_path).read()) and time.time() < deadline:
        time.sleep(0.2)
    handle.cancel()
    assert wait(handle, 60) != 0


def test_a_torchrun_stage_runs_its_ranks(tmp_path):
    """The prefix is a command torchrun accepts: two ranks on CPU, each with its RANK and WORLD_SIZE."""
    script = tmp_path / "ranks.py"
    script.write_text("import os\nprint('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'], flush=True)\n")
    stage = Stage("ddp", "ddp", command=lambda: [str(script)], distributed=True, marker_dir=str(tmp_path),
                  log_dir=str(tmp_path), outputs=lambda stdout: {"ranks": sorted(
                      line for line in stdout.splitlines() if line.startswith("rank"))})
    assert Runner([stage], nproc_per_node=2).run()
    assert stage.result["outputs"]["ranks"] == ["rank 0 of 2", "rank 1 of 2"]


def test_local_launcher_refuses_a_multi_node_command(tmp_path):
    stage = _command_stage(tmp_path, "x", 0)
    with pytest.raises(ValueError, match="slurm"):
        LocalLauncher().start(stage, torchrun_argv(["x.py"], 1, 2), dict(os.environ), stage.log_path)


def _toy_plan(tmp_path, *overrides):
    from experiment.command_line import load_hparams
    from pipeline.plan import SeedPlan

    lines = [f"output_folder: {tmp_path}", "du_threshold: 0.5"] + [f"ads_threshold_{t}: 0.5" for t in
                                                                   ("esc50", "us8k", "tut17")]
    hparams = load_hparams(os.path.join(REPO, "hparams/toy/pipeline.yaml"), "\n".join(lines + list(overrides)))
    world = Stage("world", "w", marker_dir=str(tmp_path), log_dir=str(tmp_path))
    return {s.name: s for s in SeedPlan(hparams, 1, world, str(tmp_path / "world")).stages}


def test_the_toy_plan_marks_training_and_embedding_stages_distributed_and_wires_device(tmp_path):
    stages = _toy_plan(tmp_path)
    assert sorted(n for n, s in stages.items() if s.distributed) == sorted(
        ["teacher", "embeddings", "leakage_embeddings"] + [n for n in stages if n.startswith("student_")])
    models = ("teacher", "embeddings", "zeroshot_teacher_esc50", "curation_ds_esc50")
    plain = {n: stages[n].command() for n in models}
    assert not any(a.startswith("--device") for argv in plain.values() for a in argv)
    # The executor is not part of a command; a device is (its numerics differ).
    slurm = _toy_plan(tmp_path, "executor: slurm", "slurm_cluster: local", "slurm: {partition: gpu}")
    assert {n: slurm[n].command() for n in models} == plain
    cuda = _toy_plan(tmp_path, "device: cuda")
    for name, argv in plain.items():
        with_device = cuda[name].command()
        assert with_device.count("--device=cuda") == 1 and [a for a in with_device if a != "--device=cuda"] == argv


# ---------------------------------------------------- the toy plan on submitit
PIPELINE = ["recipes/toy_pipeline.py", "hparams/toy/pipeline.yaml"]
# The cheapest plan that trains a teacher, curates (DS) and trains a student. One job at a time: every
# stage gets the same threads in both runs (with two, a stage's threads depend on which finished first).
TINY_PLAN = ["--world_size=tiny", "--target_sets=[esc50]", "--students=[ds]", "--teacher_epochs=1",
             "--student_steps=1", "--ds_threshold_esc50=0.0", "--batch_size=16", "--jobs=1"]
ON_SUBMITIT = ["--executor=slurm", "--slurm_cluster=local"]


@pytest.mark.slow
def test_the_toy_plan_on_submitit_gives_the_local_runs_results(tmp_path):
    local, jobs = tmp_path / "local", tmp_path / "submitit"
    begin = time.perf_counter()
    check_ok(run_script(PIPELINE + [f"--output_folder={local}"] + TINY_PLAN, timeout=1200))
    middle = time.perf_counter()
    check_ok(run_script(PIPELINE + [f"--output_folder={jobs}"] + TINY_PLAN + ON_SUBMITIT, timeout=1800))
    print(f"local runner {middle - begin:.0f} s, submitit (local) {time.perf_counter() - middle:.0f} s")
    for name in ("results.csv", "results_per_seed.csv"):
        assert (jobs / name).read_bytes() == (local / name).read_bytes(), name
    # The same commands, each command stage's job id next to its marker (the leakage audit runs in the runner).
    in_process = 0
    for marker in (local / "seed1234" / "stages").glob("*.json"):
        other = jobs / "seed1234" / "stages" / marker.name
        argv = json.loads(marker.read_text())["argv"]
        assert argv == json.loads(other.read_text().replace(str(jobs), str(local)))["argv"], marker.name
        if not any(a.endswith(".py") for a in argv):
            in_process += 1
            assert not (jobs / "seed1234" / "stages" / f"{marker.stem}.job").exists(), marker.name
            continue
        assert (jobs / "seed1234" / "stages" / f"{marker.stem}.job").read_text().split()[0].isdigit()
    assert in_process == 1
    # The same digests: a run started locally continues on submitit (here: nothing left to do).
    again = run_script(PIPELINE + [f"--output_folder={local}"] + TINY_PLAN + ON_SUBMITIT, timeout=600)
    check_ok(again)
    assert again.stdout.count("already done, skipped") == 9, again.stdout


@pytest.mark.slow
def test_a_killed_submitit_run_resumes_the_teacher_from_its_checkpoint(tmp_path):
    out = tmp_path / "killed"
    plan = [a for a in TINY_PLAN if not a.startswith("--teacher_epochs=")] + ["--teacher_epochs=3"]
    args = [sys.executable] + PIPELINE + [f"--output_folder={out}"] + plan + ON_SUBMITIT
    kill_at_first_complete_checkpoint(args, out / "seed1234" / "teacher" / "save")  # runner and its jobs
    assert not (out / "seed1234" / "stages" / "teacher.json").exists()

    again = run_script(args[1:], timeout=1500)
    check_ok(again)
    assert "teacher training: done in" in again.stdout
    assert trained_epochs(out / "seed1234" / "teacher") == [1, 2, 3]
    assert (out / "results.csv").exists()
