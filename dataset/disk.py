"""A full disk told in one line: which folder is full, what was being written, how much, and what is kept.

Every output file of the project is written through a temporary file and a
rename (:func:`dataset.manifest.atomic_write`, :func:`embeddings.store.write_rows`),
so a write cut short by a full disk (``ENOSPC``, or ``EDQUOT`` for a quota)
leaves no partial file under the final name: the temporary file is removed
and :class:`DiskFullError` says how many bytes of it had been written. The
callers that know the run's progress (the embedding shards, the checkpoints)
add what is complete and kept, from which the same command resumes once
space is freed. :func:`experiment.safety.run_cli` prints it as one line.
"""

import errno
import os

__all__ = [
    "DISK_FULL_ERRNOS", "NEARLY_FULL_BYTES", "DiskFullError", "is_disk_full", "is_full_disk_failure", "free_bytes",
    "disk_full", "human_bytes", "tree_bytes",
]

#: The errors of a full disk: no space left, or the user's quota exceeded.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(err):
    """True for an ``OSError`` of a full disk (``ENOSPC``, ``EDQUOT``)."""
    return isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS


#: What PyTorch's file writer (``torch.save``) says when a write fails: it raises RuntimeError, not OSError.
_TORCH_WRITER_FAILURES = ("PytorchStreamWriter", "inline_container", "file write failed")
#: Free space below which a failed write is put down to a full disk.
NEARLY_FULL_BYTES = 1 << 20


def free_bytes(folder):
    """Bytes an unprivileged user may still write on the disk of ``folder`` (None if unknown)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def is_full_disk_failure(err, folder):
    """True for a write that failed because the disk of ``folder`` is full.

    An ``OSError`` says so (:func:`is_disk_full`); ``torch.save`` raises a
    ``RuntimeError`` naming its stream writer instead, which counts when
    less than :data:`NEARLY_FULL_BYTES` are left on that disk.
    """
    if is_disk_full(err):
        return True
    if not isinstance(err, RuntimeError) or not any(s in str(err) for s in _TORCH_WRITER_FAILURES):
        return False
    free = free_bytes(folder)
    return free is not None and free < NEARLY_FULL_BYTES


def human_bytes(n):
    """``n`` bytes as people read them.

    Example
    -------
    >>> human_bytes(0), human_bytes(1536), human_bytes(3 * 1024 ** 3)
    ('0 B', '1.5 KiB', '3.0 GiB')
    """
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def tree_bytes(path):
    """Bytes of the files below ``path`` (a file or a folder; 0 if absent)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


class DiskFullError(OSError):
    """The disk holding ``folder`` is full: what was being written, how much of it, and what is kept.

    Arguments
    ---------
    folder : str
        The folder whose disk is full.
    what : str
        What was being written (a file name, "the checkpoint of epoch 3").
    written : int, optional
        Bytes of it written before the disk filled (then removed).
    kept : str, optional
        What is complete and kept, from which the same command resumes.
    """

    def __init__(self, folder, what, written=None, kept=""):
        super().__init__(errno.ENOSPC, "No space left on device")
        self.folder, self.what, self.written, self.kept = os.path.abspath(folder), what, written, kept

    def __str__(self):
        written = "" if self.written is None else f" after {human_bytes(self.written)} (removed, not left as complete)"
        kept = f"; {self.kept}" if self.kept else ""
        return (f"No space left on device in {self.folder}: writing {self.what} stopped{written}{kept}. "
                "Free space there (or give another output folder) and run the same command again: "
                "it goes on from what is complete.")


def disk_full(err, path, written=None, kept=""):
    """The :class:`DiskFullError` of ``err`` (raised while writing ``path``), or ``err`` itself if it is another one."""
    if isinstance(err, DiskFullError) or not is_disk_full(err):
        return err
    path = os.path.abspath(os.fspath(path))
    return DiskFullError(os.path.dirname(path), os.path.basename(path), written, kept)
