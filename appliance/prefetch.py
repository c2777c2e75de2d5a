"""Prefetch: put every CRDS mapping and reference a run will ask for into the cache, so it can run offline.

``fetch`` runs with the network; ``run`` may follow without it (``--network
none``).  So fetch leaves in the cache every mapping of the context and every
reference any stage of the run will ask CRDS for, plus the cache's
``config/jwst/server_config``, which local mode reads.  The selection is
evaluated locally on each dataset's own CRDS parameters; the downloads are
crds' own (its FileCacher verifies each file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from appliance.crdsenv import CrdsSettings, applied
from appliance.errors import UserError, WorkFailed, short_reason
from appliance.files import utc_now
from appliance.pipelines import STAGE_ORDER, STAGES


def needs_prefetch(context: str, environ=os.environ, *, simulated: bool = False) -> bool:
    """Whether ``fetch`` downloads the context: not the synthetic one, unless a server is named for it.

    Simulated recipes build their synthetic cache locally, whatever server a
    user's shell names.
    """
    from appliance.simulate import SIM_CONTEXT

    if simulated:
        return False
    return context != SIM_CONTEXT or bool(environ.get("CRDS_SERVER_URL"))


def recipe_reftypes(recipe, use_step_pars: bool, previous: dict | None = None) -> dict:
    """The reference types the recipe's stages request: ``{"key": ..., "types": [...]}``.

    Finding them imports jwst, so the answer is remembered (in the fetch
    record) per jwst version, stages, skipped steps and ``use_step_pars``: a
    ``previous`` answer with the same key is returned as it is.
    """
    from importlib.metadata import version

    from appliance.recipe import stages_to_run

    skipped = sorted([stage, step] for stage in STAGE_ORDER for step, params in recipe.stages[stage].steps.items()
                     if params.get("skip") is True)
    key = {"jwst": version("jwst"), "stages": list(stages_to_run(recipe)), "skipped": skipped,
           "use_step_pars": use_step_pars}
    if previous and previous.get("key") == key:
        return previous
    types = stage_reftypes(key["stages"], skipped_steps={tuple(s) for s in skipped}, use_step_pars=use_step_pars)
    return {"key": key, "types": types}


def stage_reftypes(stages, *, skipped_steps=frozenset(), use_step_pars: bool = True) -> list[str]:
    """Every reference type the stages' steps may request, and their ``pars-*`` types.

    Steps that jwst skips by default are included (a ``pars-*`` file may turn
    them on); steps the recipe skips (``skipped_steps``: ``(stage, step)``
    pairs) are not.  Imports jwst.
    """
    types = set()
    for stage in stages:
        cls = STAGES[stage].pipeline_class()
        if use_step_pars:
            types.add(cls.get_config_reftype())
        for name, step in cls.step_defs.items():
            if use_step_pars:
                types.add(step.get_config_reftype())
            if (stage, name) not in skipped_steps:
                types.update(step.reference_file_types)
    return sorted(types)


@dataclass
class PrefetchReport:
    """What :func:`prefetch_references` did; ``references`` maps each file to fetched/cached/repaired."""

    context: str
    server: str
    cache: str
    mappings_fetched: int = 0
    mappings_cached: int = 0
    mappings_bytes: int = 0
    references: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    unresolved: list[str] = field(default_factory=list)
    fetched_at: str = ""
    sizes: dict[str, int] = field(default_factory=dict)
    selections: dict[str, dict] = field(default_factory=dict)  # per dataset digest, for the next fetch

    def count(self, state: str) -> int:
        return sum(1 for s in self.references.values() if s == state)

    @property
    def fetched(self) -> int:
        return self.count("fetched") + self.count("repaired")

    @property
    def cached(self) -> int:
        return self.count("cached")

    @property
    def repaired(self) -> int:
        return self.count("repaired")

    def as_dict(self) -> dict:
        """For the fetch record: where each reference came from and when."""
        return {
            "context": self.context, "server": self.server, "cache": self.cache, "fetched_at": self.fetched_at,
            "mappings": {"fetched": self.mappings_fetched, "cached": self.mappings_cached, "bytes": self.mappings_bytes},
            "references": {name: {"state": state, "size": self.sizes.get(name)}
                           for name, state in sorted(self.references.items())},
            "bytes": self.bytes, "unresolved": list(self.unresolved), "selections": self.selections,
        }

    def __str__(self) -> str:
        text = (f"{self.fetched} fetched ({_mb(self.bytes)}), {self.cached} already cached"
                + (f", {self.repaired} repaired after a checksum mismatch" if self.repaired else "")
                + f"; mappings {self.mappings_fetched} fetched, {self.mappings_cached} cached")
        return text


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def crds_parameters(path) -> dict:
    """The parameters jwst gives CRDS for a dataset (``DataModel.get_crds_parameters``)."""
    from stdatamodels.jwst import datamodels

    with datamodels.open(str(path)) as model:
        return model.get_crds_parameters()


def prefetch_references(settings: CrdsSettings, dataset_files, *, reftypes, digests=None,
                        known_selections=None) -> PrefetchReport:
    """Make the cache hold what the datasets need (see :func:`_prefetch`), with ``settings`` applied meanwhile."""
    with applied(settings):
        return _prefetch(settings, dataset_files, reftypes=reftypes, digests=digests,
                         known_selections=known_selections)


def _prefetch(settings: CrdsSettings, dataset_files, *, reftypes, digests=None,
              known_selections=None) -> PrefetchReport:
    """Make the cache hold the context's mappings and every reference ``reftypes`` select for the datasets.

    The selection runs locally on each dataset's own CRDS parameters (those
    jwst sends), for all stages at once: the keywords reference selection
    keys on (instrument, detector, filter, subarray, readout, exposure type,
    date) are carried unchanged from the uncal file to its rate, cal and
    mosaic products.  Asking for the types explicitly also gets those that
    ``crds sync --dataset-files`` leaves out (reset, apcorr, abvegaoffset).

    Opening a dataset to get its parameters costs ~0.1 s, so selections are
    remembered: ``digests`` maps a dataset path to its sha256, and
    ``known_selections`` is a previous report's ``selections``; a dataset
    whose digest, context and reftypes are unchanged is not opened again.

    Cached files are checked against the server's size and sha1 (crds' own
    download metadata and checksum); a mismatch is removed and fetched again.
    Downloads go through crds' own FileCacher, which verifies each file.
    Network failures raise WorkFailed; an unknown context raises UserError.
    """
    import crds
    from crds.client import api
    from crds.core import config as crds_config
    from crds.core import heavy_client, utils
    from crds.core import log as crds_log
    from crds.core.exceptions import CrdsError

    Path(settings.path).mkdir(parents=True, exist_ok=True)
    report = PrefetchReport(settings.context, settings.server_url, settings.path)
    where = f"CRDS server {settings.server_url}"
    console = crds_log.THE_LOGGER.console is not None
    if console:
        crds_log.remove_console_handler()  # crds' progress lines would drown the summary
    try:
        api.set_crds_server(settings.server_url)
        utils.clear_function_caches()
        try:
            api.get_server_info()
        except CrdsError as exc:
            raise WorkFailed(f"{where}: cannot get its configuration: {short_reason(exc)}") from None
        try:
            mappings = api.get_mapping_names(settings.context)
        except CrdsError as exc:
            raise UserError(f"environment.crds_context: {where} does not serve {settings.context}: "
                            f"{short_reason(exc)}") from None
        metadata = api.get_download_metadata()
        _drop_bad_copies(mappings, metadata, {}, crds_config, utils)
        try:
            _, fetched, nbytes = api.dump_files(settings.context, mappings)
        except CrdsError as exc:
            _drop_bad_copies(mappings, metadata, {}, crds_config, utils)  # crds leaves a bad download in place
            raise WorkFailed(f"{where}: downloading the mappings of {settings.context} failed: {short_reason(exc)}") from None
        report.mappings_fetched, report.mappings_bytes = fetched, nbytes
        report.mappings_cached = len(mappings) - fetched

        wanted = _select(settings.context, dataset_files, reftypes, report, crds, digests or {}, known_selections or {})
        states = {}
        _drop_bad_copies(sorted(wanted), metadata, states, crds_config, utils)
        missing = [n for n in sorted(wanted) if not os.path.exists(crds_config.locate_file(n, "jwst"))]
        if missing:
            try:
                api.dump_files(settings.context, missing)
            except CrdsError as exc:
                _drop_bad_copies(missing, metadata, {}, crds_config, utils)
                raise WorkFailed(f"{where}: downloading references failed: {short_reason(exc)}") from None
        for name in sorted(wanted):
            size = int(metadata.get(name, {}).get("size", 0)) if isinstance(metadata.get(name), dict) else 0
            report.sizes[name] = size
            if name in missing:
                report.references[name] = states.get(name, "fetched")
                report.bytes += size
            else:
                report.references[name] = "cached"
        heavy_client.update_config_info("jwst")  # server_config, so local mode works offline
        report.fetched_at = utc_now()
    finally:
        if console:
            crds_log.add_console_handler()
    return report


def _select(context: str, dataset_files, reftypes, report: PrefetchReport, crds, digests: dict,
            known: dict) -> set[str]:
    """The reference files ``reftypes`` select for each dataset under ``context`` (evaluated locally)."""
    import hashlib

    from crds.core.exceptions import CrdsError

    pmap = None
    wanted: set[str] = set()
    for path in dataset_files:
        digest = digests.get(str(path))
        key = None
        if digest:
            key = hashlib.sha256(f"{context}|{','.join(sorted(reftypes))}|{digest}".encode()).hexdigest()[:32]
            if key in known:
                report.selections[key] = known[key]
                wanted.update(known[key]["refs"])
                report.unresolved.extend(u for u in known[key]["unresolved"] if u not in report.unresolved)
                continue
        pmap = pmap or crds.get_cached_mapping(context)
        params = crds_parameters(path)
        instrument = str(params.get("meta.instrument.name", "")).upper()
        try:
            types = [t for t in reftypes if t in set(pmap.get_imap(instrument).selections)]
        except Exception:  # noqa: BLE001 - crds raises several kinds for an unknown instrument
            raise UserError(f"{path}: instrument {instrument!r} is not in CRDS context {context}") from None
        try:
            best = crds.getrecommendations(params, reftypes=types, context=context, observatory="jwst", fast=True)
        except CrdsError as exc:
            raise WorkFailed(f"{Path(path).name}: CRDS reference selection failed: {short_reason(exc)}") from None
        refs, unresolved = [], []
        for reftype, name in sorted(best.items()):
            if not isinstance(name, str):
                continue
            if not name.startswith("NOT FOUND"):
                refs.append(name)
            elif "n/a" not in name.lower() and not reftype.startswith("pars-"):
                unresolved.append(f"{Path(path).name}: {reftype}: {name[len('NOT FOUND'):].strip()}")
        wanted.update(refs)
        report.unresolved.extend(u for u in unresolved if u not in report.unresolved)
        if key:
            report.selections[key] = {"refs": refs, "unresolved": unresolved}
    return wanted


def _drop_bad_copies(names, metadata: dict, states: dict, crds_config, utils) -> None:
    """Remove cached files whose size or sha1 differ from the server's, so they are fetched again."""
    for name in names:
        info = metadata.get(name)
        path = crds_config.locate_file(name, "jwst")
        if not isinstance(info, dict) or not os.path.exists(path):
            continue
        bad = os.path.getsize(path) != int(info["size"])
        if not bad and info.get("sha1sum") not in (None, "", "none"):
            bad = utils.checksum(path) != info["sha1sum"]
        if bad:
            os.remove(path)
            states[name] = "repaired"

