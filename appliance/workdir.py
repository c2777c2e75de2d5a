"""The workdir: one place that names every directory and file of a run, and the records kept there.

.. code-block:: text

    WORKDIR/
      uncal/        inputs: uncal files (truth.ecsv for simulated data)
      stage1/       detector1: *_rate.fits, *_rateints.fits; level-2 associations
      stage2/       image2: *_cal.fits, *_i2d.fits; level-3 associations (rate inputs go here too)
      stage3/       image3, per filter: *_i2d.fits mosaic, *_cat.ecsv, *_segm.fits; *_crf.fits
      postprocess/  the registered post-processing operations' products
      logs/         one log per task
      crds_cache/   the synthetic CRDS cache (simulated recipes only)
      records/      one completion record per finished task (and a marker while one runs)
      inputs.json   the fetch record: what `fetch` downloaded, so `run` can reuse it offline
      run.lock      held by the one run (or fetch) working in this workdir
      manifest.json, SHA256SUMS

Also here: the checks a workdir (or any directory the appliance is told to
write) must pass before anything is written.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from appliance.errors import UserError
from appliance.files import atomic_write
from appliance.safety import MANIFEST_SIZE_LIMIT, SHA256, printable, read_regular_file, safe_relative

INPUTS_DIR = "uncal"
#: The directory each stage writes, as in the reference workflow.
STAGE_DIRS = {"detector1": "stage1", "image2": "stage2", "image3": "stage3"}
#: Where an input of each product kind is placed: where the stage that reads it finds it.
INPUT_DIR_OF_KIND = {"uncal": INPUTS_DIR, "rate": "stage1", "cal": "stage2"}
POSTPROCESS_DIR = "postprocess"
LOGS_DIR = "logs"
#: Where SLURM jobs of a run's Dask cluster write their output (``--dask-cluster``).
SLURM_LOGS_DIR = f"{LOGS_DIR}/slurm"
CRDS_CACHE_DIR = "crds_cache"
#: Where ``reproduce`` puts the recorded recipe (below it, the recorded recipe's relative place).
RECIPE_DIR = "recipe"
#: Directories whose files are a run's products (and inputs).
OUTPUT_DIRS = (INPUTS_DIR, *STAGE_DIRS.values(), POSTPROCESS_DIR)
RECORDS_DIR = "records"
MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"
FETCH_RECORD = "inputs.json"
FETCH_RECORD_VERSION = 1
LOCK_NAME = "run.lock"


def log_path(workdir: Path, task_id: str) -> Path:
    """``logs/<task id with : as _>.log`` (the exported ``reduce.sh`` names its logs the same way)."""
    return Path(workdir) / LOGS_DIR / (task_id.replace(":", "_") + ".log")


def record_path(workdir: Path, task_id: str) -> Path:
    """``records/<task id with : as _>.json``: the completion record of a finished task."""
    return Path(workdir) / RECORDS_DIR / (task_id.replace(":", "_") + ".json")


def marker_path(workdir: Path, task_id: str) -> Path:
    """``records/<task id with : as _>.running``: written before a task starts, removed after its record."""
    return Path(workdir) / RECORDS_DIR / (task_id.replace(":", "_") + ".running")


def association_name(product_name: str, stage: str) -> str:
    """The association file of a stage's product, e.g. ``jw..._f770w_image3_asn.json``."""
    return f"{product_name}_{stage}_asn.json"


def nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (where it would be created)."""
    probe = Path(path).absolute()
    while not probe.exists():
        probe = probe.parent
    return probe


def require_writable(path: Path, flag: str) -> None:
    """``path`` can be created or written: its nearest existing ancestor is a writable directory."""
    probe = nearest_existing(path)
    if not probe.is_dir():
        raise UserError(f"{printable(path)}: {flag}: {printable(probe)} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{printable(path)}: {flag}: the directory {printable(probe)} is not writable")


def check_workdir(workdir: Path, flag: str = "--workdir") -> None:
    """A directory to write into: an existing directory, or creatable, and writable, with no symbolic
    link where the appliance writes (:func:`check_no_links`)."""
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"{printable(workdir)}: {flag}: expected a directory, found a file")
    require_writable(workdir, flag)
    check_no_links(workdir)


#: What the appliance writes at the top of a workdir.
WRITTEN_HERE = (*OUTPUT_DIRS, LOGS_DIR, RECORDS_DIR, CRDS_CACHE_DIR, RECIPE_DIR, MANIFEST_NAME, SUMS_NAME, FETCH_RECORD,
                LOCK_NAME)


def check_no_links(workdir: Path) -> None:
    """Refuse a symbolic link among the entries the appliance writes, or anywhere below them.

    jwst and astropy open a product's path and write through it, so a link
    planted there (``stage1 -> /elsewhere``, ``logs/x.log -> ~/.bashrc``)
    would carry a write out of the workdir.
    """
    for name in WRITTEN_HERE:
        top = Path(workdir) / name
        if top.is_symlink():
            _linked(top)
        if top.is_dir():
            _refuse_links_below(top)


def _refuse_links_below(directory: Path) -> None:
    """Every entry below ``directory``, its type read from the directory listing (no stat per file: a
    no-op re-run of a large program walks thousands of them)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_symlink():
                _linked(Path(entry.path))
            if entry.is_dir(follow_symlinks=False):
                _refuse_links_below(Path(entry.path))


def _linked(path: Path) -> None:
    raise UserError(f"{printable(path)}: a symbolic link inside the workdir (to {printable(os.readlink(path))}); "
                    f"the appliance writes only real files there: remove it")


def check_new_directory(path: Path, flag: str, why: str) -> None:
    """A directory that must not exist yet, or be empty (a reproduction, an export); ``why`` says what to do."""
    check_workdir(path, flag)
    if path.is_dir() and any(path.iterdir()):
        raise UserError(f"{printable(path)}: {flag}: the directory exists and is not empty ({why})")


def check_report_path(path: Path | None, flag: str) -> None:
    """A report file is written into an existing, writable directory: checked before any work."""
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"{printable(path)}: {flag}: expected a file name, found a directory")
    if not parent.is_dir():
        raise UserError(f"{printable(path)}: {flag}: the directory {printable(parent)} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{printable(path)}: {flag}: the directory {printable(parent)} is not writable")


# --------------------------------------------------------------------------- the fetch record


def load_fetch_record(workdir: Path) -> dict | None:
    """The fetch record of ``workdir``, or None when there is none (or it is unreadable or malformed).

    .. code-block:: json

        {"record": "appliance-fetch", "version": 1,
         "input_kind": "mast", "query": {...}, "mast_base_url": "https://mast.stsci.edu",
         "files": [{"name": "uncal/jw..._uncal.fits", "size": 1344960, "sha256": "...",
                    "origin": "mast:JWST/product/jw..._uncal.fits", "fetched_at": "2025-01-01T00:00:00+00:00"}],
         "crds": {"context": "...", "server": "...", "references": {"<name>": {"state": "fetched", "size": 1}}}}

    The files it lists are only reused when each entry names a plain path
    inside the workdir with a size and a sha256 (a record is no more trusted
    than a manifest).
    """
    path = Path(workdir) / FETCH_RECORD
    if not path.exists():
        return None
    try:
        data = json.loads(read_regular_file(path, "fetch record", MANIFEST_SIZE_LIMIT).decode("utf-8"))
    except (UserError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("record") != "appliance-fetch":
        return None
    files = data.get("files", [])
    ok = isinstance(files, list) and all(
        isinstance(f, dict) and safe_relative(f.get("name")) and isinstance(f.get("size"), int)
        and isinstance(f.get("sha256"), str) and SHA256.fullmatch(f["sha256"]) for f in files)
    return data if ok else None


def update_fetch_record(workdir: Path, **fields) -> dict:
    """Merge ``fields`` into the fetch record and replace it atomically."""
    record = load_fetch_record(workdir) or {"record": "appliance-fetch", "version": FETCH_RECORD_VERSION}
    if "query" in fields and record.get("query") != fields["query"]:
        record.pop("crds", None)
    record.update(fields)
    if "query" in fields:
        record["input_kind"] = "mast"
    elif fields.get("input_kind", "mast") != "mast":
        for key in ("query", "complete", "mast_base_url"):  # a MAST record no longer describes these files
            record.pop(key, None)
    atomic_write(Path(workdir) / FETCH_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n", durable=True)
    return record


# --------------------------------------------------------------------------- one run at a time


class WorkdirBusy(UserError):
    """Another process holds the workdir's lock."""


@contextmanager
def locked(workdir: Path, what: str = "run"):
    """Hold ``WORKDIR/run.lock`` for the block; another holder is a one-line error naming its pid and start.

    An ``fcntl`` lock belongs to the open file: the kernel releases it when its
    process ends, however it ends, so the lock of a dead process is simply
    taken over.  The file says who holds it, for the message.
    """
    import socket

    from appliance.files import utc_now

    path = Path(workdir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        _take(fd, workdir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now(),
                                  "what": what}).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_not_busy(workdir: Path) -> None:
    """Fail at once, creating nothing, when a run or fetch holds the workdir's lock (the first check of a
    run, before the recipe's slower checks)."""
    import fcntl

    try:
        fd = os.open(Path(workdir) / LOCK_NAME, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return  # no lock file: nobody holds it (a symlinked one is refused when the run takes the lock)
    try:
        _take(fd, workdir)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _take(fd: int, workdir: Path) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        raise WorkdirBusy(f"{printable(workdir)}: another {holder.get('what', 'run')} is working in this workdir "
                          f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since "
                          f"{holder.get('since', '?')}); wait for it, or use another --workdir") from None


def _holder(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
