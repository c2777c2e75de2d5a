"""A loopback MAST: the portal API calls astroquery.mast makes, answered from FITS files.

Served, in the shapes of the real responses (astroquery's recorded
``columnsconfig.json``, ``caom.json``, ``products.json``):

* ``POST /portal/Mashup/Mashup.asmx/columnsconfig`` - the recorded column config;
* ``POST /api/v0/invoke`` with form field ``request=<JSON>``: ``Mast.Caom.Filtered``
  (filters on obs_collection, proposal_id, instrument_name, filters,
  calib_level, obs_id, ...) and ``Mast.Caom.Products`` (``obsid`` comma-joined);
* ``GET|HEAD /api/v0.1/Download/file?uri=mast:JWST/product/<name>`` with
  ``Accept-Ranges: bytes`` and ``Range: bytes=N-`` (206 + Content-Range);
* ``GET /whoami`` - the session info astroquery's ``login`` checks, driven by
  the ``mast_token`` cookie.

The catalogue comes from a directory of ``*_uncal.fits`` / ``*_rate.fits`` /
``*_cal.fits`` files: one exposure-level observation (calib_level 2) per
exposure and one level-3 observation per program/observation/filter whose
product list holds its members' files (as MAST lists them), plus an ``_i2d``
and a preview row that a client must filter out.

Faults (see :meth:`MastServer.fail`): HTTP status, a connection cut after N
bytes, a truncated file, a listed size that disagrees with the file, no
range support; ``invoke_status`` answers the next query calls with a status.
"""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from . import LoopbackServer

SUFFIXES = ("uncal", "rate", "cal")
CALIB_LEVEL = {"uncal": 1, "rate": 2, "cal": 2}
DESCRIPTION = {
    "uncal": "exposure (L1b): Uncalibrated 4D exposure data",
    "rate": "exposure (L2a): Countrate data averaged over integrations",
    "cal": "exposure (L2b): Calibrated exposure data",
}
NAME = re.compile(r"^(?P<exp>jw\d{11}_\d{5}_\d{5}_[a-z0-9]+)_(?P<suffix>uncal|rate|cal)\.fits$")

OBS_FIELDS = [
    ("dataproduct_type", "string"), ("obs_collection", "string"), ("instrument_name", "string"),
    ("project", "string"), ("filters", "string"), ("wavelength_region", "string"),
    ("target_name", "string"), ("target_classification", "string"), ("obs_id", "string"),
    ("s_ra", "float"), ("s_dec", "float"), ("proposal_id", "string"), ("proposal_pi", "string"),
    ("calib_level", "int"), ("t_min", "float"), ("t_max", "float"), ("t_exptime", "float"),
    ("em_min", "float"), ("em_max", "float"), ("obs_title", "string"), ("t_obs_release", "float"),
    ("s_region", "string"), ("jpegURL", "string"), ("dataURL", "string"), ("dataRights", "string"),
    ("obsid", "string"), ("objID", "string"), ("_selected_", "boolean"),
]
PRODUCT_FIELDS = [
    ("obsID", "string"), ("obs_collection", "string"), ("dataproduct_type", "string"),
    ("obs_id", "string"), ("description", "string"), ("type", "string"), ("dataURI", "string"),
    ("productType", "string"), ("productGroupDescription", "string"),
    ("productSubGroupDescription", "string"), ("productDocumentationURL", "string"),
    ("project", "string"), ("prvversion", "string"), ("proposal_id", "string"),
    ("productFilename", "string"), ("size", "int"), ("parent_obsid", "string"),
    ("dataRights", "string"), ("calib_level", "int"), ("filters", "string"), ("_selected_", "boolean"),
]


def _columns_config() -> bytes:
    """astroquery's own recorded columns config (the real MAST answer for Mast.Caom.Cone)."""
    import astroquery.mast.tests as recorded

    return (Path(recorded.__file__).parent / "data" / "columnsconfig.json").read_bytes()


@dataclass
class Fault:
    """What to do to the next ``times`` downloads (GET) of one file.

    kind: ``"status"`` (answer ``status``), ``"cut"`` (send the full
    Content-Length, then close after ``after`` bytes of this response),
    ``"short"`` (the server's copy is truncated to ``after`` bytes, with a
    consistent Content-Length), ``"noranges"`` (ignore Range, no Accept-Ranges).
    """

    kind: str
    times: int = 1
    status: int = 500
    after: int = 0
    head_too: bool = False  # also answer HEAD with the status


class MastServer(LoopbackServer):
    """Serves the FITS files of ``data_dir`` as MAST would; see the module docstring."""

    def __init__(self, data_dir: Path, *, token: str | None = None, exclusive: tuple[str, ...] = ()):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.token = token
        self.exclusive = set(exclusive)
        self.faults: dict[str, Fault] = {}
        self.listed_size: dict[str, int] = {}  # product-list size overrides
        self.invoke_status: list[int] = []  # statuses for the next invoke calls
        self.served_bytes: dict[str, int] = {}
        self.rate: float | None = None  # bytes/s per download, to emulate a real link (benchmarks)
        self.observations: list[dict] = []
        self.products: dict[str, list[dict]] = {}
        self._scan_lock = threading.Lock()
        self.handler = _Handler

    def start(self):
        self.rescan()
        return super().start()

    # ------------------------------------------------------------ catalogue

    def rescan(self) -> None:
        """Build the observations and product lists from the FITS headers in ``data_dir``."""
        from astropy.io import fits

        exposures: dict[str, dict] = {}
        files: dict[str, dict[str, Path]] = {}
        for path in sorted(self.data_dir.iterdir()):
            m = NAME.match(path.name)
            if not m:
                continue
            h = fits.getheader(path)
            exp = m["exp"]
            files.setdefault(exp, {})[m["suffix"]] = path
            exposures.setdefault(exp, {
                "program": str(h.get("PROGRAM", exp[2:7])).strip(),
                "observation": str(h.get("OBSERVTN", exp[7:10])).strip(),
                "visit": str(h.get("VISIT", exp[10:13])).strip(),
                "filter": str(h.get("FILTER", "")).strip(),
                "instrument": str(h.get("INSTRUME", "MIRI")).strip(),
                "target": str(h.get("TARGPROP", h.get("TARGNAME", "SIMULATED"))).strip(),
                "ra": float(h.get("TARG_RA", 0.0) or 0.0),
                "dec": float(h.get("TARG_DEC", 0.0) or 0.0),
            })
        observations, products = [], {}
        level3: dict[tuple, list[str]] = {}
        for exp, info in exposures.items():
            level3.setdefault((info["program"], info["observation"], info["filter"]), []).append(exp)
        for exp, info in sorted(exposures.items()):
            obsid = _obsid(exp)
            observations.append(self._observation(obsid, exp, info, calib_level=2))
            products[obsid] = [self._product(obsid, exp, info, s, p) for s, p in sorted(files[exp].items())]
        for (program, obs, filt), members in sorted(level3.items()):
            info = exposures[members[0]]
            obs_id = f"jw{program}-o{obs}_t001_{info['instrument'].lower()}_{filt.lower()}"
            obsid = _obsid(obs_id)
            observations.append(self._observation(obsid, obs_id, info, calib_level=3))
            rows = [self._product(obsid, exp, exposures[exp], s, p)
                    for exp in sorted(members) for s, p in sorted(files[exp].items())]
            rows.append(self._extra(obsid, obs_id, info, f"{obs_id}_i2d.fits", "I2D", "SCIENCE", 3))
            rows.append(self._extra(obsid, obs_id, info, f"{obs_id}_i2d.jpg", "", "PREVIEW", 3))
            products[obsid] = rows
        with self._scan_lock:
            self.observations, self.products = observations, products

    def _observation(self, obsid: str, obs_id: str, info: dict, calib_level: int) -> dict:
        return {
            "dataproduct_type": "image", "obs_collection": "JWST",
            "instrument_name": f"{info['instrument']}/IMAGE", "project": "JWST",
            "filters": info["filter"], "wavelength_region": "INFRARED", "target_name": info["target"],
            "target_classification": "", "obs_id": obs_id, "s_ra": info["ra"], "s_dec": info["dec"],
            # MAST's proposal_id for JWST carries no leading zeros
            "proposal_id": str(int(info["program"])), "proposal_pi": "Simulated, A.",
            "calib_level": calib_level, "t_min": 59770.0, "t_max": 59770.1, "t_exptime": 100.0,
            "em_min": 6.6e3, "em_max": 8.8e3, "obs_title": "Loopback MAST observation",
            "t_obs_release": 59770.1, "s_region": "POLYGON 0 0 1 0 1 1 0 1", "jpegURL": None,
            "dataURL": None, "dataRights": "PUBLIC", "obsid": obsid, "objID": obsid, "_selected_": None,
        }

    def _product(self, obsid: str, exp: str, info: dict, suffix: str, path: Path) -> dict:
        name = path.name
        return {
            "obsID": obsid, "obs_collection": "JWST", "dataproduct_type": "image", "obs_id": exp,
            "description": DESCRIPTION[suffix], "type": "S", "dataURI": f"mast:JWST/product/{name}",
            "productType": "SCIENCE",
            "productGroupDescription": "Minimum Recommended Products" if suffix == "cal" else None,
            "productSubGroupDescription": suffix.upper(), "productDocumentationURL": "",
            "project": "CALJWST", "prvversion": "1.17.1", "proposal_id": str(int(info["program"])),
            "productFilename": name, "size": self.listed_size.get(name, path.stat().st_size),
            "parent_obsid": obsid,
            "dataRights": "EXCLUSIVE_ACCESS" if name in self.exclusive else "PUBLIC",
            "calib_level": CALIB_LEVEL[suffix], "filters": info["filter"], "_selected_": None,
        }

    def _extra(self, obsid, obs_id, info, name, subgroup, ptype, level) -> dict:
        return {
            "obsID": obsid, "obs_collection": "JWST", "dataproduct_type": "image", "obs_id": obs_id,
            "description": "combined image", "type": "D", "dataURI": f"mast:JWST/product/{name}",
            "productType": ptype, "productGroupDescription": "Minimum Recommended Products",
            "productSubGroupDescription": subgroup, "productDocumentationURL": "", "project": "CALJWST",
            "prvversion": "1.17.1", "proposal_id": str(int(info["program"])), "productFilename": name,
            "size": 1000, "parent_obsid": obsid, "dataRights": "PUBLIC", "calib_level": level,
            "filters": info["filter"], "_selected_": None,
        }

    # ------------------------------------------------------------ faults

    def fail(self, name: str, kind: str, *, times: int = 1, status: int = 500, after: int = 0,
             head_too: bool = False) -> None:
        """Make the next ``times`` GETs of file ``name`` misbehave (see :class:`Fault`)."""
        self.faults[name] = Fault(kind, times, status, after, head_too)

    def _take_fault(self, name: str, method: str) -> Fault | None:
        with self.lock:
            fault = self.faults.get(name)
            if fault is None or fault.times <= 0:
                return None
            if fault.kind in ("short", "noranges"):
                return fault  # a property of the file, not of one request
            if method == "HEAD" and not fault.head_too:
                return None
            fault.times -= 1
            return fault

    # ------------------------------------------------------------ queries

    def invoke(self, request: dict) -> dict:
        service = request.get("service")
        params = request.get("params", {})
        with self._scan_lock:
            observations, products = self.observations, self.products
        if service == "Mast.Caom.Filtered":
            rows = [o for o in observations if all(_matches(o, f) for f in params.get("filters", []))]
            fields = OBS_FIELDS
        elif service == "Mast.Caom.Products":
            rows = []
            for obsid in str(params.get("obsid", "")).split(","):
                rows.extend(products.get(obsid.strip(), []))
            fields = PRODUCT_FIELDS
        else:
            return {"status": "ERROR", "msg": f"service {service!r} is not served by the loopback MAST",
                    "data": [], "fields": []}
        return {
            "status": "COMPLETE", "msg": "",
            "fields": [{"name": n, "type": t} for n, t in fields],
            "data": rows,
            "paging": {"page": 1, "pageSize": len(rows), "pagesFiltered": 1, "rows": len(rows),
                       "rowsFiltered": len(rows), "rowsTotal": len(rows)},
        }

    def file_for(self, uri: str) -> Path | None:
        m = re.fullmatch(r"mast:JWST/product/([^/]+)", uri)
        if not m:
            return None
        path = self.data_dir / m.group(1)
        return path if path.is_file() else None


    def cloud_path(self, uri: str) -> str | None:
        """Where MAST's path lookup says a product lives (its key in the S3 mirror, after a leading slash)."""
        path = self.file_for(uri)
        if path is None:
            return None
        return f"/jwst/public/{path.name[:7]}/{path.name[:13]}/{path.name}"


def _obsid(obs_id: str) -> str:
    """A stable numeric obsid (MAST's "Product Group Id"), as a string."""
    return str(80000000 + zlib.crc32(obs_id.encode()) % 10000000)


def _matches(row: dict, flt: dict) -> bool:
    """One mashup filter entry {paramName, values, separator?, freeText?} against a row."""
    name = flt["paramName"]
    key = next((k for k in row if k.lower() == name.lower()), None)
    if key is None:
        return False
    value = row[key]
    values = flt.get("values", [])
    if values and isinstance(values[0], dict):  # continuous: [{min, max}]
        return any(v["min"] <= float(value) <= v["max"] for v in values)
    parts = [str(value)]
    if flt.get("separator"):
        parts = str(value).split(flt["separator"])
    parts = [p.strip().lower() for p in parts]
    hit = any(str(v).lower() in parts for v in values)
    if flt.get("freeText"):
        pattern = re.escape(flt["freeText"].lower()).replace("%", ".*")
        hit = hit or any(re.fullmatch(pattern, p) for p in parts)
    return hit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, *args) -> None:  # quiet
        pass

    @property
    def app(self) -> MastServer:
        return self.server.app

    def _note(self) -> None:
        keep = {k: self.headers[k] for k in ("Range", "Content-Type") if k in self.headers}
        keep["has_token_cookie"] = "mast_token=" in (self.headers.get("Cookie") or "")
        self.app.record(self.command, self.path, keep)

    def _send(self, status: int, body: bytes, ctype: str = "application/json", extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _cookie_token(self) -> str | None:
        m = re.search(r"(?:^|;\s*)mast_token=([^;]*)", self.headers.get("Cookie") or "")
        return m.group(1) if m else None

    def _body(self) -> str:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode() if n else ""

    def do_POST(self) -> None:
        self._note()
        path = urlsplit(self.path).path
        body = self._body()
        if path.endswith("/portal/Mashup/Mashup.asmx/columnsconfig"):
            self._send(200, _columns_config())
            return
        if path.endswith("/api/v0/invoke"):
            with self.app.lock:
                status = self.app.invoke_status.pop(0) if self.app.invoke_status else 200
            if status != 200:
                self._send(status, b"Internal Server Error", "text/plain")
                return
            form = parse_qs(body)
            request = json.loads(form["request"][0])
            self._json(self.app.invoke(request))
            return
        self._send(404, b"not found", "text/plain")

    def do_GET(self) -> None:
        self._note()
        parts = urlsplit(self.path)
        if parts.path == "/whoami":
            ok = self.app.token is not None and self._cookie_token() == self.app.token
            self._json({"anon": not ok, "attrib": {"display_name": "Loopback User"} if ok else {},
                        "ezid": "loopback" if ok else "anonymous", "scopes": ["mast:exclusive_access"] if ok else []})
            return
        if parts.path == "/api/v0.1/Download/file":
            self._download(parts)
            return
        if parts.path == "/api/v0.1/path_lookup/":  # as MAST answers it: {uri: {"path": ... or null}}
            uris = parse_qs(parts.query).get("uri", [])
            self._json({uri: {"path": self.app.cloud_path(uri)} for uri in uris})
            return
        self._send(404, b"not found", "text/plain")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _sendfile(self, fh, start: int, count: int) -> int:
        """sendfile, paced to ``rate`` bytes/s when the server emulates a real network link."""
        rate = self.app.rate
        if not rate:
            return self.connection.sendfile(fh, start, count)
        t0, sent = time.perf_counter(), 0
        while sent < count:
            n = self.connection.sendfile(fh, start + sent, min(256 * 1024, count - sent))
            if not n:
                break
            sent += n
            ahead = sent / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
        return sent

    def _download(self, parts) -> None:
        uri = unquote(parse_qs(parts.query).get("uri", [""])[0])
        path = self.app.file_for(uri)
        name = uri.rsplit("/", 1)[-1]
        if path is None:
            self._send(404, b"File not found", "text/plain")
            return
        if name in self.app.exclusive and (self.app.token is None or self._cookie_token() != self.app.token):
            self._send(401, b"Unauthorized: exclusive-access data", "text/plain")
            return
        fault = self.app._take_fault(name, self.command)
        if fault is not None and fault.kind == "status":
            self._send(fault.status, f"HTTP {fault.status}".encode(), "text/plain")
            return
        total = path.stat().st_size
        if fault is not None and fault.kind == "short":
            total = min(total, fault.after)
        ranges = fault is None or fault.kind != "noranges"
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and ranges:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m.group(1))
                if start >= total:
                    self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{total}"})
                    return
                status = 206
        length = total - start
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Disposition", f"attachment; filename={name}")
        if ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        self.end_headers()
        if self.command == "HEAD":
            return
        send = length
        if fault is not None and fault.kind == "cut":
            send = max(0, min(length, fault.after))
        with open(path, "rb") as fh:
            self.wfile.flush()
            sent = self._sendfile(fh, start, send) if send else 0
        with self.app.lock:
            self.app.served_bytes[name] = self.app.served_bytes.get(name, 0) + sent
        if send < length:
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass


@pytest.fixture
def mast_server_factory():
    """Start loopback MAST servers (``factory(data_dir, **kw)``); all are stopped afterwards."""
    started = []

    def factory(data_dir, **kw) -> MastServer:
        server = MastServer(data_dir, **kw).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def token_environ(server: MastServer, token: str | None) -> dict:
    """Environment for a process that should talk to ``server`` (with ``token`` if given)."""
    env = {"MAST_BASE_URL": server.url}
    if token is not None:
        env["MAST_API_TOKEN"] = token
    return env


