"""The rules every recipe, input header and manifest is held to before it reaches a file name, a shell or a terminal.

Recipes are shared between people, inputs come from archives and manifests
come back years later from someone else's disk, so all three are treated as
written by a stranger (``docs/security.md``):

* a file is read only when it is a regular file of bounded size
  (:func:`read_regular_file`): a FIFO would hang the reader, ``/dev/zero``
  would exhaust its memory;
* a name that becomes part of a file name (an exposure, a filter, a program)
  must match its real vocabulary (:func:`check_name` and the patterns below),
  so it can never carry ``/``, ``..``, a quote or a ``$(...)``;
* a relative path read from a manifest must stay below its root
  (:func:`safe_relative`), and a file it names must really lie there once
  symbolic links are followed (:func:`inside`);
* text from any of them is printed with its control characters escaped
  (:func:`printable`), so a name cannot move the cursor or forge an output line.

Every pattern here is ASCII-only: ``\\d`` would also accept other scripts' digits.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from pathlib import Path, PurePosixPath

from appliance.errors import UserError

#: Size limits of what is read whole: a recipe is a few kB, a manifest of a
#: thousand-exposure program a few MB.
RECIPE_SIZE_LIMIT = 1 << 20
MANIFEST_SIZE_LIMIT = 64 << 20
TABLE_SIZE_LIMIT = 64 << 20

#: A file-name component: letters, digits, ``_ . + -``, not starting with a dot or a dash.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}", re.ASCII)
#: Header values that become parts of product names (the DMS vocabulary).
FILTER = re.compile(r"[A-Z0-9]{1,16}", re.ASCII)
PROGRAM = re.compile(r"[0-9]{5}", re.ASCII)
OBSERVATION = re.compile(r"[0-9]{3}", re.ASCII)
SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)


def read_regular_file(path: Path, what: str, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else a one-line UserError.

    ``what`` names the file's role in the message ("recipe", "manifest").
    The check is made on the open descriptor (``O_NONBLOCK``, so opening a FIFO
    does not wait for a writer), so a file swapped in between cannot slip past.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UserError(f"{printable(path)}: no such {what} file") from None
    except IsADirectoryError:
        raise UserError(f"{printable(path)}: is a directory, not a {what} file") from None
    except OSError as exc:
        raise UserError(f"{printable(path)}: cannot read the {what}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UserError(f"{printable(path)}: is a directory, not a {what} file")
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{printable(path)}: not a regular file (a {_file_type(st.st_mode)}); "
                            f"a {what} must be a regular file")
        if st.st_size > limit:
            raise UserError(f"{printable(path)}: {st.st_size} bytes, more than a {what} may have ({limit} bytes)")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UserError(f"{printable(path)}: more than a {what} may have ({limit} bytes)")
    return data


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def is_name(text: object) -> bool:
    """True for a plain file-name component (see :data:`NAME`)."""
    return isinstance(text, str) and NAME.fullmatch(text) is not None


def check_name(value: object, pattern: re.Pattern, where: str, expected: str) -> str:
    """``value`` if it is a string matching ``pattern``, else a UserError naming ``where`` and what was expected."""
    if isinstance(value, str) and pattern.fullmatch(value):
        return value
    raise UserError(f"{where}: expected {expected}, found {printable(repr(value))}")


def safe_relative(rel: object) -> bool:
    """True for a POSIX path below its root: relative, no ``..``/``.``/empty parts, each part a plain name."""
    if not isinstance(rel, str) or not rel or "\\" in rel:
        return False
    path = PurePosixPath(rel)
    if path.is_absolute() or path.as_posix() != rel:
        return False
    return all(is_name(part) for part in path.parts)


def inside(path: Path, root: Path) -> bool:
    """True when ``path``, with every symbolic link followed, lies in ``root`` (also resolved)."""
    try:
        real = Path(os.path.realpath(path))
        base = Path(os.path.realpath(root))
    except (OSError, ValueError):
        return False
    return real == base or base in real.parents


#: Unicode categories printed escaped: controls, format characters (bidirectional
#: overrides among them), line and paragraph separators, unassigned code points.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def printable(text: object) -> str:
    """``text`` with every control or format character escaped (``\\x1b``, ``\\n``, ``\\u202e``)."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == " " or unicodedata.category(ch) not in _ESCAPED_CATEGORIES and ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)
