"""The MAST provider through the real astroquery.mast code, against a loopback MAST."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from appliance.errors import UserError, WorkFailed
from appliance.recipe import parse_recipe
from appliance.sources import mast
from loopback import closed_port_url
from loopback.data import fake_archive, fake_exposure
from loopback.mast_server import MastServer, mast_server_factory  # noqa: F401 - fixture

TOKEN = "tok-3f9a8c1d-secret"


def recipe(tmp_path, **mast_keys):
    keys = {"program": '"02732"', "observation": '"002"', "instrument": '"MIRI/IMAGE"', "product": '"uncal"'}
    keys.update(mast_keys)
    body = "\n".join(f"{k} = {v}" for k, v in keys.items())
    text = f'schema = 1\n[recipe]\nname = "t"\n[environment]\njwst = "3.0.0"\ncrds_context = "jwst_9000.pmap"\n[inputs.mast]\n{body}\n'
    return parse_recipe(text, tmp_path / "r.toml")


def client(server_or_url, **kw):
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.url
    return mast.MastClient(url, kw.pop("token", ""), attempts=kw.pop("attempts", 3), retry_wait=0.01, timeout=5, **kw)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def archive(tmp_path):
    return fake_archive(tmp_path / "archive")


@pytest.fixture
def server(archive, mast_server_factory):
    return mast_server_factory(archive)


# ----------------------------------------------------------------------------- query


def test_query_selects_exactly_the_recipes_exposures(tmp_path, server):
    products = client(server).products(recipe(tmp_path, filters='["F770W"]').mast)
    assert [p.name for p in products] == [
        "jw02732002001_02101_00001_mirimage_uncal.fits",
        "jw02732002001_02101_00002_mirimage_uncal.fits",
        "jw02732002002_02101_00001_mirimage_uncal.fits",
    ]
    assert all(p.uri == f"mast:JWST/product/{p.name}" and p.size > 0 for p in products)
    # the real astroquery code ran: column config, then the two invoke services
    posts = server.paths("POST")
    assert posts[0].endswith("/portal/Mashup/Mashup.asmx/columnsconfig")
    assert sum(p.endswith("/api/v0/invoke") for p in posts) == 2


def test_query_by_visit_filters_and_product(tmp_path, server):
    c = client(server)
    assert len(c.products(recipe(tmp_path).mast)) == 5  # both filters, both visits
    visit1 = c.products(recipe(tmp_path, visit='"001"', filters='["F1000W"]').mast)
    assert [p.name[:25] for p in visit1] == ["jw02732002001_02101_00003", "jw02732002001_02101_00004"]
    rate = c.products(recipe(tmp_path, product='"rate"').mast)
    assert [p.name for p in rate] == ["jw02732002001_02101_00001_mirimage_rate.fits"]


def test_explicit_file_list(tmp_path, server):
    name = "jw02732002001_02101_00002_mirimage_uncal.fits"
    products = client(server).products(recipe(tmp_path, files=f'["{name}"]').mast)
    assert [p.name for p in products] == [name]
    with pytest.raises(UserError, match="inputs.mast.files: jw02732002001_02101_00009_mirimage_uncal.fits is not among"):
        client(server).products(recipe(tmp_path, files='["jw02732002001_02101_00009_mirimage_uncal.fits"]').mast)


def test_a_query_that_matches_nothing_is_a_user_error(tmp_path, server):
    with pytest.raises(UserError, match="no MAST observations match program 02732, observation 002, MIRI/IMAGE, filters F2550W"):
        client(server).products(recipe(tmp_path, filters='["F2550W"]').mast)
    with pytest.raises(UserError, match="lists no _cal.fits exposures"):
        client(server).products(recipe(tmp_path, product='"cal"').mast)


def test_query_retries_http_500_then_gives_up(tmp_path, server):
    server.invoke_status = [500]
    assert len(client(server).products(recipe(tmp_path, filters='["F770W"]').mast)) == 3
    server.invoke_status = [500] * 10
    with pytest.raises(WorkFailed, match=r"querying MAST at .*: HTTP 500 \(gave up after 3 attempts\)"):
        client(server).products(recipe(tmp_path, filters='["F770W"]').mast)


def test_network_down_is_one_work_failed_line(tmp_path):
    with pytest.raises(WorkFailed) as err:
        client(closed_port_url()).products(recipe(tmp_path).mast)
    assert "connection refused (gave up after 3 attempts)" in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- downloads


def fetch(tmp_path, server, **kw):
    r = recipe(tmp_path, filters='["F770W"]', visit='"001"')
    return mast.fetch_inputs(r, tmp_path / "work", client=client(server, **kw)), r


def test_download_hashes_records_and_places_files(tmp_path, server, archive):
    fetched, _ = fetch(tmp_path, server)
    assert [f.name for f in fetched] == [f"uncal/jw02732002001_02101_0000{i}_mirimage_uncal.fits" for i in (1, 2)]
    for f in fetched:
        original = archive / f.path.name
        assert f.downloaded and f.path.read_bytes() == original.read_bytes()
        assert f.sha256 == sha(original) and f.size == original.stat().st_size
        assert f.origin == f"mast:JWST/product/{f.path.name}" and f.fetched_at.endswith("+00:00")
    record = json.loads((tmp_path / "work" / "inputs.json").read_text())
    assert record["files"] == [f.record() for f in fetched]
    assert record["query"]["filters"] == ["F770W"] and record["mast_base_url"] == server.url
    assert not list((tmp_path / "work").rglob("*.part"))
    assert [h["Range"] for m, p, h in server.requests if "Range" in h] == []


def test_fetched_files_are_reused_without_the_network(tmp_path, server):
    fetched, r = fetch(tmp_path, server)
    server.stop()  # materialise must not need it
    files = mast.materialise(r, tmp_path / "work")
    assert [f.path for f in files] == [f.path for f in fetched]
    assert [f.fetched_at for f in files] == [f.fetched_at for f in fetched]
    assert files[0].origin.startswith("mast:JWST/product/")


def test_a_second_fetch_downloads_nothing(tmp_path, server):
    fetch(tmp_path, server)
    before = len(server.paths("GET"))
    again, _ = fetch(tmp_path, server)
    assert not any(f.downloaded for f in again)
    assert [p for p in server.paths("GET")[before:] if "Download" in p] == []


def test_a_changed_local_file_is_downloaded_again(tmp_path, server, archive, monkeypatch):
    monkeypatch.setenv("MAST_BASE_URL", server.url)
    fetched, r = fetch(tmp_path, server)
    path = fetched[0].path
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, other content
    files = mast.materialise(r, tmp_path / "work")
    assert sha(files[0].path) == sha(archive / path.name)


def test_a_cut_connection_resumes_with_a_range_request(tmp_path, server, archive):
    name = "jw02732002001_02101_00001_mirimage_uncal.fits"
    size = (archive / name).stat().st_size
    server.fail(name, "cut", after=100_000, times=1)
    fetched, _ = fetch(tmp_path, server)
    assert fetched[0].sha256 == sha(archive / name)
    ranges = [h["Range"] for m, p, h in server.requests if m == "GET" and "Range" in h]
    assert ranges == ["bytes=100000-"]
    assert len([p for p in server.paths("HEAD") if name in p]) == 1  # a HEAD only before resuming
    assert server.served_bytes[name] == size  # nothing was sent twice
    assert fetched[0].transferred == size  # both attempts counted


def test_a_connection_cut_every_time_fails_and_keeps_no_final_file(tmp_path, server, archive):
    name = "jw02732002001_02101_00001_mirimage_uncal.fits"
    server.fail(name, "cut", after=50_000, times=3)
    with pytest.raises(WorkFailed) as err:
        fetch(tmp_path, server)
    message = str(err.value)
    assert f"downloading {name}" in message and "connection cut mid-file (gave up after 3 attempts)" in message
    assert "fetch again to resume" in message
    final = tmp_path / "work" / "uncal" / name
    assert not final.exists() and final.with_name(name + ".part").stat().st_size == 150_000
    fetched, _ = fetch(tmp_path, server)  # the fault is spent: the next fetch resumes at 150000
    assert fetched[0].sha256 == sha(archive / name)
    assert [h["Range"] for m, p, h in server.requests if "Range" in h][-1] == "bytes=150000-"


def test_without_range_support_a_partial_file_is_restarted(tmp_path, server, archive):
    name = "jw02732002001_02101_00001_mirimage_uncal.fits"
    part = tmp_path / "work" / "uncal" / (name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage" * 100)
    server.fail(name, "noranges")
    fetched, _ = fetch(tmp_path, server)
    assert fetched[0].sha256 == sha(archive / name) and not part.exists()


@pytest.mark.parametrize("times,ok", [(2, True), (5, False)])
def test_http_500_on_download_is_retried_a_bounded_number_of_times(tmp_path, server, times, ok):
    name = "jw02732002001_02101_00002_mirimage_uncal.fits"
    server.fail(name, "status", status=500, times=times, head_too=True)
    if ok:
        assert len(fetch(tmp_path, server)[0]) == 2
    else:
        with pytest.raises(WorkFailed, match=rf"downloading {name} from MAST at .*: HTTP 500 \(gave up after 3 attempts\)"):
            fetch(tmp_path, server)
        assert not (tmp_path / "work" / "uncal" / name).exists()


def test_http_404_on_download_fails_at_once(tmp_path, server):
    name = "jw02732002001_02101_00001_mirimage_uncal.fits"
    server.fail(name, "status", status=404, times=10, head_too=True)
    with pytest.raises(WorkFailed, match=f"{name}: MAST lists it but its download answered HTTP 404"):
        fetch(tmp_path, server)
    assert len([p for p in server.paths("GET") if name in p]) == 1
    assert not (tmp_path / "work" / "uncal" / name).exists()


def test_a_size_that_disagrees_with_mast_is_refused(tmp_path, archive, mast_server_factory):
    name = "jw02732002001_02101_00001_mirimage_uncal.fits"
    server = MastServer(archive)
    server.listed_size[name] = (archive / name).stat().st_size + 1
    server.start()
    try:
        with pytest.raises(WorkFailed, match=f"{name}: MAST lists .* bytes but its server sends"):
            fetch(tmp_path, server)
    finally:
        server.stop()
    assert not list((tmp_path / "work" / "uncal").glob(name + "*"))


def test_a_truncated_file_on_the_server_is_refused(tmp_path, server):
    name = "jw02732002001_02101_00002_mirimage_uncal.fits"
    server.fail(name, "short", after=1000)
    with pytest.raises(WorkFailed, match="but its server sends 1000"):
        fetch(tmp_path, server)
    assert not list((tmp_path / "work" / "uncal").glob(name + "*"))


# ----------------------------------------------------------------------------- tokens


@pytest.fixture
def private(tmp_path, mast_server_factory):
    archive = tmp_path / "private"
    path = fake_exposure(archive, exposure=1)
    return mast_server_factory(archive, token=TOKEN, exclusive=(path.name,))


def test_exclusive_data_needs_a_token(tmp_path, private):
    with pytest.raises(UserError, match="MAST refused the download \\(HTTP 401\\): exclusive-access data; set MAST_API_TOKEN"):
        fetch(tmp_path, private)


def test_a_wrong_token_is_a_user_error_that_never_shows_the_token(tmp_path, private):
    wrong = "tok-wrong-0000-secret"
    with pytest.raises(UserError) as err:
        fetch(tmp_path, private, token=wrong)
    assert "MAST rejected the token in MAST_API_TOKEN" in str(err.value)
    assert wrong not in str(err.value) and "secret" not in str(err.value)


def test_the_right_token_travels_as_the_mast_token_cookie(tmp_path, private):
    fetched, _ = fetch(tmp_path, private, token=TOKEN)
    assert len(fetched) == 1
    downloads = [h for m, p, h in private.requests if m == "GET" and "Download" in p]
    assert downloads and all(h["has_token_cookie"] for h in downloads)
    assert TOKEN not in (tmp_path / "work" / "inputs.json").read_text()


def test_the_token_is_read_from_the_environment(tmp_path, private, monkeypatch):
    monkeypatch.setenv("MAST_API_TOKEN", TOKEN)
    c = mast.MastClient(private.url, attempts=1)
    r = recipe(tmp_path, filters='["F770W"]')
    assert len(mast.fetch_inputs(r, tmp_path / "work", client=c)) == 1


def test_base_url_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("MAST_BASE_URL", raising=False)
    assert mast.base_url() == "https://mast.stsci.edu"
    monkeypatch.setenv("MAST_BASE_URL", "http://127.0.0.1:1/")
    assert mast.MastClient().base_url == "http://127.0.0.1:1"


def test_files_done_before_a_failure_are_kept_and_not_downloaded_again(tmp_path, server):
    second = "jw02732002001_02101_00002_mirimage_uncal.fits"
    server.fail(second, "status", status=404, times=1, head_too=True)
    with pytest.raises(WorkFailed):
        fetch(tmp_path, server)
    record = json.loads((tmp_path / "work" / "inputs.json").read_text())
    assert record["complete"] is False and [f["name"] for f in record["files"]] == [
        "uncal/jw02732002001_02101_00001_mirimage_uncal.fits"]
    again, _ = fetch(tmp_path, server)
    assert [f.downloaded for f in again] == [False, True]
    assert json.loads((tmp_path / "work" / "inputs.json").read_text())["complete"] is True


def test_token_comes_from_the_variable_or_the_file_the_launcher_mounts(tmp_path):
    from appliance.errors import UserError
    from appliance.sources.mast import token_from_environment

    secret = tmp_path / "mast_api_token"
    secret.write_text("s3cret\n")
    assert token_from_environment({"MAST_API_TOKEN": "direct"}) == "direct"
    assert token_from_environment({"MAST_API_TOKEN_FILE": str(secret)}) == "s3cret"
    assert token_from_environment({}) is None
    with pytest.raises(UserError, match="MAST_API_TOKEN_FILE"):
        token_from_environment({"MAST_API_TOKEN_FILE": str(tmp_path / "none")})
