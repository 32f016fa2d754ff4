"""Durable, atomic writes: the one place mmsft writes files and folders that must survive a crash.

Every helper writes into a temporary sibling of its target (same folder, so the same file system),
flushes and ``fsync``-s it, renames it over the target with ``os.replace`` (atomic on POSIX and
Windows) and then ``fsync``-s the folder, so that after a crash or power loss the target holds either
its complete old content or its complete new content, never a mix or a truncated file.

* ``write_bytes(path, data)``, ``write_text(path, text)``, ``write_json(path, data)``: one file.
* ``atomic_path(path)``: a context manager yielding a temporary path for writers that want a file
  name (``datasets``, ``safetensors``, ...); ``atomic_write(path, write)`` calls ``write(tmp)`` in it.
* ``save_safetensors(path, tensors, metadata=None)``: a safetensors file (torch imported lazily).
* ``atomic_folder(target, replace=False)``: build a folder under a temporary sibling name; it is
  renamed into place only when the ``with`` block succeeds (removed on failure).
  ``install_folder(src, target, replace=False)`` is the same commit step for an already written
  folder; ``remove_tree(path)`` deletes a folder so that no half-deleted copy keeps its name.
* ``remove_temps(parent, name)``: clean what a killed writer left behind (the helpers above clean up
  after themselves on exceptions, but not after SIGKILL / power loss).

Temporary names are ``.<target name>.<random>.tmp`` (``.old`` for a replaced folder on its way out),
so globs over target names (``step-*``, ``*.json``) never match them.

Fault injection (``mmsft.faults``) can SIGKILL the process at each commit step (``write``: a file
fsync-ed in its temporary name; ``folder`` / ``folder.swap``: a folder before its rename and between
the two renames of a replacement; ``remove``: a folder renamed aside, not yet deleted), which is how
``benchmarks/faults.py`` proves that a kill there leaves the old state or the new one.

``FolderLock(folder)``: an exclusive ``fcntl`` lock held for a run, so that two processes never write
one run folder (two trainings into the same new ``--output``, two resumes of one run).

Only the standard library is imported here (safetensors/torch lazily inside ``save_safetensors``):
this module sits below every other mmsft module.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Union

from .faults import point as fault_point

PathLike = Union[str, "os.PathLike[str]"]

# errors of the machine rather than of mmsft (disk full, quota, read-only or unwritable folder, ...): the CLI
# reports them in one line with exit 2 instead of a traceback
RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                             errno.EISDIR, errno.EFBIG, errno.ENAMETOOLONG, errno.EMFILE, errno.ENFILE})

TEMP_SUFFIX = ".tmp"
OLD_SUFFIX = ".old"
# fsync "not supported here" (some network / FUSE file systems, directories on Windows): durability is then
# whatever the file system gives; every other error (EIO, ENOSPC, ...) propagates
_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EACCES, errno.EISDIR}


# -- low level ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _umask() -> int:
    try:  # Linux >= 4.7: read it without changing it (os.umask() is process-wide, not thread-safe)
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(target: Path) -> int:
    """The mode a plain ``open(target, "w")`` would leave: the target's own if it exists, else 0o666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def fsync_file(path: PathLike) -> None:
    """Flush a file's data and metadata to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def fsync_dir(path: PathLike) -> None:
    """Make renames / creations / deletions inside folder ``path`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:  # Windows cannot open a folder; it has no folder fsync either
        if exc.errno in _FSYNC_UNSUPPORTED or os.name == "nt":
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def fsync_tree(root: PathLike) -> None:
    """fsync every regular file and every folder under ``root`` (``root`` included); links are not followed."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full):
                fsync_file(full)
        fsync_dir(dirpath)


def _temp_sibling(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}{suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# -- single files ---------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; write the file there.  When the block succeeds it is
    fsync-ed and renamed over ``path`` (then the folder is fsync-ed); when it raises, the temporary file
    is removed and ``path`` keeps its old content (or stays absent).

    The temporary file exists (empty) when the block starts: writers may overwrite or replace it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
    tmp = Path(name)
    try:
        if hasattr(os, "fchmod"):  # POSIX: mkstemp makes 0o600; give the file the mode open() would have
            with contextlib.suppress(OSError):
                os.fchmod(fd, _new_file_mode(target))
        os.close(fd)
        fd = -1
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{tmp}: the writer removed its temporary file instead of writing {target}")
        fsync_file(tmp)
        fault_point("write", target)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        _remove(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(target)) from exc  # name the file (a failed write() does not)
        raise


def atomic_write(path: PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and atomically install what it wrote as ``path`` (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Atomically and durably replace ``path``'s content with ``data``."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write)


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Atomically and durably replace ``path``'s content with ``text`` (``encoding``, no newline translation)."""
    return write_bytes(path, text.encode(encoding))


def write_json(path: PathLike, data: Any, *, indent: Optional[int] = 2, default: Optional[Callable] = None,
               sort_keys: bool = False, trailing_newline: bool = True) -> Path:
    """Atomically write ``json.dumps(data, indent=indent, default=default, sort_keys=sort_keys)``."""
    text = json.dumps(data, indent=indent, default=default, sort_keys=sort_keys)
    return write_text(path, text + ("\n" if trailing_newline else ""))


def save_safetensors(path: PathLike, tensors: Mapping[str, Any], metadata: Optional[Mapping[str, str]] = None) -> Path:
    """Atomically write ``tensors`` (name -> torch tensor) as a safetensors file.

    Tensors are moved to the CPU and made contiguous; tensors sharing memory (tied weights) are
    copied apart, which safetensors requires.
    """
    from safetensors.torch import save_file

    prepared, seen = {}, set()
    for key, value in tensors.items():
        value = value.detach()
        if value.device.type != "cpu":
            value = value.cpu()
        value = value.contiguous()
        ptr = value.untyped_storage().data_ptr() if value.numel() else None
        if ptr is not None and ptr in seen:
            value = value.clone()
        elif ptr is not None:
            seen.add(ptr)
        prepared[key] = value
    meta = {str(k): str(v) for k, v in metadata.items()} if metadata else None

    def write(tmp: Path) -> None:
        try:
            save_file(prepared, str(tmp), metadata=meta)
        except Exception as exc:  # safetensors reports a failed write (disk full) as its own error type
            code = _os_error_code(str(exc))
            if code is None:
                raise
            raise OSError(code, os.strerror(code), str(path)) from exc

    return atomic_write(path, write)


def _os_error_code(message: str) -> Optional[int]:
    """The errno inside a Rust ``std::io::Error`` message (``... (os error 28)`` or ``Os { code: 28, ... }``)."""
    import re

    match = re.search(r"os error (\d+)|Os \{ code: (\d+)", message)
    return int(match.group(1) or match.group(2)) if match else None


# -- folders --------------------------------------------------------------------------------------
def _non_empty(path: Path) -> bool:
    if path.is_symlink() or path.is_file():
        return True
    if path.is_dir():
        with os.scandir(path) as it:
            return any(True for _ in it)
    return path.exists()


def install_folder(src: PathLike, target: PathLike, *, replace: bool = False) -> Path:
    """Move the fully written folder ``src`` to ``target`` (same file system) durably and atomically.

    Every file and folder under ``src`` is fsync-ed first.  An existing empty folder at ``target`` is
    replaced; a non-empty one (or a file) raises ``FileExistsError`` unless ``replace=True``, in which
    case it is renamed aside (``.<name>.<random>.old``), the new folder renamed in, and the old one
    deleted.  POSIX has no atomic swap of two folders: a crash between those two renames leaves
    ``target`` absent and the old copy under its ``.old`` name (``remove_temps`` deletes it), never a
    mix of the two.
    """
    src, target = Path(src), Path(target)
    fsync_tree(src)
    fault_point("folder", target)
    old = None
    if replace and _non_empty(target):
        old = _temp_sibling(target, OLD_SUFFIX)
        os.rename(target, old)
        fault_point("folder.swap", target)
    try:
        os.rename(src, target)  # fails on a non-empty folder or a file: no check-then-act race
    except OSError as exc:
        if old is not None:  # put the old copy back
            with contextlib.suppress(OSError):
                os.rename(old, target)
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR) or isinstance(exc, FileExistsError):
            raise FileExistsError(errno.EEXIST, "exists and is not empty (pass replace=True to replace it)", str(target)) from None
        raise
    fsync_dir(target.parent)
    if old is not None:
        _remove(old)
        fsync_dir(target.parent)
    return target


@contextlib.contextmanager
def atomic_folder(target: PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Build folder ``target`` under a temporary sibling name, yielded (it exists, empty).

    When the block succeeds the folder is fsync-ed and renamed into place (``install_folder``); when
    it raises, the temporary folder is deleted and ``target`` is untouched.  A non-empty ``target``
    raises ``FileExistsError`` (before the block runs, and again at the rename if one appeared
    meanwhile) unless ``replace=True``.
    """
    target = Path(target)
    if not replace and _non_empty(target):
        raise FileExistsError(errno.EEXIST, "exists and is not empty (pass replace=True to replace it)", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent))
    try:
        with contextlib.suppress(OSError):  # mkdtemp makes 0o700; give it the mode mkdir() would have
            os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        install_folder(tmp, target, replace=replace)
    except BaseException:
        _remove(tmp)
        raise


def remove_tree(path: PathLike) -> None:
    """Delete folder (or file) ``path`` so that nothing half-deleted is left under its name: it is
    renamed to a ``.old`` sibling first (durably), then deleted."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    old = _temp_sibling(path, OLD_SUFFIX)
    os.rename(path, old)
    fsync_dir(path.parent)
    fault_point("remove", path)
    _remove(old)


def temp_paths(parent: PathLike, name: str = "*") -> list[Path]:
    """Leftovers of interrupted writes in ``parent`` of targets whose name matches glob ``name``."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    found = set(parent.glob(f".{name}.*{TEMP_SUFFIX}")) | set(parent.glob(f".{name}.*{OLD_SUFFIX}"))
    return sorted(found)


def remove_temps(parent: PathLike, name: str = "*") -> list[Path]:
    """Delete what killed writers left in ``parent`` for targets matching glob ``name``; returns the paths.

    Only call it where no other process is writing one of those targets right now (under a lock, or
    from the single process that owns the folder).
    """
    removed = temp_paths(parent, name)
    for path in removed:
        _remove(path)
    return removed


# -- one writer per folder ------------------------------------------------------------------------
LOCK_NAME = ".mmsft.lock"


class FolderLocked(Exception):
    """Another process holds the folder's lock; ``holder`` is what it wrote there (its pid)."""

    def __init__(self, folder: Path, holder: str):
        self.folder, self.holder = Path(folder), holder
        super().__init__(f"{folder} is locked by another process{f' (pid {holder})' if holder else ''}")


class FolderLock:
    """An exclusive, non-blocking ``fcntl.flock`` on ``folder/.mmsft.lock``, held until ``release()``.

    Why flock: the kernel drops it when the holder dies, SIGKILL included, so a crashed run never
    leaves a stale lock behind (the file may stay; the next taker reuses it).  The file is removed on
    release; a taker that opened it just before that removal notices (the path no longer names the
    file it locked) and retries, so two processes can never both believe they hold it.  Where
    ``fcntl`` does not exist (Windows) the lock is a no-op.  ``with FolderLock(folder): ...`` also works.
    """

    def __init__(self, folder: PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: Optional[int] = None

    def acquire(self) -> "FolderLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode("ascii", "replace").strip()
                os.close(fd)
                raise FolderLocked(self.folder, holder) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                mine = os.fstat(fd)
                current = os.stat(self.path)
                if (mine.st_ino, mine.st_dev) == (current.st_ino, current.st_dev):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # the previous holder removed the file after we opened it: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still locked: nobody can be holding the file we delete
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
