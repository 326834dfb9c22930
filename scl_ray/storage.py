"""Files on a local disk or any pyarrow filesystem URI (s3://, gs://, file://), written atomically.

A local write goes to a temporary name in the same directory and is renamed into place, so a reader
never sees half a file and a crash never corrupts a finished one; object stores make a single put
atomic already. Everything that writes results (run directories, Parquet motion sets, checkpoints)
goes through here.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.fs as pafs


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def resolve(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path (with ~ expanded) or a URI."""
    location = str(location)
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), str(Path(location).expanduser().absolute())


def join(location: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a local path or a URI."""
    location = str(location)
    if is_uri(location):
        return "/".join([location.rstrip("/"), *parts])
    return str(Path(location).expanduser().joinpath(*parts))


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `location` atomically, creating parent directories."""
    filesystem, path = resolve(location)
    parent = path.rsplit("/", 1)[0]
    filesystem.create_dir(parent, recursive=True)
    if isinstance(filesystem, pafs.LocalFileSystem):
        temporary = f"{parent}/.{path.rsplit('/', 1)[1]}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with filesystem.open_output_stream(temporary) as stream:
                stream.write(data)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    else:
        with filesystem.open_output_stream(path) as stream:
            stream.write(data)


def write_serialized(location: str | os.PathLike, serialize: Callable[[BinaryIO], None]) -> None:
    """Write what `serialize(stream)` produces (e.g. torch.save, np.savez) to `location` atomically."""
    buffer = io.BytesIO()
    serialize(buffer)
    write_bytes(location, buffer.getvalue())


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


def list_dir(location: str | os.PathLike) -> list[str]:
    """Names (not paths) of the entries directly under a directory; [] if it does not exist."""
    filesystem, path = resolve(location)
    if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(info.base_name for info in infos)


def create_exclusive(location: str | os.PathLike, text: str) -> bool:
    """Create a local file only if it does not exist yet (atomically); False if it already does."""
    path = Path(str(location)).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return True


def age_s(location: str | os.PathLike) -> float:
    """Seconds since a local file was last modified (inf if it is gone)."""
    import time

    try:
        return time.time() - Path(str(location)).expanduser().stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def make_dirs(location: str | os.PathLike) -> None:
    filesystem, path = resolve(location)
    filesystem.create_dir(path, recursive=True)


def local_path(location: str | os.PathLike) -> str | None:
    """The local path of a local location or a file:// URI; None for other URIs (object stores)."""
    filesystem, path = resolve(location)
    return path if isinstance(filesystem, pafs.LocalFileSystem) else None


def create_once(location: str | os.PathLike, text: str, settle_s: float = 1.0) -> bool:
    """Create `location` holding `text` unless it exists; True if this call created it.

    Local paths and file:// URIs use an exclusive create (`create_exclusive`), so of many callers
    exactly one wins. An object store has no exclusive create in pyarrow: the call writes, waits
    `settle_s` and reads back, and wins if its text is still there; two callers that write within
    `settle_s` of each other may both win (so callers must tolerate a rare second winner).
    """
    path = local_path(location)
    if path is not None:
        return create_exclusive(path, text)
    if exists(location):
        return False
    write_text(location, text)
    import time

    time.sleep(settle_s)
    return read_text(location) == text
