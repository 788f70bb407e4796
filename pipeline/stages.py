"""A small stage runner: commands in dependency order, side by side, skipped when done, resumed when killed.

Each :class:`Stage` runs one command (a recipe, as a subprocess) or an
in-process function, and records a marker ``<name>.json`` holding a digest
of its command and of the digests of the stages it depends on. A rerun skips
every stage whose marker matches, reruns those whose inputs changed together
with everything downstream, and resumes a killed training stage from its last
checkpoint (``--resume_interrupt=True``). Where a command runs (a subprocess,
a SLURM job, under torchrun) is the launcher's business (:mod:`pipeline.launch`).
"""

import hashlib
import json
import os
import shutil
import time

from dataset.manifest import atomic_write, read_json_or_none
from experiment.checkpoints import checkpoint_dirs
from pipeline.launch import REPO, LocalLauncher, torchrun_argv

__all__ = ["REPO", "RESUME_FLAGS", "Stage", "Runner", "read_text"]

RESUME_FLAGS = ("--resume_interrupt=", "--prev_ckpt_dir=")


class Stage:
    """One step of the pipeline.

    Arguments
    ---------
    name : str
        Unique within its seed folder (the marker's file name).
    label : str
        What the progress line calls it.
    deps : list of Stage
        Stages that must be done first.
    command : callable
        ``command() -> list of str`` (script, YAML, flags), built when the
        stage starts, so it may read its dependencies' outputs; ``None`` for
        an in-process stage.
    run : callable, optional
        In-process work (instead of ``command``).
    outputs : callable
        ``outputs(stdout) -> dict`` of results kept in the marker (paths,
        counts) and read by later stages; it raises if an output is missing.
    note : callable, optional
        ``note(outputs) -> str`` for the progress line.
    train_save : str, optional
        ``save`` folder of a training stage: removed when the stage's inputs
        change, resumed from when it holds checkpoints.
    skip : callable, optional
        ``skip() -> str or None``: a reason not to run (e.g. no curated pairs).
    marker_dir, log_dir : str
        Where the stage's marker (``<name>.json``) and log (``<name>.log``) go.
    distributed : bool
        Its recipe runs under torchrun (DDP): the runner's ``nproc_per_node`` /
        ``nnodes`` apply to it.
    """

    def __init__(self, name, label, deps=(), command=None, run=None, outputs=None, note=None,
                 train_save=None, skip=None, marker_dir=None, log_dir=None, distributed=False):
        self.name, self.label, self.deps = name, label, list(deps)
        self.command, self.run, self.note = command, run, note
        self.outputs = outputs or (lambda stdout: {})
        self.train_save, self.skip, self.distributed = train_save, skip, distributed
        self.marker_path = os.path.join(marker_dir, f"{name}.json")
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.result = None  # the marker dict once done
        self.digest = self.argv = self.skip_reason = None
        self.prepared = False

    def compute_digest(self, argv):
        """Digest of the command (without resume flags) and of the dependencies' digests."""
        stable = [a for a in (argv or []) if not a.startswith(RESUME_FLAGS)]
        payload = json.dumps({"argv": stable, "deps": [d.digest for d in self.deps]})
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class Runner:
    """Runs stages in dependency order, ``jobs`` at a time, printing one line per stage.

    Arguments
    ---------
    stages : list of Stage
    jobs : int
        Stages run (or submitted) side by side.
    launcher : optional
        Starts the commands (:mod:`pipeline.launch`); default: local subprocesses.
    nproc_per_node, nnodes : int
        torchrun's processes per machine and machines for the ``distributed``
        stages (1, 1: no torchrun); part of those stages' commands and digests.
    """

    def __init__(self, stages, jobs=1, launcher=None, nproc_per_node=1, nnodes=1):
        self.stages = stages
        self.jobs = max(1, int(jobs))
        self.launcher = launcher or LocalLauncher()
        self.nproc_per_node, self.nnodes = nproc_per_node, nnodes
        torchrun_argv([], nproc_per_node, nnodes)  # ValueError now, not at the first distributed stage
        self.done = 0
        self.failed = []
        self.cpus = os.cpu_count() or 1

    def _env(self, sharing, processes=1):
        """Threads per subprocess: the CPUs split between the stages that will run side by side.

        Oversubscribing the cores (two PyTorch processes with two threads each
        on two cores) makes every operator several times slower. A torchrun
        stage's ``processes`` share its part.
        """
        threads = str(max(1, self.cpus // max(1, sharing) // max(1, processes)))
        return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)

    def _line(self, stage, text):
        print(f"[{self.done:>2}/{len(self.stages)}] {stage.label}: {text}", flush=True)

    def _prepare(self, stage):
        """Builds the command (or the reason not to run) and digest; True if the marker says it is done."""
        stage.skip_reason = stage.skip() if stage.skip else None
        stage.argv = None if stage.skip_reason or not stage.command else stage.command()
        if stage.argv and stage.distributed:
            stage.argv = torchrun_argv(stage.argv, self.nproc_per_node, self.nnodes)
        stage.digest = stage.compute_digest([f"not run: {stage.skip_reason}"] if stage.skip_reason else stage.argv)
        marker = read_json_or_none(stage.marker_path)
        if marker and marker.get("digest") == stage.digest and _outputs_present(marker):
            stage.result = marker
            return True
        if stage.train_save and os.path.isdir(stage.train_save):
            previous = marker.get("digest") if marker else read_text(stage.train_save + ".digest")
            if previous and previous != stage.digest:
                # Inputs changed: the old checkpoints belong to another run.
                shutil.rmtree(os.path.dirname(stage.train_save))
        return False

    def _finish(self, stage, outputs, seconds, skipped=None):
        marker = {"name": stage.name, "digest": stage.digest, "argv": stage.argv, "seconds": round(seconds, 1),
                  "outputs": outputs}
        if skipped:
            marker["skipped"] = skipped
        os.makedirs(os.path.dirname(stage.marker_path), exist_ok=True)
        atomic_write(stage.marker_path, lambda f: f.write(json.dumps(marker, indent=2, ensure_ascii=False) + "\n"),
                     "w", encoding="utf-8")
        stage.result = marker
        self.done += 1
        if skipped:
            self._line(stage, f"not run: {skipped}")
        else:
            note = stage.note(outputs) if stage.note else ""
            self._line(stage, f"done in {seconds:.0f} s" + (f" · {note}" if note else ""))

    def _start(self, stage, sharing=1):
        if stage.skip_reason:
            self._finish(stage, {}, 0.0, skipped=stage.skip_reason)
            return None
        if stage.run is not None:
            begin = time.perf_counter()
            outputs = stage.run()
            self._finish(stage, outputs, time.perf_counter() - begin)
            return None
        argv = list(stage.argv)
        if stage.train_save and checkpoint_dirs(stage.train_save):
            argv += ["--resume_interrupt=True", f"--prev_ckpt_dir={stage.train_save}"]
        if stage.train_save:
            os.makedirs(os.path.dirname(stage.train_save), exist_ok=True)
            with open(stage.train_save + ".digest", "w", encoding="utf-8") as f:
                f.write(stage.digest)
        processes = self.nproc_per_node if stage.distributed else 1
        handle = self.launcher.start(stage, argv, self._env(sharing, processes), stage.log_path)
        return handle, time.perf_counter()

    def run(self):
        """Runs every stage; returns True if all succeeded (failures are reported with their log).

        Interrupted (Ctrl-C), it cancels the commands it started (SLURM jobs too) before raising.
        """
        running = {}
        try:
            return self._run(running)
        except BaseException:
            for handle, _ in running.values():
                handle.cancel()
            raise

    def _run(self, running):
        pending = list(self.stages)
        while pending or running:
            ready = [s for s in pending if all(d.result is not None for d in s.deps)]
            # Finished stages are skipped at once, even while every lane is busy.
            for stage in list(ready):
                if not stage.prepared:
                    stage.prepared = True
                    if self._prepare(stage):
                        pending.remove(stage)
                        ready.remove(stage)
                        self.done += 1
                        self._line(stage, "already done, skipped")
            if any(s not in ready and all(d.result is not None for d in s.deps) for s in pending):
                continue  # skipping made more stages ready: look again before starting any
            for stage in ready:
                if len(running) >= self.jobs:
                    break
                pending.remove(stage)
                # Stages that will share the CPUs with this one.
                sharing = min(self.jobs,
                              len(running) + 1 + len([s for s in ready if s.result is None and s in pending]))
                try:
                    started = self._start(stage, sharing)
                except Exception as err:  # an in-process stage, or a launch: report like a failed subprocess
                    self._fail(stage, f"{type(err).__name__}: {err}")
                    continue
                if started:
                    running[stage] = started
            if self.failed and not running:
                break
            if not running:
                if pending and not ready:
                    break
                continue
            time.sleep(0.2)
            for stage, (handle, begin) in list(running.items()):
                code = handle.poll()
                if code is None:
                    continue
                del running[stage]
                stdout = read_text(stage.log_path) or ""
                if code != 0:
                    self._fail(stage, f"exit code {code}")
                    continue
                try:
                    outputs = stage.outputs(stdout)
                except (OSError, ValueError, KeyError) as err:
                    self._fail(stage, f"finished but its outputs are missing ({err})")
                    continue
                self._finish(stage, outputs, time.perf_counter() - begin)
        return not self.failed

    def _fail(self, stage, reason):
        self.failed.append(stage)
        self.done += 1
        self._line(stage, f"FAILED ({reason}); log: {stage.log_path}")
        tail = (read_text(stage.log_path) or "").splitlines()[-25:]
        if tail:
            print("    " + "\n    ".join(tail), flush=True)


def _outputs_present(marker):
    """Every file a finished stage recorded is still there."""
    paths = [v for v in (marker.get("outputs") or {}).values() if isinstance(v, str) and os.path.isabs(v)]
    return all(os.path.exists(p) for p in paths)


def read_text(path):
    """The text of ``path``, or None if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


