"""Command-line interface: the sub-commands assembled (:mod:`appliance.commands`), and exit codes.

Exit codes: 0 success; 1 the work ran but failed or differed; 2 the request was
wrong.  Errors print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path

from appliance import __version__
from appliance.errors import UserError, WorkFailed, short_reason
from appliance.safety import printable
from appliance.workdir import LOGS_DIR

#: The sub-commands, in the order ``--help`` lists them: each is a module of
#: ``appliance.commands`` with ``add_parser(subparsers)``, light to import.
COMMANDS = ("run", "check", "fetch", "verify", "simulate", "docker", "releases", "regress", "upgrade", "compare", "reproduce", "export")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is a UserError (exit 2, one line) like any bad request."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run.py", description="Reproducible JWST imaging reductions from TOML recipes.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"appliance.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].endswith(".toml"):
        argv.insert(0, "run")  # `run.py RECIPE.toml` is short for `run.py run RECIPE.toml`
    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (UserError, WorkFailed) as exc:
        return fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:  # `run.py check R | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # the machine, not the request: a full disk, a vanished directory
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}" + (" (the disk is full)" if exc.errno == errno.ENOSPC else ""), 1)
    except Exception:  # noqa: BLE001 - a bug: one line here, the traceback in a log
        exc = sys.exc_info()[1]
        return fail(f"internal error ({type(exc).__name__}: {short_reason(exc, 200)}); "
                    f"the traceback is in {write_traceback(args)}", 1)


def fail(message: str, code: int) -> int:
    """One line on stderr, control characters escaped (the message may quote a recipe or a manifest)."""
    print(f"error: {printable(message)}", file=sys.stderr)
    return code



def write_traceback(args) -> str:
    """Write the current exception's traceback to the workdir's logs (else the temporary directory)."""
    import tempfile
    import traceback
    from datetime import datetime, timezone

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = getattr(args, "workdir", None)
    logs = Path(workdir) / LOGS_DIR if workdir is not None and Path(workdir).is_dir() else None
    try:
        if logs is not None:
            logs.mkdir(exist_ok=True)
            path = logs / f"internal-error-{stamp}-{os.getpid()}.log"
            path.write_text(traceback.format_exc(), encoding="utf-8")
            return str(path)
    except OSError:
        pass
    fd, name = tempfile.mkstemp(prefix=f"jwst-appliance-error-{stamp}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(traceback.format_exc())
    return name
