"""``run.py reproduce``: refusals, environment checks, input restoration, and one real reproduction."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import pytest

from appliance import reproduce as rep
from appliance.errors import UserError
from appliance.manifest import EnvironmentRecord, ImageRecord, InputRecord, installed_distributions
from appliance.recipe import load_recipe, parse_recipe, resolve_local_inputs
from conftest import run_cli
from test_compare import small_run_once


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def current_environment(**changes) -> dict:
    env = {"python": {"version": platform.python_version()}, "packages": installed_distributions(),
           "jwst": installed_distributions().get("jwst"), "crds_context": "jwst_9000.pmap", "image": None}
    env.update(changes)
    return env


def write_manifest(path: Path, recipe_text: str, inputs: list[dict], environment: dict | None = None,
                   products=(), **top) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {"manifest_version": 1,
                "recipe": {"path": "recipes/r.toml", "text": recipe_text,
                           "sha256": hashlib.sha256(recipe_text.encode()).hexdigest()},
                "environment": environment if environment is not None else current_environment(),
                "inputs": inputs, "products": list(products), "tasks": [], **top}
    path.write_text(json.dumps(manifest))
    return path


def head(inputs: str) -> str:
    return ('schema = 1\n[recipe]\nname = "r"\n[environment]\njwst = "3.0.0"\ncrds_context = "jwst_1584.pmap"\n'
            + inputs)


def one_line_error(done, code=2) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


# ----------------------------------------------------------------------------- refusals


def test_a_tampered_manifest_is_refused_and_nothing_is_written(tmp_path):
    m = write_manifest(tmp_path / "m.json", head('[inputs]\nlocal = ["a_uncal.fits"]\n'), [])
    data = json.loads(m.read_text())
    data["recipe"]["text"] = data["recipe"]["text"].replace('name = "r"', 'name = "x"')
    m.write_text(json.dumps(data))
    line = one_line_error(run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w")))
    assert "recipe.sha256: does not match the sha256 of recipe.text (tampered manifest)" in line
    assert not (tmp_path / "w").exists()


def test_an_unknown_manifest_version_is_refused(tmp_path):
    m = write_manifest(tmp_path / "m.json", head('[inputs]\nlocal = ["a_uncal.fits"]\n'), [])
    data = json.loads(m.read_text())
    data["manifest_version"] = 2
    m.write_text(json.dumps(data))
    line = one_line_error(run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w")))
    assert "manifest_version: expected 1, found 2 (unsupported manifest)" in line


def test_the_workdir_must_be_new_or_empty(tmp_path):
    m = write_manifest(tmp_path / "m.json", head('[inputs]\nlocal = ["a_uncal.fits"]\n'), [])
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "x").write_text("x")
    assert "not empty" in one_line_error(run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w")))


def test_tolerance_needs_the_recorded_products(tmp_path):
    product = {"path": "stage1/a_rate.fits", "sha256": "0" * 64, "content_digest": "sha256:" + "0" * 64,
               "task": "detector1:a", "crds_refs": {}, "step_status": {}}
    m = write_manifest(tmp_path / "run" / "manifest.json", head('[inputs]\nlocal = ["a_uncal.fits"]\n'), [],
                       products=[product])
    line = one_line_error(run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w"), "--tolerance"))
    assert "a_rate.fits: missing; --tolerance compares the recorded products" in line
    line = one_line_error(run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w"), "--rtol", "0.1"))
    assert "only meaningful with --tolerance" in line


def test_docker_needs_a_recorded_image(tmp_path):
    m = write_manifest(tmp_path / "m.json", head('[inputs]\nlocal = ["a_uncal.fits"]\n'), [])
    line = one_line_error(run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w"), "--docker"))
    assert "records no container image" in line


# ----------------------------------------------------------------------------- environment


def test_environment_differences():
    packages = {"jwst": "3.0.0", "numpy": "2.4.0", "gone": "1.0"}
    recorded = EnvironmentRecord(python_version="3.11.7", packages=packages)
    here = {"jwst": "3.0.1", "numpy": "2.4.0", "pytest": "8.0"}
    blocking, warnings = rep.environment_differences(recorded, here, "3.11.7", "")
    assert blocking == ["gone 1.0 recorded, not installed here", "jwst 3.0.0 recorded, 3.0.1 here"]
    assert warnings == ["installed here but not in the recorded run: pytest"]
    recorded = EnvironmentRecord(python_version="3.11.7", packages=packages, image=ImageRecord(id="sha256:" + "a" * 64))
    blocking, _ = rep.environment_differences(recorded, dict(packages), "3.12.0", "")
    assert blocking[0].startswith("the run was recorded in container image sha256:aaaaaaaaaaaa, this is not that")
    assert "Python 3.11.7 recorded, 3.12.0 here" in blocking
    assert rep.environment_differences(recorded, dict(packages), "3.11.7", "sha256:" + "a" * 64) == ([], [])


def test_a_different_environment_is_refused_unless_allowed(tmp_path, monkeypatch):
    env = current_environment()
    env["packages"] = {**env["packages"], "numpy": "0.0.1"}
    m = write_manifest(tmp_path / "m.json", head('[inputs]\nlocal = ["/nonexistent/a_uncal.fits"]\n'),
                       [{"name": "stage1/a_uncal.fits", "sha256": "0" * 64, "size": 1,
                         "origin": "file:///nonexistent/a_uncal.fits"}], environment=env)
    line = one_line_error(run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w")))
    assert "environment differs from the recorded run: numpy 0.0.1 recorded" in line
    assert "--allow-env-mismatch" in line
    assert not (tmp_path / "w").exists()
    # allowed: loud warnings, then the next check (the input's origin) decides
    done = run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w"), "--allow-env-mismatch")
    assert "WARNING:   numpy 0.0.1 recorded" in done.stderr
    assert "cannot reach origin file:///nonexistent/a_uncal.fits" in one_line_error(done)


# ----------------------------------------------------------------------------- inputs


def test_an_unreachable_local_origin_is_one_line_and_nothing_is_written(tmp_path):
    m = write_manifest(tmp_path / "m.json", head('[inputs]\nlocal = ["data/*_uncal.fits"]\n'),
                       [{"name": "uncal/a_uncal.fits", "sha256": "0" * 64, "size": 1,
                         "origin": "file:///gone/recipes/data/a_uncal.fits"}])
    line = one_line_error(run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w")))
    assert line == "error: inputs: uncal/a_uncal.fits: cannot reach origin file:///gone/recipes/data/a_uncal.fits: no such file"
    assert not (tmp_path / "w").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no staging directory left behind


def test_a_changed_local_origin_is_refused(tmp_path):
    src = tmp_path / "orig" / "a_uncal.fits"
    src.parent.mkdir()
    src.write_bytes(b"new bytes")
    m = write_manifest(tmp_path / "m.json", head(f'[inputs]\nlocal = ["{src}"]\n'),
                       [{"name": "uncal/a_uncal.fits", "sha256": "0" * 64, "size": 9, "origin": src.as_uri()}])
    line = one_line_error(run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w")), code=1)
    assert "is no longer the recorded file" in line
    assert not (tmp_path / "w").exists()


def test_an_unreachable_mast_origin_is_one_line(tmp_path):
    text = head('[inputs.mast]\nprogram = "02732"\nobservation = "002"\ninstrument = "MIRI/IMAGE"\nproduct = "uncal"\n')
    name = "jw02732002001_02101_00001_mirimage_uncal.fits"
    m = write_manifest(tmp_path / "m.json", text, [{"name": f"uncal/{name}", "sha256": "0" * 64, "size": 10,
                                                    "origin": f"mast:JWST/product/{name}"}])
    done = run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w"),
                   env={"MAST_BASE_URL": "http://127.0.0.1:9", "APPLIANCE_MAST_ATTEMPTS": "1"})
    line = one_line_error(done, code=1)
    assert line.startswith(f"error: inputs: uncal/{name}: cannot reach origin mast:JWST/product/{name}: ")
    assert not (tmp_path / "w").exists()


def test_an_inconsistent_simulate_origin_is_refused(tmp_path):
    text = ('schema = 1\n[recipe]\nname = "s"\n[environment]\njwst = "3.0.0"\ncrds_context = "jwst_9000.pmap"\n'
            '[inputs.simulate]\nfilters = ["F770W"]\ndithers = 2\n')
    m = write_manifest(tmp_path / "m.json", text, [{"name": "uncal/x_uncal.fits", "sha256": "0" * 64, "size": 1,
                                                    "origin": 'simulate:{"dithers":4,"filters":["F770W"]}'}])
    line = one_line_error(run_cli("reproduce", str(m), "--workdir", str(tmp_path / "w")))
    assert "is not what the recipe's [inputs.simulate] gives" in line


def test_local_inputs_are_restored_where_the_verbatim_recipe_finds_them(tmp_path):
    """Relative entries (also ../ and **) resolve from the restored recipe's directory; absolute ones in place."""
    orig = tmp_path / "orig" / "project" / "recipes"
    files = {
        "a": orig / "data" / "a_x_uncal.fits",
        "b": orig / "data" / "deep" / "er" / "b_uncal.fits",
        "c": orig.parent / "shared" / "c_uncal.fits",
        "d": tmp_path / "elsewhere" / "d_uncal.fits",
    }
    for key, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"exposure {key}".encode())
    text = head('[inputs]\nlocal = [\n  "data/a_*_uncal.fits",\n  "data/**/b_uncal.fits",\n'
                f'  {{ path = "../shared/c_uncal.fits", sha256 = "{sha(files["c"])}" }},\n  "{files["d"]}",\n]\n')
    recorded = tuple(InputRecord(f"uncal/{p.name}", sha(p), p.stat().st_size, p.as_uri()) for p in files.values())
    work = tmp_path / "w"
    draft = parse_recipe(text, work / "recipe" / "r.toml")
    layout = rep.plan_inputs(draft, recorded)
    assert layout.recipe_rel == "recipe/d1/r.toml"  # one level deeper: an entry climbs out with ../
    work.mkdir()
    placed = rep.restore_inputs(draft, recorded, work, layout)
    assert placed[3] == str(files["d"])  # the absolute entry is used in place
    (work / layout.recipe_rel).parent.mkdir(parents=True, exist_ok=True)
    (work / layout.recipe_rel).write_text(text)
    found = resolve_local_inputs(load_recipe(work / layout.recipe_rel))
    assert sorted(sha(f.path) for f in found) == sorted(sha(p) for p in files.values())
    assert all(f.path.is_relative_to(work) for f in found if f.path.name != "d_uncal.fits")


def test_an_override_file_cannot_come_from_the_manifest(tmp_path):
    text = head('[inputs]\nlocal = ["data/a_uncal.fits"]\n[detector1.steps.dark_current]\noverride_dark = "refs/d.fits"\n')
    draft = parse_recipe(text, tmp_path / "recipe" / "r.toml")
    with pytest.raises(UserError, match="overrides a reference file .*refs/d.fits.* cannot be reproduced"):
        rep.plan_inputs(draft, (InputRecord("uncal/a_uncal.fits", "0" * 64, origin="file:///p/recipes/data/a_uncal.fits"),))


# ----------------------------------------------------------------------------- end to end


@pytest.mark.e2e
def test_reproduce_rebuilds_a_simulated_run_exactly(tmp_path_factory, tmp_path):
    base, recorded = small_run_once(tmp_path_factory)
    done = run_cli("reproduce", str(base / "manifest.json"), "--workdir", str(tmp_path / "again"),
                   "--report-md", str(tmp_path / "r.md"))
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "reproduced: every content digest matches" in done.stdout
    assert f"products: {len(recorded['products'])} — {len(recorded['products'])} identical" in done.stdout
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert [(i["name"], i["sha256"]) for i in again["inputs"]] == [(i["name"], i["sha256"]) for i in recorded["inputs"]]
    assert again["recipe"]["sha256"] == recorded["recipe"]["sha256"]
    assert (tmp_path / "again" / "recipe" / "small.toml").read_text() == recorded["recipe"]["text"]
    assert (tmp_path / "r.md").read_text().startswith("## Regression comparison: identical")


@pytest.mark.container
def test_reproduce_in_the_recorded_image(tmp_path):
    """A run made in the image is reproduced in that same image, found by its id; outside it, refused."""
    from test_compare import SMALL

    from appliance import engine
    from appliance import image as appliance_image

    try:
        client = engine.connect(timeout=10)
        client.images.get(appliance_image.default_tag())
    except Exception as exc:  # noqa: BLE001 - no daemon, or no image built yet (test_container builds it)
        pytest.skip(f"no appliance image to run in: {exc}")
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL)
    done = run_cli("docker", "run", str(recipe), "--workdir", str(tmp_path / "first"))
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = json.loads((tmp_path / "first" / "manifest.json").read_text())
    assert recorded["environment"]["image"]["id"].startswith("sha256:")

    line = one_line_error(run_cli("reproduce", str(tmp_path / "first"), "--workdir", str(tmp_path / "host")))
    assert "the run was recorded in container image sha256:" in line and "--docker" in line
    assert not (tmp_path / "host").exists()

    done = run_cli("reproduce", str(tmp_path / "first"), "--workdir", str(tmp_path / "again"), "--docker")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "reproduced: every content digest matches" in done.stdout
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert again["environment"]["image"]["id"] == recorded["environment"]["image"]["id"]
