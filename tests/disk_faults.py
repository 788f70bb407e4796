"""Disks that refuse writes, in-process: one that fills up (:func:`full_disk`), a read-only folder (:func:`read_only`).

A full disk: writes below one folder fail with ``ENOSPC`` once a byte budget is spent.

Real full disks are not made in tests (no loop devices, no root); this
stands in for one below ``root`` only, at the three places bytes reach the
disk in this project:

- files opened by :func:`dataset.manifest.atomic_write` (``os.fdopen``):
  ``write`` stores what still fits, then raises ``OSError(ENOSPC)``, as
  ``write(2)`` does;
- ``os.posix_fallocate`` (:func:`embeddings.store.write_rows` reserves its
  blocks with it): ``ENOSPC`` when the file does not fit;
- ``torch.save`` (SpeechBrain's checkpoints): what fits is written, then
  PyTorch's own ``RuntimeError`` of a failed write is raised, and
  ``os.statvfs`` reports no free space below ``root`` (what a full disk shows).
"""

import contextlib
import errno
import io
import os
from unittest import mock

import torch


def _inside(path, root):
    path = os.path.realpath(os.fspath(path))
    return path == root or path.startswith(root + os.sep)


class _FillingFile:
    """A file object whose writes spend the disk's budget."""

    def __init__(self, f, disk):
        self._f, self._disk = f, disk

    def write(self, data):
        room = self._disk.room()
        if len(data) > room:
            if room:
                self._f.write(data[:room])
                self._f.flush()
            self._disk.used += room
            self._disk.fills += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.used += len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


class FullDisk:
    """The disk below ``root``, with ``budget`` bytes left; ``fills`` counts the writes it refused.

    The first ``free_files`` files written through ``os.fdopen`` are written
    whole and spend nothing (a disk that fills up after that many files).
    """

    def __init__(self, root, budget, free_files=0):
        self.root, self.budget, self.used, self.fills = os.path.realpath(os.fspath(root)), int(budget), 0, 0
        self.free_files = int(free_files)

    def room(self):
        return max(0, self.budget - self.used)


@contextlib.contextmanager
def full_disk(root, budget=0, free_files=0):
    """Within the block, the disk holding ``root`` has ``budget`` bytes left (see :class:`FullDisk`)."""
    disk = FullDisk(root, budget, free_files)
    real_fdopen, real_fallocate, real_statvfs, real_save = os.fdopen, os.posix_fallocate, os.statvfs, torch.save

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        if not _inside(os.readlink(f"/proc/self/fd/{fd}"), disk.root):
            return f
        if disk.free_files > 0:
            disk.free_files -= 1
            return f
        return _FillingFile(f, disk)

    def fallocate(fd, offset, length):
        if _inside(os.readlink(f"/proc/self/fd/{fd}"), disk.root):
            if length > disk.room():
                disk.fills += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            disk.used += length
        return real_fallocate(fd, offset, length)

    def statvfs(path):
        st = real_statvfs(path)
        if not _inside(path, disk.root):
            return st
        values = list(st)
        values[3] = values[4] = disk.room() // st.f_frsize  # f_bfree, f_bavail
        return os.statvfs_result(values)

    def save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)) or not _inside(os.path.dirname(os.path.abspath(f)), disk.root):
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        room = disk.room()
        with open(f, "wb") as out:
            out.write(data[:room])
        disk.used += min(room, len(data))
        if len(data) > room:
            disk.fills += 1
            raise RuntimeError(f"[enforce fail at inline_container.cc:664] . unexpected pos {room} vs {len(data)}")
        return None

    with mock.patch("os.fdopen", fdopen), mock.patch("os.posix_fallocate", fallocate), \
            mock.patch("os.statvfs", statvfs), mock.patch("torch.save", save):
        yield disk


@contextlib.contextmanager
def read_only(folder):
    """``folder`` made read-only (mode 555).

    Permission bits do not stop root, so when the tests run as root,
    creating anything below ``folder`` is refused as the kernel refuses it
    to other users (``PermissionError``, EACCES, naming the path), and
    ``os.access`` says it cannot be written.
    """
    folder = os.path.realpath(folder)
    os.chmod(folder, 0o555)
    real_makedirs, real_open = os.makedirs, os.open

    def below(path):
        path = os.path.realpath(os.fspath(path))
        return path.startswith(folder + os.sep) and not os.path.exists(path)

    def makedirs(path, *args, **kwargs):
        if below(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_makedirs(path, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and below(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    real_access = os.access

    def access(path, mode, *args, **kwargs):
        inside = _inside(path, folder)
        return False if inside and mode & os.W_OK else real_access(path, mode, *args, **kwargs)

    patches = [mock.patch("os.makedirs", makedirs), mock.patch("os.open", open_), mock.patch("os.access", access)]
    patches = patches if os.geteuid() == 0 else []
    try:
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch)
            yield folder
    finally:
        os.chmod(folder, 0o755)
