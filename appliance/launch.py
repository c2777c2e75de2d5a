"""Run a recipe inside the appliance image (:func:`run_recipe`): checked first, then one locked-down container.

Everything that can be checked is checked before a container starts (the
recipe, the workdir, the daemon, the image, the image's labels against the
lock and the recipe's ``[environment]``), so a bad request is one line, exit
2, and nothing written.  The container then runs as the caller's uid/gid on a
read-only root filesystem with a tmpfs at /tmp, the workdir mounted
read-write at /work and the recipe's directory read-only at /recipe, without
network when the inputs are local, and with only an allow-list of
environment variables (never secrets: a MAST token is mounted as a file).

The image tells the manifest about itself through ``$APPLIANCE_IMAGE_ID`` and
``$APPLIANCE_IMAGE_DIGEST`` (set here, from the image's attributes) and
``/etc/appliance/image.json`` (its labels, written at build time).
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from appliance.engine import connect, get_image, image_digest
from appliance.errors import UserError, WorkFailed
from appliance.image import default_tag
from appliance.pin import IMAGE_DIGEST_ENV, IMAGE_ID_ENV, IMAGE_INFO_ENV, LABEL_CRDS_CONTEXT, LABEL_JWST, LABEL_LOCK_SHA256, ROOT, lock_sha256
from appliance.releases import get_release, release_of_lock
from appliance.workdir import MANIFEST_NAME, check_workdir

WORK_MOUNT = "/work"


RECIPE_MOUNT = "/recipe"


SECRETS_DIR = "/run/secrets"


RESERVED_PREFIXES = ("/work", "/recipe", "/tmp", "/opt", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64",
                     "/proc", "/sys", "/dev", "/run", "/var", "/boot")


PASS_ENV = ("TZ", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "COLUMNS", "NO_COLOR", "FORCE_COLOR", "PYTHONHASHSEED",
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_MAX_THREADS")


PASS_PREFIXES = ("APPLIANCE_", "DASK_")


LAUNCHER_ENV = (IMAGE_ID_ENV, IMAGE_DIGEST_ENV, IMAGE_INFO_ENV)


SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE|COOKIE|AUTH", re.IGNORECASE)


MAST_TOKEN_ENV = "MAST_API_TOKEN"


@dataclass(frozen=True)
class RunOptions:
    """What a containerised run is asked for (``run.py docker run``'s flags)."""

    recipe: Path
    workdir: Path | None = None
    image: str | None = None
    network: str = "auto"  # auto: none for local or simulated inputs, bridge for MAST
    user: str | None = None  # UID[:GID]; default the caller's
    env: tuple[str, ...] = ()  # NAME or NAME=VALUE, never a secret
    allow_env_mismatch: bool = False
    run_args: tuple[str, ...] = ()  # more arguments for `run.py run` inside
    release: str | None = None  # the image of this supported jwst release (default: the default release)


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


def plan_run(args: RunOptions, recipe, environ=os.environ) -> RunPlan:
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
    m = re.fullmatch(r"(\d+)(?::(\d+))?", spec, re.ASCII)
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
    release = release_of_lock(labels[LABEL_LOCK_SHA256])
    if release is None or release.version != labels[LABEL_JWST]:
        try:
            own = get_release(labels[LABEL_JWST])
        except UserError:
            own = None
        if own is None:
            problems.append(f"image {name} holds jwst {labels[LABEL_JWST]}, which is not a release this "
                            f"checkout supports (`python run.py releases` lists them)")
        else:
            here = lock_sha256(own.lock_path)
            rebuild = "python run.py docker build" + ("" if own.default else f" --release {own.version}")
            problems.append(
                f"image {name} was built from another lock (sha256 {labels[LABEL_LOCK_SHA256][:12]}…) than "
                f"{own.lock_path.relative_to(ROOT)} ({here[:12]}…): rebuild it with `{rebuild}`"
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


def run_recipe(args: RunOptions) -> int:
    """Run the recipe in the image; the container's exit status (0, 1 or 2, each with its own one line)."""
    from appliance.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    plan = plan_run(args, recipe)
    client = connect()
    release = get_release(args.release)
    image_name = args.image or default_tag(release)
    build = "python run.py docker build" + ("" if release.default else f" --release {release.version}")
    image = get_image(client, image_name, build + ("" if image_name == default_tag(release) else f" --tag {image_name}"))
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
        manifest = plan.workdir / MANIFEST_NAME
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
