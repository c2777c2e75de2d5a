"""Level-2 and level-3 associations, made with jwst.associations as the reference workflow does.

An association's members resolve relative to the association file's own
directory, so each one is written beside its members, with base names.  File
names are chosen here (not jwst's counter-based defaults) so that the same plan
always writes the same names.
"""

from __future__ import annotations

from pathlib import Path

from appliance.files import atomic_write
from appliance.workdir import association_name


def level3_product_name(program: str, observation: str, filter_name: str) -> str:
    """The DMS level-3 product name of one filter, e.g. ``jw02732-o002_t001_miri_f770w``.

    The target field is ``t001``: these recipes reduce one target per observation,
    as the reference workflow's products are named.
    """
    return f"jw{program}-o{observation}_t001_miri_{filter_name.lower()}"


def write_level2(member: Path, product_name: str) -> Path:
    """Write the image2 association of one exposure beside its member file."""
    from jwst.associations.asn_from_list import asn_from_list
    from jwst.associations.lib.rules_level2_base import DMSLevel2bBase

    asn = asn_from_list([member.name], rule=DMSLevel2bBase, product_name=product_name)
    return _write(asn, member.parent / association_name(product_name, "image2"))


def write_level3(members: list[Path], product_name: str) -> Path:
    """Write the image3 association of one filter beside its (same-directory) members."""
    from jwst.associations.asn_from_list import asn_from_list
    from jwst.associations.lib.rules_level3_base import DMS_Level3_Base

    directory = {m.parent for m in members}
    assert len(directory) == 1, "level-3 members must share one directory"
    asn = asn_from_list(sorted(m.name for m in members), rule=DMS_Level3_Base, product_name=product_name)
    return _write(asn, members[0].parent / association_name(product_name, "image3"))


def _write(asn, path: Path) -> Path:
    _, text = asn.dump(format="json")
    return atomic_write(path, text)
