"""How the stage runner starts a command: a local subprocess, a submitit (SLURM) job, and torchrun.

A launcher has one method, ``start(stage, argv, env, log_path) -> handle``:
it starts ``python <argv>`` from the repository root with ``env``, its output
(stdout and stderr) into ``log_path``. The handle's ``poll()`` is None while
the command runs, then its exit code (0: success); ``cancel()`` stops it.

- :class:`LocalLauncher`: a subprocess of the runner (the default);
- :class:`SubmititLauncher`: one submitit job per stage, on SLURM or, with
  ``cluster="local"``, as local processes (to try a plan without a cluster);
- :func:`torchrun_argv`: a stage's command under ``torch.distributed.run``
  (DDP on several GPUs, or machines);
- :func:`make_launcher`: the launcher of a pipeline YAML's keys ``executor``,
  ``slurm_cluster``, ``slurm``, ``nproc_per_node`` and ``nnodes``.

The launcher decides where a command runs, never what it computes: a stage's
command and digest are the same under every launcher, so a run started
locally can be continued on SLURM.
"""

import os
import subprocess
import sys

__all__ = ["REPO", "EXECUTORS", "HEAD_NODE", "RDZV_PORT", "DEFAULT_TIMEOUT_MIN", "torchrun_argv", "torchrun_nodes",
           "LocalLauncher", "SubmititLauncher", "slurm_parameters", "make_launcher"]

#: The repository root: recipes run from there.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Values of the pipeline YAML's ``executor`` key.
EXECUTORS = ("local", "slurm")
#: Values of ``slurm_cluster``: None (SLURM, detected by submitit) or ``local`` (submitit's local processes).
CLUSTERS = (None, "slurm", "local")
#: In a multi-node command, the host of the rendezvous: replaced inside the job by the allocation's first node.
HEAD_NODE = "{head_node}"
#: The rendezvous port on the first node of a multi-node job.
RDZV_PORT = 29500
#: A job's time limit when the ``slurm`` keys give none (submitit's own default is 5 minutes on SLURM, 2 locally).
DEFAULT_TIMEOUT_MIN = 24 * 60
TORCHRUN = ("-m", "torch.distributed.run")
# Job states (local executor, SLURM) after which no result file will appear.
ENDED_WITHOUT_RESULT = {"INTERRUPTED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                        "BOOT_FAIL", "DEADLINE"}
# Derived from nnodes (one task per node; torchrun starts the processes of a node): not settable in ``slurm``.
DERIVED_KEYS = {"nodes": "nnodes", "tasks_per_node": "nnodes", "ntasks_per_node": "nnodes", "name": "the stage"}


def torchrun_argv(argv, nproc_per_node=1, nnodes=1, rdzv_endpoint=None):
    """``argv`` (script, YAML, flags) under ``python -m torch.distributed.run``; unchanged for one process.

    One node: ``--standalone`` (a free local port, so that two DDP stages can
    run side by side). Several nodes: a c10d rendezvous at ``rdzv_endpoint``,
    by default ``{head_node}:29500``, which a submitit job replaces by the
    first host of its allocation.

    Example
    -------
    >>> torchrun_argv(["recipes/x.py", "x.yaml"])
    ['recipes/x.py', 'x.yaml']
    >>> torchrun_argv(["recipes/x.py"], nproc_per_node=2)
    ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'recipes/x.py']
    """
    nproc, nodes = _count(nproc_per_node, "nproc_per_node"), _count(nnodes, "nnodes")
    if nproc == 1 and nodes == 1:
        return list(argv)
    if nodes == 1:
        flags = ["--standalone", f"--nproc_per_node={nproc}"]
    else:
        endpoint = rdzv_endpoint or f"{HEAD_NODE}:{RDZV_PORT}"
        flags = [f"--nproc_per_node={nproc}", f"--nnodes={nodes}", "--rdzv_backend=c10d",
                 f"--rdzv_endpoint={endpoint}"]
    return list(TORCHRUN) + flags + list(argv)


def torchrun_nodes(argv):
    """The machines a command needs: ``--nnodes`` of its torchrun prefix, else 1."""
    return _torchrun_flag(argv, "--nnodes=") or 1


def _torchrun_flag(argv, prefix):
    if tuple(argv[:2]) != TORCHRUN:
        return None
    for arg in argv[2:]:
        if not arg.startswith("--"):
            break  # the script: its own flags follow
        if arg.startswith(prefix):
            return int(arg[len(prefix):])
    return None


def _count(value, key):
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1 or str(value).strip() != str(count):
        raise ValueError(f"{key} must be a whole number >= 1; got {value!r}")
    return count


class _ProcessHandle:
    """A local subprocess; closes its log file when it ends."""

    def __init__(self, proc, log):
        self.proc, self.log = proc, log
        self.job_id = None

    def poll(self):
        code = self.proc.poll()
        if code is not None and not self.log.closed:
            self.log.close()
        return code

    def cancel(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.poll()


class LocalLauncher:
    """Each command a subprocess of the runner: ``python <argv>`` from the repository root."""

    def start(self, stage, argv, env, log_path):
        if any(HEAD_NODE in a for a in argv):
            raise ValueError(f"{stage.name}: a multi-node command needs executor: slurm")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        log = open(log_path, "w", encoding="utf-8")
        try:
            proc = subprocess.Popen([sys.executable] + list(argv), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    env=env)
        except BaseException:
            log.close()
            raise
        return _ProcessHandle(proc, log)


def run_in_job(python, argv, env_changes, log_path, cwd):
    """The body of a submitit job: ``python <argv>`` in ``cwd``, its output appended to the stage's log.

    Runs on every node of the job (one task per node). The environment is
    the job's own (SLURM's variables, its GPUs) with the runner's changes on
    top; under SLURM the threads per process are the task's CPUs split among
    the node's processes. ``{head_node}`` becomes the allocation's first host.
    Node 0 writes ``log_path``, node k ``<log_path>.node<k>``. Returns the
    command's exit code.
    """
    env = dict(os.environ, **env_changes)
    node = 0
    if os.environ.get("SUBMITIT_EXECUTOR"):
        import submitit

        job = submitit.JobEnvironment()
        node = job.node
        argv = [a.replace(HEAD_NODE, job.hostnames[0]) for a in argv]
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and cpus:
        threads = str(max(1, int(cpus) // (_torchrun_flag(argv, "--nproc_per_node=") or 1)))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    path = log_path if node == 0 else f"{log_path}.node{node}"
    with open(path, "a", encoding="utf-8") as log:
        return subprocess.run([python] + list(argv), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                              env=env).returncode


class _JobHandle:
    """A submitit job: its exit code is the command's (the first non-zero of its nodes), 1 if it has no result."""

    def __init__(self, job, log_path):
        self.job, self.log_path = job, log_path
        self.job_id = job.job_id
        self.code = None

    def poll(self):
        if self.code is not None or not self.job.done():
            return self.code
        state = str(self.job.state)
        if state.split(" ")[0] in ENDED_WITHOUT_RESULT and not self.job.paths.result_pickle.exists():
            # No result will come: do not wait for it (submitit waits a while for a slow shared file system).
            self._failed(f"state {state}")
            return self.code
        try:
            codes = [int(c) for c in self.job.results()]
            self.code = next((c for c in codes if c), 0)
        except Exception as err:  # the job failed outside the command: timeout, cancelled, node failure
            first = str(err).strip().splitlines()[:1] or [type(err).__name__]
            self._failed(f"state {state}: {first[0]}")
        return self.code

    def _failed(self, reason):
        """Exit code 1, and the reason at the end of the stage's log (the runner prints its tail)."""
        self.code = 1
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"\nsubmitit job {self.job_id} ended without a result ({reason})\n"
                      f"submitit logs: {self.job.paths.stdout} and {self.job.paths.stderr}\n")

    def cancel(self):
        if self.code is None and not self.job.done():
            self.job.cancel(check=False)


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise SystemExit("executor: slurm needs submitit: pip install submitit") from None
    return submitit


def slurm_parameters(slurm):
    """The ``slurm`` keys as ``AutoExecutor.update_parameters`` arguments; SystemExit naming a key it does not know.

    submitit's shared names (``timeout_min``, ``gpus_per_node``,
    ``cpus_per_task``, ``mem_gb``, ...) pass as they are; SLURM's own
    (``partition``, ``account``, ``qos``, ``constraint``, ...) get submitit's
    ``slurm_`` prefix (given with it, they pass too). ``timeout_min``
    defaults to :data:`DEFAULT_TIMEOUT_MIN`.

    Example
    -------
    >>> sorted(slurm_parameters({"partition": "gpu", "gpus_per_node": 4}).items())
    [('gpus_per_node', 4), ('slurm_partition', 'gpu'), ('timeout_min', 1440)]
    """
    submitit = _import_submitit()
    if slurm is None:
        slurm = {}
    if not isinstance(slurm, dict):
        raise SystemExit(f"slurm: must be a mapping of submitit parameters, e.g. {{partition: gpu}}; got {slurm!r}")
    shared = submitit.AutoExecutor._valid_parameters()
    own = submitit.SlurmExecutor._valid_parameters()
    params = {"timeout_min": DEFAULT_TIMEOUT_MIN}
    for key, value in slurm.items():
        bare = key[len("slurm_"):] if key.startswith("slurm_") else key
        if bare in DERIVED_KEYS:
            raise SystemExit(f"slurm: key {key!r} is set by the runner (from {DERIVED_KEYS[bare]}); remove it")
        if bare in shared:
            params[bare] = value
        elif bare in own:
            params[f"slurm_{bare}"] = value
        else:
            raise SystemExit(f"slurm: unknown key {key!r} (submitit's: {', '.join(sorted(shared - set(DERIVED_KEYS)))}"
                             f"; SLURM's: partition, account, qos, constraint, gres, ... see submitit.SlurmExecutor)")
    return params


class SubmititLauncher:
    """Each command one submitit job: SLURM (``cluster=None``, detected) or local processes (``cluster="local"``).

    Arguments
    ---------
    folder : str
        submitit's folder (job scripts, pickles and its own logs).
    cluster : str, optional
        None: SLURM, as submitit detects it; ``"local"``: submitit's local executor.
    slurm : dict, optional
        Executor parameters (:func:`slurm_parameters`), e.g. ``{partition: gpu, gpus_per_node: 4}``.
    """

    def __init__(self, folder, cluster=None, slurm=None):
        submitit = _import_submitit()
        if cluster not in CLUSTERS:
            raise SystemExit(f"slurm_cluster: {cluster!r} is not one of null (SLURM, detected), slurm or local")
        params = slurm_parameters(slurm)
        try:
            self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        except RuntimeError:
            raise SystemExit("executor: slurm found no SLURM here (no srun on PATH); "
                             "slurm_cluster: local runs the jobs as local processes") from None
        self.folder, self.cluster = folder, self.executor.cluster
        try:
            self.executor.update_parameters(stderr_to_stdout=True, **params)
        except (AssertionError, NameError, TypeError, ValueError) as err:
            raise SystemExit(f"slurm: {str(err).strip().splitlines()[0]}") from None

    def start(self, stage, argv, env, log_path):
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        open(log_path, "w", encoding="utf-8").close()  # the job appends; no previous attempt's lines
        self.executor.update_parameters(name=stage.name, nodes=torchrun_nodes(argv), tasks_per_node=1)
        changes = {k: v for k, v in env.items() if os.environ.get(k) != v}
        job = self.executor.submit(run_in_job, sys.executable, list(argv), changes, log_path, REPO)
        job_file = os.path.splitext(stage.marker_path)[0] + ".job"
        os.makedirs(os.path.dirname(job_file), exist_ok=True)
        with open(job_file, "w", encoding="utf-8") as f:
            f.write(f"{job.job_id}\nsubmitit logs: {job.paths.stdout}\n")
        return _JobHandle(job, log_path)


def make_launcher(hparams, out):
    """The launcher of a pipeline's keys ``executor``, ``slurm_cluster`` and ``slurm``.

    submitit's folder is ``<out>/submitit``. Also checks ``nproc_per_node`` and ``nnodes`` (several nodes need SLURM).
    SystemExit names the key to fix.
    """
    executor = hparams.get("executor") or "local"
    if executor not in EXECUTORS:
        raise SystemExit(f"executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    try:
        _count(hparams.get("nproc_per_node", 1), "nproc_per_node")
        nnodes = _count(hparams.get("nnodes", 1), "nnodes")
    except ValueError as err:
        raise SystemExit(str(err)) from None
    cluster = hparams.get("slurm_cluster")
    if nnodes > 1 and (executor == "local" or cluster == "local"):
        raise SystemExit(f"nnodes: {nnodes} machines need executor: slurm on a SLURM cluster (slurm_cluster: null)")
    if executor == "local":
        return LocalLauncher()
    return SubmititLauncher(os.path.join(out, "submitit"), cluster=cluster, slurm=hparams.get("slurm"))
