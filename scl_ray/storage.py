"""Every artefact of a run, on a local disk or any pyarrow filesystem URI (s3://, gs://, file://).

This is the one place that reads and writes run files: checkpoints, metrics, Parquet motion sets,
DONE and claim markers, configs, TensorBoard events, report inputs. `write_with` is the one atomic
write: a local file is written under a temporary name in its directory and renamed into place, so a
reader never sees half a file and a crash never corrupts a finished one; on object stores the whole
object is serialised in memory first and sent in one put, which stores it whole or not at all.
A write that the storage refuses (no permission, no space, no bucket) raises StorageError naming
the location.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.fs as pafs


class StorageError(OSError):
    """A location could not be written: the message names it and says why."""


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def resolve(location: str | os.PathLike,
            filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path (with ~ expanded) or a URI; with `filesystem`, `location`
    is already a path inside it (e.g. Ray's storage filesystem)."""
    location = str(location)
    if filesystem is not None:
        return filesystem, location
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), str(Path(location).expanduser().absolute())


def join(location: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a local path or a URI (its ?query options, if any, stay at the end)."""
    location = str(location)
    if is_uri(location):
        base, _, query = location.partition("?")
        joined = "/".join([base.rstrip("/"), *parts])
        return f"{joined}?{query}" if query else joined
    return str(Path(location).expanduser().joinpath(*parts))


def absolute(location: str | os.PathLike) -> str:
    """A URI as it is; a local path with ~ expanded and made absolute."""
    location = str(location)
    return location if is_uri(location) else str(Path(location).expanduser().absolute())


def split(location: str | os.PathLike) -> tuple[str, str]:
    """(parent, name) of a local path or URI (a URI's ?query options stay with the parent)."""
    location = str(location)
    base, _, query = location.partition("?")
    parent, _, name = base.rstrip("/").rpartition("/")
    return (f"{parent}?{query}" if query else parent), name


def _why(error: OSError) -> str:
    if isinstance(error, PermissionError) or error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (make it writable or choose another storage location)"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device (free some or choose another storage location)"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def write_with(location: str | os.PathLike, serialize: Callable[[BinaryIO], None],
               filesystem: pafs.FileSystem | None = None) -> None:
    """The one atomic write: store what `serialize(stream)` writes (torch.save, np.savez, a Parquet
    writer, bytes) at `location`, creating parent directories; readers see the old file or the whole
    new one, never a part. Raises StorageError if the storage refuses the write."""
    filesystem, path = resolve(location, filesystem)
    parent, _, name = path.rpartition("/")
    try:
        if parent:
            filesystem.create_dir(parent, recursive=True)
        if isinstance(filesystem, pafs.LocalFileSystem):
            temporary = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                with open(temporary, "wb") as handle:
                    serialize(handle)
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.remove(temporary)
        else:
            buffer = io.BytesIO()
            serialize(buffer)
            with filesystem.open_output_stream(path) as stream:
                stream.write(buffer.getbuffer())
    except StorageError:
        raise
    except OSError as error:
        raise StorageError(f"cannot write {location}: {_why(error)}") from error


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `location` atomically, creating parent directories."""
    write_with(location, lambda stream: stream.write(data))


def read_bytes(location: str | os.PathLike) -> bytes:
    filesystem, path = resolve(location)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{location} does not exist") from None


def write_text(location: str | os.PathLike, text: str) -> None:
    write_bytes(location, text.encode())


def read_text(location: str | os.PathLike) -> str:
    return read_bytes(location).decode()


def write_json(location: str | os.PathLike, value: Any) -> None:
    write_text(location, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_json(location: str | os.PathLike) -> Any:
    return json.loads(read_text(location))


def exists(location: str | os.PathLike) -> bool:
    filesystem, path = resolve(location)
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def remove(location: str | os.PathLike) -> None:
    """Delete a file; nothing happens where there is none."""
    filesystem, path = resolve(location)
    if filesystem.get_file_info(path).type == pafs.FileType.File:
        filesystem.delete_file(path)


def list_dir(location: str | os.PathLike) -> list[str]:
    """Names (not paths) of the entries directly under a directory; [] if it does not exist."""
    filesystem, path = resolve(location)
    if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(info.base_name for info in infos)


def create_exclusive(location: str | os.PathLike, text: str, settle_s: float = 1.0) -> bool:
    """Create a file holding `text` only if it does not exist yet; True if this call created it.

    Atomic on a local disk (O_EXCL): of many callers exactly one wins. Object stores offer no
    create-if-absent through pyarrow, so there it is check, put, wait `settle_s`, read back: the
    caller wins if its text is still there. `text` must be unique to the caller (name the holder),
    and two callers writing within `settle_s` of each other may both win.
    """
    if is_uri(location) and local_path(location) is None:
        if exists(location):
            return False
        write_text(location, text)
        time.sleep(settle_s)
        return read_text(location) == text
    location = local_path(location) if is_uri(location) else location
    path = Path(str(location)).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    except OSError as error:
        raise StorageError(f"cannot write {location}: {_why(error)}") from error
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return True


def age_s(location: str | os.PathLike) -> float:
    """Seconds since a file was last modified (inf if it is gone)."""
    filesystem, path = resolve(location)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound or info.mtime is None:
        return float("inf")
    return time.time() - info.mtime.timestamp()


def make_dirs(location: str | os.PathLike) -> None:
    filesystem, path = resolve(location)
    try:
        filesystem.create_dir(path, recursive=True)
    except OSError as error:
        raise StorageError(f"cannot write {location}: {_why(error)}") from error


def check_writable(location: str | os.PathLike) -> None:
    """Raise StorageError unless files can be written (and removed) under `location`: checked before
    anything expensive starts."""
    probe = join(location, f".scl-ray-write-check-{uuid.uuid4().hex[:8]}")
    try:
        write_bytes(probe, b"")
        filesystem, path = resolve(probe)
        filesystem.delete_file(path)
    except OSError as error:
        cause = error.__cause__ if isinstance(error.__cause__, OSError) else error
        raise StorageError(f"cannot write to the storage location {location}: {_why(cause)}") from None


def write_directory(location: str | os.PathLike, fill: Callable[[str], None]) -> None:
    """Build a local directory atomically: `fill(staging)` writes into a temporary sibling, which is
    renamed into place; if another process published the directory first, theirs is kept."""
    root = Path(str(location)).expanduser()
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.")
    try:
        fill(staging)
        try:
            os.rename(staging, root)
        except OSError:
            if not root.is_dir():  # a rename fails on a non-empty target: only a finished one is kept
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class Lock:
    """A lock file that names its holder and is kept fresh while held (a lease).

    `acquire` creates `location` exclusively (`create_exclusive`); a heartbeat thread rewrites it every
    `heartbeat_s`. A lock is free when it does not exist, when it was not refreshed for `stale_s` (its
    holder is gone: a lost node or driver), or when its holder was a process of this machine that no
    longer runs (a killed driver, so a resume need not wait). Use as a context manager.
    """

    def __init__(self, location: str | os.PathLike, what: str, heartbeat_s: float = 10.0, stale_s: float = 60.0):
        self.location, self.what = str(location), what
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self.holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "id": uuid.uuid4().hex})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> "Lock":
        if not create_exclusive(self.location, self.holder):
            if not self._abandoned():
                raise StorageError(f"{self.what} is already running ({self.location} is held by "
                                   f"{self._describe()}, refreshed {age_s(self.location):.0f} s ago): wait for it "
                                   f"to finish or stop it; a lock not refreshed for {self.stale_s:.0f} s is taken over")
            write_text(self.location, self.holder)  # take it over from a holder that is gone
        self._thread = threading.Thread(target=self._beat, name="scl-ray-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            if read_text(self.location) == self.holder:
                filesystem, path = resolve(self.location)
                filesystem.delete_file(path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                write_text(self.location, self.holder)
            except OSError:
                pass  # the next beat tries again; a lock unrefreshed for stale_s is free for others

    def _holder(self) -> dict:
        try:
            return json.loads(read_text(self.location))
        except (FileNotFoundError, ValueError):
            return {}

    def _describe(self) -> str:
        holder = self._holder()
        return f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"

    def _abandoned(self) -> bool:
        if age_s(self.location) > self.stale_s:
            return True
        holder = self._holder()
        return process_gone(holder.get("host"), holder.get("pid"))


def process_gone(host: object, pid: object) -> bool:
    """True when process `pid` of `host` is known to have ended: it ran on this host and no longer
    exists. A holder on another host, or an unreadable pid, is never judged gone from here."""
    if host != socket.gethostname() or not str(pid).isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists (another user's process)
        return False
    return False


def local_path(location: str | os.PathLike) -> str | None:
    """The local path of a local location or a file:// URI; None for other URIs (object stores)."""
    filesystem, path = resolve(location)
    return path if isinstance(filesystem, pafs.LocalFileSystem) else None
