"""The two kinds of failure the CLI distinguishes, mapped to exit codes 2 and 1."""


class UserError(Exception):
    """The request itself was wrong (bad recipe, missing file, bad flag): exit code 2.

    The message is one line that names the file, the key and what was expected.
    """

    exit_code = 2


class WorkFailed(Exception):
    """The work ran but failed or differed (a step crashed, a checksum mismatched): exit code 1."""

    exit_code = 1
