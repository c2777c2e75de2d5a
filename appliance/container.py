"""Build the appliance image and run a recipe in it, through the Docker SDK.

    python run.py docker build [--tag T] [--base-image B] [--wheelhouse DIR] [--crds-cache DIR]
    python run.py docker run RECIPE --workdir DIR [--image T] [--network auto|none|bridge|host]

``build`` sends a build context made of exactly what the image needs (the code,
the recipes, ``container/`` and, when it is complete, the wheelhouse) and the
build arguments that carry ``container/pin.toml`` and the lock's sha256 into the
Dockerfile.  With a complete wheelhouse the build runs with ``--network none``.

``run`` checks everything it can before it starts a container (the recipe, the
workdir, the daemon, the image, the image's labels against the lock and the
recipe's ``[environment]``), so a bad request is one line, exit 2, and nothing
written.  The container then runs as the caller's uid/gid on a read-only root
filesystem with a tmpfs at /tmp, the workdir mounted read-write at /work and
the recipe's directory read-only at /recipe, without network when the inputs
are local, and with only an allow-list of environment variables (never secrets).

The image tells the manifest about itself through ``$APPLIANCE_IMAGE_ID`` and
``$APPLIANCE_IMAGE_DIGEST`` (set here, from the image's attributes) and
``/etc/appliance/image.json`` (its labels, written at build time).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from appliance.errors import UserError, WorkFailed, short_reason
from appliance.workdir import check_workdir
from appliance.pin import (
    IMAGE_DIGEST_ENV,
    IMAGE_ID_ENV,
    IMAGE_INFO_ENV,
    LABEL_CRDS_CONTEXT,
    LABEL_JWST,
    LABEL_LOCK_SHA256,
    LOCK_PATH,
    ROOT,
    build_args,
    load_pin,
    lock_sha256,
)

IMAGE_REPO = "jwst-appliance"
DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"  # the Dockerfile's default; pin it by digest
LOCAL_BASE_IMAGE = "appliance-base:bookworm"  # what container/make-base-image.sh makes
DEFAULT_WHEELHOUSE = ROOT / "container" / "wheels"

# The build context: an allow-list, the same as .dockerignore's.
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "run.py", "pyproject.toml")
CONTEXT_DIRS = ("appliance", "recipes", "container")
CONTEXT_SKIP = re.compile(r"(^|/)(__pycache__|\.pytest_cache)(/|$)|\.py[co]$")
CONTEXT_MTIME = 315532800  # 1980-01-01: a fixed time makes the context (and COPY layers) reproducible

# Where things go inside the container.
WORK_MOUNT = "/work"
RECIPE_MOUNT = "/recipe"
SECRETS_DIR = "/run/secrets"
# Absolute local inputs are mounted at the same path, except under these (the image's own).
RESERVED_PREFIXES = ("/work", "/recipe", "/tmp", "/opt", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64",
                     "/proc", "/sys", "/dev", "/run", "/var", "/boot")

# The environment a run inherits from the caller: an allow-list.  Secrets never
# travel as environment variables (`docker inspect` would show them); a MAST
# token is mounted as a file instead, for runs that have network.
PASS_ENV = ("TZ", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "COLUMNS", "NO_COLOR", "FORCE_COLOR", "PYTHONHASHSEED",
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_MAX_THREADS")
PASS_PREFIXES = ("APPLIANCE_", "DASK_")
LAUNCHER_ENV = (IMAGE_ID_ENV, IMAGE_DIGEST_ENV, IMAGE_INFO_ENV)
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE|COOKIE|AUTH", re.IGNORECASE)
MAST_TOKEN_ENV = "MAST_API_TOKEN"


# --------------------------------------------------------------------------- parser

def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``docker build`` and ``docker run`` to the CLI's sub-commands."""
    parser = subparsers.add_parser("docker", help="build the appliance image, or run a recipe in it")
    sub = parser.add_subparsers(dest="docker_command", required=True, metavar="{build,run}")

    p = sub.add_parser("build", help="build the appliance image, hermetic: locked wheels fetched on the host first")
    p.add_argument("--tag", default=None, help=f"image tag (default {IMAGE_REPO}:<jwst version of the pin>)")
    p.add_argument("--base-image", default=None,
                   help=f"base image (default $APPLIANCE_BASE_IMAGE or {DEFAULT_BASE_IMAGE}; pin it by digest, "
                        f"or make {LOCAL_BASE_IMAGE} with container/make-base-image.sh)")
    p.add_argument("--wheelhouse", type=Path, default=None,
                   help="a complete directory of the locked wheels (default container/wheels, which is filled "
                        "on the host, hash-checked, when a wheel is missing)")
    p.add_argument("--online", action="store_true",
                   help="let pip inside the build download the locked wheels from PyPI instead (needs network "
                        "in the build, and the proxy's CA where TLS is intercepted)")
    p.add_argument("--crds-cache", type=Path, default=None,
                   help="a CRDS cache directory to carry at /opt/crds instead of the synthetic context")
    p.add_argument("--crds-sync", action="store_true",
                   help="sync the pinned context's mappings from CRDS during the build (needs network)")
    p.add_argument("--network", default=None,
                   help="network of the build's RUN steps (default: none with a complete wheelhouse)")
    p.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the result, not the build log")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("run", help="run a recipe inside the appliance image")
    p.add_argument("recipe", type=Path)
    p.add_argument("--workdir", type=Path, default=None, help="host directory for the products (default work/<recipe>)")
    p.add_argument("--image", default=None, help=f"image (default {IMAGE_REPO}:<jwst version of the pin>)")
    p.add_argument("--network", choices=("auto", "none", "bridge", "host"), default="auto",
                   help="auto: none when the recipe's inputs are local or simulated, bridge for MAST")
    p.add_argument("--user", default=None, help="UID:GID inside the container (default: yours)")
    p.add_argument("--env", "-e", action="append", default=[], metavar="NAME[=VALUE]",
                   help="pass one more environment variable (never a secret)")
    p.add_argument("--allow-env-mismatch", action="store_true",
                   help="run even if the image's lock or jwst/CRDS pin differ from the recipe's or this checkout's")
    p.add_argument("--run-arg", dest="run_args", action="append", default=[], metavar="ARG",
                   help="one more argument for `run.py run` inside the container, e.g. --run-arg=--jobs=2")
    p.set_defaults(func=cmd_run)
    return parser


def default_tag() -> str:
    return f"{IMAGE_REPO}:{load_pin().jwst}"


def image_labels_from_pin() -> dict[str, str]:
    """The appliance labels an image built from this checkout carries (the pin and the lock)."""
    pin = load_pin()
    return {LABEL_JWST: pin.jwst, LABEL_CRDS_CONTEXT: pin.crds_context, LABEL_LOCK_SHA256: lock_sha256()}


# --------------------------------------------------------------------------- daemon

def connect(timeout: float = 15):
    """A Docker client whose daemon answers, or a one-line :class:`UserError`."""
    try:
        import docker
    except ImportError:
        raise UserError("the `docker` Python package is missing (it is in container/requirements.lock)") from None
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # DockerException, requests' ConnectionError, a malformed DOCKER_HOST...
        raise UserError(
            f"no Docker daemon answers at {where} ({short_reason(exc)}); start one "
            f"(container/ensure-docker.sh) or point DOCKER_HOST at one"
        ) from None
    client.api.timeout = None  # builds and reductions may be silent for long stretches
    return client



def get_image(client, name: str):
    import docker

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        raise UserError(
            f"image {name} is not in the local Docker engine: build it with `python run.py docker build"
            + ("`" if name == _safe_default_tag() else f" --tag {name}`")
        ) from None
    except docker.errors.APIError as exc:
        raise UserError(f"image {name}: {exc.explanation or exc}") from None


def _safe_default_tag() -> str:
    try:
        return default_tag()
    except UserError:
        return ""


def image_digest(image) -> str:
    """The registry digest (``repo@sha256:...``) of an image, or "" for one built here."""
    digests = image.attrs.get("RepoDigests") or []
    return digests[0] if digests else ""


# --------------------------------------------------------------------------- build

def missing_wheels(wheelhouse: Path, lock: Path = LOCK_PATH) -> list[str]:
    """The ``name==version`` pins of the lock that have no wheel in ``wheelhouse``."""
    norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()  # noqa: E731
    have = set()
    if wheelhouse.is_dir():
        for whl in wheelhouse.glob("*.whl"):
            parts = whl.name.split("-")
            if len(parts) >= 2:
                have.add((norm(parts[0]), parts[1]))
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", lock.read_text(encoding="utf-8"), re.M)
    return [f"{n}=={v}" for n, v in pins if (norm(n), v) not in have]


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


@dataclass
class BuildPlan:
    """Everything ``docker build`` will be given; made without a daemon (and tested so)."""

    tag: str
    buildargs: dict[str, str]
    network: str | None
    wheelhouse: Path | None
    crds_cache: Path | None
    files: list[tuple[Path, str]] = field(default_factory=list)  # (host path, path in the context)
    missing_wheels: list[str] = field(default_factory=list)  # to fetch on the host before building


def plan_build(args, environ=os.environ) -> BuildPlan:
    tag = args.tag or default_tag()
    base = args.base_image or environ.get("APPLIANCE_BASE_IMAGE") or DEFAULT_BASE_IMAGE
    buildargs = {**build_args(), "BASE_IMAGE": base, "VCS_REF": git_revision(), "BUILD_DATE": build_date(),
                 "SOURCE_URL": environ.get("APPLIANCE_SOURCE_URL", "")}

    online = args.online
    if online and args.wheelhouse is not None:
        raise UserError("--online and --wheelhouse exclude each other")
    wheelhouse = None if online else (args.wheelhouse if args.wheelhouse is not None else DEFAULT_WHEELHOUSE)
    if args.wheelhouse is not None and not args.wheelhouse.is_dir():
        raise UserError(f"--wheelhouse {args.wheelhouse}: no such directory (container/fetch-wheels.sh makes it)")
    missing = missing_wheels(wheelhouse) if wheelhouse is not None else []
    if missing and args.wheelhouse is not None:
        raise UserError(
            f"--wheelhouse {wheelhouse}: {len(missing)} locked wheel(s) missing, e.g. {missing[0]}; "
            f"run container/fetch-wheels.sh {wheelhouse}"
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

    files = list(context_files(wheelhouse, crds_cache))
    return BuildPlan(tag, buildargs, network, wheelhouse, crds_cache, files, missing)


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
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["sh", str(ROOT / "container" / "fetch-wheels.sh"), str(plan.wheelhouse)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        said = next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1] if lines else "")
        raise WorkFailed(f"cannot fetch the locked wheels on this host ({said[:200]}); make the package index "
                         f"reachable, copy the wheels into {plan.wheelhouse}, or build with --online")
    print(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "wheels fetched", file=sys.stderr)
    plan.files = list(context_files(plan.wheelhouse, plan.crds_cache))
    plan.missing_wheels = []


def context_files(wheelhouse: Path | None, crds_cache: Path | None):
    """(host path, context path) pairs of the build context, sorted and reproducible."""
    for name in CONTEXT_FILES:
        if (ROOT / name).is_file():
            yield ROOT / name, name
    for top in CONTEXT_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and not CONTEXT_SKIP.search(rel) and not rel.startswith("container/wheels/"):
                yield path, rel
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


def cmd_build(args) -> int:
    plan = plan_build(args)
    client = connect()
    explicit = bool(args.base_image or os.environ.get("APPLIANCE_BASE_IMAGE"))
    plan.buildargs["BASE_IMAGE"] = _ensure_base_image(client, plan.buildargs["BASE_IMAGE"], explicit=explicit)
    if plan.missing_wheels:
        fetch_wheels(plan)
    where = (f"wheelhouse {plan.wheelhouse} (pip --no-index)" if plan.wheelhouse
             else "PyPI inside the build (--online)")
    print(f"building {plan.tag} from {plan.buildargs['BASE_IMAGE']}, dependencies from {where}, "
          f"network {plan.network or 'default'}", file=sys.stderr)
    started = time.monotonic()
    image = build_image(client, plan, no_cache=args.no_cache, quiet=args.quiet)
    elapsed = time.monotonic() - started
    print(f"{plan.tag} {image.id} {image.attrs.get('Size', 0) / 1e6:.0f} MB in {elapsed:.0f} s")
    return 0


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


def _ensure_base_image(client, base: str, *, explicit: bool = True) -> str:
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


# --------------------------------------------------------------------------- run

@dataclass
class RunPlan:
    """The container a run will start: made before any daemon is asked (and tested so)."""

    workdir: Path
    command: list[str]
    volumes: dict[str, dict[str, str]]
    environment: dict[str, str]
    network: str
    user: str
    group_add: list[str]
    secret_files: dict[str, str] = field(default_factory=dict)  # container path -> value

    def run_kwargs(self) -> dict:
        return {
            "command": self.command,
            "user": self.user,
            "group_add": self.group_add,
            "environment": self.environment,
            "volumes": self.volumes,
            "working_dir": WORK_MOUNT,
            "read_only": True,
            "tmpfs": {"/tmp": "rw,nosuid,nodev,mode=1777"},
            "network_mode": self.network,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "labels": {"org.jwst-appliance.run": "1"},
        }


def plan_run(args, recipe, environ=os.environ) -> RunPlan:
    """Mounts, user, network and environment of the container for ``recipe``."""
    workdir = Path(os.path.abspath(args.workdir or Path("work") / args.recipe.stem))
    uid, gid, groups = _user(args.user)
    check_workdir_for(workdir, uid, [gid, *groups])

    recipe_file = Path(os.path.abspath(recipe.path))
    _local_inputs(recipe)  # missing files and checksum mismatches: one line now, not in the container
    # Relative inputs (also ../) resolve against the recipe's directory inside the container:
    # mount the directory that holds the recipe and all of them.  Absolute ones keep their path.
    recipe_root = recipe_file.parent
    absolute = []
    for spec in (recipe.local if recipe.input_kind == "local" else ()):
        static = _static_part(spec.path)
        if os.path.isabs(spec.path):
            absolute.append(Path(os.path.normpath(static)))
        else:
            where = Path(os.path.normpath(recipe_file.parent / static))
            recipe_root = Path(os.path.commonpath([recipe_root, where if static != spec.path else where.parent]))
    if recipe_root == Path(recipe_root.anchor):
        raise UserError(f"{recipe.path}: inputs.local: the recipe and its inputs share no directory but /; "
                        f"give the inputs as absolute paths or move them beside the recipe")
    in_container = PurePosixPath(RECIPE_MOUNT) / recipe_file.relative_to(recipe_root).as_posix()
    volumes: dict[str, dict[str, str]] = {
        str(workdir): {"bind": WORK_MOUNT, "mode": "rw"},
        str(recipe_root): {"bind": RECIPE_MOUNT, "mode": "ro"},
    }
    for path in absolute:
        reserved = next((p for p in RESERVED_PREFIXES if str(path) == p or str(path).startswith(p + "/")), None)
        if reserved:
            raise UserError(f"{recipe.path}: inputs.local: {path} lies under {reserved}, which the container "
                            f"uses itself; give it relative to the recipe or move it")
        volumes[str(path)] = {"bind": str(path), "mode": "ro"}

    network = args.network
    if network == "auto":
        network = "bridge" if recipe.input_kind == "mast" else "none"

    environment, secrets = run_environment(environ, args.env, network)
    command = ["run", str(in_container), "--workdir", WORK_MOUNT]
    if args.allow_env_mismatch:
        command.append("--allow-env-mismatch")
    command += list(args.run_args or [])
    return RunPlan(workdir, command, volumes, environment, network, f"{uid}:{gid}",
                   [str(g) for g in groups if g != gid], secrets)


def _static_part(path: str) -> str:
    """The leading components of a path or glob without glob characters (the whole path if none)."""
    parts = PurePosixPath(path).parts
    for i, part in enumerate(parts):
        if re.search(r"[*?\[]", part):
            return str(PurePosixPath(*parts[:i])) if i else "."
    return path


def _local_inputs(recipe):
    if recipe.input_kind != "local":
        return []
    from appliance.recipe import resolve_local_inputs

    return resolve_local_inputs(recipe)


def _user(spec: str | None) -> tuple[int, int, list[int]]:
    if spec is None:
        return os.getuid(), os.getgid(), sorted(set(os.getgroups()) - {os.getgid()})
    m = re.fullmatch(r"(\d+)(?::(\d+))?", spec)
    if not m:
        raise UserError(f"--user {spec}: expected UID or UID:GID (numbers)")
    uid = int(m.group(1))
    return uid, int(m.group(2) or uid), []


def check_workdir_for(workdir: Path, uid: int, gids: list[int]) -> None:
    """The workdir (or the directory it will be made in) must be writable by us, and by ``uid`` if it exists."""
    check_workdir(workdir)
    if workdir.is_dir() and not _writable_by(workdir, uid, gids):
        raise UserError(f"{workdir}: --workdir: not writable by uid {uid} (the container's user); "
                        f"fix its permissions or pass --user")


def make_workdir(workdir: Path, uid: int, gid: int) -> None:
    """Create the workdir (after every check passed); as root, hand it to the container's user."""
    existed = workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    if not existed and os.getuid() == 0 and uid != 0:
        os.chown(workdir, uid, gid)


def _writable_by(path: Path, uid: int, gids: list[int]) -> bool:
    if uid == 0:
        return True  # root; a read-only filesystem was caught by os.access above
    st = path.stat()
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IWUSR and st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IWOTH and st.st_mode & stat.S_IXOTH)


def run_environment(environ, extra: list[str], network: str) -> tuple[dict[str, str], dict[str, str]]:
    """The allow-listed environment and the secret files of a run."""
    env = {k: v for k, v in environ.items()
           if (k in PASS_ENV or k.startswith(PASS_PREFIXES)) and k not in LAUNCHER_ENV and not SECRET_NAME.search(k)}
    for item in extra:
        name, eq, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UserError(f"--env {item}: expected NAME or NAME=VALUE")
        if SECRET_NAME.search(name):
            raise UserError(f"--env {name}: secrets are not passed as environment variables "
                            f"(`docker inspect` shows them); {MAST_TOKEN_ENV} is mounted as a file when set")
        if name in LAUNCHER_ENV:
            raise UserError(f"--env {name}: set by the launcher itself")
        if eq:
            env[name] = value
        elif name in environ:
            env[name] = environ[name]
    secrets = {}
    token = environ.get(MAST_TOKEN_ENV)
    if token and network != "none":
        path = f"{SECRETS_DIR}/mast_api_token"
        secrets[path] = token
        env[MAST_TOKEN_ENV + "_FILE"] = path
    return env, secrets


def check_image(image, recipe, *, allow_mismatch: bool) -> list[str]:
    """Differences between the image's labels and this checkout's lock / the recipe's environment.

    Raises a one-line :class:`UserError` unless ``allow_mismatch``; returns them otherwise.
    """
    labels = image.labels or {}
    name = (image.tags or [image.short_id])[0]
    if LABEL_LOCK_SHA256 not in labels or LABEL_JWST not in labels:
        raise UserError(f"image {name} is not a jwst appliance image (it has no {LABEL_LOCK_SHA256} label)")
    problems = []
    here = lock_sha256()
    if labels[LABEL_LOCK_SHA256] != here:
        problems.append(
            f"image {name} was built from another lock (sha256 {labels[LABEL_LOCK_SHA256][:12]}…) than "
            f"container/requirements.lock ({here[:12]}…): rebuild it with `python run.py docker build`"
        )
    from appliance.recipe import environment_mismatches

    context = labels.get(LABEL_CRDS_CONTEXT, "")
    if recipe.input_kind == "simulate":
        try:
            from appliance.simulate import SIM_CONTEXT

            context = SIM_CONTEXT
        except ImportError:
            context = recipe.environment.crds_context
    for line in environment_mismatches(recipe, labels[LABEL_JWST], context):
        problems.append(f"{recipe.path}: environment: {line.replace('installed', f'image {name} has')}")
    if problems and not allow_mismatch:
        raise UserError(problems[0] + ("" if len(problems) == 1 else f" (and {len(problems) - 1} more)")
                        + " (pass --allow-env-mismatch to run anyway)")
    return problems


def cmd_run(args) -> int:
    from appliance.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    plan = plan_run(args, recipe)
    client = connect()
    image_name = args.image or default_tag()
    image = get_image(client, image_name)
    for line in check_image(image, recipe, allow_mismatch=args.allow_env_mismatch):
        print(f"warning: {line}", file=sys.stderr)
    plan.environment[IMAGE_ID_ENV] = image.id
    plan.environment[IMAGE_DIGEST_ENV] = image_digest(image)

    # Every check passed: only now is anything written.
    uid, gid = (int(x) for x in plan.user.split(":"))
    make_workdir(plan.workdir, uid, gid)
    with tempfile.TemporaryDirectory(prefix="appliance-secrets-") as secrets_dir:
        volumes = dict(plan.volumes)
        for target, value in plan.secret_files.items():
            host = Path(secrets_dir) / Path(target).name
            host.write_text(value, encoding="utf-8")
            host.chmod(0o400 if plan.user.split(":")[0] == str(os.getuid()) else 0o444)
            volumes[str(host)] = {"bind": target, "mode": "ro"}
        kwargs = plan.run_kwargs()
        kwargs["volumes"] = volumes
        code = _run_container(client, image, image_name, kwargs)
    if code == 0:
        manifest = plan.workdir / "manifest.json"
        if manifest.is_file():
            print(f"manifest on the host: {manifest}")
    return code


def _run_container(client, image, image_name: str, kwargs: dict) -> int:
    """Start the container, stream its output, wait, remove it; map its exit status."""
    import docker

    try:
        container = client.containers.create(image.id, **kwargs)
    except docker.errors.APIError as exc:
        raise WorkFailed(f"docker could not create the container from {image_name}: {exc.explanation or exc}") from None
    try:
        try:
            stream = client.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
            container.start()
        except docker.errors.APIError as exc:
            raise WorkFailed(f"docker could not start the container from {image_name}: {exc.explanation or exc}") from None
        for out, err in stream:
            if out:
                sys.stdout.buffer.write(out)
                sys.stdout.flush()
            if err:
                sys.stderr.buffer.write(err)
                sys.stderr.flush()
        result = container.wait()
        code = int(result.get("StatusCode", 1))
        container.reload()
        state = container.attrs.get("State", {})
    except KeyboardInterrupt:
        try:
            container.stop(timeout=10)
        except Exception:
            pass
        raise
    finally:
        try:
            container.remove(force=True)
        except Exception:
            pass
    if code in (0, 1, 2):
        return code  # the appliance inside printed its own one-line reason
    why = {137: "killed", 139: "segmentation fault", 126: "entry point not executable", 127: "entry point not found"}
    reason = "out of memory" if state.get("OOMKilled") else why.get(code, "")
    raise WorkFailed(f"the container of {image_name} exited with status {code}" + (f" ({reason})" if reason else ""))
