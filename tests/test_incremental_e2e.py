"""Incremental runs with the real pipeline: no-op, change propagation, resume after SIGKILL, the lock, keep-going.

One small reduction (one filter, two dithers, three post-processing
operations) is made once; each case works on a copy of its workdir (copies
keep file times, so the records still hold).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from conftest import ROOT, run_cli
from test_compare import SMALL

pytestmark = pytest.mark.e2e

RECIPE = SMALL + '\n[[postprocess]]\nop = "background"\n\n[[postprocess]]\nop = "catalog"\n\n[[postprocess]]\nop = "report"\n'
EXPOSURES = ("jw02732002001_02101_00001_mirimage", "jw02732002001_02101_00002_mirimage")
PRODUCT = "jw02732-o002_t001_miri_f770w"
POST = ["postprocess:background:F770W", "postprocess:catalog:F770W", "postprocess:report"]
ALL = [*(f"detector1:{e}" for e in EXPOSURES), *(f"image2:{e}" for e in EXPOSURES), "image3:F770W", *POST]


def manifest(workdir: Path) -> dict:
    return json.loads((workdir / "manifest.json").read_text())


def ran(workdir: Path) -> list[str]:
    return sorted(t["id"] for t in manifest(workdir)["tasks"] if t["id"] != "inputs" and t["status"] == "run")


def digests(workdir: Path) -> dict[str, str]:
    return {p["path"]: p["content_digest"] for p in manifest(workdir)["products"]}


def run(workdir: Path, text: str = RECIPE, *args: str) -> subprocess.CompletedProcess:
    recipe = workdir.parent / "recipe.toml"
    recipe.write_text(text)
    return run_cli("run", str(recipe), "--workdir", str(workdir), *args)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("incremental") / "base"
    done = run(workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "8 tasks: 8 run, 0 reused"
    return workdir


@pytest.fixture
def copy(base, tmp_path) -> Path:
    workdir = tmp_path / "work"
    shutil.copytree(base, workdir)
    return workdir


def test_an_unchanged_rerun_runs_nothing_imports_no_jwst_and_rewrites_the_same_manifest(base, copy):
    (copy.parent / "recipe.toml").write_text(RECIPE)
    done = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "run.py"), "run",
                           str(copy.parent / "recipe.toml"), "--workdir", str(copy)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "8 tasks: 0 run, 8 reused"
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in ("jwst", "stdatamodels", "stpipe", "crds", "photutils")}
    assert "astropy.io.fits" not in imported
    assert ran(copy) == [] and manifest(copy)["run_digest"] == manifest(base)["run_digest"]
    assert {t["id"]: t["status"] for t in manifest(copy)["tasks"]}["inputs"] == "reused"
    assert run_cli("verify", str(copy)).returncode == 0


def test_an_image3_parameter_reruns_image3_and_what_reads_it(base, copy):
    changed = RECIPE + "\n[image3.steps.resample]\npixfrac = 0.8\n"
    recipe = copy.parent / "recipe.toml"
    recipe.write_text(changed)
    preview = run_cli("run", str(recipe), "--workdir", str(copy), "--dry-run")
    assert preview.returncode == 0, preview.stderr
    lines = preview.stdout.splitlines()
    assert any(line.startswith("run     image3:F770W") and "parameters changed: resample.pixfrac 1.0 → 0.8" in line
               for line in lines), lines
    assert any(line.startswith("reused  detector1:") for line in lines)
    assert any(line.startswith("run     postprocess:background:F770W") and "input may change: stage3/" in line
               for line in lines)
    checked = run_cli("check", str(recipe), "--workdir", str(copy))
    assert "parameters changed: resample.pixfrac" in checked.stdout
    assert manifest(copy)["run_digest"] == manifest(base)["run_digest"]  # the dry run wrote nothing
    done = run(copy, changed)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ran(copy) == sorted(["image3:F770W", *POST])
    assert done.stdout.strip().splitlines()[-1] == "8 tasks: 4 run, 4 reused"


def test_a_detector1_parameter_reruns_everything_downstream(copy):
    done = run(copy, RECIPE + "\n[detector1.steps.dark_current]\nskip = true\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert ran(copy) == sorted(ALL)


def test_a_post_processing_parameter_reruns_that_operation_and_the_report(copy):
    done = run(copy, RECIPE.replace('op = "catalog"\n', 'op = "catalog"\nthreshold = 5.0\n'))
    assert done.returncode == 0, done.stderr[-2000:]
    assert ran(copy) == ["postprocess:catalog:F770W", "postprocess:report"]


def rerun_saying(workdir: Path, reason: str) -> list[str]:
    """The dry run gives ``reason``; then the run: the ids of the tasks it ran."""
    recipe = workdir.parent / "recipe.toml"
    recipe.write_text(RECIPE)
    preview = run_cli("run", str(recipe), "--workdir", str(workdir), "--dry-run")
    assert reason in preview.stdout, preview.stdout
    done = run(workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    return ran(workdir)


def test_a_changed_crds_reference_reruns_what_used_it(copy):
    used = json.loads((copy / "records" / f"detector1_{EXPOSURES[0]}.json").read_text())["references"]
    gain = next((copy / "crds_cache" / "references").rglob(next(n for n in used if "_gain_" in n)))
    with fits.open(gain, mode="update") as hdul:
        hdul["SCI"].data = hdul["SCI"].data * np.float32(1.05)
    assert rerun_saying(copy, f"reference changed: {gain.name}") == sorted(ALL)  # the rates change, and all after


def test_a_changed_step_parameter_reference_reruns_the_stages_configured_from_it(copy):
    """A ``pars-*`` file is a reference the task used: edited (here only its description, so the products
    keep their content), it re-runs the detector1 tasks and nothing after them."""
    import asdf

    used = json.loads((copy / "records" / f"detector1_{EXPOSURES[0]}.json").read_text())["references"]
    name = next(n for n in used if "_pars-emicorrstep_" in n)
    path = next((copy / "crds_cache" / "references").rglob(name))
    edited = path.with_name("edited.asdf")
    with asdf.open(path) as af:
        af.tree["meta"]["description"] += " (edited)"
        af.write_to(edited)
    edited.replace(path)
    assert rerun_saying(copy, f"reference changed: {name}") == [f"detector1:{e}" for e in EXPOSURES]


def test_a_deleted_or_modified_output_reruns_its_task_alone(base, copy):
    (copy / "stage2" / f"{EXPOSURES[0]}_cal.fits").unlink()
    with open(copy / "stage1" / f"{EXPOSURES[1]}_rate.fits", "r+b") as fh:
        fh.seek(-10, 2)
        fh.write(b"\1" * 10)
    done = run(copy)
    assert done.returncode == 0, done.stderr[-2000:]
    # the products come back with the same content, so nothing downstream runs
    assert ran(copy) == sorted([f"image2:{EXPOSURES[0]}", f"detector1:{EXPOSURES[1]}"])
    assert digests(copy) == digests(base)


def dry_run_lines(workdir: Path, recipe: Path, env: dict | None = None) -> dict[str, str]:
    """``run --dry-run``'s table as {task id: "run <reason>" or "reused <reason>"}, the inputs step included."""
    preview = run_cli("run", str(recipe), "--workdir", str(workdir), "--dry-run", env=env)
    assert preview.returncode == 0, preview.stderr
    rows = [line.split(None, 2) for line in preview.stdout.strip().splitlines()[:-1]]
    return {task: f"{verb} {reason}" for verb, task, reason in rows}


def test_a_modified_input_file_is_restored_and_nothing_after_it_runs(base, copy):
    uncal = copy / "uncal" / f"{EXPOSURES[0]}_uncal.fits"
    with open(uncal, "r+b") as fh:
        fh.seek(-10, 2)
        fh.write(b"\1" * 10)
    (copy.parent / "recipe.toml").write_text(RECIPE)
    table = dry_run_lines(copy, copy.parent / "recipe.toml")
    assert table["inputs"] == f"run output modified: uncal/{uncal.name}"
    assert all(v.startswith("reused") for k, v in table.items() if k != "inputs"), table
    done = run(copy)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ran(copy) == []
    assert next(t for t in manifest(copy)["tasks"] if t["id"] == "inputs")["status"] == "run"
    assert digests(copy) == digests(base)


def test_the_dry_run_names_the_one_local_input_that_changed_and_the_run_agrees(base, copy, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for e in EXPOSURES:
        shutil.copy2(base / "uncal" / f"{e}_uncal.fits", data)
    recipe = tmp_path / "local.toml"
    recipe.write_text(RECIPE.split("[inputs.simulate]")[0] + '[inputs]\nlocal = ["data/*_uncal.fits"]\n'
                      + RECIPE.split("seed = 1\n", 1)[1])
    env = {"CRDS_PATH": str(copy / "crds_cache"), "CRDS_CONTEXT": "jwst_9000.pmap"}
    done = run_cli("run", str(recipe), "--workdir", str(copy), env=env)  # the same files, now local
    assert done.returncode == 0, done.stderr[-2000:]
    assert ran(copy) == ["postprocess:report"]  # only the report, which says where the inputs came from
    with fits.open(data / f"{EXPOSURES[0]}_uncal.fits", mode="update") as hdul:
        sci = hdul["SCI"].data  # a steeper ramp in one pixel: a different rate
        sci[:, :, 50, 50] += (np.arange(sci.shape[1]) * 20).astype(sci.dtype)
    table = dry_run_lines(copy, recipe, env)
    assert table["inputs"] == "run inputs changed"
    assert table[f"detector1:{EXPOSURES[0]}"] == f"run input changed: uncal/{EXPOSURES[0]}_uncal.fits"
    assert table[f"detector1:{EXPOSURES[1]}"].startswith("reused")
    assert table[f"image2:{EXPOSURES[1]}"].startswith("reused")
    would_run = sorted(k for k, v in table.items() if v.startswith("run") and k != "inputs")
    done = run_cli("run", str(recipe), "--workdir", str(copy), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ran(copy) == would_run == sorted([f"detector1:{EXPOSURES[0]}", f"image2:{EXPOSURES[0]}", "image3:F770W",
                                             *POST])


def wait_for(path_glob: str, root: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        hits = list(root.glob(path_glob))
        if hits:
            return hits[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"{path_glob} never appeared")


def start(workdir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), "run", str(workdir.parent / "recipe.toml"),
                             "--workdir", str(workdir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_runs_killed_at_any_point_resume_to_the_same_products(base, tmp_path):
    workdir = tmp_path / "work"
    (tmp_path / "recipe.toml").write_text(RECIPE)
    kills = [
        ("records/detector1_" + EXPOSURES[1] + ".running", None),  # during detector1 (the first one done)
        ("records/image3_F770W.running", None),  # during image3
        ("records/image3_F770W.running", f"stage3/{PRODUCT}_cat.ecsv"),  # after its last product, before its record
        ("records/postprocess_catalog_F770W.running", None),  # during post-processing
    ]
    for n, (marker, product) in enumerate(kills):
        proc = start(workdir)
        wait_for(marker, workdir, proc)
        if n == 0:  # meanwhile, a second run into the same workdir is refused at once
            second = run_cli("run", str(tmp_path / "recipe.toml"), "--workdir", str(workdir))
            assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
            assert f"another run is working in this workdir (pid {proc.pid} on " in second.stderr
        if product:
            wait_for(product, workdir, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (workdir / "manifest.json").exists()
    recorded = {json.loads(r.read_text())["id"] for r in (workdir / "records").glob("*.json")
                if r.name not in ("inputs.json", "validated.json") and not r.with_suffix(".running").exists()}
    interrupted = {json.loads(m.read_text())["id"] for m in (workdir / "records").glob("*.running")}
    done = run_cli("run", str(tmp_path / "recipe.toml"), "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr[-2000:]
    tasks = {t["id"]: t for t in manifest(workdir)["tasks"] if t["id"] != "inputs"}
    assert {"detector1:" + EXPOSURES[0], "image3:F770W"} <= recorded  # finished before the first and fourth kill
    assert "postprocess:catalog:F770W" in interrupted
    # every task whose record exists is reused, every other one runs: exactly
    assert sorted(i for i, t in tasks.items() if t["status"] == "reused") == sorted(recorded)
    assert sorted(i for i, t in tasks.items() if t["status"] == "run") == sorted(set(ALL) - recorded)
    assert run_cli("verify", str(workdir)).returncode == 0
    assert digests(workdir) == digests(base)


def test_keep_going_finishes_what_it_can_and_the_next_run_resumes_once_the_input_is_fixed(base, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for e in EXPOSURES:
        shutil.copy2(base / "uncal" / f"{e}_uncal.fits", data)
    good = (data / f"{EXPOSURES[1]}_uncal.fits").read_bytes()
    header_end = len(fits.getheader(data / f"{EXPOSURES[1]}_uncal.fits").tostring())
    (data / f"{EXPOSURES[1]}_uncal.fits").write_bytes(good[: header_end + (len(good) - header_end) // 2])
    text = RECIPE.split("[inputs.simulate]")[0] + '[inputs]\nlocal = ["data/*_uncal.fits"]\n' + \
        RECIPE.split("seed = 1\n", 1)[1]
    recipe = tmp_path / "local.toml"
    recipe.write_text(text)
    workdir = tmp_path / "work"
    env = {"CRDS_PATH": str(base / "crds_cache"), "CRDS_CONTEXT": "jwst_9000.pmap"}  # the synthetic cache, as local data
    done = run_cli("run", str(recipe), "--workdir", str(workdir), "--keep-going", env=env)
    assert done.returncode == 1, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: 8 tasks: 2 run, 0 reused, 1 failed, 5 blocked; detector1:" + EXPOSURES[1] + " failed")
    assert "(log: logs/detector1_" in line and "run again to resume from here" in line
    assert (workdir / "stage2" / f"{EXPOSURES[0]}_cal.fits").is_file()  # the independent exposure went through
    record = json.loads((workdir / "records" / f"detector1_{EXPOSURES[1]}.json").read_text())
    assert record["status"] == "failed" and record["error"]
    (data / f"{EXPOSURES[1]}_uncal.fits").write_bytes(good)  # fixed
    done = run_cli("run", str(recipe), "--workdir", str(workdir), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(ran(workdir)) == sorted([f"detector1:{EXPOSURES[1]}", f"image2:{EXPOSURES[1]}", "image3:F770W", *POST])
