"""How a recipe error reads: the dotted key, the value as TOML writes it, and a did-you-mean.

Every recipe error is one line in the manner of tomli's: the file, the
position (``detector1.steps.jump.rejection_threshold`` or ``line 3, column
7``) and a plain sentence; these helpers make the parts.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
               list: "an array", dict: "a table"}


def choices(name: str, valid, noun: str, *, owner: str | None = None, plain: bool = False, limit: int = 20) -> str:
    """The tail of an 'unknown X' message: a did-you-mean and the valid names.

    Long lists (a step has ~50 parameters) are cut to the closest matches plus
    the count, so the message stays one readable line.
    """
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    label = noun if plain else f"valid {noun}"
    if len(valid) <= limit or not close:
        return f"{hint}; {label}: {', '.join(valid)}"
    if owner:
        return f"{hint}; {len(valid)} {noun} in all, list them with: strun {owner} --help"
    return f"{hint}; {len(valid)} {noun} in all"


def dotted(key: tuple) -> str:
    """``("inputs", "local", 3)`` -> ``inputs.local[3]``; odd keys quoted as TOML would."""
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            out += f".{text}" if out else text
    return out


def show(value: Any) -> str:
    """A value as TOML would write it, cut short for one-line messages."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{dotted((k,))} = {show(v)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(value: Any) -> str:
    """``integer 5``, ``string "x"``, ``a table``: the TOML type and the value."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, float):
        kind = "float"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        kind = "array"
    else:
        kind = type(value).__name__  # datetime, date, time
    return f"{kind} {show(value)}"


def quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
