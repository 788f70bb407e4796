"""One writer per output folder: the lock every script takes on the folder it writes, before writing it.

Two runs writing one folder spoil each other's files: a second embedding
run on a folder in use repeats all the work, then fails with "shards
missing" and leaves ``save/shards/`` behind. :func:`hold_folder_lock` makes
the second run stop at once, before it writes anything, with a message
naming the folder and the run that holds it (PID, host, command line).

The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<folder>/.lock``, a file
that records its holder. The kernel releases it when the holder ends, however
it ends: a run killed with SIGKILL leaves a ``.lock`` file that no longer
locks anything, and the next run takes it over. A run that ends normally
deletes the file. Locks are per exact folder: a run writing ``out/teacher``
does not block one writing ``out`` (the toy pipeline holds its output folder
while its stages write their subfolders).

Under ``torchrun`` the ranks of one run write one folder together: rank 0
takes the lock and tells every rank the outcome, so they all stop (rank 0
prints why), or all go on. Within one process the lock is re-entrant (a
recipe's ``main`` called twice in one process does not refuse itself).

flock works across machines on NFS (Linux emulates it with POSIX locks) but
not on every network file system; where the file system refuses locks, the
run goes on with a warning.
"""

import atexit
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time

from dataset.disk import DiskFullError, is_disk_full
from experiment.runtime import rank_and_world, warn_now

__all__ = ["LOCK_FILE", "FolderLock", "hold_folder_lock"]

#: The lock file inside a locked folder.
LOCK_FILE = ".lock"

_HELD = {}  # realpath of the folder -> FolderLock held by this process


class FolderLock:
    """An exclusive lock held by this process on one folder; :meth:`release` (or the end of the process) frees it.

    Also a context manager: ``with hold_folder_lock(folder, what): ...`` frees it at the end of the block.
    """

    def __init__(self, folder, path, fd):
        self.folder, self.path, self.fd = folder, path, fd
        self.pid = os.getpid()
        self.depth = 1

    def release(self):
        """Frees the lock once every :func:`hold_folder_lock` of it is released; deletes the lock file."""
        self.depth -= 1
        if self.depth > 0 or self.fd is None:
            return
        if os.getpid() == self.pid:  # a forked child (DataLoader worker) leaves its parent's lock alone
            try:
                # Deleted while still locked: a run that opened it meanwhile sees it is stale and retries.
                if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                    os.unlink(self.path)
            except OSError:
                pass
            _HELD.pop(self.folder, None)
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _holder_record(what):
    argv = getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv
    return {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": shlex.join(argv)}


def _read_holder(fd):
    try:
        return json.loads(os.pread(fd, 1 << 16, 0).decode("utf-8"))
    except (OSError, ValueError):
        return {}


def _describe(holder, path):
    """The holder as the message names it: PID, host, start time and command line."""
    if not holder.get("pid"):
        return f"a process that has not yet written its details into {path}"
    text = (f"PID {holder['pid']} on host {holder.get('host', '?')}, started {holder.get('started', '?')}: "
            f"{holder.get('command', '?')}")
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            text += f" (PID {holder['pid']} has ended; a process it started still holds the lock)"
        except OSError:
            pass
    return text


def _busy_message(folder, what, holder, path):
    return (f"{folder} is in use by another run: {_describe(holder, path)}.\n"
            f"Two runs writing one folder spoil each other's files, so {what} stopped before writing anything. "
            f"Wait for that run to end (or stop it), or give this run another output folder.")


def _not_writable(folder, what, err):
    """The one-line refusal of a folder this run cannot write (read-only, no permission, full)."""
    if is_disk_full(err):
        full = DiskFullError(folder, f"its lock file {LOCK_FILE}", 0, "nothing else was written")
        return SystemExit(f"ERROR: {full}")
    reason = f"not writable ({err.strerror or 'permission denied'})"  # EACCES, EPERM or EROFS
    inside = not err.filename or os.path.abspath(err.filename) in (folder, os.path.join(folder, LOCK_FILE))
    where = folder if inside else f"{folder} (at {err.filename})"
    return SystemExit(f"ERROR: {where} is {reason}: {what} writes its output there and stopped before writing "
                      "anything. Give an output folder you can write, or make this one writable.")


def _open_lock_file(folder, path, what):
    """Creates ``folder`` if missing and opens its lock file; one line naming the folder if it cannot be written."""
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK):  # a lock file left by a killed run would still open
            raise PermissionError(errno.EACCES, "no write permission", folder)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) and not is_disk_full(err):
            raise
        raise _not_writable(folder, what, err) from None


def _acquire(folder, what):
    """Locks ``folder`` (created if missing) for this process; SystemExit naming the holder if it is taken."""
    held = _HELD.get(folder)
    if held is not None:
        held.depth += 1
        return held
    path = os.path.join(folder, LOCK_FILE)
    while True:
        fd = _open_lock_file(folder, path, what)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise SystemExit(_busy_message(folder, what, holder, path)) from None
        except OSError as err:
            os.close(fd)
            warn_now(f"{folder} cannot be locked ({err}): nothing stops another run from writing it meanwhile.")
            return None
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            break
        # Its holder deleted that file (ending normally) between our open and our lock: take the new one.
        os.close(fd)
    record = json.dumps(_holder_record(what)).encode("utf-8") + b"\n"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
    except OSError as err:
        os.close(fd)
        if not is_disk_full(err):
            raise
        raise _not_writable(folder, what, err) from None
    lock = _HELD[folder] = FolderLock(folder, path, fd)
    return lock


def hold_folder_lock(folder, what):
    """Makes this run the only writer of ``folder`` until it ends; stops it at once if another run writes it.

    Call it before anything is written into ``folder``: a refused run creates
    nothing (the folder exists, since its holder made it; the lock file is its
    holder's). A folder that does not exist yet is created, with the lock
    file alone in it.

    Arguments
    ---------
    folder : str
        The folder this run writes (its output or experiment folder).
    what : str
        This run, for the message (e.g. ``"microsoft_curation_toemb.py"``).

    Returns
    -------
    FolderLock or None
        The lock (None on the ranks other than 0 under torchrun, or where the
        file system refuses locks). It is held until the process ends or
        :meth:`FolderLock.release` is called.

    Raises
    ------
    SystemExit
        The folder is locked by another process: the message names the
        folder and that process (PID, host, start time, command line).
    """
    folder = os.path.realpath(folder)
    rank, world_size = rank_and_world()
    if world_size == 1:
        return _acquire(folder, what)
    import torch.distributed

    lock, refusal = None, None
    if rank == 0:
        try:
            lock = _acquire(folder, what)
        except SystemExit as err:
            refusal = str(err)
    outcome = [refusal]
    torch.distributed.broadcast_object_list(outcome, src=0)
    if outcome[0] is not None:
        raise SystemExit(outcome[0] if rank == 0 else 1)  # rank 0 prints the message
    return lock


@atexit.register
def _release_all():
    for lock in list(_HELD.values()):
        lock.depth = 1
        lock.release()
