"""`run.py fetch` end to end against loopback MAST and CRDS servers, then `run.py run` with no network."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from loopback import closed_port_url
from loopback.crds_server import crds_server_factory, crds_url  # noqa: F401 - fixture
from loopback.data import SIM_DITHERS, sim_archive, sim_served_cache  # noqa: F401 - fixtures
from loopback.mast_server import mast_server_factory  # noqa: F401 - fixture
from loopback.s3_server import s3_server  # noqa: F401 - fixture

CONTEXT = "jwst_9000.pmap"
TOKEN = "tok-77aa-never-print-me"
RECIPE = """schema = 1
[recipe]
name = "loopback-mast"
[environment]
jwst = "3.0.0"
crds_context = "jwst_9000.pmap"
[inputs.mast]
program = "02732"
observation = "002"
instrument = "MIRI/IMAGE"
filters = [{filters}]
product = "uncal"
"""


def write_recipe(tmp_path, filters='"F770W"', extra=""):
    path = tmp_path / "mast.toml"
    path.write_text(RECIPE.format(filters=filters) + extra)
    return path


@pytest.fixture
def servers(sim_archive, sim_served_cache, mast_server_factory, crds_server_factory):
    return mast_server_factory(sim_archive), crds_server_factory(sim_served_cache, CONTEXT)


def environment(tmp_path, mast_url, crds_server_url, **extra):
    env = {"MAST_BASE_URL": mast_url, "CRDS_SERVER_URL": crds_server_url, "CRDS_PATH": str(tmp_path / "crds_cache"),
           "CRDS_CONTEXT": CONTEXT, "APPLIANCE_MAST_ATTEMPTS": "3", "APPLIANCE_MAST_RETRY_WAIT": "0.05",
           "CRDS_CLIENT_RETRY_COUNT": "2", "CRDS_CLIENT_RETRY_DELAY_SECONDS": "0"}
    env.update(extra)
    return env


def fetch(tmp_path, env, recipe=None):
    return run_cli("fetch", str(recipe or write_recipe(tmp_path)), "--workdir", str(tmp_path / "work"), env=env)


def test_fetch_downloads_the_exposures_and_the_references(tmp_path, servers):
    mast_server, crds_server = servers
    env = environment(tmp_path, mast_server.url, crds_url(crds_server))
    done = fetch(tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert f"inputs   {SIM_DITHERS} downloaded" in done.stdout and "0 already here" in done.stdout
    assert f"crds     {CONTEXT} from {crds_url(crds_server)}: references" in done.stdout
    record = json.loads((tmp_path / "work" / "inputs.json").read_text())
    assert [f["name"] for f in record["files"]] == [
        f"uncal/jw02732002001_02101_0000{i}_mirimage_uncal.fits" for i in range(1, SIM_DITHERS + 1)]
    assert all(f["origin"].startswith("mast:JWST/product/jw02732002001") for f in record["files"])
    assert record["crds"]["server"] == crds_url(crds_server) and record["crds"]["context"] == CONTEXT
    assert any("_apcorr_" in n for n in record["crds"]["references"])
    assert (tmp_path / "crds_cache" / "config" / "jwst" / "server_config").is_file()

    again = fetch(tmp_path, env)  # everything is here: nothing is downloaded again
    assert again.returncode == 0, again.stderr
    assert f"0 downloaded (0.0 MB), {SIM_DITHERS} already here" in again.stdout
    assert "references 0 fetched (0.0 MB)" in again.stdout


def test_fetch_with_mast_down_is_one_line_and_exit_1(tmp_path, servers):
    _, crds_server = servers
    done = fetch(tmp_path, environment(tmp_path, closed_port_url(), crds_url(crds_server)))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "connection refused (gave up after 3 attempts)" in done.stderr


def test_fetch_with_crds_down_is_exit_1(tmp_path, servers):
    mast_server, _ = servers
    url = closed_port_url().replace("127.0.0.1", "localhost")
    done = fetch(tmp_path, environment(tmp_path, mast_server.url, url))
    assert done.returncode == 1
    assert done.stderr.strip().endswith("cannot get its configuration: connection refused")


def test_a_query_that_matches_nothing_is_exit_2(tmp_path, servers):
    mast_server, crds_server = servers
    done = fetch(tmp_path, environment(tmp_path, mast_server.url, crds_url(crds_server)),
                 write_recipe(tmp_path, '"F2550W"'))
    assert done.returncode == 2
    assert "inputs.mast: no MAST observations match" in done.stderr and "F2550W" in done.stderr


def test_a_wrong_token_is_exit_2_and_never_printed(tmp_path, sim_archive, sim_served_cache,
                                                   mast_server_factory, crds_server_factory):
    mast_server = mast_server_factory(sim_archive, token="the-right-one")
    crds_server = crds_server_factory(sim_served_cache, CONTEXT)
    done = fetch(tmp_path, environment(tmp_path, mast_server.url, crds_url(crds_server), MAST_API_TOKEN=TOKEN))
    assert done.returncode == 2
    assert "MAST rejected the token in MAST_API_TOKEN" in done.stderr
    assert TOKEN not in done.stderr + done.stdout
    assert not (tmp_path / "work" / "inputs.json").exists()


def test_a_file_cut_mid_download_every_time_leaves_no_final_file(tmp_path, servers, sim_archive):
    mast_server, crds_server = servers
    name = sorted(sim_archive.glob("*_uncal.fits"))[0].name
    mast_server.fail(name, "cut", after=200_000, times=3)
    done = fetch(tmp_path, environment(tmp_path, mast_server.url, crds_url(crds_server)))
    assert done.returncode == 1 and "connection cut mid-file (gave up after 3 attempts)" in done.stderr
    assert not (tmp_path / "work" / "uncal" / name).exists()
    assert (tmp_path / "work" / "uncal" / (name + ".part")).stat().st_size == 600_000
    resumed = fetch(tmp_path, environment(tmp_path, mast_server.url, crds_url(crds_server)))
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "work" / "uncal" / name).read_bytes() == (sim_archive / name).read_bytes()


@pytest.mark.e2e
def test_run_after_fetch_needs_no_network(tmp_path, servers, s3_server, sim_archive):
    """The acceptance path: fetch with the servers up (from the S3 mirror, one file from the portal because the
    bucket lacks it), then reduce with all of them unreachable."""
    mast_server, crds_server = servers
    names = sorted(p.name for p in sim_archive.glob("*_uncal.fits"))
    s3_server.clear()
    for name in names[1:]:
        s3_server.put(mast_server.cloud_path(f"mast:JWST/product/{name}").lstrip("/"), sim_archive / name)
    recipe = write_recipe(tmp_path, extra="cloud = true\n")
    done = fetch(tmp_path, environment(tmp_path, mast_server.url, crds_url(crds_server), AWS_ENDPOINT_URL=s3_server.url),
                 recipe)
    assert done.returncode == 0, done.stderr
    assert f"MB, {len(names) - 1} of them from the S3 mirror), 0 already here" in done.stdout
    origins = {f["name"]: f["origin"] for f in json.loads((tmp_path / "work" / "inputs.json").read_text())["files"]}
    assert origins.pop(f"uncal/{names[0]}") == f"mast:JWST/product/{names[0]}"
    assert sorted(origins.values()) == [f"s3://stpubdata/jwst/public/jw02732/{n[:13]}/{n}" for n in names[1:]]
    mast_server.stop()
    crds_server.stop()
    offline = environment(tmp_path, closed_port_url(), "https://crds-offline.invalid", CRDS_MODE="local",
                          MAST_API_TOKEN=TOKEN, AWS_ENDPOINT_URL=closed_port_url())
    ran = run_cli("run", str(tmp_path / "mast.toml"), "--workdir", str(tmp_path / "work"), env=offline)
    assert ran.returncode == 0, ran.stderr[-3000:]
    manifest = json.loads((tmp_path / "work" / "manifest.json").read_text())
    inputs = {i["name"]: i for i in manifest["inputs"]}
    record = json.loads((tmp_path / "work" / "inputs.json").read_text())
    for f in record["files"]:
        assert inputs[f["name"]]["sha256"] == f["sha256"]
        assert inputs[f["name"]]["origin"] == f["origin"]
        assert inputs[f["name"]]["fetched_at"] == f["fetched_at"]
    assert any(p["path"].endswith("_i2d.fits") for p in manifest["products"])
    for path in (tmp_path / "work").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".log", ".ecsv", ".txt"):
            assert TOKEN not in path.read_text(errors="replace"), path


def test_fetch_of_a_simulated_recipe_writes_its_inputs_and_record(tmp_path):
    recipe = tmp_path / "sim.toml"
    recipe.write_text('schema = 1\n[recipe]\nname = "sim"\n[environment]\njwst = "3.0.0"\n'
                      'crds_context = "jwst_9000.pmap"\n[inputs.simulate]\nfilters = ["F770W"]\ndithers = 2\n')
    env = {"CRDS_PATH": str(tmp_path / "crds_cache"), "CRDS_SERVER_URL": closed_port_url()}  # not asked
    done = run_cli("fetch", str(recipe), "--workdir", str(tmp_path / "work"), env=env)
    assert done.returncode == 0, done.stderr
    assert "inputs   3 simulate file(s) in place" in done.stdout
    assert "jwst_9000.pmap is the synthetic context, built locally" in done.stdout
    record = json.loads((tmp_path / "work" / "inputs.json").read_text())
    assert {f["name"] for f in record["files"]} >= {"uncal/truth.ecsv"}
    assert all(f["origin"].startswith("simulate:") and len(f["sha256"]) == 64 for f in record["files"])
