"""The CRDS environment of a run: which context, which cache, which mode.

CRDS reads its configuration from environment variables, some of them when
``crds`` and ``jwst`` are imported, so :func:`configure` must run before
anything imports jwst.  The settings it chooses are returned so the manifest
can record them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from appliance.errors import UserError

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
            path = workdir / "crds_cache"
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
