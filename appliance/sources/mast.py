"""MAST as a recipe input (``[inputs.mast]``): astroquery asks, this module transfers.

The query is astroquery's (``query_criteria`` -> ``get_product_list`` ->
``filter_products``).  The transfer is done here, with astroquery's download
URL and requests session (so a ``mast_token`` cookie travels with it),
because astroquery's public ``download_file`` neither resumes, nor writes
atomically, nor hashes, and MAST publishes sizes but no checksums: the
sha256 computed here while the bytes arrive is the first one anybody has.

The transfer itself is :mod:`appliance.sources.download` (resumable, hashed
while it arrives, checked against MAST's size); a file is renamed to
``<dir>/<name>`` only when complete.  There is no fsync: a file is reused
only when it matches the size and sha256 in the fetch record, so a file torn
by a power cut is detected and fetched again like any other mismatch.  ``fetch`` leaves a fetch record
(``inputs.json``, see :mod:`appliance.workdir`); :func:`materialise` uses the
files it lists without touching the network when they still match their
recorded size and sha256.

Where MAST is: ``$MAST_BASE_URL`` (default https://mast.stsci.edu).
astroquery builds its URLs from ``astroquery.mast.conf.server`` when its
modules are imported, so changing ``conf`` later does nothing.  Rather than
write a config file before import (which breaks if anything imported
astroquery first), :class:`MastClient` makes its own ``ObservationsClass``
and sets the URL attributes on that instance (the portal connection's
``MAST_REQUEST_URL``, ``COLUMNS_CONFIG_URL``, ``MAST_DOWNLOAD_URL``,
``MAST_BUNDLE_URL`` and the auth object's ``SESSION_INFO_URL``): it works
whatever was imported before and leaves astroquery's module-level
``Observations`` alone.

Exclusive-access data: ``$MAST_API_TOKEN`` is handed to astroquery's
``login``; it is never written to a log, an error or the fetch record.

``[inputs.mast] cloud = true``: each product is read from MAST's public S3
mirror (:mod:`appliance.sources.cloud`) when the bucket holds it, from the
portal otherwise; its origin records which (``s3://stpubdata/…`` or
``mast:JWST/product/…``).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from appliance.errors import UserError, WorkFailed, short_reason
from appliance.files import file_sha256, utc_now
from appliance.safety import printable
from appliance.sources import cloud
from appliance.sources.download import Transient, finish, part_path, retry, timeout_adapter, transfer
from appliance.sources.inputfile import InputFile
from appliance.workdir import INPUT_DIR_OF_KIND, load_fetch_record, update_fetch_record

DEFAULT_BASE_URL = "https://mast.stsci.edu"
TOKEN_VARIABLE = "MAST_API_TOKEN"
#: Bounded retries for transient faults (connection refused or cut, timeouts, HTTP 5xx/429).
ATTEMPTS = int(os.environ.get("APPLIANCE_MAST_ATTEMPTS", "4"))
RETRY_WAIT = float(os.environ.get("APPLIANCE_MAST_RETRY_WAIT", "2.0"))  # doubles per attempt, capped at 30 s
TIMEOUT = float(os.environ.get("APPLIANCE_MAST_TIMEOUT", "60"))  # seconds without a byte


def token_from_environment(environ=os.environ) -> str | None:
    """``$MAST_API_TOKEN``, or the file ``$MAST_API_TOKEN_FILE`` names (how the container
    launcher passes it, so that `docker inspect` never shows it)."""
    if environ.get(TOKEN_VARIABLE):
        return environ[TOKEN_VARIABLE]
    path = environ.get(TOKEN_VARIABLE + "_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError:
            raise UserError(f"{TOKEN_VARIABLE}_FILE: cannot read the token file {path}") from None
    return None


@dataclass(frozen=True)
class Product:
    """One file MAST lists: its name, data URI and MAST's size (None when unknown)."""

    name: str
    uri: str
    size: int | None


@dataclass(frozen=True)
class Fetched:
    """A file in the workdir with the facts the fetch record keeps."""

    path: Path
    name: str  # workdir-relative, POSIX
    size: int
    sha256: str
    origin: str
    fetched_at: str
    downloaded: bool  # False when an earlier download was reused
    transferred: int = 0  # bytes that came over the network this time

    def record(self) -> dict:
        return {"name": self.name, "size": self.size, "sha256": self.sha256,
                "origin": self.origin, "fetched_at": self.fetched_at}

    def input_file(self) -> InputFile:
        return InputFile(self.path, self.origin, self.fetched_at)


def base_url(environ=os.environ) -> str:
    """The MAST server to talk to: ``$MAST_BASE_URL`` or the real one."""
    return (environ.get("MAST_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def query_dict(query) -> dict:
    """The recipe's MAST query as plain JSON data (what the fetch record compares)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(query).items() if k not in TRANSFER_KEYS}


#: Keys of ``[inputs.mast]`` that say how to transfer, not what: the same files whichever way they come.
TRANSFER_KEYS = ("cloud",)


# --------------------------------------------------------------------------- run and fetch


def planned(recipe) -> None:
    """A MAST query's exposures are known only once it is asked (at fetch time)."""
    return None


def input_key(recipe, workdir: Path | None = None) -> str:
    """The query: what MAST returns for it is what the fetch record and the files' sha256 then pin down."""
    from appliance.sources import key_of

    return key_of({"query": query_dict(recipe.mast)})


def materialise(recipe, workdir: Path) -> list[InputFile]:
    """The recipe's MAST files in the workdir: those ``fetch`` left if they still verify, else downloaded."""
    workdir = Path(workdir)
    record = load_fetch_record(workdir)
    if record is not None and record.get("complete") and record.get("query") == query_dict(recipe.mast):
        reused = [reuse(workdir, entry) for entry in record.get("files", [])]
        if reused and all(reused):
            return [f.input_file() for f in reused]
    return [f.input_file() for f in fetch_inputs(recipe, workdir)]


def fetch_inputs(recipe, workdir: Path, *, client: MastClient | None = None) -> list[Fetched]:
    """Query MAST for the recipe's products and download what is not already here; updates the fetch record."""
    workdir = Path(workdir)
    query = recipe.mast
    client = client or MastClient(cloud=query.cloud)
    products = client.products(query, where=f"{recipe.path}: inputs.mast")
    client.look_up_cloud_keys(products)
    record = load_fetch_record(workdir) or {}
    known = {e["name"]: e for e in record.get("files", [])}
    out = []
    for product in products:
        rel = f"{INPUT_DIR_OF_KIND[query.product]}/{product.name}"
        fetched = client.download(product, workdir, rel, known.get(rel))
        out.append(fetched)
        if fetched.downloaded:  # keep what is done, should a later file fail
            known[rel] = fetched.record()
            update_fetch_record(workdir, query=query_dict(query), complete=False, mast_base_url=client.base_url,
                                files=list(known.values()))
    update_fetch_record(workdir, query=query_dict(query), complete=True, mast_base_url=client.base_url,
                        files=[f.record() for f in out])
    return out


def restore(recipe, records, stage: Path, targets: dict) -> list[str]:
    """Download each recorded file again, by its recorded name, and check its sha256.

    MAST is not queried: a new query could list files the recorded run never
    saw.  A complete fetch record is left, so ``run`` reuses the files offline.
    """
    client = MastClient(cloud=recipe.mast.cloud)
    fetched_records = []
    expected_dir = INPUT_DIR_OF_KIND[recipe.mast.product]
    for record in records:
        origin = record.origin
        name = PurePosixPath(record.name).name
        known_origin = origin == f"mast:JWST/product/{name}" or cloud.key_of_origin(origin, name) is not None
        if not known_origin or record.name != f"{expected_dir}/{name}":
            raise UserError(f"inputs: {printable(record.name)}: expected {expected_dir}/<name> with origin "
                            f"mast:JWST/product/<name> or s3://{cloud.BUCKET}/jwst/public/…/<name>, found origin "
                            f"{printable(origin)}; the recipe's inputs come from MAST")
        product = Product(name, f"mast:JWST/product/{name}", record.size)
        try:
            fetched = client.download(product, stage, record.name)
        except (UserError, WorkFailed) as exc:
            raise WorkFailed(f"inputs: {record.name}: cannot reach origin {origin}: {exc}") from None
        if fetched.sha256 != record.sha256:
            raise WorkFailed(f"inputs: {record.name}: MAST now serves sha256 {fetched.sha256[:16]}…, the manifest "
                             f"records {record.sha256[:16]}… (the archive reprocessed it)")
        fetched_records.append(fetched.record())
    update_fetch_record(stage, query=query_dict(recipe.mast), complete=True, mast_base_url=client.base_url,
                        files=fetched_records)
    return [r.name for r in records]


def reuse(workdir: Path, entry: dict) -> Fetched | None:
    """The recorded file if it is still there with its recorded size and sha256, else None."""
    path = Path(workdir) / entry["name"]
    try:
        if path.stat().st_size != entry["size"]:
            return None
    except OSError:
        return None
    if file_sha256(path) != entry["sha256"]:
        return None
    return Fetched(path, entry["name"], entry["size"], entry["sha256"], entry["origin"], entry["fetched_at"], False)


# --------------------------------------------------------------------------- the client


class MastClient:
    """astroquery's ``ObservationsClass`` pointed at ``base_url``, plus a resumable, hashed transfer."""

    def __init__(self, base_url_: str | None = None, token: str | None = None, *, cloud: bool = False,
                 attempts: int = ATTEMPTS, retry_wait: float = RETRY_WAIT, timeout: float = TIMEOUT):
        self.base_url = (base_url_ or base_url()).rstrip("/")
        self.cloud = cloud
        self._mirror = None
        self._cloud_keys: dict[str, str | None] = {}
        self.attempts = max(1, attempts)
        self.retry_wait = retry_wait
        self.timeout = timeout
        self._token = token if token is not None else token_from_environment()
        self._obs = None
        self.received = 0  # bytes that came over the network, all attempts counted

    # astroquery is imported on first use only: `run` on fetched files never needs it.
    @property
    def observations(self):
        if self._obs is None:
            self._obs = self._connect()
        return self._obs

    @property
    def session(self):
        return self.observations._session

    def _connect(self):
        from astroquery.mast import ObservationsClass

        obs = ObservationsClass()
        portal = obs._portal_api_connection
        portal.MAST_REQUEST_URL = self.base_url + "/api/v0/invoke"
        portal.COLUMNS_CONFIG_URL = self.base_url + "/portal/Mashup/Mashup.asmx/columnsconfig"
        portal.MAST_DOWNLOAD_URL = self.base_url + "/api/v0.1/Download/file"
        portal.MAST_BUNDLE_URL = self.base_url + "/api/v0.1/Download/bundle"
        portal._column_configs = {}  # the class-level cache may hold another server's configs
        obs._auth_obj.SESSION_INFO_URL = self.base_url + "/whoami"
        adapter = timeout_adapter(self.timeout)
        obs._session.mount("http://", adapter)
        obs._session.mount("https://", adapter)
        if self._token:
            self._login(obs)
        return obs

    def _login(self, obs) -> None:
        from astroquery.exceptions import LoginError

        def login():
            from astroquery import log as astroquery_log

            level = astroquery_log.level
            astroquery_log.setLevel("WARNING")  # not "welcome <name>" on every fetch
            try:
                obs.login(token=self._token)
            except LoginError:
                raise UserError(f"MAST rejected the token in {TOKEN_VARIABLE} (expired, revoked or mistyped); "
                                f"create a new one at https://auth.mast.stsci.edu/token") from None
            except ValueError:  # not JSON: something that is not MAST answered
                raise WorkFailed(f"MAST at {self.base_url} gave an unreadable answer to the token check") from None
            finally:
                astroquery_log.setLevel(level)

        self._retry(f"checking the {TOKEN_VARIABLE} token with MAST at {self.base_url}", login)

    # ------------------------------------------------------------------ query

    def products(self, query, *, where: str = "inputs.mast") -> list[Product]:
        """The exposure products of ``query``: one per file name, sorted by name."""
        from astroquery.exceptions import InvalidQueryError, RemoteServiceError

        criteria = {
            "obs_collection": "JWST",
            # JWST programs are 5-digit strings in recipes; ask for both spellings MAST may store
            "proposal_id": sorted({query.program, query.program.lstrip("0") or "0"}),
            "instrument_name": query.instrument,
        }
        if query.filters:
            criteria["filters"] = list(query.filters)
        if query.calib_level is not None:
            criteria["calib_level"] = [query.calib_level]
        described = _describe(query)
        obs = self.observations

        def ask(func, *args, **kw):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return func(*args, **kw)
            except RemoteServiceError as exc:
                raise WorkFailed(f"MAST at {self.base_url} refused the query for {described}: {short_reason(exc)}") from None
            except InvalidQueryError as exc:
                raise UserError(f"{where}: MAST cannot run this query: {short_reason(exc)}") from None

        observations = self._retry(f"querying MAST at {self.base_url} for {described}",
                                   ask, obs.query_criteria, **criteria)
        if len(observations) == 0:
            raise UserError(f"{where}: no MAST observations match {described}")
        table = self._retry(f"asking MAST at {self.base_url} for the products of {described}",
                            ask, obs.get_product_list, observations)
        if len(table):
            table = obs.filter_products(table, productSubGroupDescription=[query.product.upper()], extension="fits")
        visit = query.visit or r"\d{3}"
        pattern = re.compile(rf"jw{query.program}{query.observation}{visit}_\d{{5}}_\d{{5}}_[a-z0-9]+_{query.product}\.fits",
                             re.ASCII)
        found: dict[str, Product] = {}
        for row in table:
            name = str(row["productFilename"])
            if pattern.fullmatch(name) and name not in found:
                size = row["size"] if "size" in table.colnames else None
                size = int(size) if size is not None and not hasattr(size, "mask") and int(size) > 0 else None
                found[name] = Product(name, str(row["dataURI"]), size)
        if query.files:
            missing = [n for n in query.files if n not in found]
            if missing:
                raise UserError(f"{where}.files: {missing[0]} is not among the {query.product} products of {described}"
                                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
            found = {n: found[n] for n in query.files}
        if not found:
            raise UserError(f"{where}: MAST lists no _{query.product}.fits exposures for {described} "
                            f"({len(observations)} observation(s) matched)")
        return [found[n] for n in sorted(found)]

    # ------------------------------------------------------------------ transfer

    def download_url(self, uri: str) -> str:
        """astroquery's download URL for a data URI (as its ``download_file`` builds it)."""
        return self.observations._portal_api_connection.MAST_DOWNLOAD_URL + "?uri=" + quote(uri, safe=":/")

    def download(self, product: Product, workdir: Path, rel: str, recorded: dict | None = None) -> Fetched:
        """Put ``product`` at ``workdir/rel``; reuse it if it matches ``recorded`` (size and sha256)."""
        target = Path(workdir) / rel
        if recorded is not None and (product.size is None or product.size == recorded["size"]):
            again = reuse(workdir, recorded)
            if again is not None:
                origin = again.origin if cloud.key_of_origin(again.origin, product.name) else product.uri
                return Fetched(again.path, rel, again.size, again.sha256, origin, again.fetched_at, False)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = part_path(target)
        if self.cloud:
            fetched = self._from_cloud(product, target, rel, part)
            if fetched is not None:
                return fetched
        url = self.download_url(product.uri)
        before = part.stat().st_size if part.exists() else 0
        received = self.received
        try:
            size, sha = self._retry(f"downloading {product.name} from MAST at {self.base_url}",
                                                 self._transfer, url, part, product)
        except WorkFailed as exc:
            if part.exists() and part.stat().st_size > before:
                raise WorkFailed(f"{exc} ({part.stat().st_size} bytes kept in {rel}.part; fetch again to resume)") from None
            raise
        finish(part, target)
        return Fetched(target, rel, size, sha, product.uri, utc_now(), True, self.received - received)

    # ------------------------------------------------------------------ the S3 mirror

    @property
    def mirror(self) -> cloud.CloudMirror:
        if self._mirror is None:
            self._mirror = cloud.CloudMirror(self.base_url, self.session, attempts=self.attempts)
        return self._mirror

    def look_up_cloud_keys(self, products: list[Product]) -> None:
        """The bucket keys of ``products`` in batched path lookups (``cloud`` only)."""
        uris = [p.uri for p in products if p.uri not in self._cloud_keys]
        if self.cloud and uris:
            self._cloud_keys.update(self._retry(f"looking up S3 paths with MAST at {self.base_url}",
                                                self.mirror.keys, uris))

    def _from_cloud(self, product: Product, target: Path, rel: str, part: Path) -> Fetched | None:
        """``product`` read from the S3 mirror, or None when the bucket does not hold it (then: the portal)."""
        self.look_up_cloud_keys([product])
        key = self._cloud_keys.get(product.uri)
        if key is None:
            return None
        what = f"reading {product.name} from {cloud.origin_of(key)}"
        size = self._retry(what, self.mirror.size, key)
        if size is None:
            return None
        if product.size is not None and size != product.size:
            raise WorkFailed(f"{product.name}: MAST lists {product.size} bytes but {cloud.origin_of(key)} has {size}; "
                             "not downloaded")
        received = self.received

        def count(n: int) -> None:
            self.received += n

        got, sha = self._retry(what, self.mirror.transfer, key, part, name=product.name, size=size, on_bytes=count)
        finish(part, target)
        return Fetched(target, rel, got, sha, cloud.origin_of(key), utc_now(), True, self.received - received)

    def _transfer(self, url: str, part: Path, product: Product) -> tuple[int, str]:
        def count(n: int) -> None:
            self.received += n

        return transfer(self.session, url, part, name=product.name, listed_size=product.size,
                        check_status=lambda resp: self._check(resp, product), source="MAST", on_bytes=count)

    def _check(self, resp, product: Product) -> None:
        """Turn an HTTP error status of a download into the right kind of failure."""
        code = resp.status_code
        if code < 400:
            return
        if code in (401, 403):
            have = f"the token in {TOKEN_VARIABLE} does not grant access to it" if self._token else \
                f"set {TOKEN_VARIABLE} to a MAST token that grants access"
            raise UserError(f"{product.name}: MAST refused the download (HTTP {code}): exclusive-access data; {have}")
        if code == 404:
            raise WorkFailed(f"{product.name}: MAST lists it but its download answered HTTP 404 (not found)")
        if code >= 500 or code == 429:
            raise Transient(f"HTTP {code}")
        raise WorkFailed(f"{product.name}: the download answered HTTP {code}")

    # ------------------------------------------------------------------ retries

    def _retry(self, what: str, func, *args, **kw):
        """``func(*args)`` with bounded retries on transient faults; then one WorkFailed line."""
        return retry(what, func, *args, attempts=self.attempts, wait=self.retry_wait,
                     http_error=lambda code: self._query_http_error(what, code), **kw)

    def _query_http_error(self, what: str, code: int) -> None:
        """An HTTP error of the query API (astroquery's raise_for_status): retried, or one line saying why not."""
        if code >= 500 or code == 429:
            return
        if code == 404:
            raise UserError(f"{what}: HTTP 404 from the query API; is MAST_BASE_URL ({self.base_url}) right?")
        if code in (401, 403):
            raise UserError(f"{what}: HTTP {code}; check {TOKEN_VARIABLE}")
        raise WorkFailed(f"{what}: HTTP {code}")


def _describe(query) -> str:
    parts = [f"program {query.program}", f"observation {query.observation}"]
    if query.visit:
        parts.append(f"visit {query.visit}")
    parts.append(query.instrument)
    if query.filters:
        parts.append("filters " + ",".join(query.filters))
    if query.calib_level is not None:
        parts.append(f"calib_level {query.calib_level}")
    return ", ".join(parts)