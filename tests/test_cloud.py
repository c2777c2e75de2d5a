"""``[inputs.mast] cloud = true``: the real boto3 client against a loopback S3, keys from a loopback MAST."""

from __future__ import annotations

import hashlib
import json

import pytest

from appliance.errors import UserError, WorkFailed
from appliance.recipe import parse_recipe
from appliance.sources import cloud, mast
from loopback import closed_port_url
from loopback.data import fake_archive
from loopback.mast_server import mast_server_factory  # noqa: F401 - fixture
from loopback.s3_server import s3_server  # noqa: F401 - fixture


F770W = ["jw02732002001_02101_00001_mirimage_uncal.fits", "jw02732002001_02101_00002_mirimage_uncal.fits",
         "jw02732002002_02101_00001_mirimage_uncal.fits"]  # the F770W exposures of fake_archive


def recipe(tmp_path, extra="cloud = true"):
    text = ('schema = 1\n[recipe]\nname = "t"\n[environment]\njwst = "3.0.0"\ncrds_context = "jwst_9000.pmap"\n'
            '[inputs.mast]\nprogram = "02732"\nobservation = "002"\ninstrument = "MIRI/IMAGE"\nproduct = "uncal"\n'
            f'filters = ["F770W"]\n{extra}\n')
    return parse_recipe(text, tmp_path / "r.toml")


@pytest.fixture
def archive(tmp_path):
    return fake_archive(tmp_path / "archive")


@pytest.fixture
def servers(archive, mast_server_factory, s3_server, monkeypatch):
    """MAST knows every product; the bucket holds all but the first (so that one comes from the portal)."""
    server = mast_server_factory(archive)
    s3_server.clear()
    names = F770W
    for name in names[1:]:
        s3_server.put(server.cloud_path(f"mast:JWST/product/{name}").lstrip("/"), archive / name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    return server, s3_server, names


def client(server, **kw):
    return mast.MastClient(server.url, "", cloud=True, attempts=2, retry_wait=0.01, timeout=5, **kw)


def downloads(server) -> list[str]:
    return [p for m, p, _ in server.requests if m == "GET" and p.startswith("/api/v0.1/Download/file")]


def test_products_come_from_the_bucket_and_the_missing_one_from_the_portal(tmp_path, servers, archive):
    server, _, names = servers
    r = recipe(tmp_path)
    fetched = mast.fetch_inputs(r, tmp_path / "work", client=client(server))
    origins = {f.path.name: f.origin for f in fetched}
    assert origins[names[0]] == f"mast:JWST/product/{names[0]}"
    for name in names[1:]:
        assert origins[name] == f"s3://stpubdata/jwst/public/jw02732/{name[:13]}/{name}"
    for f in fetched:
        assert f.sha256 == hashlib.sha256((archive / f.path.name).read_bytes()).hexdigest() and f.downloaded
    assert len(downloads(server)) == 1 and names[0] in downloads(server)[0]
    lookups = [p for m, p, _ in server.requests if p.startswith("/api/v0.1/path_lookup/")]
    assert len(lookups) == 1  # one batched lookup for every product
    record = json.loads((tmp_path / "work" / "inputs.json").read_text())
    assert {f["origin"] for f in record["files"]} == set(origins.values())
    assert "cloud" not in record["query"]  # how files travel is not what they are
    assert not list((tmp_path / "work").rglob("*.part"))

    again = mast.fetch_inputs(r, tmp_path / "work", client=client(server))
    assert not any(f.downloaded for f in again) and [f.origin for f in again] == [f.origin for f in fetched]


def test_without_cloud_everything_comes_from_the_portal(tmp_path, servers):
    server, _, names = servers
    fetched = mast.fetch_inputs(recipe(tmp_path, ""), tmp_path / "work",
                                client=mast.MastClient(server.url, "", attempts=2, retry_wait=0.01, timeout=5))
    assert all(f.origin.startswith("mast:JWST/product/") for f in fetched)
    assert len(downloads(server)) == len(names)


def test_an_object_whose_size_disagrees_with_mast_is_refused(tmp_path, servers, archive):
    server, s3, names = servers
    key = server.cloud_path(f"mast:JWST/product/{names[1]}").lstrip("/")
    truncated = tmp_path / "short.fits"
    truncated.write_bytes((archive / names[1]).read_bytes()[:-2880])
    s3.put(key, truncated)
    with pytest.raises(WorkFailed, match=rf"{names[1]}: MAST lists \d+ bytes but s3://stpubdata/.* has \d+"):
        mast.fetch_inputs(recipe(tmp_path), tmp_path / "work", client=client(server))
    assert not (tmp_path / "work" / "uncal" / names[1]).exists()


def test_an_unreachable_bucket_is_one_line_naming_the_object(tmp_path, servers, monkeypatch):
    server, _, names = servers
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_port_url())
    with pytest.raises(WorkFailed) as caught:
        mast.fetch_inputs(recipe(tmp_path), tmp_path / "work", client=client(server))
    message = str(caught.value)
    assert message.startswith(f"reading {names[0]} from s3://stpubdata/") and "gave up after 2 attempts" in message
    assert "\n" not in message


def test_a_cloud_origin_is_restored_from_the_bucket_and_a_forged_one_refused(tmp_path, servers, archive, monkeypatch):
    server, _, names = servers
    name = names[1]
    good = f"s3://stpubdata/jwst/public/jw02732/jw02732002001/{name}"
    assert cloud.key_of_origin(good, name) == f"jwst/public/jw02732/jw02732002001/{name}"
    for forged in (f"s3://stpubdata/jwst/public/../../etc/{name}", f"s3://other/jwst/public/x/{name}",
                   f"s3://stpubdata/jwst/private/x/{name}", "s3://stpubdata/jwst/public/x/other_uncal.fits"):
        assert cloud.key_of_origin(forged, name) is None, forged

    class Input:
        def __init__(self, origin):
            self.name, self.origin, self.size = f"uncal/{name}", origin, (archive / name).stat().st_size
            self.sha256 = hashlib.sha256((archive / name).read_bytes()).hexdigest()

    monkeypatch.setenv("MAST_BASE_URL", server.url)
    stage = tmp_path / "stage"
    assert mast.restore(recipe(tmp_path), [Input(good)], stage, {}) == [f"uncal/{name}"]
    assert (stage / "uncal" / name).read_bytes() == (archive / name).read_bytes()
    with pytest.raises(UserError, match="expected uncal/<name> with origin mast:JWST/product/<name> or s3://"):
        mast.restore(recipe(tmp_path), [Input(f"s3://stpubdata/jwst/public/../x/{name}")], tmp_path / "s2", {})
    assert not downloads(server)  # the bucket held it


def test_cloud_must_be_a_boolean(tmp_path):
    with pytest.raises(UserError, match=r"inputs\.mast\.cloud: expected a boolean, got string \"yes\""):
        recipe(tmp_path, 'cloud = "yes"')
    assert recipe(tmp_path).mast.cloud and not recipe(tmp_path, "").mast.cloud
    assert mast.query_dict(recipe(tmp_path).mast) == mast.query_dict(recipe(tmp_path, "").mast)
