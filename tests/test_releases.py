"""The supported jwst releases (appliance.releases): pins, locks with cut-off dates, builds per release,
``run.py releases``, and the compatibility module.  None of these needs a Docker daemon."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from appliance import compat, image, launch, pin, releases
from appliance.errors import UserError
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def lock_versions(path: Path) -> dict[str, str]:
    return {re.sub(r"[-_.]+", "-", n).lower(): v
            for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", path.read_text(), re.M)}


def test_the_supported_releases():
    found = releases.all_releases()
    versions = [r.version for r in found]
    assert versions[0] == releases.default_release().version == pin.load_pin().jwst
    assert {"2.0.1", "1.20.0"} <= set(versions)
    assert versions == sorted(versions, key=lambda v: tuple(map(int, v.split("."))), reverse=True)
    assert sum(r.default for r in found) == 1
    assert {r.version: r.pin.crds_context for r in found}["1.20.0"] == "jwst_1462.pmap"


@pytest.mark.parametrize("release", [r for r in releases.all_releases() if not r.default], ids=lambda r: r.version)
def test_each_release_lock_pins_its_jwst_with_hashes_and_a_cut_off(release):
    """Each lock holds its own jwst, every distribution hash-pinned, resolved by lock.sh with the pin's cut-off."""
    text = release.lock_path.read_text()
    assert text.split("\n", 2)[1].strip() == f"#    container/lock.sh --release {release.version}"
    pins = lock_versions(release.lock_path)
    assert pins["jwst"] == release.version
    blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if re.match(r"[A-Za-z0-9_.-]+==", b)]
    assert len(blocks) == len(pins) > 50 and all("--hash=sha256:" in b for b in blocks)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", release.pin.exclude_newer)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:  # the appliance's own dependencies are in every release's lock
        name = re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in pins, f"{name} missing from {release.lock_path}"


def test_older_releases_run_with_the_dependencies_of_their_time():
    """Measured: jwst 2.0.1 today would resolve astropy 8 and stpipe 1.x; its lock keeps those of May 2026."""
    old = lock_versions(releases.get_release("2.0.1").lock_path)
    new = lock_versions(releases.default_release().lock_path)
    assert old["astropy"].startswith("7.") and new["astropy"].startswith("8.")
    assert old["stpipe"].startswith("0.") and old["photutils"].startswith("2.")
    assert lock_versions(releases.get_release("1.20.0").lock_path)["stdatamodels"].startswith("4.")


def test_an_unknown_release_is_one_line_naming_the_supported_ones():
    with pytest.raises(UserError, match=r"--release 9\.9\.9: not a supported jwst release \(supported: .*2\.0\.1"):
        releases.get_release("9.9.9")
    with pytest.raises(UserError, match="not a supported"):
        releases.get_release("../3.0.0")  # a name, never a path


def test_a_release_directory_must_be_named_after_its_pin(tmp_path, monkeypatch):
    (tmp_path / "2.0.2").mkdir()
    (tmp_path / "2.0.2" / "pin.toml").write_text('jwst = "2.0.1"\ncrds_context = "jwst_1535.pmap"\n')
    monkeypatch.setattr(releases, "RELEASES_DIR", tmp_path)
    with pytest.raises(UserError, match=r"2\.0\.2/pin\.toml: jwst: expected '2\.0\.2'"):
        releases.all_releases()


def test_pin_cut_off_date_is_checked(tmp_path):
    path = tmp_path / "pin.toml"
    path.write_text('jwst = "2.0.1"\ncrds_context = "jwst_1535.pmap"\nexclude_newer = "May 2026"\n')
    with pytest.raises(UserError, match="exclude_newer: expected a string like YYYY-MM-DD, found 'May 2026'"):
        pin.load_pin(path)


def test_a_release_build_puts_its_pin_and_lock_in_the_place_of_the_default(tmp_path):
    release = releases.get_release("2.0.1")
    wheels = tmp_path / "w"
    wheels.mkdir()
    for name, version in [*lock_versions(release.lock_path).items(), *lock_versions(pin.LOCK_PATH).items()]:
        (wheels / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"")
    plan = image.plan_build(image.BuildOptions(release="2.0.1", wheelhouse=wheels, quiet=True), {})
    assert plan.tag == "jwst-appliance:2.0.1"
    assert plan.buildargs["JWST_VERSION"] == "2.0.1" and plan.buildargs["CRDS_CONTEXT"] == "jwst_1535.pmap"
    assert plan.buildargs["LOCK_SHA256"] == pin.lock_sha256(release.lock_path)
    files = dict((name, host) for host, name in plan.files)
    assert files["container/pin.toml"] == release.pin_path
    assert files["container/requirements.lock"] == release.lock_path
    assert not any(name.startswith("container/releases/") for name in files)
    default = image.plan_build(image.BuildOptions(release=None, wheelhouse=wheels, quiet=True), {})
    assert default.release.default and default.tag == image.default_tag()
    assert dict((n, h) for h, n in default.files)["container/pin.toml"] == pin.PIN_PATH


def test_a_release_build_fetches_into_its_own_wheelhouse(monkeypatch):
    release = releases.get_release("2.0.1")
    plan = image.plan_build(image.BuildOptions(release="2.0.1", quiet=True), {})
    assert plan.wheelhouse == release.wheelhouse == release.lock_path.parent / "wheels"


class FakeImage:
    def __init__(self, labels, tags=("jwst-appliance:2.0.1",)):
        self.labels, self.tags, self.short_id = labels, list(tags), "sha256:abc"


def test_the_launcher_accepts_an_image_of_any_supported_release_and_names_the_rebuild():
    from appliance.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "demo.toml")
    release = releases.get_release("2.0.1")
    labels = image.image_labels_from_pin(release)
    problems = launch.check_image(FakeImage(labels), recipe, allow_mismatch=True)
    assert not any("lock" in p for p in problems)
    assert any("jwst: recipe 3.0.0" in p and "2.0.1" in p for p in problems)  # the recipe's environment
    stale = {**labels, pin.LABEL_LOCK_SHA256: "0" * 64}
    problems = launch.check_image(FakeImage(stale), recipe, allow_mismatch=True)
    assert any("rebuild it with `python run.py docker build --release 2.0.1`" in p for p in problems)
    unknown = {**labels, pin.LABEL_JWST: "0.9.0"}
    problems = launch.check_image(FakeImage(unknown), recipe, allow_mismatch=True)
    assert any("jwst 0.9.0, which is not a release this checkout supports" in p for p in problems)


def test_releases_command_lists_pins_and_images():
    done = run_cli("releases", env={"DOCKER_HOST": "unix:///nonexistent/appliance-test/docker.sock"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    default = releases.default_release()
    assert lines[0].startswith(f"jwst {default.version} (default)  CRDS {default.pin.crds_context}  lock ")
    assert any(line.startswith("jwst 2.0.1  CRDS jwst_1535.pmap  lock ") and "nothing newer than 2026-05-07" in line
               for line in lines)
    assert lines[-1].startswith("images: unknown (no Docker daemon answers at unix:///nonexistent")


def test_compat_reads_photutils_properties_under_either_name():
    class Photutils2:
        xcentroid_win = 1.0
        kron_fluxerr = 2.0
        kron_flux = 3.0

    class Photutils3:
        x_centroid_win = 1.0
        kron_flux_err = 2.0

    for catalog in (Photutils2(), Photutils3()):
        assert compat.source_property(catalog, "x_centroid_win") == 1.0
        assert compat.source_property(catalog, "kron_flux_err") == 2.0
    assert compat.source_property(Photutils2(), "kron_flux") == 3.0
    with pytest.raises(AttributeError):
        compat.source_property(Photutils3(), "segment_flux")
