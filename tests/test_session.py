"""Choosing the CRDS cache, context and mode of a run (appliance.session, appliance.crdsenv)."""

from pathlib import Path

import pytest

import os

from appliance.crdsenv import OFFLINE_SERVER_URL, CrdsSettings, applied, cache_holds_context
from appliance.session import choose_settings, prepare_cache
from appliance.errors import UserError
from appliance.simulate import SIM_CONTEXT


def fake_cache(root: Path, context: str) -> Path:
    (root / "mappings" / "jwst").mkdir(parents=True)
    (root / "mappings" / "jwst" / context).write_text("")
    (root / "config" / "jwst").mkdir(parents=True)
    (root / "config" / "jwst" / "server_config").write_text("{}")
    return root


def test_simulated_runs_build_their_cache_in_the_workdir(tmp_path):
    s = choose_settings(SIM_CONTEXT, use_step_pars=True, simulated=True, workdir=tmp_path, environ={})
    assert s.path == str(tmp_path / "crds_cache") and s.mode == "local" and s.server_url == OFFLINE_SERVER_URL


def test_simulated_runs_reuse_a_cache_that_holds_the_context(tmp_path):
    cache = fake_cache(tmp_path / "baked", SIM_CONTEXT)
    s = choose_settings(SIM_CONTEXT, use_step_pars=True, simulated=True, workdir=tmp_path, environ={"CRDS_PATH": str(cache)})
    assert s.path == str(cache)
    assert cache_holds_context(cache, SIM_CONTEXT) and not cache_holds_context(cache, "jwst_1584.pmap")


def test_simulated_runs_need_the_synthetic_context(tmp_path):
    with pytest.raises(UserError, match="environment.crds_context.*jwst_9000.pmap"):
        choose_settings("jwst_1584.pmap", use_step_pars=True, simulated=True, workdir=tmp_path, environ={})


def test_real_data_use_the_users_cache_and_local_mode_by_default(tmp_path):
    s = choose_settings("jwst_1584.pmap", use_step_pars=False, simulated=False, workdir=tmp_path, environ={"CRDS_PATH": "/c"})
    assert (s.path, s.mode, s.server_url) == ("/c", "local", OFFLINE_SERVER_URL)
    assert s.as_env()["STPIPE_DISABLE_CRDS_STEPPARS"] == "True"


def test_local_mode_without_the_context_in_the_cache_is_a_clear_error(tmp_path):
    s = CrdsSettings("jwst_1584.pmap", str(tmp_path), "local", OFFLINE_SERVER_URL, True)
    with pytest.raises(UserError, match="jwst_1584.pmap is not in the CRDS cache"):
        prepare_cache(s, simulated=False)


def test_applied_settings_are_undone_afterwards(monkeypatch):
    monkeypatch.setenv("CRDS_SERVER_URL", "https://mine.example")
    monkeypatch.delenv("STPIPE_DISABLE_CRDS_STEPPARS", raising=False)
    with applied(CrdsSettings("jwst_1584.pmap", "/c", "local", OFFLINE_SERVER_URL, False)):
        assert os.environ["CRDS_SERVER_URL"] == OFFLINE_SERVER_URL and os.environ["STPIPE_DISABLE_CRDS_STEPPARS"] == "True"
    assert os.environ["CRDS_SERVER_URL"] == "https://mine.example" and "STPIPE_DISABLE_CRDS_STEPPARS" not in os.environ
