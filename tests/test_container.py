"""The pinned image and its Docker SDK launcher (appliance.image, appliance.launch, appliance.engine, appliance.pin).

Unmarked tests need no Docker daemon: they check the lock, the pin, the
Dockerfile, and the options the launcher would give Docker.  Tests marked
``container`` build the image and run the demo recipe in it with a real engine
(``pytest -m container``; CI runs them after container/ensure-docker.sh).  They
skip when no daemon answers, unless APPLIANCE_REQUIRE_DOCKER=1 (CI) makes that a
failure.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from appliance import engine, launch, pin, releases
from appliance import image as appliance_image
from appliance.errors import WorkFailed
from appliance.errors import UserError
from appliance.recipe import load_recipe
from conftest import assert_same_science

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "container" / "requirements.lock"
DOCKERFILE = ROOT / "Dockerfile"
DEMO = ROOT / "recipes" / "demo.toml"
DEAD_SOCKET = "unix:///nonexistent/appliance-test/docker.sock"


def cli(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def run_args(**kw) -> launch.RunOptions:
    return launch.RunOptions(**{"recipe": DEMO, **kw})


def build_args_ns(**kw) -> appliance_image.BuildOptions:
    return appliance_image.BuildOptions(**{"quiet": True, **kw})


RECIPE_HEAD = """\
schema = 1

[recipe]
name = "t"

[environment]
jwst = "3.0.0"
crds_context = "jwst_1584.pmap"
"""


def local_recipe(directory: Path, entries: str) -> Path:
    path = directory / "r.toml"
    path.write_text(RECIPE_HEAD + f"\n[inputs]\nlocal = {entries}\n")
    return path


# ------------------------------------------------------------------ the lock

def lock_pins() -> dict[str, str]:
    return {re.sub(r"[-_.]+", "-", n).lower(): v
            for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK.read_text(), re.M)}


def test_lock_pins_every_distribution_with_hashes():
    text = LOCK.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2] if text.startswith("#") else text)
    requirements = [b for b in blocks if "==" in b.split("\n")[0]]
    assert len(requirements) == len(lock_pins()) > 50
    for block in requirements:
        assert "--hash=sha256:" in block, block.split("\n")[0]


def test_lock_covers_pyproject_dependencies_and_pin():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = lock_pins()
    for dep in deps:
        name = re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in pins, f"{name} is not in the lock"
    assert pins["jwst"] == pin.load_pin().jwst


def test_lock_header_names_the_command():
    assert "container/lock.sh" in LOCK.read_text().split("\n", 3)[1]
    script = (ROOT / "container" / "lock.sh").read_text()
    for flag in ("--generate-hashes", "--python-version 3.11.2", "--python-platform x86_64-manylinux_2_28"):
        assert flag in script


# ------------------------------------------------------------------ the pin

def test_pin_reads_the_pair():
    p = pin.load_pin()
    assert re.fullmatch(r"\d+\.\d+\.\d+", p.jwst) and re.fullmatch(r"jwst_\d{4}\.pmap", p.crds_context)


@pytest.mark.parametrize("text, message", [
    ('jwst = "3.0.0"\n', r"crds_context: expected a string like jwst_NNNN.pmap, found None"),
    ('jwst = 3\ncrds_context = "jwst_1584.pmap"\n', r"jwst: expected a string like X.Y.Z, found 3"),
    ('jwst = "3.0.0"\ncrds_context = "jwst_1584.pmap"\nextra = 1\n', r"unknown key 'extra'"),
    ('jwst = "3.0.0\n', r"not valid TOML"),
])
def test_pin_errors_are_one_line(tmp_path, text, message):
    path = tmp_path / "pin.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        pin.load_pin(path)
    assert "\n" not in str(info.value)


def test_pin_numbers_are_not_repeated():
    """The pin is the one place naming the jwst release and its CRDS context."""
    p = pin.load_pin()
    for path in (DOCKERFILE, ROOT / "run.py", ROOT / ".dockerignore", *(ROOT / "container").glob("*.sh"),
                 *(ROOT / "container").glob("*.py"), *(ROOT / "appliance" / name for name in ("image.py", "launch.py", "engine.py", "pin.py"))):
        text = path.read_text()
        assert p.crds_context not in text and f"jwst=={p.jwst}" not in text and f'"{p.jwst}"' not in text, path


def test_image_info_from_environment(tmp_path):
    info = tmp_path / "image.json"
    info.write_text(json.dumps({pin.LABEL_JWST: "3.0.0"}))
    got = pin.read_image_info({pin.IMAGE_INFO_ENV: str(info), pin.IMAGE_ID_ENV: "sha256:abc"})
    assert got == {"id": "sha256:abc", "digest": None, "labels": {pin.LABEL_JWST: "3.0.0"}}
    assert pin.read_image_info({pin.IMAGE_INFO_ENV: str(tmp_path / "none.json")}) is None


# ------------------------------------------------------------------ the Dockerfile

def dockerfile_labels() -> set[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    label_lines = [line for line in text.splitlines() if line.startswith("LABEL ")]
    return {m for line in label_lines for m in re.findall(r"([a-z][a-z0-9.-]+)=", line)}


def test_dockerfile_labels_equal_image_json_labels():
    """The LABEL instruction and finalize-image.py's image.json carry the same set."""
    expected = set(pin.image_labels(jwst="x", crds_context="y", lock_sha256="z", appliance_version="v"))
    assert dockerfile_labels() == expected
    assert {pin.LABEL_JWST, pin.LABEL_CRDS_CONTEXT, pin.LABEL_LOCK_SHA256} <= expected
    assert all(k.startswith(("org.opencontainers.image.", pin.LABEL_PREFIX)) for k in expected)


def test_dockerfile_shape():
    text = DOCKERFILE.read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0].startswith("ARG BASE_IMAGE=")
    assert not re.search(r"^#\s*syntax\s*=", text, re.M)  # no frontend image to pull
    assert not any("--mount" in line for line in lines)  # the classic builder has no RUN --mount
    assert "--require-hashes --no-deps" in text and "--no-index --find-links" in text
    final = text[text.rindex("\nFROM "):]
    assert "COPY --from=deps /opt/venv /opt/venv" in final  # the final stage copies only the venv
    # the dependency layers come before the code layer
    assert final.index("COPY --from=deps") < final.index("COPY appliance")
    assert re.search(r"^USER appliance$", final, re.M) and "useradd" in final
    assert re.search(r"^WORKDIR /work$", final, re.M)
    assert re.search(r'^ENTRYPOINT \["python", "/opt/appliance/run.py"\]$', final, re.M)
    for env in ("CRDS_PATH=/opt/crds", "CRDS_READONLY_CACHE=1", "CRDS_MODE=local", "CRDS_CONTEXT=${CRDS_CONTEXT}",
                "HOME=/tmp", "APPLIANCE_IMAGE_INFO=/etc/appliance/image.json"):
        assert env in final


def test_the_crds_stage_copies_everything_the_simulator_imports():
    """The image's CRDS stage builds the synthetic cache with appliance.simulate alone: every module it
    imports (at any depth, as tests/test_architecture.py reads them) must be in that stage's COPY lines."""
    from test_architecture import imports_of, modules

    known = modules()
    needed, todo = set(), ["appliance.simulate"]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        todo += [t for t, _ in imports_of(name, known[name], known)]
    stage = DOCKERFILE.read_text().split("FROM deps AS crds", 1)[1].split("\nFROM ", 1)[0]
    copied = " ".join(line for line in stage.splitlines() if line.startswith("COPY "))
    for name in sorted(needed):
        rel = known[name].relative_to(ROOT).as_posix()
        assert rel in copied or any(rel.startswith(d) for d in re.findall(r"(appliance/\w+)/? ", copied)), rel


def test_dockerignore_matches_the_launcher_context():
    allowed = {line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert allowed == set(appliance_image.CONTEXT_FILES) - {".dockerignore"} | set(appliance_image.CONTEXT_DIRS)


# ------------------------------------------------------------------ build plan (no daemon)

def fake_wheelhouse(directory: Path, skip: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, (name, version) in enumerate(lock_pins().items()):
        if i >= skip:
            (directory / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"")
    return directory


def test_build_plan_with_complete_wheelhouse_is_hermetic(tmp_path):
    plan = appliance_image.plan_build(build_args_ns(wheelhouse=fake_wheelhouse(tmp_path / "w"), base_image="base:1"), {})
    p = pin.load_pin()
    assert plan.network == "none"
    assert plan.tag == f"jwst-appliance:{p.jwst}"
    assert plan.buildargs["JWST_VERSION"] == p.jwst and plan.buildargs["CRDS_CONTEXT"] == p.crds_context
    assert plan.buildargs["LOCK_SHA256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert plan.buildargs["BASE_IMAGE"] == "base:1"
    names = [name for _, name in plan.files]
    assert names == list(dict.fromkeys(names))  # no duplicates
    assert {"Dockerfile", "run.py", "pyproject.toml", "container/requirements.lock", "container/pin.toml",
            "appliance/launch.py", "recipes/demo.toml"} <= set(names)
    assert sum(n.startswith("container/wheels/") for n in names) == len(lock_pins())
    assert not any(n.startswith((".venv", ".git/", "tests/", "work/")) or "__pycache__" in n for n in names)


def test_build_plan_incomplete_wheelhouse(tmp_path):
    with pytest.raises(UserError, match=r"--wheelhouse .*: 2 locked wheel\(s\) missing, e\.g\. .*fetch-wheels\.sh"):
        appliance_image.plan_build(build_args_ns(wheelhouse=fake_wheelhouse(tmp_path / "w", skip=2)), {})
    with pytest.raises(UserError, match="no such directory"):
        appliance_image.plan_build(build_args_ns(wheelhouse=tmp_path / "none"), {})


def test_build_plan_fetches_an_incomplete_default_wheelhouse_on_the_host(tmp_path, monkeypatch):
    monkeypatch.setattr(releases, "DEFAULT_WHEELHOUSE", fake_wheelhouse(tmp_path / "w", skip=3))
    plan = appliance_image.plan_build(build_args_ns(), {})
    assert len(plan.missing_wheels) == 3 and plan.wheelhouse == tmp_path / "w"
    assert plan.network == "none" and plan.buildargs["WHEELS"] == "offline"  # --no-index in the Dockerfile
    online = appliance_image.plan_build(build_args_ns(online=True), {})
    assert online.missing_wheels == [] and online.wheelhouse is None
    assert online.network is None and online.buildargs["WHEELS"] == "online"
    with pytest.raises(UserError, match="--online and --wheelhouse exclude each other"):
        appliance_image.plan_build(build_args_ns(online=True, wheelhouse=tmp_path / "w"), {})


def test_a_host_that_cannot_reach_the_index_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(releases, "DEFAULT_WHEELHOUSE", tmp_path / "wheels")
    monkeypatch.setenv("WHEELS_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    plan = appliance_image.plan_build(build_args_ns(), {})
    with pytest.raises(WorkFailed) as info:
        appliance_image.fetch_wheels(plan)
    message = str(info.value)
    assert message.startswith("cannot fetch the locked wheels on this host (") and "\n" not in message
    assert "--online" in message


def test_dockerfile_installs_offline_by_default():
    text = DOCKERFILE.read_text()
    assert "ARG WHEELS=offline" in text
    assert 'if [ "${WHEELS}" = online ]; then source=""' in text
    assert 'source="--no-index --find-links /wheels"' in text and "container/wheels/ is empty" in text


def test_build_plan_crds_cache(tmp_path):
    cache = tmp_path / "crds"
    (cache / "config" / "jwst").mkdir(parents=True)
    (cache / "config" / "jwst" / "server_config").write_text("{}")
    (cache / "mappings" / "jwst").mkdir(parents=True)
    (cache / "mappings" / "jwst" / "x.pmap").write_text("header")
    plan = appliance_image.plan_build(build_args_ns(crds_cache=cache, wheelhouse=fake_wheelhouse(tmp_path / "w")), {})
    assert plan.buildargs["CRDS_CACHE_DIR"] == "crds-cache"
    assert "crds-cache/mappings/jwst/x.pmap" in [n for _, n in plan.files]
    with pytest.raises(UserError, match="not a CRDS cache"):
        appliance_image.plan_build(build_args_ns(crds_cache=tmp_path), {})


def test_build_context_is_reproducible(tmp_path):
    plan = appliance_image.plan_build(build_args_ns(wheelhouse=fake_wheelhouse(tmp_path / "w")), {})
    tars = []
    for _ in range(2):
        buf = io.BytesIO()
        appliance_image.write_context(plan.files, buf)
        tars.append(buf.getvalue())
    assert tars[0] == tars[1]
    with tarfile.open(fileobj=io.BytesIO(tars[0])) as tar:
        member = tar.getmember("container/ensure-docker.sh")
        assert member.mode == 0o755 and member.uid == 0 and member.mtime == appliance_image.CONTEXT_MTIME


# ------------------------------------------------------------------ run plan (no daemon)

def test_run_plan_demo(tmp_path):
    recipe = load_recipe(DEMO)
    plan = launch.plan_run(run_args(workdir=tmp_path / "w"), recipe, environ={})
    kw = plan.run_kwargs()
    assert plan.network == "none" and kw["network_mode"] == "none"  # simulated inputs need no network
    assert kw["read_only"] is True and "/tmp" in kw["tmpfs"]
    assert kw["user"] == f"{os.getuid()}:{os.getgid()}"
    assert kw["volumes"][str(tmp_path / "w")] == {"bind": "/work", "mode": "rw"}
    assert kw["volumes"][str(DEMO.parent)] == {"bind": "/recipe", "mode": "ro"}
    assert kw["command"] == ["run", "/recipe/demo.toml", "--workdir", "/work"]
    assert kw["working_dir"] == "/work" and kw["cap_drop"] == ["ALL"]
    assert not (tmp_path / "w").exists()  # planning writes nothing


def test_run_plan_passes_flags_and_network(tmp_path):
    recipe = load_recipe(DEMO)
    plan = launch.plan_run(run_args(workdir=tmp_path / "w", allow_env_mismatch=True, network="bridge",
                                       run_args=("--jobs=2",), user="1234:99"), recipe, environ={})
    assert plan.command[-2:] == ["--allow-env-mismatch", "--jobs=2"]
    assert plan.network == "bridge" and plan.user == "1234:99"


def test_run_environment_allow_list_without_secrets():
    environ = {"TZ": "UTC", "OMP_NUM_THREADS": "2", "APPLIANCE_EXECUTOR": "process", "HOME": "/root",
               "PATH": "/bin", "CRDS_PATH": "/host/crds", "AWS_SECRET_ACCESS_KEY": "x", "APPLIANCE_TOKEN": "x",
               "MAST_API_TOKEN": "tok", "APPLIANCE_IMAGE_ID": "forged", "FOO": "bar"}
    env, secrets = launch.run_environment(environ, ["FOO"], "none")
    assert env == {"TZ": "UTC", "OMP_NUM_THREADS": "2", "APPLIANCE_EXECUTOR": "process", "FOO": "bar"}
    assert secrets == {}  # no network, no token
    env, secrets = launch.run_environment(environ, [], "bridge")
    assert "tok" not in env.values() and env["MAST_API_TOKEN_FILE"] == "/run/secrets/mast_api_token"
    assert secrets == {"/run/secrets/mast_api_token": "tok"}
    with pytest.raises(UserError, match="secrets are not passed"):
        launch.run_environment(environ, ["MAST_API_TOKEN"], "bridge")
    with pytest.raises(UserError, match="set by the launcher"):
        launch.run_environment(environ, ["APPLIANCE_IMAGE_ID=x"], "none")


def test_run_plan_local_inputs(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "recipes").mkdir()
    for name in ("a_uncal.fits", "b_uncal.fits"):
        (tmp_path / "data" / name).write_bytes(b"x")
    recipe = load_recipe(local_recipe(tmp_path / "recipes", '["../data/*_uncal.fits"]'))
    plan = launch.plan_run(run_args(workdir=tmp_path / "w", recipe=recipe.path), recipe, environ={})
    # ../data must resolve inside the container: the mount widens to the common directory
    assert plan.volumes[str(tmp_path)] == {"bind": "/recipe", "mode": "ro"}
    assert plan.command[1] == "/recipe/recipes/r.toml"
    assert plan.network == "none"


def test_run_plan_absolute_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "RESERVED_PREFIXES", ("/work", "/opt"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "a_rate.fits").write_bytes(b"x")
    recipe = load_recipe(local_recipe(tmp_path, f'["{data}/a_rate.fits"]'))
    plan = launch.plan_run(run_args(workdir=tmp_path / "w", recipe=recipe.path), recipe, environ={})
    assert plan.volumes[str(data / "a_rate.fits")] == {"bind": str(data / "a_rate.fits"), "mode": "ro"}
    monkeypatch.setattr(launch, "RESERVED_PREFIXES", (str(tmp_path),))
    with pytest.raises(UserError, match=r"inputs\.local: .* lies under .*, which the container uses itself"):
        launch.plan_run(run_args(workdir=tmp_path / "w", recipe=recipe.path), recipe, environ={})


def test_workdir_checks(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="expected a directory, found a file"):
        launch.check_workdir_for(tmp_path / "file", os.getuid(), [])
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    other = os.getuid() + 4321
    with pytest.raises(UserError, match=rf"not writable by uid {other}"):
        launch.check_workdir_for(locked, other, [other])
    launch.check_workdir_for(tmp_path / "new" / "deeper", os.getuid(), [])  # creatable
    assert not (tmp_path / "new").exists()


def test_missing_daemon_is_one_line_exit_2(tmp_path):
    """No daemon (DOCKER_HOST names a dead socket): exit 2, one line, nothing written."""
    for args in (("docker", "run", str(DEMO), "--workdir", str(tmp_path / "w")), ("docker", "build")):
        done = cli(*args, env={"DOCKER_HOST": DEAD_SOCKET})
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: no Docker daemon answers at "), done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "w").exists()


def test_connect_error_names_the_reason(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(UserError, match=r"no Docker daemon answers at tcp://127\.0\.0\.1:9 \(.*refused.*\)"):
        engine.connect(timeout=5)


# ================================================================== with a Docker engine

def _daemon_or_skip():
    try:
        return engine.connect(timeout=10)
    except UserError as exc:
        if os.environ.get("APPLIANCE_REQUIRE_DOCKER") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _base_image(client) -> str:
    """The base image to build from; without one the container tests skip with the command that makes it."""
    wanted = os.environ.get("APPLIANCE_BASE_IMAGE")
    for name in ([wanted] if wanted else [appliance_image.LOCAL_BASE_IMAGE, appliance_image.DEFAULT_BASE_IMAGE]):
        try:
            client.images.get(name)
            return name
        except Exception:
            pass
    if not wanted:
        try:
            client.images.pull(appliance_image.DEFAULT_BASE_IMAGE)
            return appliance_image.DEFAULT_BASE_IMAGE
        except Exception:
            pass
    reason = (f"no base image ({wanted or appliance_image.LOCAL_BASE_IMAGE + ' or ' + appliance_image.DEFAULT_BASE_IMAGE}): "
              f"make one with `sudo container/make-base-image.sh`")
    if os.environ.get("APPLIANCE_REQUIRE_DOCKER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    return _daemon_or_skip()


@pytest.fixture(scope="session")
def image(docker_client):
    """The appliance image of this checkout (a cached rebuild when CI built it just before)."""
    tag = appliance_image.default_tag()
    done = cli("docker", "build", "--quiet", "--base-image", _base_image(docker_client), "--tag", tag)
    assert done.returncode == 0, done.stderr[-3000:]
    return docker_client.images.get(tag)


@pytest.fixture(scope="session")
def release_images(docker_client, image):
    """The images of the other supported releases (cached rebuilds when they were built before)."""
    from appliance.releases import all_releases

    built = {}
    for release in all_releases():
        if release.default:
            built[release.version] = image
            continue
        done = cli("docker", "build", "--quiet", "--release", release.version,
                   "--base-image", _base_image(docker_client))
        assert done.returncode == 0, done.stderr[-3000:]
        built[release.version] = docker_client.images.get(appliance_image.default_tag(release))
    return built


@pytest.fixture(scope="session")
def container_demo(image, tmp_path_factory) -> Path:
    """The demo run once in the default image, with --network none; its workdir is the 3.0.0 side of
    test_regress's regression (``<dir>/<release>/``), so that side is reused there."""
    workdir = tmp_path_factory.mktemp("regress") / pin.load_pin().jwst
    done = cli("docker", "run", str(DEMO), "--workdir", str(workdir), "--network", "none")
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


@pytest.mark.container
def test_a_fresh_checkout_builds_hermetically_fetching_the_wheels_on_the_host(docker_client, image, tmp_path):
    """A build context with an empty container/wheels/: the launcher fetches the locked wheels on the host,
    then builds with pip --no-index and no network at all."""
    copy = tmp_path / "checkout"
    for name in appliance_image.CONTEXT_FILES:
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).write_bytes((ROOT / name).read_bytes())
    for top in appliance_image.CONTEXT_DIRS:
        shutil.copytree(ROOT / top, copy / top, ignore=shutil.ignore_patterns("wheels", "__pycache__"))
    (copy / "run.py").chmod(0o755)
    assert not (copy / "container" / "wheels").exists()
    tag = "appliance-test-fresh:1"
    done = subprocess.run([sys.executable, str(copy / "run.py"), "docker", "build", "--quiet", "--tag", tag,
                           "--base-image", _base_image(docker_client)], cwd=copy, capture_output=True, text=True)
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"fetching {len(lock_pins())} locked wheel(s) on the host into {copy / 'container' / 'wheels'}" \
            in done.stderr
        assert "(pip --no-index), network none" in done.stderr
        assert not appliance_image.missing_wheels(copy / "container" / "wheels", copy / "container" / "requirements.lock")
        assert docker_client.images.get(tag).labels[pin.LABEL_LOCK_SHA256] == image.labels[pin.LABEL_LOCK_SHA256]
    finally:
        try:
            docker_client.images.remove(tag, force=True)
        except Exception:
            pass


@pytest.mark.container
def test_image_labels_and_image_json(docker_client, image):
    labels = image.labels
    assert {k: labels[k] for k in appliance_image.image_labels_from_pin()} == appliance_image.image_labels_from_pin()
    raw = docker_client.containers.run(image.id, entrypoint=["cat", "/etc/appliance/image.json"], remove=True,
                                       network_mode="none")
    assert json.loads(raw) == labels
    env = dict(e.split("=", 1) for e in image.attrs["Config"]["Env"])
    assert env["CRDS_CONTEXT"] == pin.load_pin().crds_context and env["CRDS_PATH"] == "/opt/crds"
    assert image.attrs["Config"]["User"] == "appliance"
    assert image.attrs["Size"] < 1.0e9


@pytest.mark.container
def test_version_runs_read_only_as_any_uid(docker_client, image):
    out = docker_client.containers.run(image.id, ["--version"], remove=True, network_mode="none", read_only=True,
                                       tmpfs={"/tmp": ""}, user="4321:4321")
    assert out.decode().strip().startswith("run.py ")


@pytest.mark.container
def test_lock_mismatch_is_exit_2(docker_client, image, tmp_path):
    """An image built from another lock: one line, exit 2, nothing written."""
    other = "appliance-test-otherlock:1"
    docker_client.images.build(
        fileobj=io.BytesIO(f"FROM {image.id}\nLABEL {pin.LABEL_LOCK_SHA256}={'0' * 64}\n".encode()),
        tag=other, rm=True, network_mode="none")
    try:
        done = cli("docker", "run", str(DEMO), "--workdir", str(tmp_path / "w"), "--image", other)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "was built from another lock" in done.stderr
        assert not (tmp_path / "w").exists()
    finally:
        docker_client.images.remove(other, force=True)


@pytest.mark.container
def test_recipe_environment_mismatch_is_exit_2(image, tmp_path):
    recipe = tmp_path / "old.toml"
    recipe.write_text(DEMO.read_text().replace('jwst = "', 'jwst = "1.', 1))
    done = cli("docker", "run", str(recipe), "--workdir", str(tmp_path / "w"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and re.search(r"environment: jwst: recipe 1\.\S+, image \S+ has", done.stderr)
    assert not (tmp_path / "w").exists()


@pytest.mark.container
def test_unwritable_workdir_is_exit_2(image, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    user = "4321:4321" if os.getuid() == 0 else None
    if user is None:
        locked.chmod(0o555)
    done = cli("docker", "run", str(DEMO), "--workdir", str(locked / "w" if user is None else locked),
               *(["--user", user] if user else []))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "not writable" in done.stderr
    assert list(locked.iterdir()) == []


@pytest.mark.container
@pytest.mark.e2e
def test_demo_in_container_matches_host(image, container_demo, demo_run):
    """The demo inside the image with --network none: its manifest verifies on the host and its
    products equal those of the same recipe run on the host venv (same lock): identical, or within
    jwst's regression tolerances where the CPU makes the two stacks differ in the last bits."""
    workdir = container_demo
    manifest = json.loads((workdir / "manifest.json").read_text())
    # the container's manifest knows its image
    text = json.dumps(manifest)
    assert image.id in text and pin.load_pin().crds_context in text and image.labels[pin.LABEL_LOCK_SHA256] in text
    # files are the caller's, not root's
    assert all(p.stat().st_uid == os.getuid() for p in workdir.rglob("*"))
    verified = cli("verify", str(workdir / "manifest.json"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Even the HTML report: the part that describes its environment (image, Python build) is not content.
    assert_same_science(demo_run[0], workdir)
