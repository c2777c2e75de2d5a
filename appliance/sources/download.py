"""A resumable, hashed HTTP download: ranges after a cut, sha256 computed while the bytes arrive, sizes checked.

The file goes to ``<name>.part`` beside its target (resumed with a Range request
after a cut), is hashed as it arrives (on a second thread, so hashing overlaps
receiving and writing), checked against the size the archive lists, and only
then renamed into place (:func:`finish`).  The ``.part`` file is kept on a failure, so the
next attempt resumes.  Transient faults (connection refused or cut, timeouts,
HTTP 5xx/429) are retried a bounded number of times (:func:`retry`).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from appliance.errors import WorkFailed, short_reason

CHUNK = 1 << 20


class Transient(Exception):
    """A fault worth another attempt; the message is one short line."""


def part_path(target: Path) -> Path:
    """Where ``target`` is received before it is complete (and resumed from after a cut)."""
    return target.with_name(target.name + ".part")


def finish(part: Path, target: Path) -> Path:
    """The complete, checked download takes its name (one rename: a reader never sees half of it)."""
    os.replace(part, target)
    return target


def transfer(session, url: str, part: Path, *, name: str, listed_size: int | None, check_status,
             source: str = "the archive", on_bytes=None) -> tuple[int, str]:
    """One attempt: GET (with Range to resume ``part``), hash while receiving, check the size.

    ``check_status(resp)`` raises for an HTTP error status (:class:`Transient`
    for those worth retrying); ``on_bytes(n)`` counts the bytes received.  A
    fresh file needs no HEAD: the listed size is checked against the GET's own
    Content-Length (or Content-Range total), which spares one round trip per
    file.  Before resuming, a HEAD asks whether the server takes ranges and
    still has the size the partial file was part of.  Returns (size, sha256).
    """
    import requests
    import urllib3

    def check_size(served: int | None) -> None:
        if listed_size is not None and served is not None and served != listed_size:
            part.unlink(missing_ok=True)
            raise WorkFailed(f"{name}: {source} lists {listed_size} bytes but its server sends {served}; "
                             "not downloaded")

    expected = listed_size
    try:
        offset = part.stat().st_size if part.exists() else 0
        if offset:
            head = session.head(url, allow_redirects=True)
            check_status(head)
            check_size(header_int(head.headers.get("Content-Length")))
            expected = expected if expected is not None else header_int(head.headers.get("Content-Length"))
            if head.headers.get("Accept-Ranges", "").lower() != "bytes" or expected is None or offset > expected:
                offset = 0
        digest = digest_of_prefix(part, offset)
        transferred = 0
        if expected is None or offset < expected:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            with session.get(url, headers=headers, stream=True) as resp:
                check_status(resp)
                if resp.status_code == 206:
                    crange = resp.headers.get("Content-Range", "")
                    if not crange.startswith(f"bytes {offset}-"):
                        part.unlink(missing_ok=True)
                        raise Transient(f"the server answered a range request with {crange!r}")
                    total = header_int(crange.rpartition("/")[2])
                else:
                    offset, digest = 0, hashlib.sha256()  # the whole file (the server may ignore a range)
                    total = header_int(resp.headers.get("Content-Length"))
                check_size(total)
                expected = expected if expected is not None else total
                # read1 hands over every byte as it arrives, so a cut loses nothing
                # (iter_content drops the bytes of an unfinished chunk)
                transferred = append_stream(part, offset, resp.raw.read1, digest, on_bytes)
        size = offset + transferred
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError) as exc:
        raise Transient(short_reason(exc)) from None
    if expected is not None and size < expected:
        raise Transient(f"the connection ended after {size} of {expected} bytes")
    if expected is not None and size > expected:
        part.unlink(missing_ok=True)
        raise WorkFailed(f"{name}: received {size} bytes but {source} lists {expected}; not kept")
    return size, digest.hexdigest()


def retry(what: str, func, *args, attempts: int, wait: float, http_error=None, **kw):
    """``func(*args)`` with bounded retries on transient faults; then one WorkFailed line naming ``what``.

    ``http_error(code)`` decides about a ``requests.HTTPError`` (a client's
    ``raise_for_status``): it raises the right one-line error, or returns to
    have the attempt retried.  The wait doubles per attempt, capped at 30 s.
    """
    import requests

    last = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(30.0, wait * 2 ** (attempt - 1)))
        try:
            return func(*args, **kw)
        except Transient as exc:
            last = str(exc)
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if http_error is None:
                raise WorkFailed(f"{what}: HTTP {code}") from None
            http_error(code)
            last = f"HTTP {code}"
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            last = short_reason(exc)
    raise WorkFailed(f"{what}: {last} (gave up after {attempts} attempts)")


def digest_of_prefix(part: Path, offset: int):
    """A sha256 fed with the first ``offset`` bytes already in ``part``, to continue a resumed transfer."""
    digest = hashlib.sha256()
    if offset:
        with open(part, "rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                digest.update(block)
    return digest


def append_stream(part: Path, offset: int, read, digest, on_bytes=None) -> int:
    """Write what ``read(CHUNK)`` hands over into ``part`` from ``offset`` on, hashing it; the bytes written."""
    written = 0
    with open(part, "r+b" if offset else "wb") as fh, Hasher(digest) as hasher:
        fh.seek(offset)
        fh.truncate()
        while chunk := read(CHUNK):
            hasher.update(chunk)
            fh.write(chunk)
            written += len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return written


class Hasher:
    """sha256 on a second thread, so hashing overlaps receiving and writing (hashlib releases the GIL)."""

    def __init__(self, digest):
        import queue
        import threading

        self.digest = digest
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self.digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._queue.put(None)
        self._thread.join()


def timeout_adapter(timeout: float):
    """A requests adapter that adds a timeout where the caller gave none (astroquery gives none)."""
    import requests.adapters

    class Adapter(requests.adapters.HTTPAdapter):
        def send(self, request, **kw):
            if kw.get("timeout") is None:
                kw["timeout"] = (min(10.0, timeout), timeout)
            return super().send(request, **kw)

    return Adapter()


def header_int(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
