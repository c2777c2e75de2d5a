"""Content digests: a hash of what a product says, not of when it was written.

jwst stamps the wall-clock time, per-step logs and an unordered list of ASDF
extensions into every product, so two identical reductions never produce the
same file sha256.  :func:`content_digest` hashes a canonical serialisation of a
product from which exactly those volatile items are removed, so an unchanged
reduction gives an unchanged digest and any change to data, header cards or
metadata changes it.

Which items are volatile is decided in ONE place, the ``VOLATILE_*`` and
``UNORDERED_*`` constants below.  They were measured, not guessed:

* jwst 3.0.0 / stdatamodels 6.0.0 / asdf 5.4.0 / astropy 8.0.2, Python 3.11;
* the same product written twice by separate processes (different
  ``PYTHONHASHSEED``) at least a second apart -- a plain ``ImageModel.save()``
  and a real ``ResampleStep`` mosaic of two exposures (SCI/ERR/CON/WHT/VAR_*,
  ``HDRTAB``, an ``ASDF`` HDU carrying a gwcs with binary blocks and
  ``cal_logs``) -- and every header card, table column and ASDF tree entry
  compared between the two;
* two runs of the demo recipe: every uncal, rate and rateints file and the
  image2 association compared item by item (the rate files showed exactly
  ``DATE``, ``NAXIS1``/``TFORM1`` of the ``ASDF`` HDU, ``meta.date``,
  ``_fits_hash`` and ``cal_logs``);
* the full demo reduction (detector1, image2, image3, source catalog) run four
  times and regenerated from scratch (``SIMULATION-FACTS.md``: "What changes
  between two identical runs").

``tests/test_digest.py::test_measured_volatile_items`` repeats the measurement
on every test run: whatever differs must be listed here, and what is listed
here must really be volatile.

Canonicalised kinds (everything else is the sha256 of the file's bytes):

* ``.fits`` (and ``.fit``/``.fts``): see :func:`fits_digest`;
* ``.asdf``: the tree minus the volatile entries, plus every binary block;
* ``.ecsv``: the text with the value of volatile metadata entries blanked;
* ``.html``: the page with the regions that describe its environment blanked
  (the report's package versions and container image).

``.json`` association files, PNG previews, logs, ``.fits.gz`` and anything
else are hashed as bytes, so for them ``content_digest == "sha256:" + sha256``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
from pathlib import Path
from typing import Any, BinaryIO

from appliance.errors import WorkFailed

__all__ = [
    "DIGEST_FORMAT",
    "UNORDERED_ASDF_PATHS",
    "VOLATILE_ASDF_HDU_CARDS",
    "VOLATILE_ASDF_PATHS",
    "VOLATILE_ECSV_META",
    "VOLATILE_HTML_REGIONS",
    "VOLATILE_HDU_CARDS",
    "VOLATILE_PRIMARY_CARDS",
    "VOLATILE_TABLE_COLUMNS",
    "asdf_digest",
    "bytes_digest",
    "canonical_asdf_tree",
    "canonical_kind",
    "content_digest",
    "describe",
    "ecsv_digest",
    "fits_digest",
    "html_digest",
]

# --------------------------------------------------------------------------
# The volatile items: the only place they are listed.
# --------------------------------------------------------------------------

#: Version of the canonical serialisation; part of every canonical digest, so
#: a change to the rules below (bump it) can never collide with old digests.
DIGEST_FORMAT = "jwst-appliance-content-digest/2"

#: Primary-header cards that change on every write.  ``DATE`` is the UTC time
#: the file was written (stdatamodels stamps it on ``save()``).
VOLATILE_PRIMARY_CARDS = frozenset({"DATE"})

#: Cards of the ``ASDF`` HDU that change on every write.  The HDU is a one-row
#: byte table holding a whole ASDF file; its length follows ``cal_logs``
#: (timestamps, durations, object addresses), so the row width ``NAXIS1`` and
#: the column format ``TFORM1`` (``'<n>B'``) vary.  The tree itself is digested
#: entry by entry instead of as bytes.
VOLATILE_ASDF_HDU_CARDS = frozenset({"NAXIS1", "TFORM1"})

#: Cards dropped from every HDU.  jwst 3.0.0 writes no ``CHECKSUM``/``DATASUM``
#: (measured), but whenever a writer adds them they hash the volatile cards
#: above, so they would be volatile too.
VOLATILE_HDU_CARDS = frozenset({"CHECKSUM", "DATASUM"})

#: Entries of the ASDF tree (as key paths from the root) that change on every
#: write: the write time, stdatamodels' hash of all FITS headers (it covers
#: ``DATE``), and the per-step logs of the whole run (timestamps, durations,
#: ``<... object at 0x7f...>`` addresses).
VOLATILE_ASDF_PATHS = frozenset({
    ("meta", "date"),
    ("_fits_hash",),
    ("cal_logs",),
})

#: Lists in the ASDF tree whose order changes between identical writes (asdf
#: records the extensions it used in set order, which varies even with a fixed
#: ``PYTHONHASHSEED``): they are sorted by their canonical JSON.
UNORDERED_ASDF_PATHS = frozenset({
    ("history", "extensions"),
})

#: Columns of binary tables (by ``EXTNAME``) whose values change on every run:
#: image3 mosaics carry a ``HDRTAB`` row per input exposure, and its ``DATE``
#: column is the ``meta.date`` each input model was stamped with.  The same
#: table saved as a standalone ``.asdf`` is the structured array at the tree's
#: top-level key ``hdrtab`` (the lower-cased name), stored in a binary block.
VOLATILE_TABLE_COLUMNS = {"HDRTAB": frozenset({"DATE"})}

#: Entries of an ECSV catalog's ``meta`` header: photutils' ``date`` of the
#: catalog's creation, and ``version``, the software versions that wrote it
#: (the interpreter's patch level differs between the image's Debian Python
#: and a host's; the manifest records every version anyway).  Their values are
#: replaced by ``VOLATILE_PLACEHOLDER``.
VOLATILE_ECSV_META = frozenset({"date", "version"})

VOLATILE_PLACEHOLDER = "<volatile>"

#: Regions of an HTML report that describe the environment it was written in
#: (the appliance's ``report``: interpreter, platform, package versions,
#: container image), between ``<!-- appliance:NAME -->`` and
#: ``<!-- /appliance:NAME -->``.  A host run and a container run of the same
#: recipe write the same report but for them, as FITS products differ only in
#: their write dates; each region's text is replaced by ``VOLATILE_PLACEHOLDER``.
VOLATILE_HTML_REGIONS = frozenset({"environment"})

FITS_SUFFIXES = frozenset({".fits", ".fit", ".fts"})
ASDF_SUFFIXES = frozenset({".asdf"})
ECSV_SUFFIXES = frozenset({".ecsv"})
HTML_SUFFIXES = frozenset({".html"})

_CHUNK = 1 << 20
_BLOCK_MAGIC = b"\xd3BLK"
_BLOCK_HEADER = struct.Struct(">I4sQQQ16s")  # flags, compression, allocated, used, data size, md5
_STREAMED = 0x1


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def canonical_kind(path: str | Path) -> str | None:
    """``"fits"``, ``"asdf"``, ``"ecsv"`` or ``"html"`` for the kinds that are canonicalised, else None."""
    suffix = Path(path).suffix.lower()
    if suffix in FITS_SUFFIXES:
        return "fits"
    if suffix in ASDF_SUFFIXES:
        return "asdf"
    if suffix in ECSV_SUFFIXES:
        return "ecsv"
    if suffix in HTML_SUFFIXES:
        return "html"
    return None


def content_digest(path: str | Path) -> str:
    """``"sha256:<hex>"`` of the canonical serialisation of a product.

    FITS, ASDF and ECSV files are canonicalised (volatile items removed, see
    the module constants); every other kind is the sha256 of its bytes.
    """
    path = Path(path)
    kind = canonical_kind(path)
    try:
        if kind == "fits":
            return fits_digest(path)
        if kind == "asdf":
            return asdf_digest(path)
        if kind == "ecsv":
            return ecsv_digest(path)
        if kind == "html":
            return html_digest(path)
        return bytes_digest(path)
    except FileNotFoundError:
        raise
    except WorkFailed:
        raise
    except Exception as exc:  # a product we cannot parse is a failed product
        raise WorkFailed(f"{path}: cannot compute its content digest: {type(exc).__name__}: {exc}") from exc


def describe() -> dict:
    """The digest rules as data, recorded in every manifest (``content_digest``)."""
    return {
        "format": DIGEST_FORMAT,
        "canonical_suffixes": sorted(FITS_SUFFIXES | ASDF_SUFFIXES | ECSV_SUFFIXES | HTML_SUFFIXES),
        "volatile_primary_cards": sorted(VOLATILE_PRIMARY_CARDS),
        "volatile_asdf_hdu_cards": sorted(VOLATILE_ASDF_HDU_CARDS),
        "volatile_hdu_cards": sorted(VOLATILE_HDU_CARDS),
        "volatile_asdf_paths": sorted(".".join(p) for p in VOLATILE_ASDF_PATHS),
        "unordered_asdf_paths": sorted(".".join(p) for p in UNORDERED_ASDF_PATHS),
        "volatile_table_columns": {k: sorted(v) for k, v in sorted(VOLATILE_TABLE_COLUMNS.items())},
        "volatile_ecsv_meta": sorted(VOLATILE_ECSV_META),
        "volatile_html_regions": sorted(VOLATILE_HTML_REGIONS),
    }


def bytes_digest(path: str | Path) -> str:
    """``"sha256:<hex>"`` of the file's bytes (the kinds not canonicalised)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        _copy(f, h, None)
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------
# Framing: every item goes into the hash as  label SP length LF payload LF,
# so no two different sequences of items can serialise to the same bytes.
# --------------------------------------------------------------------------


def _item(h, label: str, payload: bytes | str) -> None:
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    h.update(f"{label} {len(payload)}\n".encode("ascii"))
    h.update(payload)
    h.update(b"\n")


def _copy(f: BinaryIO, h, size: int | None) -> int:
    """Feed ``size`` bytes (all when None) of ``f`` from its position into ``h``."""
    done = 0
    while size is None or done < size:
        chunk = f.read(_CHUNK if size is None else min(_CHUNK, size - done))
        if not chunk:
            break
        h.update(chunk)
        done += len(chunk)
    if size is not None and done != size:
        raise WorkFailed(f"{getattr(f, 'name', 'file')}: truncated: expected {size} more bytes, found {done}")
    return done


def _streamed_item(h, label: str, f: BinaryIO, size: int) -> None:
    h.update(f"{label} {size}\n".encode("ascii"))
    _copy(f, h, size)
    h.update(b"\n")


# --------------------------------------------------------------------------
# FITS
# --------------------------------------------------------------------------


def fits_digest(path: str | Path) -> str:
    """Canonical digest of a FITS file.

    For each HDU in order: its index, class, ``EXTNAME`` and ``EXTVER``; every
    header card (its 80-character image) except the volatile ones; and its
    data:

    * the ``ASDF`` HDU: the canonical ASDF tree and blocks (:func:`_asdf_items`);
    * binary tables with volatile columns: the stored bytes of each row without
      those columns, then the heap;
    * everything else (images, other tables): the data bytes exactly as stored
      (big-endian, unscaled; ``BITPIX``/``NAXISn``/``BZERO`` are in the cards).

    Data are read in 1 MiB chunks straight from the file: nothing is loaded
    whole, except the (small) ``ASDF`` HDU.
    """
    from astropy.io import fits

    h = hashlib.sha256()
    h.update(f"{DIGEST_FORMAT} fits\n".encode())
    # Compressed images stay the binary tables they are on disk: their stored bytes are hashed.
    with (
        fits.open(path, memmap=True, lazy_load_hdus=True, disable_image_compression=True) as hdul,
        open(path, "rb") as raw,
    ):
        for index, hdu in enumerate(hdul):
            name = hdu.name.upper()
            is_asdf = name == "ASDF" and isinstance(hdu, fits.BinTableHDU)
            _item(h, "hdu", f"{index} {type(hdu).__name__} {name} {hdu.ver}")
            drop = set(VOLATILE_HDU_CARDS)
            if index == 0:
                drop |= VOLATILE_PRIMARY_CARDS
            if is_asdf:
                drop |= VOLATILE_ASDF_HDU_CARDS
            for card in hdu.header.cards:
                if card.keyword.upper() not in drop:
                    _item(h, "card", card.image)

            size = hdu.size  # data bytes without the padding to 2880
            raw.seek(hdu.fileinfo()["datLoc"])
            if is_asdf:
                for label, payload in _asdf_items(io.BytesIO(raw.read(size))):
                    _item(h, label, payload)
            elif isinstance(hdu, fits.BinTableHDU) and VOLATILE_TABLE_COLUMNS.get(name, set()) & {
                n.upper() for n in hdu.columns.names
            }:
                _table_without_columns(h, raw, hdu, VOLATILE_TABLE_COLUMNS[name])
            else:
                _streamed_item(h, "data", raw, size)
    return "sha256:" + h.hexdigest()


def _table_without_columns(h, raw: BinaryIO, hdu, volatile: frozenset[str]) -> None:
    """Feed a binary table's rows without the volatile columns, then its heap."""
    import numpy as np

    width, nrows = hdu.header["NAXIS1"], hdu.header["NAXIS2"]
    keep = np.ones(width, dtype=bool)
    dropped = []
    for field, (dtype, offset, *_) in hdu.columns.dtype.fields.items():
        if field.upper() in volatile:
            keep[offset : offset + dtype.itemsize] = False
            dropped.append(field)
    h.update(f"rows {nrows}x{int(keep.sum())} without {','.join(sorted(dropped))}\n".encode())
    rows_per_chunk = max(1, _CHUNK // max(width, 1))
    left = nrows
    while left > 0:
        n = min(rows_per_chunk, left)
        buf = raw.read(n * width)
        if len(buf) != n * width:
            raise WorkFailed(f"{raw.name}: table {hdu.name} is truncated")
        rows = np.frombuffer(buf, dtype=np.uint8).reshape(n, width)
        h.update(np.ascontiguousarray(rows[:, keep]).tobytes())
        left -= n
    h.update(b"\n")
    _streamed_item(h, "heap", raw, hdu.size - width * nrows)


# --------------------------------------------------------------------------
# ASDF (standalone files and the FITS ASDF HDU)
# --------------------------------------------------------------------------


def asdf_digest(path: str | Path) -> str:
    """Canonical digest of an ASDF file: the tree minus the volatile entries, then its blocks."""
    h = hashlib.sha256()
    h.update(f"{DIGEST_FORMAT} asdf\n".encode())
    with open(path, "rb") as f:
        for label, payload in _asdf_items(f):
            _item(h, label, payload)
    return "sha256:" + h.hexdigest()


def _asdf_items(f: BinaryIO):
    """Yield ``(label, payload)``: the canonical tree, then each block's description and hash.

    Blocks are identified by position (the ``source: <n>`` of the tree's
    ndarrays), never by byte offset, so the block index at the end of the file
    (``#ASDF BLOCK INDEX``, offsets that move with ``cal_logs``) is ignored.
    The block of a table listed in :data:`VOLATILE_TABLE_COLUMNS` (a
    standalone ``.asdf`` model stores ``hdrtab`` as a structured array in a
    block) is hashed row by row without the volatile columns.
    """
    import asdf.util

    start = f.tell()
    tree = asdf.util.load_yaml(f, tagged=True)
    tables: dict[int, tuple[Any, frozenset[str]]] = {}
    yield "asdf-tree", canonical_json(canonical_asdf_tree(tree, tables))
    f.seek(start)
    for n, block in enumerate(_asdf_blocks(f, tables)):
        yield "asdf-block", f"{n} {block}"


def _asdf_blocks(f: BinaryIO, tables: dict[int, tuple[Any, frozenset[str]]] | None = None):
    """Describe each binary block of an ASDF file (ASDF standard, "Blocks"), streaming.

    A block is ``\\xd3BLK``, a big-endian uint16 header size, a header (flags,
    compression, allocated/used/data sizes, md5) and ``allocated`` bytes of
    which the first ``used`` are data.  The magic cannot occur in the YAML tree
    (it is not UTF-8), so the first one found starts the blocks.  Compressed
    blocks are hashed as stored.
    """
    tables = tables or {}
    pos = _find(f, _BLOCK_MAGIC)
    if pos is None:
        return
    f.seek(pos)
    index = 0
    while f.read(4) == _BLOCK_MAGIC:
        (header_size,) = struct.unpack(">H", f.read(2))
        header = f.read(header_size)
        flags, compression, allocated, used, data_size, _md5 = _BLOCK_HEADER.unpack_from(header)
        codec = compression.rstrip(b"\0").decode("ascii", "replace") or "none"
        h = hashlib.sha256()
        note = ""
        if flags & _STREAMED:
            used = _copy(f, h, None)
            allocated = used
        elif index in tables:
            node, columns = tables[index]
            if codec != "none":
                raise WorkFailed(f"block {index}: a table with volatile columns is compressed ({codec})")
            note = " without " + ",".join(sorted(columns))
            h.update(_rows_without(f.read(used), node, columns))
            f.seek(allocated - used, io.SEEK_CUR)
        else:
            _copy(f, h, used)
            f.seek(allocated - used, io.SEEK_CUR)
        yield f"compression={codec} data_size={data_size} used={used} sha256={h.hexdigest()}{note}"
        index += 1
        if flags & _STREAMED:
            return


def _rows_without(data: bytes, node: Any, columns: frozenset[str]) -> bytes:
    """The records of a structured-array block with the bytes of ``columns`` removed."""
    import numpy as np
    from asdf.tags.core.ndarray import asdf_datatype_to_numpy_dtype

    if node.get("offset") or node.get("strides"):
        raise WorkFailed("a table with volatile columns is a strided view of its block")
    dtype = asdf_datatype_to_numpy_dtype(node["datatype"], node.get("byteorder", "big"))
    rows = int(np.prod(node.get("shape", [])))
    if dtype.fields is None or len(data) != rows * dtype.itemsize:
        raise WorkFailed(f"a table with volatile columns does not match its block ({len(data)} bytes)")
    keep = np.ones(dtype.itemsize, dtype=bool)
    for name, (field, offset, *_) in dtype.fields.items():
        if name.upper() in columns:
            keep[offset : offset + field.itemsize] = False
    return np.frombuffer(data, dtype=np.uint8).reshape(rows, dtype.itemsize)[:, keep].tobytes()


def _find(f: BinaryIO, needle: bytes) -> int | None:
    """Offset of the first ``needle`` from the current position, reading in chunks."""
    base = f.tell()
    tail = b""
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return None
        buf = tail + chunk
        i = buf.find(needle)
        if i >= 0:
            return base - len(tail) + i
        tail = buf[-(len(needle) - 1) :]
        base += len(chunk)


_NDARRAY_TAG = re.compile(r"/core/ndarray-\d")


def canonical_asdf_tree(tree: Any, tables: dict | None = None) -> Any:
    """The tagged ASDF tree as plain JSON-able data, minus volatile entries.

    Tags are kept (a tagged node becomes ``{"!tag": tag, "!value": value}``);
    mapping keys become strings (non-string keys as ``"!<type>:<repr>"``);
    the lists at :data:`UNORDERED_ASDF_PATHS` are sorted; the entries at
    :data:`VOLATILE_ASDF_PATHS` are dropped.  ndarray nodes whose data live in
    a FITS HDU (``source: fits:SCI,1``) keep only their description: the HDU's
    data are digested with the HDU.

    ``tables``, when given, receives ``{block index: (ndarray node, columns)}``
    for the top-level tables named (in lower case) in
    :data:`VOLATILE_TABLE_COLUMNS` whose data are in a block of this file.
    """
    if tables is not None and isinstance(tree, dict):
        for extname, columns in VOLATILE_TABLE_COLUMNS.items():
            node = tree.get(extname.lower())
            if _NDARRAY_TAG.search(str(getattr(node, "_tag", ""))) and type(node.get("source")) is int:
                tables[node["source"]] = (node, frozenset(c.upper() for c in columns))
    return _canon(tree, ())


def _canon(node: Any, path: tuple) -> Any:
    tag = getattr(node, "_tag", None)
    if isinstance(node, dict):
        value = {}
        for key, child in node.items():
            sub = path + (key,)
            if sub in VOLATILE_ASDF_PATHS:
                continue
            value[_key(key)] = _canon(child, sub)
    elif isinstance(node, (list, tuple)):
        value = [_canon(child, path + (i,)) for i, child in enumerate(node)]
        if path in UNORDERED_ASDF_PATHS:
            value.sort(key=canonical_json)
    elif isinstance(node, str):
        value = str(node)
    else:
        value = _scalar(node)
    return {"!tag": str(tag), "!value": value} if tag else value


def _key(key: Any) -> str:
    return key if isinstance(key, str) else f"!{type(key).__name__}:{key!r}"


def _scalar(node: Any) -> Any:
    """JSON-able form of a YAML scalar (bool/int/float/None pass through)."""
    if node is None or isinstance(node, (bool, int, float)):
        return node
    if isinstance(node, bytes):
        return {"!bytes": node.hex()}
    if hasattr(node, "isoformat"):  # YAML timestamps load as datetime/date
        return {"!timestamp": node.isoformat()}
    if isinstance(node, complex):
        return {"!complex": [node.real, node.imag]}
    return _json_default(node)


def _json_default(obj: Any) -> Any:
    """Fallback for objects a caller puts into a tree (numpy, astropy Time, tagged objects)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is always there with astropy
        np = None
    if np is not None:
        if isinstance(obj, np.ndarray):
            return {"!ndarray": {"dtype": obj.dtype.str, "shape": list(obj.shape),
                                 "sha256": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()}}
        if isinstance(obj, np.generic):
            return obj.item()
    if hasattr(obj, "isot"):  # astropy Time
        return {"!time": str(obj.isot), "scale": str(getattr(obj, "scale", ""))}
    if isinstance(obj, (set, frozenset)):
        return sorted(canonical_json(x) for x in obj)
    tag = getattr(obj, "_tag", None)
    if tag:
        return {"!tag": str(tag), "!value": repr(obj)}
    return {"!repr": f"{type(obj).__module__}.{type(obj).__qualname__}:{obj!r}"}


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, NaN/Infinity allowed, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=True, default=_json_default)


# --------------------------------------------------------------------------
# ECSV
# --------------------------------------------------------------------------

_ECSV_PREFIX = re.compile(rb"^# ?")


def ecsv_digest(path: str | Path) -> str:
    """Canonical digest of an ECSV table.

    The ``#`` header is parsed as YAML (composed into nodes, so astropy's
    custom tags need no constructors) to find the entries of ``meta`` named in
    :data:`VOLATILE_ECSV_META`; their values are replaced by
    :data:`VOLATILE_PLACEHOLDER` in the header text, which works for every
    layout astropy writes (``meta: !!omap`` with ``- {date: ...}`` or
    ``- date: ...``, or a plain mapping ``  date: ...``).  Everything else --
    the rest of the header and every data line -- is hashed exactly.  A file
    whose header is not ECSV YAML is hashed as bytes.
    """
    with open(path, "rb") as f:
        header_lines = []
        while True:
            pos = f.tell()
            line = f.readline()
            if not line.startswith(b"#"):
                f.seek(pos)
                break
            header_lines.append(line)
        canonical_header = _canonical_ecsv_header(header_lines)
        if canonical_header is None:
            return bytes_digest(path)
        h = hashlib.sha256()
        h.update(f"{DIGEST_FORMAT} ecsv\n".encode())
        _item(h, "header", canonical_header)
        h.update(b"body\n")
        _copy(f, h, None)
    return "sha256:" + h.hexdigest()


def html_digest(path: str | Path) -> str:
    """Canonical digest of an HTML page: its bytes, each :data:`VOLATILE_HTML_REGIONS` region's text blanked."""
    text = Path(path).read_bytes()
    for name in sorted(VOLATILE_HTML_REGIONS):
        start, end = f"<!-- appliance:{name} -->".encode(), f"<!-- /appliance:{name} -->".encode()
        text = re.sub(re.escape(start) + rb".*?" + re.escape(end),
                      start + VOLATILE_PLACEHOLDER.encode() + end, text, flags=re.S)
    h = hashlib.sha256()
    h.update(f"{DIGEST_FORMAT} html\n".encode())
    _item(h, "page", text)
    return "sha256:" + h.hexdigest()


def _canonical_ecsv_header(lines: list[bytes]) -> bytes | None:
    import yaml

    if not lines or not lines[0].startswith(b"# %ECSV"):
        return None
    try:
        body = [_ECSV_PREFIX.sub(b"", line.rstrip(b"\r\n")).decode("utf-8") for line in lines[1:]]
        text = "\n".join(body) + "\n"
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (UnicodeDecodeError, yaml.YAMLError):
        return None
    spans = []
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "meta":
                spans.extend(_volatile_meta_spans(value))
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + VOLATILE_PLACEHOLDER + text[end:]
    return lines[0].rstrip(b"\r\n") + b"\n" + text.encode("utf-8")


def _volatile_meta_spans(meta) -> list[tuple[int, int]]:
    """Character spans (in the YAML text) of the values of volatile ``meta`` entries."""
    import yaml

    mappings = []
    if isinstance(meta, yaml.MappingNode):
        mappings.append(meta)
    elif isinstance(meta, yaml.SequenceNode):  # !!omap: a list of one-entry mappings
        mappings.extend(item for item in meta.value if isinstance(item, yaml.MappingNode))
    spans = []
    for mapping in mappings:
        for key, value in mapping.value:
            if isinstance(key, yaml.ScalarNode) and key.value in VOLATILE_ECSV_META:
                spans.append((value.start_mark.index, value.end_mark.index))
    return spans
