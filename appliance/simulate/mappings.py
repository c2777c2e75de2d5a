"""The CRDS mapping files of the synthetic context: pmap -> MIRI imap -> one rmap per type.

The text follows CRDS's own layout; each mapping's ``sha1sum`` is the checksum CRDS computes
over the text without that line (``crds.core.utils.str_checksum``).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from .references import NOT_APPLICABLE, PARKEYS, PARS_NOT_APPLICABLE, USEAFTER, RefFile

SIM_CONTEXT = "jwst_9000.pmap"
IMAP = "jwst_miri_9000.imap"
DERIVED_FROM = "synthetic context of appliance.simulate (not a CRDS context)"


def rmap_name(reftype: str) -> str:
    return f"jwst_miri_{reftype}_9000.rmap"


def _with_checksum(lines: list[str]) -> str:
    """Insert the sha1sum header line (kept in sorted key order) and return the text."""
    text = "".join(line for line in lines)
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    out = []
    for line in lines:
        out.append(line)
        if line.startswith("    'parkey'"):
            out.append(f"    'sha1sum' : '{digest}',\n")
    return "".join(out)


def _header(fields: dict[str, str]) -> list[str]:
    lines = ["header = {\n"]
    lines += [f"    {k!r} : {v},\n" for k, v in sorted(fields.items())]
    lines.append("}\n\n")
    return lines


def rmap_text(reftype: str, refs: list[RefFile]) -> str:
    parkey = PARKEYS[reftype]
    fields = {
        "classes": "('Match', 'UseAfter')",
        "derived_from": repr(DERIVED_FROM),
        "file_ext": repr("." + refs[0].name.rsplit(".", 1)[1]),
        "filekind": repr(reftype.upper()),
        "filetype": repr(reftype.upper()),
        "instrument": "'MIRI'",
        "mapping": "'REFERENCE'",
        "name": repr(rmap_name(reftype)),
        "observatory": "'JWST'",
        "parkey": repr((parkey, ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME"))),
        "suffix": repr(reftype),
        "text_descr": repr(f"synthetic {reftype}"),
    }
    date = USEAFTER.replace("T", " ")
    lines = _header(fields) + ["selector = Match({\n"]
    for ref in sorted(refs, key=lambda r: r.match):
        lines.append(f"    {ref.match!r} : UseAfter({{\n")
        lines.append(f"        {date!r} : {ref.name!r},\n")
        lines.append("    }),\n")
    lines.append("})\n")
    return _with_checksum(lines)


def imap_text(reftypes: list[str]) -> str:
    fields = {
        "derived_from": repr(DERIVED_FROM),
        "instrument": "'MIRI'",
        "mapping": "'INSTRUMENT'",
        "name": repr(IMAP),
        "observatory": "'JWST'",
        "parkey": "('REFTYPE',)",
    }
    selections = {t: rmap_name(t) for t in reftypes}
    selections.update({t: "N/A" for t in NOT_APPLICABLE + PARS_NOT_APPLICABLE})
    lines = _header(fields) + ["selector = {\n"]
    lines += [f"    {k!r} : {v!r},\n" for k, v in sorted(selections.items())]
    lines.append("}\n")
    return _with_checksum(lines)


def pmap_text() -> str:
    fields = {
        "derived_from": repr(DERIVED_FROM),
        "mapping": "'PIPELINE'",
        "name": repr(SIM_CONTEXT),
        "observatory": "'JWST'",
        "parkey": "('META.INSTRUMENT.NAME',)",
    }
    lines = _header(fields) + ["selector = {\n", f"    'MIRI' : {IMAP!r},\n", "}\n"]
    return _with_checksum(lines)


def mapping_texts(refs: list[RefFile]) -> dict[str, str]:
    """File name -> text of every mapping of the synthetic context."""
    by_type: dict[str, list[RefFile]] = defaultdict(list)
    for ref in refs:
        by_type[ref.reftype].append(ref)
    texts = {rmap_name(t): rmap_text(t, r) for t, r in sorted(by_type.items())}
    texts[IMAP] = imap_text(sorted(by_type))
    texts[SIM_CONTEXT] = pmap_text()
    return texts


def server_config_text() -> str:
    """The cached server information CRDS reads in local mode (a Python dict literal)."""
    info = {
        "observatory": "jwst",
        "operational_context": SIM_CONTEXT,
        "edit_context": SIM_CONTEXT,
        "bad_files_list": [],
        "force_remote_mode": False,
        "last_synced": "2024-01-01 00:00:00",
    }
    return repr(dict(sorted(info.items()))) + "\n"
