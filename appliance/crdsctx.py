"""The CRDS environment of a run: which context, which cache, which mode.

CRDS reads its configuration from environment variables, some of them when
``crds`` and ``jwst`` are imported, so :func:`configure` must run before
anything imports jwst.  The settings it chooses are returned so the manifest
can record them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance.errors import UserError, short_reason
from appliance.files import utc_now
from appliance.pipelines import STAGES
from appliance.workdir import CRDS_CACHE_DIR

# Any address that cannot resolve: in local mode nothing should ever be asked of
# a server, and an unresolvable name fails at once where an outbound
# connection would hang.
OFFLINE_SERVER_URL = "https://crds-offline.invalid"
DEFAULT_CACHE = Path.home() / "crds_cache"


@dataclass(frozen=True)
class CrdsSettings:
    """What the run told CRDS; recorded in the manifest."""

    context: str
    path: str
    mode: str
    server_url: str
    use_step_pars: bool

    def as_env(self) -> dict[str, str]:
        """The environment variables that make crds and stpipe use these settings."""
        env = {
            "CRDS_CONTEXT": self.context,
            "CRDS_PATH": self.path,
            "CRDS_MODE": self.mode,
            "CRDS_SERVER_URL": self.server_url,
            "CRDS_OBSERVATORY": "jwst",
        }
        if not self.use_step_pars:
            env["STPIPE_DISABLE_CRDS_STEPPARS"] = "True"
        return env

    def as_dict(self) -> dict:
        return asdict(self)


def cache_holds_context(cache: Path, context: str) -> bool:
    """True when ``cache`` already has the mappings and configuration of ``context``."""
    return (cache / "mappings" / "jwst" / context).is_file() and (
        cache / "config" / "jwst" / "server_config"
    ).is_file()


def choose_settings(
    context: str, *, use_step_pars: bool, simulated: bool, workdir: Path, environ=os.environ
) -> CrdsSettings:
    """Decide the cache and mode for a run.

    Simulated observations use the synthetic context: the cache named by
    ``$CRDS_PATH`` when it already holds it (the image bakes it in), else one
    built inside the workdir.  Real data use ``$CRDS_PATH`` (default
    ``~/crds_cache``) in the mode the user set, ``local`` by default, so a
    reduction never reaches for the network unless asked to (``fetch`` does the
    downloading).
    """
    env_path = environ.get("CRDS_PATH")
    if simulated:
        from appliance.simulate import SIM_CONTEXT

        if context != SIM_CONTEXT:
            raise UserError(
                f"environment.crds_context: simulated observations use the synthetic context "
                f"{SIM_CONTEXT}, the recipe names {context}"
            )
        if env_path and cache_holds_context(Path(env_path), context):
            path = Path(env_path)
        else:
            path = workdir / CRDS_CACHE_DIR
        return CrdsSettings(context, str(path), "local", OFFLINE_SERVER_URL, use_step_pars)
    mode = environ.get("CRDS_MODE", "local")
    default_url = OFFLINE_SERVER_URL if mode == "local" else "https://jwst-crds.stsci.edu"
    return CrdsSettings(
        context,
        env_path or str(DEFAULT_CACHE),
        mode,
        environ.get("CRDS_SERVER_URL", default_url),
        use_step_pars,
    )


def configure(settings: CrdsSettings) -> None:
    """Put the settings into ``os.environ``, once, before jwst is imported."""
    os.environ.update(settings.as_env())
    if settings.use_step_pars:
        os.environ.pop("STPIPE_DISABLE_CRDS_STEPPARS", None)


def prepare_cache(settings: CrdsSettings, simulated: bool) -> None:
    """Make sure the cache can serve the context (build the synthetic one when needed)."""
    cache = Path(settings.path)
    if simulated and not cache_holds_context(cache, settings.context):
        from appliance.simulate import build_crds_cache

        build_crds_cache(cache)
    if settings.mode == "local" and not cache_holds_context(cache, settings.context):
        raise UserError(
            f"environment.crds_context: {settings.context} is not in the CRDS cache {cache} "
            f"(run `python run.py fetch` with network first, or set CRDS_PATH)"
        )


# --------------------------------------------------------------------------- fetch: reference prefetch
#
# `fetch` runs with the network; `run` may follow without it (`--network none`).
# So fetch must leave in the cache every mapping of the context and every
# reference any stage of the run will ask CRDS for, plus the cache's
# `config/jwst/server_config`, which local mode reads.

DEFAULT_SERVER_URL = "https://jwst-crds.stsci.edu"


def needs_prefetch(context: str, environ=os.environ, *, simulated: bool = False) -> bool:
    """Whether ``fetch`` downloads the context: not the synthetic one, unless a server is named for it.

    Simulated recipes build their synthetic cache locally, whatever server a
    user's shell names.
    """
    from appliance.simulate import SIM_CONTEXT

    if simulated:
        return False
    return context != SIM_CONTEXT or bool(environ.get("CRDS_SERVER_URL"))


def settings_for_fetch(settings: CrdsSettings, environ=os.environ) -> CrdsSettings:
    """The run's settings with a reachable server and mode ``auto`` (rules evaluated locally, files downloaded).

    ``environ`` is the user's environment as it was before :func:`configure`
    pointed CRDS at the offline address.
    """
    from dataclasses import replace

    url = environ.get("CRDS_SERVER_URL") or DEFAULT_SERVER_URL
    if url == OFFLINE_SERVER_URL:
        url = DEFAULT_SERVER_URL
    return replace(settings, mode="auto", server_url=url)


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

    from appliance.errors import WorkFailed

    configure(settings)
    os.environ.setdefault("CRDS_CLIENT_RETRY_COUNT", "3")
    os.environ.setdefault("CRDS_CLIENT_RETRY_DELAY_SECONDS", "1")
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

    from appliance.errors import WorkFailed

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

