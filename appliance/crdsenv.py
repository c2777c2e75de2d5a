"""What a run tells CRDS: context, cache, mode, server, and whether ``pars-*`` step parameters apply.

CRDS and stpipe read these from environment variables, some of them when
``crds`` and ``jwst`` are imported, so :func:`configure` runs before anything
imports jwst, and :func:`applied` sets them for a stretch of work and puts the
caller's environment back afterwards (``fetch`` and ``reproduce`` need the
user's own CRDS server address once the run's offline settings are no longer
wanted).  The manifest records the settings.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# Any address that cannot resolve: in local mode nothing should ever be asked of
# a server, and an unresolvable name fails at once where an outbound connection would hang.
OFFLINE_SERVER_URL = "https://crds-offline.invalid"
DEFAULT_SERVER_URL = "https://jwst-crds.stsci.edu"
DEFAULT_CACHE = Path.home() / "crds_cache"
#: A bounded retry of the crds client's server calls, unless the user set their own (:func:`applied`).
CLIENT_RETRIES = {"CRDS_CLIENT_RETRY_COUNT": "3", "CRDS_CLIENT_RETRY_DELAY_SECONDS": "1"}
#: Every variable :meth:`CrdsSettings.as_env` and :func:`applied` may set (what :func:`applied` restores).
VARIABLES = ("CRDS_CONTEXT", "CRDS_PATH", "CRDS_MODE", "CRDS_SERVER_URL", "CRDS_OBSERVATORY",
             "STPIPE_DISABLE_CRDS_STEPPARS", *CLIENT_RETRIES)


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


def reference_file(cache: Path, name: str) -> Path | None:
    """Where a reference file lies in a CRDS cache (``references/jwst/<instrument>/<name>``), or None."""
    base = Path(cache) / "references" / "jwst"
    parts = name.split("_")
    for candidate in ([base / parts[1] / name] if len(parts) > 2 else []) + [base / name]:
        if candidate.is_file():
            return candidate
    return next((p for p in base.rglob(name) if p.is_file()), None) if base.is_dir() else None


def for_real_data(context: str, *, use_step_pars: bool, environ=os.environ) -> CrdsSettings:
    """Real data use ``$CRDS_PATH`` (default ``~/crds_cache``) in the user's mode, ``local`` by default,
    so a reduction never reaches for the network unless asked to (``fetch`` does the downloading)."""
    mode = environ.get("CRDS_MODE", "local")
    default_url = OFFLINE_SERVER_URL if mode == "local" else DEFAULT_SERVER_URL
    return CrdsSettings(context, environ.get("CRDS_PATH") or str(DEFAULT_CACHE), mode,
                        environ.get("CRDS_SERVER_URL", default_url), use_step_pars)


def for_fetch(settings: CrdsSettings, environ=os.environ) -> CrdsSettings:
    """The run's settings with a reachable server and mode ``auto`` (rules evaluated locally, files downloaded).

    ``environ`` is the user's environment, not the run's offline one.
    """
    url = environ.get("CRDS_SERVER_URL") or DEFAULT_SERVER_URL
    if url == OFFLINE_SERVER_URL:
        url = DEFAULT_SERVER_URL
    return replace(settings, mode="auto", server_url=url)


def configure(settings: CrdsSettings) -> None:
    """Put the settings into ``os.environ`` for the rest of this process (a run: before jwst is imported)."""
    apply_env(settings.as_env())


def apply_env(env: dict[str, str]) -> None:
    """Put :meth:`CrdsSettings.as_env`'s variables into ``os.environ`` (in a run, or in a worker the run's
    client sent them to); no ``STPIPE_DISABLE_CRDS_STEPPARS`` among them means ``pars-*`` files apply."""
    os.environ.update(env)
    if "STPIPE_DISABLE_CRDS_STEPPARS" not in env:
        os.environ.pop("STPIPE_DISABLE_CRDS_STEPPARS", None)


@contextmanager
def applied(settings: CrdsSettings):
    """The settings in ``os.environ`` inside the block; the caller's CRDS variables back afterwards."""
    saved = {name: os.environ.get(name) for name in VARIABLES}
    configure(settings)
    for name, value in CLIENT_RETRIES.items():
        os.environ.setdefault(name, value)
    try:
        yield settings
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
