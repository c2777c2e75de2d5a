"""Completion records: one per finished task, so a later run can trust its outputs instead of redoing it.

The protocol is the only order in which a crash at any moment can be told
apart from a finished task:

1. :func:`begin` writes ``records/<task>.running`` (pid, host, start time):
   from now on the task's outputs are not trusted;
2. the task runs; its outputs are complete under their final names and their
   digests are computed;
3. :func:`finish` writes ``records/<task>.json`` atomically (fsynced), then
   removes the marker.

A marker means "untrusted", whatever record lies beside it, so a task killed
mid-write, or between its last rename and its record, is run again.  A failed
task leaves a record whose ``status`` is ``"failed"`` (with the step, the first
line of the error and its log); it is never reused.  Records are read as
untrusted input, like manifests: a malformed one is ignored.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from appliance.files import atomic_write, utc_now
from appliance.safety import MANIFEST_SIZE_LIMIT, SHA256, read_regular_file, safe_relative
from appliance.workdir import RECORDS_DIR, marker_path, record_path

RECORD_KIND = "appliance-task"
RECORD_VERSION = 1
DONE = "done"
FAILED = "failed"


def worker() -> str:
    """Who runs a task: ``host:pid`` (the manifest records it per task)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def begin(workdir: Path, task_id: str) -> None:
    """Mark the task as running: its outputs are untrusted until :func:`finish`."""
    atomic_write(marker_path(workdir, task_id), json.dumps({"id": task_id, "worker": worker(), "started": utc_now()}),
                 durable=True)


def finish(workdir: Path, record: dict) -> dict:
    """Write the task's record (done or failed), then remove its marker."""
    full = {"record": RECORD_KIND, "version": RECORD_VERSION, **record}
    atomic_write(record_path(workdir, record["id"]), json.dumps(full, indent=1, sort_keys=True) + "\n", durable=True)
    marker_path(workdir, record["id"]).unlink(missing_ok=True)
    return full


def interrupted(workdir: Path, task_id: str) -> bool:
    """True when the task started and never recorded its end (a crash, a kill)."""
    return marker_path(workdir, task_id).exists()


def load(workdir: Path, task_id: str) -> dict | None:
    """The task's record, or None: none written, a marker beside it, or not a well-formed record."""
    path = record_path(workdir, task_id)
    if not path.exists() or interrupted(workdir, task_id):
        return None
    try:
        data = json.loads(read_regular_file(path, "task record", MANIFEST_SIZE_LIMIT).decode("utf-8"))
    except Exception:  # noqa: BLE001 - unreadable, not JSON, not a regular file: not trusted
        return None
    return data if _well_formed(data, task_id) else None


def _well_formed(data, task_id: str) -> bool:
    if not (isinstance(data, dict) and data.get("record") == RECORD_KIND and data.get("version") == RECORD_VERSION
            and data.get("id") == task_id and data.get("status") in (DONE, FAILED)
            and isinstance(data.get("key"), str) and isinstance(data.get("outputs"), list)):
        return False
    for out in data["outputs"]:
        if not (isinstance(out, dict) and safe_relative(out.get("path")) and isinstance(out.get("size"), int)
                and isinstance(out.get("sha256"), str) and SHA256.fullmatch(out["sha256"])
                and isinstance(out.get("content_digest"), str) and isinstance(out.get("mtime_ns"), int)):
            return False
    return isinstance(data.get("references", {}), dict)


# --------------------------------------------------------------------------- step specs already checked

VALIDATED = "validated.json"


def specs_fingerprint(recipe, jwst_version: str) -> str:
    """What a recipe's check against jwst's step specs depends on: the recipe text, jwst, the appliance."""
    import hashlib

    from appliance import __version__

    return hashlib.sha256(f"{recipe.sha256}|{jwst_version}|{__version__}".encode()).hexdigest()


def specs_checked(workdir: Path, fingerprint: str) -> bool:
    """True when a run in ``workdir`` already checked these step parameters against this jwst's specs."""
    path = Path(workdir) / RECORDS_DIR / VALIDATED
    try:
        return json.loads(read_regular_file(path, "record", 4096).decode()).get("fingerprint") == fingerprint
    except Exception:  # noqa: BLE001 - absent or unreadable: check again
        return False


def mark_specs_checked(workdir: Path, fingerprint: str) -> None:
    atomic_write(Path(workdir) / RECORDS_DIR / VALIDATED, json.dumps({"fingerprint": fingerprint}) + "\n")
