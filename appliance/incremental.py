"""Run or reuse: each task's key, and the reason for every decision (as Snakemake and ESO's EDPS decide).

A task's **key** hashes what determines its result: its kind, its parameters,
the content digest of every file it reads, and the environment (jwst
version, CRDS context, whether ``pars-*`` step parameters apply).  The CRDS
reference files it used are known only once it ran (its products' ``R_*``
keywords and the ``pars-*`` files its stage was configured from), so its
record keeps their sha256, and a changed reference re-runs it too.  A task
is **reused** when its record (:mod:`appliance.records`) has the same key,
every reference it used is unchanged, and every output it recorded is still
there with its recorded sha256 -- size and modification time short-cut the
hash only when both match the record.  Otherwise it runs,
and the first reason found says why:

``new``, ``forced``, ``failed last time: ...``, ``parameters changed:
jump.rejection_threshold 4.0 → 5.0``, ``input changed: stage1/x_rate.fits``,
``environment changed: crds_context jwst_9000.pmap → jwst_9001.pmap``,
``reference changed: jwst_miri_dark_9001.fits``, ``output missing: ...``,
``output modified: ...``.

Nothing here imports jwst or astropy: a run whose every task is reused
never loads them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from appliance.crdsenv import reference_file
from appliance.files import file_sha256, json_sha256
from appliance.graph import Task, flatten_params
from appliance.records import FAILED

KEY_VERSION = 1
#: An input whose content is not known yet: its producer has yet to run (``run --dry-run``).
PENDING = None


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str

    @property
    def verb(self) -> str:
        return "run" if self.run else "reused"


def environment_of(jwst_version: str, settings) -> dict:
    """What of the environment goes into every key."""
    return {"jwst": jwst_version, "crds_context": settings.context, "use_step_pars": settings.use_step_pars}


def key_parts(task: Task, input_digests: dict[str, str | None], environment: dict) -> dict:
    """What the key hashes, kept in the record so that a later change can be named."""
    return {"version": KEY_VERSION, "kind": task.kind, "params": task.params,
            "inputs": {p: input_digests.get(p) for p in task.inputs}, "environment": environment}


def key_of(parts: dict) -> str:
    return json_sha256(parts)


def decide(task: Task, parts: dict, record: dict | None, workdir: Path, cache: Path, *, forced: bool,
           interrupted: bool = False) -> Decision:
    """Run or reuse ``task``, and why."""
    if forced:
        return Decision(True, "forced")
    if record is None:
        return Decision(True, "interrupted last time: its outputs are not trusted" if interrupted else "new")
    if record.get("status") == FAILED:
        return Decision(True, f"failed last time: {record.get('error', '')}".rstrip(": "))
    pending = [p for p, d in parts["inputs"].items() if d is PENDING]
    if pending:
        return Decision(True, f"input may change: {pending[0]} (its task runs first)")
    if record.get("key") != key_of(parts):
        return Decision(True, changed(record.get("key_parts") or {}, parts, record.get("effective_parameters")))
    reason = stale_reference(cache, record.get("references", {})) or stale_output(workdir, record["outputs"])
    return Decision(True, reason) if reason else Decision(False, "unchanged")


def changed(old: dict, new: dict, effective: dict | None = None) -> str:
    """The first difference between two keys' parts, said as a reason.

    A parameter the recipe did not set last time shows the value the step ran
    with (``effective``: the record's effective parameters), so a new override
    reads ``jump.rejection_threshold 4.0 → 5.0``; ``(default)`` only where that
    is not known (a parameter the recipe drops: its default shows once it ran).
    """
    if old.get("version") != new.get("version") or old.get("kind") != new.get("kind"):
        return "new"
    a, b = flatten_params(old.get("params") or {}), flatten_params(new.get("params") or {})
    diffs = [k for k in sorted(set(a) | set(b)) if a.get(k, _UNSET) != b.get(k, _UNSET)]
    if diffs:
        k = diffs[0]
        ran_with = flatten_params({"steps": (effective or {}).get("steps") or {}})
        more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
        return f"parameters changed: {k} {_show(a.get(k, ran_with.get(k, _UNSET)))} → {_show(b.get(k, _UNSET))}{more}"
    old_inputs, new_inputs = old.get("inputs") or {}, new.get("inputs") or {}
    for path in sorted(set(old_inputs) | set(new_inputs)):
        if old_inputs.get(path) != new_inputs.get(path):
            return f"input changed: {path}"
    old_env, new_env = old.get("environment") or {}, new.get("environment") or {}
    for name in sorted(set(old_env) | set(new_env)):
        if old_env.get(name) != new_env.get(name):
            return f"environment changed: {name} {old_env.get(name)} → {new_env.get(name)}"
    return "key changed"


class _Unset:
    def __repr__(self) -> str:
        return "(default)"


_UNSET = _Unset()


def _show(value) -> str:
    return repr(value) if isinstance(value, _Unset) else json.dumps(value)


def file_state(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file, or None when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def unchanged(path: Path, size: int, mtime_ns: int, sha256: str) -> bool:
    """The file still has this content: size and mtime both as recorded, or else the same sha256."""
    state = file_state(path)
    if state is None or state[0] != size:
        return False
    return state[1] == mtime_ns or file_sha256(path) == sha256


def stale_output(workdir: Path, outputs: list[dict]) -> str | None:
    for out in outputs:
        path = Path(workdir) / out["path"]
        if file_state(path) is None:
            return f"output missing: {out['path']}"
        if not unchanged(path, out["size"], out["mtime_ns"], out["sha256"]):
            return f"output modified: {out['path']}"
    return None


def reference_states(cache: Path, names) -> dict[str, dict]:
    """sha256, size and mtime of each CRDS reference file, as found in the cache (what a record keeps)."""
    found = {}
    for name in sorted(names):
        path = reference_file(cache, name)
        if path is not None:
            size, mtime = file_state(path)
            found[name] = {"sha256": _reference_sha256(str(path), size, mtime), "size": size, "mtime_ns": mtime}
        else:
            found[name] = {"sha256": "not in cache", "size": -1, "mtime_ns": -1}
    return found


@lru_cache(maxsize=4096)
def _reference_sha256(path: str, size: int, mtime_ns: int) -> str:
    """A reference file's sha256, hashed once per process while its size and time stay (every task of a stage
    uses the same references)."""
    return file_sha256(path)


def stale_reference(cache: Path, references: dict) -> str | None:
    for name, state in sorted(references.items()):
        if state.get("size", -1) < 0:
            continue  # not in the cache then either: the task ran without it
        path = reference_file(cache, name)
        if path is None or not unchanged(path, state["size"], state["mtime_ns"], state["sha256"]):
            return f"reference changed: {name}"
    return None
