"""MAST's public S3 mirror (bucket ``stpubdata``) as the transfer of ``[inputs.mast] cloud = true``.

A compute node in AWS reads JWST's public products from the bucket faster
than from the MAST portal.  The products are the same bytes; only the
transfer differs, so the query, the fetch record and the sha256 checks are
those of :mod:`appliance.sources.mast`, and a product the bucket does not hold
is fetched from the portal instead, file by file.

Two calls, as astroquery's ``CloudAccess`` makes them: MAST's
``/api/v0.1/path_lookup/`` turns data URIs into bucket keys, then boto3 reads
the object with an unsigned (anonymous) client.  astroquery's own lookup is
hard-coded to https://mast.stsci.edu, so it is done here against
``$MAST_BASE_URL``, which a loopback MAST answers in the tests.  boto3 honours
``$AWS_ENDPOINT_URL`` (a loopback S3 in the tests).  The object goes to
``<name>.part`` (resumed with a byte range after a cut), is hashed as it
arrives and checked against the object's size, exactly as a portal download.
"""

from __future__ import annotations

import re
from pathlib import Path

from appliance.errors import WorkFailed, short_reason
from appliance.sources.download import Transient, append_stream, digest_of_prefix

BUCKET = "stpubdata"
LOOKUP_BATCH = 50  # URIs per path lookup (longer requests get HTTP 414 from MAST)
#: A key the bucket may hold for a JWST product: public, no parent references.
KEY = re.compile(r"jwst/public/(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]+\.fits", re.ASCII)


def origin_of(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


def key_of_origin(origin: str, name: str) -> str | None:
    """The bucket key an ``s3://`` origin names, if it is a public JWST key ending in ``name``, else None."""
    prefix = f"s3://{BUCKET}/"
    if not origin.startswith(prefix):
        return None
    key = origin[len(prefix):]
    ok = KEY.fullmatch(key) and ".." not in key.split("/") and key.rpartition("/")[2] == name
    return key if ok else None


class CloudMirror:
    """Bucket keys from MAST's path lookup, and hashed, resumable object reads with an anonymous boto3 client."""

    def __init__(self, base_url: str, session, *, attempts: int = 4):
        import boto3
        import botocore
        from botocore.config import Config

        self.base_url = base_url.rstrip("/")
        self.session = session
        self._errors = botocore.exceptions
        config = Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": attempts, "mode": "standard"})
        self.s3 = boto3.client("s3", config=config, region_name="us-east-1")

    def keys(self, uris: list[str]) -> dict[str, str | None]:
        """Each data URI's key in the bucket (None when MAST knows no path for it)."""
        found: dict[str, str | None] = {}
        for start in range(0, len(uris), LOOKUP_BATCH):
            chunk = uris[start:start + LOOKUP_BATCH]
            resp = self.session.get(self.base_url + "/api/v0.1/path_lookup/", params={"uri": chunk},
                                    headers={"Accept": "text/plain"})
            resp.raise_for_status()
            answer = resp.json()
            for uri in chunk:
                path = (answer.get(uri) or {}).get("path")
                key = path.lstrip("/") if isinstance(path, str) else None
                found[uri] = key if key and KEY.fullmatch(key) and ".." not in key.split("/") else None
        return found

    def size(self, key: str) -> int | None:
        """The object's size, or None when the bucket does not hold it."""
        try:
            return int(self.s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"])
        except self._errors.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "403", "AccessDenied"):
                return None
            raise Transient(f"S3 {short_reason(exc)}") from None
        except self._errors.BotoCoreError as exc:  # no connection, a timeout
            raise Transient(f"S3 {short_reason(exc)}") from None

    def transfer(self, key: str, part: Path, *, name: str, size: int, on_bytes=None) -> tuple[int, str]:
        """One attempt: read the object into ``part`` (from where a cut left it), hashing as it arrives."""
        offset = part.stat().st_size if part.exists() else 0
        if offset > size:
            offset = 0
        digest = digest_of_prefix(part, offset)
        received = 0
        try:
            if offset < size:
                extra = {"Range": f"bytes={offset}-"} if offset else {}
                body = self.s3.get_object(Bucket=BUCKET, Key=key, **extra)["Body"]
                received = append_stream(part, offset, body.read, digest, on_bytes)
        except (self._errors.ClientError, self._errors.BotoCoreError) as exc:  # HTTP errors, cuts, timeouts
            raise Transient(f"S3 {short_reason(exc)}") from None
        total = offset + received
        if total < size:
            raise Transient(f"the S3 read ended after {total} of {size} bytes")
        if total > size:
            part.unlink(missing_ok=True)
            raise WorkFailed(f"{name}: received {total} bytes from s3://{BUCKET} but the object has {size}; not kept")
        return total, digest.hexdigest()
