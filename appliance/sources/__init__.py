"""Where a recipe's exposures come from: simulated, local files, or MAST.

Each source module (``simulate``, ``local``, ``mast``) answers three questions
for its kind of ``[inputs]``:

* ``planned(recipe)``: the exposures, known before anything is written (None
  when only a query can tell, as for MAST);
* ``materialise(recipe, workdir)``: put the files into the workdir (``uncal/``,
  or the directory of the stage they belong to) and return one
  :class:`~appliance.sources.inputfile.InputFile` per file, so the manifest can
  say where every input came from;
* ``restore(recipe, records, stage, targets)``: rebuild recorded inputs from
  their origins, each checked against its recorded sha256 (``reproduce``);
* ``input_key(recipe)``: what determines its files, so that :func:`place`
  reuses them when nothing changed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


def source(recipe):
    """The module that serves the recipe's kind of input."""
    return importlib.import_module(f"appliance.sources.{recipe.input_kind}")


def planned_exposures(recipe):
    """The exposures the recipe will reduce, or None when they are known only once fetched."""
    return source(recipe).planned(recipe)


def materialise(recipe, workdir: Path):
    """Put the recipe's inputs into the workdir."""
    return source(recipe).materialise(recipe, workdir)


def key_of(value) -> str:
    """The sha256 of a JSON-able description (what a source's ``input_key`` returns)."""
    from appliance.files import json_sha256

    return json_sha256(value)


def restore(recipe, records, stage: Path, targets: dict) -> list[str]:
    """Rebuild recorded inputs into ``stage``; where each now is (relative to ``stage``, or absolute in place)."""
    return source(recipe).restore(recipe, records, stage, targets)


# --------------------------------------------------------------------------- the inputs step, recorded

INPUTS_TASK = "inputs"


@dataclass
class Placed:
    """The inputs in the workdir, as the run's first step left (or found) them."""

    files: list[dict]  # path, size, sha256, origin, fetched_at, mtime_ns, content_digest
    exposures: list  # graph.Exposure, from the files' headers
    status: str  # "run" or "reused"
    reason: str
    seconds: float = 0.0

    @property
    def digests(self) -> dict[str, str]:
        """What later tasks' keys take of each input: its sha256."""
        return {f["path"]: f["content_digest"] for f in self.files}


def place(recipe, workdir: Path, *, force: bool = False) -> Placed:
    """Put the inputs into the workdir, unless its record says they are already there, unchanged.

    Each source's ``input_key(recipe)`` says what determines its files (the
    simulator's parameters and code, the local files' size and time, the MAST
    query); the record keeps the files' sha256 and the exposures read from
    their headers, so a run that changes nothing touches no input, simulates
    nothing and reads no FITS header.
    """
    import time
    from dataclasses import asdict

    from appliance import records
    from appliance.files import file_sha256, utc_now

    key, record, recorded, reason = _decide(recipe, workdir, force)
    if not reason:
        return Placed(record["outputs"], recorded, "reused", "unchanged")
    from appliance.plan import exposure_from_header

    records.begin(workdir, INPUTS_TASK)
    started, t0 = utc_now(), time.perf_counter()
    files = []
    for f in materialise(recipe, workdir):
        sha = file_sha256(f.path)
        st = f.path.stat()
        files.append({"path": f.path.relative_to(workdir).as_posix(), "size": st.st_size, "sha256": sha,
                      "content_digest": "sha256:" + sha, "mtime_ns": st.st_mtime_ns, "origin": f.origin,
                      "fetched_at": f.fetched_at})
    exposures = [exposure_from_header(Path(workdir) / f["path"]) for f in files if f["path"].endswith(".fits")]
    seconds = time.perf_counter() - t0
    records.finish(workdir, {"id": INPUTS_TASK, "kind": recipe.input_kind, "status": records.DONE, "key": key,
                             "outputs": files, "exposures": [asdict(e) for e in exposures], "reason": reason,
                             "started": started, "finished": utc_now(), "seconds": round(seconds, 3)})
    return Placed(files, exposures, "run", reason, seconds)


def preview(recipe, workdir: Path, *, force: bool = False) -> Placed:
    """What :func:`place` would do, writing nothing (``run --dry-run``): its status and reason, the
    exposures (None when only a fetch can tell), and the inputs' digests where they are known before
    the step runs; an input left out is pending, so the tasks that read it would run.

    The same source key gives the same files again (simulated from the same parameters and code,
    copied from the same files, downloaded and checked against the archive's sums), so a step that
    runs only to restore a modified file keeps its recorded digests.  A changed key leaves the
    digests to the source's ``expected_files`` where it has one (local files: their sha256).
    """
    key, record, recorded, reason = _decide(recipe, workdir, force)
    if not reason:
        return Placed(record["outputs"], recorded, "reused", "unchanged")
    if record is not None and record.get("key") == key:
        return Placed(record["outputs"], recorded, "run", reason)
    expected = getattr(source(recipe), "expected_files", None)
    exposures = planned_exposures(recipe)
    return Placed(expected(recipe) if expected and exposures is not None else [], exposures, "run", reason)


def _decide(recipe, workdir: Path, force: bool) -> tuple[str, dict | None, list | None, str]:
    """The source's key, the inputs' record and the exposures it describes (both None when there is no
    trustworthy record), and why the step must run ("" when the record holds)."""
    from appliance import records
    from appliance.incremental import stale_output

    key = source(recipe).input_key(recipe)
    record = records.load(workdir, INPUTS_TASK)
    recorded = _recorded_exposures(record) if record is not None else None
    if recorded is None:
        record = None  # none, or not well formed: not trusted, the inputs are placed again
    if force:
        reason = "forced"
    elif record is None:
        reason = "interrupted last time" if records.interrupted(workdir, INPUTS_TASK) else "new"
    elif record.get("key") != key:
        reason = "inputs changed"
    else:
        reason = stale_output(workdir, record["outputs"]) or ""
    return key, record, recorded, reason


def _recorded_exposures(record: dict) -> list | None:
    """The exposures the inputs' record describes, each checked as a header's would be; None when the
    record does not describe them well (it is read as untrusted input)."""
    from appliance.errors import UserError
    from appliance.graph import Exposure
    from appliance.plan import checked_exposure

    try:
        return [checked_exposure(Exposure(**e), "records/inputs.json") for e in record.get("exposures", [])]
    except (TypeError, UserError):
        return None
