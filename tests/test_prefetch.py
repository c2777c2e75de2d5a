"""CRDS reference prefetch through the real crds client, against a loopback CRDS server."""

from __future__ import annotations

import os
import shutil

import pytest

from appliance import crdsenv, prefetch
from appliance.crdsenv import CrdsSettings, cache_holds_context
from appliance.prefetch import prefetch_references, stage_reftypes
from appliance.errors import UserError, WorkFailed
from loopback import closed_port_url
from loopback.crds_server import crds_server_factory, crds_url  # noqa: F401 - fixture
from loopback.data import sim_archive, sim_served_cache  # noqa: F401 - fixtures

CONTEXT = "jwst_9000.pmap"
ALL_STAGES = ("detector1", "image2", "image3")


SET_BY_PREFETCH = ("CRDS_PATH", "CRDS_MODE", "CRDS_SERVER_URL", "CRDS_CONTEXT", "CRDS_OBSERVATORY",
                   "STPIPE_DISABLE_CRDS_STEPPARS", "CRDS_CLIENT_RETRY_COUNT", "CRDS_CLIENT_RETRY_DELAY_SECONDS")


@pytest.fixture(autouse=True)
def restore_environment():
    """prefetch_references sets CRDS_* variables for the crds client; put them back afterwards.

    Only these: crds itself writes its defaults into os.environ when imported.
    """
    saved = {key: os.environ.get(key) for key in SET_BY_PREFETCH}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def reftypes():
    return stage_reftypes(ALL_STAGES)


@pytest.fixture
def server(sim_served_cache, crds_server_factory):
    return crds_server_factory(sim_served_cache, CONTEXT)


def settings(cache, url, use_step_pars=True):
    return CrdsSettings(CONTEXT, str(cache), "auto", url, use_step_pars)


def uncal_files(archive):
    return sorted(archive.glob("*_uncal.fits"))


def test_stage_reftypes_cover_every_stage_and_the_step_parameter_files():
    types = stage_reftypes(ALL_STAGES)
    for t in ("reset", "dark", "flat", "photom", "area", "distortion", "filteroffset", "apcorr", "abvegaoffset",
              "pars-emicorrstep", "pars-detector1pipeline", "pars-sourcecatalogstep"):
        assert t in types
    assert "pars-jumpstep" not in stage_reftypes(ALL_STAGES, use_step_pars=False)
    assert "apcorr" not in stage_reftypes(ALL_STAGES, skipped_steps={("image3", "source_catalog")})
    assert "apcorr" not in stage_reftypes(("detector1", "image2"))


def test_prefetch_fetches_what_every_stage_selects(tmp_path, server, sim_archive, reftypes):
    cache = tmp_path / "cache"
    report = prefetch_references(settings(cache, crds_url(server)), uncal_files(sim_archive), reftypes=reftypes)
    names = set(report.references)
    # detector1, image2 and image3 references, including those `crds sync --dataset-files` leaves out
    for kind in ("mask", "saturation", "reset", "linearity", "rscd", "dark", "gain", "readnoise", "emicorr",
                 "flat", "photom", "area", "distortion", "filteroffset", "apcorr", "abvegaoffset", "pars-emicorrstep"):
        assert any(f"_{kind}_" in n for n in names), kind
    assert report.fetched == len(names) and report.cached == 0 and report.bytes > 0
    assert report.bytes == sum(server.meta[n] and int(server.meta[n]["size"]) for n in names)
    assert report.mappings_fetched == len(server.mapping_closure(CONTEXT))
    for name in names:
        assert server.downloads[name] == 1
        assert list(cache.rglob(name))
    # only what was selected: the served cache holds references for other filters and subarrays
    assert len(names) < len([n for n in server.files if not n.endswith("map")])
    assert cache_holds_context(cache, CONTEXT)  # server_config written: local mode works offline
    assert "last_synced" in (cache / "config" / "jwst" / "server_config").read_text()
    assert report.as_dict()["references"][sorted(names)[0]]["state"] == "fetched"


def test_a_second_prefetch_reports_everything_cached(tmp_path, server, sim_archive, reftypes):
    cache = tmp_path / "cache"
    first = prefetch_references(settings(cache, crds_url(server)), uncal_files(sim_archive), reftypes=reftypes)
    again = prefetch_references(settings(cache, crds_url(server)), uncal_files(sim_archive), reftypes=reftypes)
    assert again.fetched == 0 and again.cached == len(first.references) and again.bytes == 0
    assert again.mappings_fetched == 0 and again.mappings_cached == first.mappings_fetched
    assert "0 fetched (0.0 MB)" in str(again)


def test_a_corrupt_cached_reference_is_detected_and_fetched_again(tmp_path, server, sim_archive, reftypes):
    cache = tmp_path / "cache"
    prefetch_references(settings(cache, crds_url(server)), uncal_files(sim_archive), reftypes=reftypes)
    dark = next(cache.rglob("jwst_miri_dark_*.fits"))
    good = dark.read_bytes()
    dark.write_bytes(good[:-1] + bytes([good[-1] ^ 0x01]))  # same size, wrong sha1
    report = prefetch_references(settings(cache, crds_url(server)), uncal_files(sim_archive), reftypes=reftypes)
    assert report.references[dark.name] == "repaired" and report.repaired == 1 and report.fetched == 1
    assert dark.read_bytes() == good
    assert "1 repaired after a checksum mismatch" in str(report)


def test_a_corrupt_mapping_in_the_cache_is_fetched_again(tmp_path, server, sim_archive, reftypes):
    cache = tmp_path / "cache"
    prefetch_references(settings(cache, crds_url(server)), uncal_files(sim_archive), reftypes=reftypes)
    imap = next(cache.rglob("*.imap"))
    imap.write_text(imap.read_text().replace("'dark'", "'darx'"))
    report = prefetch_references(settings(cache, crds_url(server)), uncal_files(sim_archive), reftypes=reftypes)
    assert report.mappings_fetched == 1
    assert "'dark'" in imap.read_text()


def test_a_corrupt_download_fails_the_fetch(tmp_path, server, sim_archive, reftypes):
    server.corrupt.update(n for n in server.files if "_dark_" in n and n.endswith(".fits"))
    with pytest.raises(WorkFailed, match="downloading references failed: .*sha1sum .* does not match server sha1sum"):
        prefetch_references(settings(tmp_path / "cache", crds_url(server)), uncal_files(sim_archive), reftypes=reftypes)
    assert not list((tmp_path / "cache" / "references").rglob("jwst_miri_dark_*"))  # no bad copy left under its name


def test_an_unreachable_server_is_one_work_failed_line(tmp_path, sim_archive, reftypes):
    url = closed_port_url().replace("127.0.0.1", "localhost")
    os.environ["CRDS_CLIENT_RETRY_COUNT"] = "2"
    with pytest.raises(WorkFailed) as err:
        prefetch_references(settings(tmp_path / "cache", url), uncal_files(sim_archive), reftypes=reftypes)
    assert str(err.value).startswith(f"CRDS server {url}: cannot get its configuration: connection refused")


def test_a_server_error_is_a_work_failure(tmp_path, server, sim_archive, reftypes):
    server.down_rpc = True
    os.environ["CRDS_CLIENT_RETRY_COUNT"] = "2"
    with pytest.raises(WorkFailed, match="HTTP 500"):
        prefetch_references(settings(tmp_path / "cache", crds_url(server)), uncal_files(sim_archive), reftypes=reftypes)


def test_a_context_the_server_does_not_have_is_a_user_error(tmp_path, server, sim_archive, reftypes):
    s = CrdsSettings("jwst_9999.pmap", str(tmp_path / "cache"), "auto", crds_url(server), True)
    with pytest.raises(UserError, match="does not serve jwst_9999.pmap"):
        prefetch_references(s, uncal_files(sim_archive), reftypes=reftypes)


def test_settings_for_fetch_use_the_users_server_in_auto_mode(tmp_path):
    run = CrdsSettings(CONTEXT, str(tmp_path), "local", crdsenv.OFFLINE_SERVER_URL, True)
    s = crdsenv.for_fetch(run, {"CRDS_SERVER_URL": "http://localhost:1"})
    assert (s.mode, s.server_url, s.path) == ("auto", "http://localhost:1", str(tmp_path))
    assert crdsenv.for_fetch(run, {}).server_url == "https://jwst-crds.stsci.edu"
    assert not prefetch.needs_prefetch(CONTEXT, {}) and prefetch.needs_prefetch(CONTEXT, {"CRDS_SERVER_URL": "x"})
    assert prefetch.needs_prefetch("jwst_1584.pmap", {})
    assert not prefetch.needs_prefetch(CONTEXT, {"CRDS_SERVER_URL": "x"}, simulated=True)


def test_offline_selection_after_prefetch_finds_every_file(tmp_path, server, sim_archive, reftypes):
    """What `run` does afterwards: local mode, unreachable server, the same selections resolve to cached files."""
    cache = tmp_path / "cache"
    report = prefetch_references(settings(cache, crds_url(server)), uncal_files(sim_archive), reftypes=reftypes)
    server.stop()
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)
    offline = CrdsSettings(CONTEXT, str(cache), "local", crdsenv.OFFLINE_SERVER_URL, True)
    crdsenv.configure(offline)
    import crds
    from crds.client import api
    from crds.core import utils

    api.set_crds_server(crdsenv.OFFLINE_SERVER_URL)
    utils.clear_function_caches()
    params = prefetch.crds_parameters(uncal_files(sim_archive)[0])
    paths = crds.getreferences(params, reftypes=["reset", "apcorr", "abvegaoffset", "flat"], context=CONTEXT,
                               observatory="jwst")
    assert all(os.path.basename(p) in report.references for p in paths.values())
