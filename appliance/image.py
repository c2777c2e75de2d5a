"""Build the appliance image: a reproducible build context, the pin and the lock as build arguments, hermetic.

``plan_build`` decides everything ``docker build`` will be given (made
without a daemon, and tested so): the context is exactly what the image needs
(the code, the recipes, ``container/`` and the wheelhouse), with fixed file
times and owners, and the build arguments carry the release's pin and its
lock's sha256 into the Dockerfile.  ``--release V`` builds another supported
release (:mod:`appliance.releases`): its pin and lock take the places of
``container/pin.toml`` and ``container/requirements.lock`` in the context, so the
Dockerfile and the image look the same for every release.  The locked wheels missing from
``container/wheels`` are fetched on the host first (:func:`fetch_wheels`), so
the build runs with ``--network none`` (``--online`` lets pip download inside
the build instead).
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from appliance.engine import get_image
from appliance.errors import UserError, WorkFailed, short_reason
from appliance.pin import LABEL_CRDS_CONTEXT, LABEL_JWST, LABEL_LOCK_SHA256, LOCK_PATH, ROOT, build_args, lock_pins, lock_sha256
from appliance.releases import Release, default_release, get_release

IMAGE_REPO = "jwst-appliance"


DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"  # the Dockerfile's default; pin it by digest


LOCAL_BASE_IMAGE = "appliance-base:bookworm"  # what container/make-base-image.sh makes


CONTEXT_FILES = ("Dockerfile", ".dockerignore", "run.py", "pyproject.toml")


CONTEXT_DIRS = ("appliance", "recipes", "container")


CONTEXT_SKIP = re.compile(r"(^|/)(__pycache__|\.pytest_cache)(/|$)|\.py[co]$")


CONTEXT_LEFT_OUT = ("container/wheels/", "container/releases/")  # the wheelhouse is added apart


CONTEXT_MTIME = 315532800  # 1980-01-01: a fixed time makes the context (and COPY layers) reproducible


def default_tag(release: Release | None = None) -> str:
    """``jwst-appliance:<jwst version>`` of the release (default: the default release)."""
    return f"{IMAGE_REPO}:{(release or default_release()).version}"


def image_labels_from_pin(release: Release | None = None) -> dict[str, str]:
    """The appliance labels an image of this release built from this checkout carries (the pin and the lock)."""
    release = release or default_release()
    return {LABEL_JWST: release.pin.jwst, LABEL_CRDS_CONTEXT: release.pin.crds_context,
            LABEL_LOCK_SHA256: lock_sha256(release.lock_path)}


def missing_wheels(wheelhouse: Path, lock: Path = LOCK_PATH) -> list[str]:
    """The ``name==version`` pins of the lock that have no wheel in ``wheelhouse``."""
    norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()  # noqa: E731
    have = set()
    if wheelhouse.is_dir():
        for whl in wheelhouse.glob("*.whl"):
            parts = whl.name.split("-")
            if len(parts) >= 2:
                have.add((norm(parts[0]), parts[1]))
    return [f"{n}=={v}" for n, v in lock_pins(lock) if (norm(n), v) not in have]


def git_revision(root: Path = ROOT) -> str:
    """``git rev-parse HEAD`` (plus ``-dirty`` for uncommitted changes to tracked files), or ""."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return ""
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head.stdout.strip() + ("-dirty" if dirty else "")


def build_date() -> str:
    """RFC 3339 time of the build; ``$SOURCE_DATE_EPOCH`` fixes it for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class BuildOptions:
    """What a build is asked for (``run.py docker build``'s flags)."""

    tag: str | None = None
    base_image: str | None = None
    wheelhouse: Path | None = None
    crds_cache: Path | None = None
    crds_sync: bool = False
    network: str | None = None
    online: bool = False
    no_cache: bool = False
    quiet: bool = False
    release: str | None = None  # a supported jwst release (None: the default release)


@dataclass
class BuildPlan:
    """Everything ``docker build`` will be given; made without a daemon (and tested so)."""

    tag: str
    buildargs: dict[str, str]
    network: str | None
    wheelhouse: Path | None
    crds_cache: Path | None
    release: Release
    files: list[tuple[Path, str]] = field(default_factory=list)  # (host path, path in the context)
    missing_wheels: list[str] = field(default_factory=list)  # to fetch on the host before building


def plan_build(args: BuildOptions, environ=os.environ) -> BuildPlan:
    """Everything the build will be given, decided without a daemon: tag, build arguments, context, network."""
    release = get_release(args.release)
    tag = args.tag or default_tag(release)
    base = args.base_image or environ.get("APPLIANCE_BASE_IMAGE") or DEFAULT_BASE_IMAGE
    buildargs = {**build_args(release.pin_path, release.lock_path), "BASE_IMAGE": base, "VCS_REF": git_revision(), "BUILD_DATE": build_date(),
                 "SOURCE_URL": environ.get("APPLIANCE_SOURCE_URL", "")}

    online = args.online
    if online and args.wheelhouse is not None:
        raise UserError("--online and --wheelhouse exclude each other")
    wheelhouse = None if online else (args.wheelhouse if args.wheelhouse is not None else release.wheelhouse)
    if args.wheelhouse is not None and not args.wheelhouse.is_dir():
        raise UserError(f"--wheelhouse {args.wheelhouse}: no such directory (container/fetch-wheels.sh makes it)")
    missing = missing_wheels(wheelhouse, release.lock_path) if wheelhouse is not None else []
    if missing and args.wheelhouse is not None:
        raise UserError(
            f"--wheelhouse {wheelhouse}: {len(missing)} locked wheel(s) missing, e.g. {missing[0]}; "
            f"run {'' if release.default else f'LOCK={release.lock_path.relative_to(ROOT)} '}"
            f"container/fetch-wheels.sh {wheelhouse}"
        )
    buildargs["WHEELS"] = "online" if online else "offline"
    network = args.network or ("none" if not online and not args.crds_sync else None)

    crds_cache = args.crds_cache
    if crds_cache is not None:
        if not (crds_cache / "config" / "jwst" / "server_config").is_file():
            raise UserError(f"--crds-cache {crds_cache}: not a CRDS cache (no config/jwst/server_config)")
        buildargs["CRDS_CACHE_DIR"] = "crds-cache"
    if args.crds_sync:
        if crds_cache is not None:
            raise UserError("--crds-sync and --crds-cache exclude each other")
        if network == "none":
            raise UserError("--crds-sync needs network inside the build, not --network none")
        buildargs["CRDS_SYNC"] = "1"

    files = list(context_files(wheelhouse, crds_cache, release))
    return BuildPlan(tag, buildargs, network, wheelhouse, crds_cache, release, files, missing)


def fetch_wheels(plan: BuildPlan) -> None:
    """Fill the default wheelhouse on the host (``container/fetch-wheels.sh``: hash-checked, idempotent).

    The host usually reaches the package index where a build container cannot
    (no network, or a TLS-intercepting proxy it does not trust), and a build
    from local wheels is hermetic.  A host that cannot reach the index either
    is one line naming the way out.
    """
    import subprocess

    print(f"fetching {len(plan.missing_wheels)} locked wheel(s) on the host into {plan.wheelhouse} "
          f"(hash-checked; {plan.missing_wheels[0]}{', ...' if len(plan.missing_wheels) > 1 else ''})",
          file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHON": sys.executable, "LOCK": str(plan.release.lock_path)}
    done = subprocess.run(["sh", str(ROOT / "container" / "fetch-wheels.sh"), str(plan.wheelhouse)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        said = next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1] if lines else "")
        raise WorkFailed(f"cannot fetch the locked wheels on this host ({said[:200]}); make the package index "
                         f"reachable, copy the wheels into {plan.wheelhouse}, or build with --online")
    print(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "wheels fetched", file=sys.stderr)
    plan.files = list(context_files(plan.wheelhouse, plan.crds_cache, plan.release))
    plan.missing_wheels = []


def context_files(wheelhouse: Path | None, crds_cache: Path | None, release: Release | None = None):
    """(host path, context path) pairs of the build context, sorted and reproducible.

    The release's pin and lock are ``container/pin.toml`` and ``container/requirements.lock``
    of the context; ``container/releases/`` (the other releases) stays out.
    """
    release = release or default_release()
    own = {"container/pin.toml": release.pin_path, "container/requirements.lock": release.lock_path}
    for name in CONTEXT_FILES:
        if (ROOT / name).is_file():
            yield ROOT / name, name
    for top in CONTEXT_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and not CONTEXT_SKIP.search(rel) and not rel.startswith(CONTEXT_LEFT_OUT):
                yield own.get(rel, path), rel
    if wheelhouse is not None:
        for whl in sorted(wheelhouse.glob("*.whl")):
            yield whl, f"container/wheels/{whl.name}"
    if crds_cache is not None:
        for path in sorted(crds_cache.rglob("*")):
            if path.is_file():
                yield path, "crds-cache/" + path.relative_to(crds_cache).as_posix()


def write_context(files: list[tuple[Path, str]], fileobj, edit=None) -> None:
    """A tar of the context: fixed owner and time, permissions kept as executable or not."""
    import io

    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        for host, name in files:
            info = tarfile.TarInfo(name)
            st = host.stat()
            info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
            info.mtime = CONTEXT_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if edit is not None and name.endswith(".py"):
                data = edit(name, host.read_bytes())
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.size = st.st_size
            with open(host, "rb") as fh:
                tar.addfile(info, fh)


def build(options: BuildOptions):
    """Build the image: the base image found, missing wheels fetched on the host, then the build.

    Returns ``(plan, image, seconds)``; progress lines go to stderr.
    """
    import time

    from appliance.engine import connect

    plan = plan_build(options)
    client = connect()
    explicit = bool(options.base_image or os.environ.get("APPLIANCE_BASE_IMAGE"))
    plan.buildargs["BASE_IMAGE"] = ensure_base_image(client, plan.buildargs["BASE_IMAGE"], explicit=explicit)
    if plan.missing_wheels:
        fetch_wheels(plan)
    where = (f"wheelhouse {plan.wheelhouse} (pip --no-index)" if plan.wheelhouse
             else "PyPI inside the build (--online)")
    print(f"building {plan.tag} from {plan.buildargs['BASE_IMAGE']}, dependencies from {where}, "
          f"network {plan.network or 'default'}", file=sys.stderr)
    started = time.monotonic()
    image = build_image(client, plan, no_cache=options.no_cache, quiet=options.quiet)
    return plan, image, time.monotonic() - started


def build_image(client, plan: BuildPlan, *, no_cache: bool = False, quiet: bool = False, edit=None):
    """Send the context and build; ``edit(name, data) -> data`` may change files on the way (benchmarks)."""
    last_error = None
    step, output = "", []  # the current step, and its last lines: the reason a RUN failed
    with tempfile.TemporaryFile() as ctx:
        write_context(plan.files, ctx, edit=edit)
        ctx.seek(0)
        try:
            stream = client.api.build(
                fileobj=ctx, custom_context=True, tag=plan.tag, buildargs=plan.buildargs,
                network_mode=plan.network, nocache=no_cache, rm=True, forcerm=True, pull=False, decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    last_error = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                elif "stream" in chunk:
                    text = chunk["stream"]
                    for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines():
                        if line.startswith("Step "):
                            step, output = line.split(" : ")[0], []
                        elif line.strip() and not line.startswith((" ---> ", "Removing intermediate")):
                            output = (output + [line.strip()])[-5:]
                    if not quiet:
                        sys.stderr.write(text)
                        sys.stderr.flush()
        except Exception as exc:  # the daemon went away, a bad build argument...
            last_error = getattr(exc, "explanation", None) or str(exc)
    if last_error:
        error = " ".join(str(last_error).split())
        said = next((line for line in reversed(output) if "error" in line.lower() or ": " in line), None)
        code = re.search(r"returned a non-zero code: (\d+)", error)
        if said and said not in error:
            detail = said + (f" (exit status {code.group(1)})" if code else "")
        else:
            detail = error if len(error) <= 300 else error[:297] + "..."
        raise WorkFailed(f"docker build of {plan.tag} failed{' at ' + step if step else ''}: {detail}")
    return get_image(client, plan.tag)


def ensure_base_image(client, base: str, *, explicit: bool = True) -> str:
    """The base image to build from: ``base`` if it is here or can be pulled.

    When the default base can be neither found nor pulled but the locally made
    one (container/make-base-image.sh) is here, that one is used, with a notice.
    """
    import docker

    try:
        client.images.get(base)
        return base
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise UserError(f"base image {base}: {exc.explanation or exc}") from None
    try:
        client.images.pull(base)
        return base
    except Exception as exc:
        reason = short_reason(getattr(exc, "explanation", None) or exc)
    if not explicit:
        try:
            client.images.get(LOCAL_BASE_IMAGE)
            print(f"notice: {base} cannot be pulled ({reason}); using the local {LOCAL_BASE_IMAGE}", file=sys.stderr)
            return LOCAL_BASE_IMAGE
        except docker.errors.DockerException:
            pass
        raise UserError(
            f"base image {base} cannot be pulled ({reason}) and {LOCAL_BASE_IMAGE} is not here: make it from "
            f"Debian's packages with `sudo container/make-base-image.sh` (debootstrap, ~40 s), then build again"
        )
    raise UserError(
        f"base image {base} is not here and cannot be pulled ({reason}); pull or load it, or make "
        f"{LOCAL_BASE_IMAGE} with `sudo container/make-base-image.sh` and pass --base-image {LOCAL_BASE_IMAGE}"
    )


def image_state(client, release: Release) -> str:
    """What the local engine holds for the release's default tag: built (matching lock), stale, or nothing."""
    import docker

    tag = default_tag(release)
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return f"{tag}: not built (python run.py docker build{'' if release.default else ' --release ' + release.version})"
    labels = image.labels or {}
    if labels.get(LABEL_LOCK_SHA256) != lock_sha256(release.lock_path):
        return f"{tag}: {image.short_id}, built from another lock: rebuild it"
    return f"{tag}: {image.short_id.removeprefix('sha256:')}, {image.attrs.get('Size', 0) / 1e6:.0f} MB"
