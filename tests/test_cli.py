"""The command line: exit codes, one-line errors, check, nothing half-written."""

from __future__ import annotations

from conftest import ROOT, run_cli


def one_line_error(done, *fragments):
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_check_demo_prints_the_plan():
    done = run_cli("check", "recipes/demo.toml")
    assert done.returncode == 0, done.stderr
    assert "detector1 → image2 → image3" in done.stdout
    assert "image3:F1500W" in done.stdout
    assert done.stdout.count("_uncal.fits") >= 12


def test_check_reference_workflow_recipe():
    done = run_cli("check", "recipes/stephans-quintet-miri.toml")
    assert done.returncode == 0, done.stderr
    assert "jwst_1584.pmap" in done.stdout and "skymatch.skip=True" in done.stdout


def test_malformed_toml_names_line_and_column(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = 1\n[recipe\nname = "x"\n')
    work = tmp_path / "work"
    done = run_cli("run", str(bad), "--workdir", str(work))
    one_line_error(done, str(bad), "line 2")
    assert not work.exists()


def test_unknown_step_lists_the_valid_ones(tmp_path):
    text = (ROOT / "recipes" / "demo.toml").read_text() + "\n[detector1.steps.jmp]\nrejection_threshold = 5.0\n"
    bad = tmp_path / "r.toml"
    bad.write_text(text)
    work = tmp_path / "work"
    done = run_cli(str(bad), "--workdir", str(work))  # the shorthand for run
    one_line_error(done, "detector1.steps.jmp", "jump")
    assert not work.exists()


def test_env_mismatch_is_an_error_naming_both(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text((ROOT / "recipes" / "demo.toml").read_text().replace('jwst = "3.0.0"', 'jwst = "2.0.1"'))
    done = run_cli("run", str(bad), "--workdir", str(tmp_path / "w"))
    one_line_error(done, "2.0.1", "3.0.0", "--allow-env-mismatch")
    assert not (tmp_path / "w").exists()


def test_missing_local_input_and_unwritable_workdir(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text('schema = 1\n[recipe]\nname = "x"\n[environment]\njwst = "3.0.0"\ncrds_context = "jwst_1584.pmap"\n'
                   '[inputs]\nlocal = ["nothere_uncal.fits"]\n')
    done = run_cli("run", str(bad), "--workdir", str(tmp_path / "w"), env={"CRDS_CONTEXT": "jwst_1584.pmap"})
    one_line_error(done, "inputs.local")
    assert not (tmp_path / "w").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = run_cli("run", "recipes/demo.toml", "--workdir", str(blocker))
    one_line_error(done, "--workdir", "expected a directory")


def test_bad_flag_and_verify_of_missing_manifest(tmp_path):
    one_line_error(run_cli("run", "recipes/demo.toml", "--bogus"), "unrecognized arguments")
    one_line_error(run_cli("verify", str(tmp_path / "none.json")), "none.json")


def test_version():
    done = run_cli("--version")
    assert done.returncode == 0 and "run.py" in done.stdout
