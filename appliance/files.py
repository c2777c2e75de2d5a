"""Files a reader never sees half of, and their sha256.

Every file the appliance writes goes to a hidden temporary name beside its
target and is renamed into place when complete (:func:`writing`,
:func:`atomic_write`), so a crash, a full disk or a killed process leaves
either the old file, the new one, or nothing -- never a torn one under the
final name; a directory is built whole the same way
(:func:`publishing_directory`).  The temporary name keeps the target's suffix
(writers such as ``DataModel.save`` pick the format from it) and contains
``.part``.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path


def file_sha256(path: str | os.PathLike, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``bufsize`` chunks."""
    h = hashlib.sha256()
    buf = bytearray(bufsize)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def text_sha256(text: str) -> str:
    """Hex sha256 of a text's UTF-8 bytes (a recipe's, as its manifest records it)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def json_sha256(value) -> str:
    """Hex sha256 of a JSON-able description, keys sorted (a task's key, a source's input key)."""
    import json

    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def temporary_name(target: Path) -> Path:
    """Where ``target`` is written before the rename: hidden, unique to this process, same suffix."""
    target = Path(target)
    return target.with_name(f".{target.stem}.{os.getpid()}.part{target.suffix}")


def is_temporary(name: str) -> bool:
    """True for a name :func:`temporary_name` makes (or a resumable download's ``.part``)."""
    return name.startswith(".") and ".part" in name or name.endswith(".part")


@contextmanager
def writing(target: str | os.PathLike, *, durable: bool = False):
    """``with writing(path) as tmp: <write tmp>`` -- then ``path`` appears complete, or not at all.

    ``durable``: fsync the file and its directory, so the rename survives a power cut
    (for the records a later run trusts: the manifest, the sums, the fetch record).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(target)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        _fsync_directory(target.parent)


def atomic_write(target: str | os.PathLike, data: bytes | str, *, durable: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to ``target`` through :func:`writing`."""
    with writing(target, durable=durable) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(target)


@contextmanager
def publishing_directory(target: str | os.PathLike, purpose: str):
    """``with publishing_directory(out, "export") as tmp: <fill tmp>`` -- then ``out`` appears whole.

    The directory is built beside its target under a hidden name and renamed
    into place when complete (replacing an empty or earlier ``target``, which
    the caller has checked may go); on any failure it is removed, so a
    reproduction or an export cut short leaves nothing behind.
    """
    import shutil
    import tempfile

    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{purpose}-"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if target.exists():
            shutil.rmtree(target) if any(target.iterdir()) else target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def utc_now() -> str:
    """The current UTC time, to the second, as ISO 8601 (what every record stamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
