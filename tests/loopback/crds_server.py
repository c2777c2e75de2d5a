"""A loopback CRDS server: the JSON-RPC calls and file URLs the crds client uses to sync.

It serves an existing CRDS cache directory (``mappings/jwst/*``,
``references/jwst/**``), as ``crds sync`` and ``crds.getreferences`` in
``auto`` mode expect:

* ``POST /json/<method>/<id>/`` with ``{"jsonrpc", "method", "params", "id"}``
  -> ``{"result", "error", "id"}``; methods ``get_server_info`` (with
  ``mapping_url``/``reference_url`` keyed by ``jwst``, ``force_remote_mode``,
  ``last_synced`` and crds-encoded ``download_metadata``: size and sha1 of
  every file), ``get_mapping_names``, ``get_reference_names``,
  ``get_file_info_map``, ``get_build_context``, ``get_default_context``,
  ``get_url``;
* ``GET /unchecked_get/mappings/jwst/<name>`` and
  ``/unchecked_get/references/jwst/<name>``: the files.

Faults: ``corrupt`` (serve a file with one byte flipped, so the client's
sha1 check fails), ``status`` (answer a file with an HTTP status), and
``down_rpc`` (answer every JSON-RPC call with HTTP 500).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from . import LoopbackServer

MAPPING = re.compile(r"[A-Za-z0-9_.-]+\.[pir]map")


class CrdsServer(LoopbackServer):
    """Serves the CRDS cache at ``cache_dir`` for ``context`` (its operational context)."""

    def __init__(self, cache_dir: Path, context: str):
        super().__init__()
        self.cache_dir = Path(cache_dir)
        self.context = context
        self.corrupt: set[str] = set()
        self.file_status: dict[str, int] = {}
        self.down_rpc = False
        self.downloads: dict[str, int] = {}
        self.rpc_calls: list[str] = []
        self.handler = _Handler
        self.files: dict[str, Path] = {}
        self.meta: dict[str, dict] = {}

    def start(self):
        self.rescan()
        return super().start()

    def rescan(self) -> None:
        """Index every mapping and reference file of the cache with its size and sha1."""
        files = {}
        for sub in ("mappings", "references"):
            for path in sorted((self.cache_dir / sub / "jwst").rglob("*")):
                if path.is_file():
                    files[path.name] = path
        self.files = files
        self.meta = {name: {"size": str(p.stat().st_size), "sha1sum": hashlib.sha1(p.read_bytes()).hexdigest()}
                     for name, p in files.items()}

    # ------------------------------------------------------------ the catalogue

    def mapping_closure(self, context: str) -> list[str]:
        """The context and every mapping it names, recursively."""
        if context not in self.files:
            raise KeyError(f"Unknown context {context!r}")
        seen, todo = [], [context]
        while todo:
            name = todo.pop()
            if name in seen or name not in self.files:
                continue
            seen.append(name)
            text = self.files[name].read_text()
            todo.extend(n for n in MAPPING.findall(text) if n != name and n.endswith(("map",)))
        return sorted(seen)

    def reference_names(self, context: str) -> list[str]:
        maps = self.mapping_closure(context)
        names = set()
        for m in maps:
            for token in re.findall(r"'([A-Za-z0-9_.-]+\.(?:fits|asdf|json|yaml))'", self.files[m].read_text()):
                names.add(token)
        return sorted(names)

    def server_info(self) -> dict:
        from crds.client.proxy import crds_encode

        base = self.url.replace("127.0.0.1", "localhost")
        return {
            "observatory": "jwst",
            "operational_context": self.context,
            "edit_context": self.context,
            "bad_files_list": [],
            "bad_files": "",
            "force_remote_mode": False,
            "last_synced": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "mapping_url": {"jwst": base + "/unchecked_get/mappings/jwst/"},
            "reference_url": {"jwst": base + "/unchecked_get/references/jwst/"},
            "crds_version": {"str": "loopback", "file": "crds", "svnurl": "", "svn_version": ""},
            "download_metadata": crds_encode(self.meta),
        }

    def call(self, method: str, params: list):
        with self.lock:
            self.rpc_calls.append(method)
        if method == "get_server_info":
            return self.server_info()
        if method == "get_mapping_names":
            return self.mapping_closure(params[0])
        if method == "get_reference_names":
            return self.reference_names(params[0])
        if method in ("get_build_context", "get_default_context"):
            return self.context
        if method == "get_file_info_map":
            _observatory, files, _fields = (list(params) + [None, None, None])[:3]
            names = files or sorted(self.meta)
            return {n: {**self.meta[n], "rejected": "false", "blacklisted": "false", "state": "operational"}
                    if n in self.meta else "NOT FOUND" for n in names}
        if method == "get_url":
            name = params[1]
            kind = "mappings" if MAPPING.fullmatch(name) else "references"
            return f"{self.url}/unchecked_get/{kind}/jwst/{name}"
        raise KeyError(f"method {method!r} is not served by the loopback CRDS server")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, *args) -> None:
        pass

    @property
    def app(self) -> CrdsServer:
        return self.server.app

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_POST(self) -> None:
        self.app.record("POST", self.path, {})
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if not urlsplit(self.path).path.startswith("/json/"):
            self._send(404, b"not found", "text/plain")
            return
        if self.app.down_rpc:
            self._send(500, b"Internal Server Error", "text/plain")
            return
        request = json.loads(body)
        try:
            reply = {"result": self.app.call(request["method"], request.get("params") or []),
                     "error": None, "id": request.get("id")}
        except Exception as exc:  # noqa: BLE001 - JSON-RPC carries the error to the client
            reply = {"result": None, "error": {"name": type(exc).__name__, "message": str(exc)}, "id": request.get("id")}
        self._send(200, json.dumps(reply).encode(), "application/json")

    def do_GET(self) -> None:
        self.app.record("GET", self.path, {})
        m = re.fullmatch(r"/unchecked_get/(mappings|references)/jwst/([^/]+)", unquote(urlsplit(self.path).path))
        name = m.group(2) if m else None
        if name is None or name not in self.app.files:
            self._send(404, b"not found", "text/plain")
            return
        if name in self.app.file_status:
            self._send(self.app.file_status[name], b"error", "text/plain")
            return
        data = self.app.files[name].read_bytes()
        if name in self.app.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        with self.app.lock:
            self.app.downloads[name] = self.app.downloads.get(name, 0) + 1
        self._send(200, data, "application/octet-stream")


@pytest.fixture
def crds_server_factory():
    """Start loopback CRDS servers (``factory(cache_dir, context)``); all are stopped afterwards."""
    started = []

    def factory(cache_dir, context) -> CrdsServer:
        server = CrdsServer(cache_dir, context).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def crds_url(server: CrdsServer) -> str:
    """The server URL as the crds client should be given it ("localhost" spares non-https warnings)."""
    return server.url.replace("127.0.0.1", "localhost")
