"""``run.py fetch``: the downloads only, so that ``run`` can follow with no network.

It puts the recipe's exposures into the workdir (from MAST, or the simulated
or local ones) and makes sure the CRDS cache holds every mapping of the
pinned context and every reference file any stage will ask for.  What it
fetched is written to the fetch record ``WORKDIR/inputs.json``:

.. code-block:: json

    {"record": "appliance-fetch", "version": 1,
     "input_kind": "mast", "query": {...}, "mast_base_url": "https://mast.stsci.edu",
     "files": [{"name": "uncal/jw..._uncal.fits", "size": 1344960, "sha256": "...",
                "origin": "mast:JWST/product/jw..._uncal.fits", "fetched_at": "2025-01-01T00:00:00+00:00"}],
     "crds": {"context": "...", "server": "...", "references": {"<name>": {"state": "fetched", "size": 1}}, ...}}

``run`` (through :func:`appliance.sources.mast.materialise`) reuses the
listed files when their size and sha256 still match, without a network call.
The record itself (its format, reading and replacing it) is :mod:`appliance.workdir`'s.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance import crdsenv
from appliance.files import file_sha256
from appliance.prefetch import needs_prefetch, prefetch_references, recipe_reftypes
from appliance.session import prepare, prepare_cache
from appliance.sources import materialise
from appliance.workdir import FETCH_RECORD, check_not_busy, check_workdir, load_fetch_record, locked, update_fetch_record



@dataclass
class FetchReport:
    """What a fetch did; ``str()`` is the summary the CLI prints."""

    recipe: str
    workdir: Path
    input_kind: str
    downloaded: int = 0
    reused: int = 0
    bytes_downloaded: int = 0
    from_cloud: int = 0  # of the downloads, those read from MAST's S3 mirror
    input_files: list[dict] = field(default_factory=list)
    crds: object | None = None  # prefetch.PrefetchReport
    crds_note: str = ""
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.input_kind == "mast":
            cloud = f", {self.from_cloud} of them from the S3 mirror" if self.from_cloud else ""
            inputs = (f"{self.downloaded} downloaded ({self.bytes_downloaded / 1e6:.1f} MB{cloud}), "
                      f"{self.reused} already here")
        else:
            inputs = f"{len(self.input_files)} {self.input_kind} file(s) in place"
        lines = [f"fetched  {self.recipe} into {self.workdir} in {self.seconds:.1f} s",
                 f"inputs   {inputs}; record {self.workdir / FETCH_RECORD}"]
        if self.crds is not None:
            lines.append(f"crds     {self.crds.context} from {self.crds.server}: references {self.crds}")
            lines.extend(f"warning  no reference selected: {u}" for u in self.crds.unresolved)
        elif self.crds_note:
            lines.append(f"crds     {self.crds_note}")
        lines.append("ready    `run` can now work offline")
        return "\n".join(lines)


def fetch(recipe_path, workdir, *, allow_env_mismatch: bool = False) -> FetchReport:
    """Download the recipe's inputs and CRDS references into ``workdir`` and the CRDS cache."""
    started = time.perf_counter()
    workdir = Path(workdir)
    check_workdir(workdir)
    check_not_busy(workdir)
    prepared = prepare(Path(recipe_path), workdir, allow_env_mismatch=allow_env_mismatch)
    workdir.mkdir(parents=True, exist_ok=True)
    with locked(workdir, "fetch"):
        return _fetch(prepared, workdir.resolve(), started)


def _fetch(prepared, workdir: Path, started: float) -> FetchReport:
    recipe, settings = prepared.recipe, prepared.settings
    report = FetchReport(recipe=recipe.name, workdir=workdir, input_kind=recipe.input_kind)

    if recipe.input_kind == "mast":
        from appliance.sources import mast

        fetched = mast.fetch_inputs(recipe, workdir)
        report.downloaded = sum(f.downloaded for f in fetched)
        report.reused = len(fetched) - report.downloaded
        report.bytes_downloaded = sum(f.transferred for f in fetched)
        report.from_cloud = sum(f.downloaded and f.origin.startswith("s3://") for f in fetched)
        report.input_files = [f.record() for f in fetched]
        datasets = [f.path for f in fetched]
    else:
        with crdsenv.applied(settings):  # the simulator writes datamodels
            if prepared.simulated:
                prepare_cache(settings, simulated=True)  # simulated headers need nothing from a server
            placed = materialise(recipe, workdir)
        report.input_files = [_file_record(f, workdir) for f in placed]
        datasets = [f.path for f in placed if f.path.name.endswith(".fits")]
        update_fetch_record(workdir, input_kind=recipe.input_kind, files=report.input_files)

    # os.environ is still the user's here: its CRDS server is the one to fetch from
    if needs_prefetch(settings.context, os.environ, simulated=prepared.simulated):
        previous = (load_fetch_record(workdir) or {}).get("crds") or {}
        if previous.get("context") != settings.context:
            previous = {}
        with crdsenv.applied(settings):  # finding the reference types imports jwst
            reftypes = recipe_reftypes(recipe, settings.use_step_pars, previous.get("reftypes"))
        report.crds = prefetch_references(
            crdsenv.for_fetch(settings), datasets, reftypes=reftypes["types"],
            digests={str(workdir / f["name"]): f["sha256"] for f in report.input_files},
            known_selections=previous.get("selections"))
        update_fetch_record(workdir, crds={**report.crds.as_dict(), "reftypes": reftypes})
    elif prepared.simulated:
        report.crds_note = f"{settings.context} is the synthetic context, built locally in {settings.path}"
    else:
        report.crds_note = (f"{settings.context} is the synthetic context: nothing to fetch "
                            "(`run.py simulate --crds-cache DIR` writes it; set CRDS_PATH=DIR)")
    report.seconds = time.perf_counter() - started
    return report


def _file_record(f, workdir: Path) -> dict:
    return {"name": f.path.relative_to(workdir).as_posix(), "size": f.path.stat().st_size,
            "sha256": file_sha256(f.path), "origin": f.origin, "fetched_at": f.fetched_at}
