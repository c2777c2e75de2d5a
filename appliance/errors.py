"""The two kinds of failure the CLI distinguishes, mapped to exit codes 2 and 1, and how a cause is said in one line."""

import re


class UserError(Exception):
    """The request itself was wrong (bad recipe, missing file, bad flag): exit code 2.

    The message is one line that names the file, the key and what was expected.
    """

    exit_code = 2


class WorkFailed(Exception):
    """The work ran but failed or differed (a step crashed, a checksum mismatched): exit code 1."""

    exit_code = 1


#: Phrases of network and HTTP errors (requests, urllib3, crds, docker), said shortly.
_KNOWN_CAUSES = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "host name not found"),
    ("Temporary failure in name resolution", "host name not found"),
    ("Network is unreachable", "network unreachable"),
    ("Read timed out", "timed out"),
    ("timed out", "timed out"),
    ("IncompleteRead", "connection cut mid-file"),
    ("Connection broken", "connection cut mid-file"),
    ("RemoteDisconnected", "the server closed the connection"),
    ("Connection reset", "connection reset"),
    ("HTTP Error 500", "HTTP 500"),
    ("HTTP Error 404", "HTTP 404"),
)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none (what a failed task
    records: the pipeline's own words, whole, as far as the first line goes)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def short_reason(exc: BaseException | str, limit: int = 300) -> str:
    """The cause of an exception in one short line.

    Network libraries wrap their causes in several lines of repr: a known phrase
    (:data:`_KNOWN_CAUSES`) or an ``[Errno N] text`` is said alone; anything else
    is the message with its whitespace collapsed, cut at ``limit``.
    """
    text = " ".join(str(exc).split())
    for needle, short in _KNOWN_CAUSES:
        if needle in text:
            return short
    errno_text = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text) or re.findall(r"Error\(-?\d+, '([^']+)'\)", text)
    if errno_text:
        return errno_text[-1].strip().rstrip(".:")
    if not text and isinstance(exc, BaseException):
        return type(exc).__name__
    return text[:limit]
