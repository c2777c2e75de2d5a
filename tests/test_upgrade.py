"""``run.py upgrade`` (appliance.upgrade), the rename table (appliance.recipe.renames), and ``check`` of a
recipe written for another release (every unknown step and parameter, with the closest name)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from appliance.errors import UserError
from appliance.recipe.renames import RENAMES, renames_between
from appliance.releases import all_releases
from appliance.upgrade import upgrade
from conftest import run_cli

OLD = """\
# written for jwst 1.11
schema = 1

[recipe]
name = "old"

[environment]
jwst = "1.11.4"   # the release it was written for
crds_context = "jwst_1100.pmap"

[inputs.simulate]
filters = ["F770W"]
dithers = 2
subarray = "SUB256"
seed = 1

[detector1.steps.undersampling_correction]
skip = true   # as the old workshop did

[detector1]
steps.emicorr.user_supplied_reffile = "emi.asdf"

[[postprocess]]
op = "background"
"""


def old_recipe(tmp_path: Path) -> Path:
    (tmp_path / "emi.asdf").write_bytes(b"")
    path = tmp_path / "old.toml"
    path.write_text(OLD)
    return path


def test_every_rename_names_its_release_and_its_change_log_entry():
    versions = [r.version for r in all_releases()]
    for r in RENAMES:
        assert r.source.startswith(f"CHANGES.rst {r.release}, ") and "#" in r.source
    assert [r.new_name for r in renames_between("1.11.4", "3.0.0")] == ["charge_migration", "override_emicorr"]
    assert [r.new_name for r in renames_between("1.20.0", "2.0.1")] == ["override_emicorr"]
    assert renames_between("2.0.1", "3.0.0") == [] and renames_between("x", "3.0.0") == []
    assert "3.0.0" in versions


def test_upgrade_rewrites_renames_and_environment_keeping_the_text(tmp_path):
    path = old_recipe(tmp_path)
    target, changes = upgrade(path, "3.0.0")
    assert target == tmp_path / "old.jwst-3.0.0.toml" and path.read_text() == OLD  # the old one untouched
    text = target.read_text()
    assert "# written for jwst 1.11" in text and 'jwst = "3.0.0"   # the release it was written for' in text
    assert "[detector1.steps.charge_migration]\nskip = true   # as the old workshop did" in text
    assert 'steps.emicorr.override_emicorr = "emi.asdf"' in text
    data = tomllib.loads(text)
    assert data["environment"] == {"jwst": "3.0.0", "crds_context": "jwst_1584.pmap"}
    assert "undersampling_correction" not in data["detector1"]["steps"]
    assert changes[-2:] == ["environment.jwst: 1.11.4 → 3.0.0",
                            "environment.crds_context: jwst_1100.pmap → jwst_1584.pmap (jwst 3.0.0's build context)"]
    with pytest.raises(UserError, match="exists; upgrade never overwrites"):
        upgrade(path, "3.0.0")
    with pytest.raises(UserError, match="not a supported jwst release"):
        upgrade(path, "9.0.0")


def test_an_edit_the_line_editor_cannot_make_is_refused_and_writes_nothing(tmp_path):
    path = old_recipe(tmp_path)
    path.write_text(OLD.replace('[detector1]\nsteps.emicorr.user_supplied_reffile = "emi.asdf"',
                                '[detector1.steps]\nemicorr = { user_supplied_reffile = "emi.asdf" }'))
    with pytest.raises(UserError, match="cannot rewrite it line by line.*override_emicorr"):
        upgrade(path, "3.0.0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emi.asdf", "old.toml"]


@pytest.mark.e2e
def test_check_lists_every_unknown_name_and_accepts_the_upgraded_recipe(tmp_path):
    """A recipe of jwst 1.11 fails `check` on this jwst with every old name listed; `upgrade` makes one that
    `check` accepts."""
    path = old_recipe(tmp_path)
    path.write_text(OLD.replace("jwst_1100.pmap", "jwst_9000.pmap")
                    + "\n[detector1.steps.refpix]\nsiglimt = 3.0\n")
    done = run_cli("check", str(path))
    assert done.returncode == 2
    assert ("unknown  detector1.steps.undersampling_correction: renamed charge_migration in jwst 1.12.0 "
            "(run.py upgrade rewrites it)") in done.stdout
    assert "unknown  detector1.steps.refpix.siglimt: not a parameter of refpix in jwst 3.0.0; closest: siglimit" \
        in done.stdout
    assert done.stderr.count("\n") == 1 and "2 step name(s) or parameter(s) unknown to jwst 3.0.0" in done.stderr
    path.write_text(OLD.replace("jwst_1100.pmap", "jwst_9000.pmap"))
    done = run_cli("upgrade", str(path), "--to-release", "3.0.0")
    assert done.returncode == 0, done.stderr
    assert "changed  detector1.steps.undersampling_correction became charge_migration in jwst 1.12.0" in done.stdout
    done = run_cli("check", str(tmp_path / "old.jwst-3.0.0.toml"))
    assert done.returncode == 0, done.stdout + done.stderr
