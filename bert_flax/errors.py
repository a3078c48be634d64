"""The exceptions the CLI turns into one line and an exit code: bad input (2), a failed bucket (75)."""

EXIT_BAD_INPUT = 2
# 75 (EX_TEMPFAIL): stopped with the run's checkpoints intact, by SIGTERM/SIGINT (a checkpoint of the
# current step was saved) or by a StorageFailed; rerun to resume.
EXIT_RESUMABLE = 75


class UserError(Exception):
    """Bad input (config, corpus, paths). The CLI prints it as one line and exits with code 2.

    The message must say what is wrong and what to do about it.
    """


class StorageFailed(Exception):
    """The run's bucket failed mid-run (unreachable, refused): nothing finished is lost, and rerunning
    resumes from the last finished checkpoint. The CLI prints it as one line and exits with code 75."""


def first_line(err: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type's name when it has none), cut to `limit`
    characters: what a one-line error quotes of a library's multi-line message."""
    lines = str(err).splitlines()
    return (lines[0] if lines and lines[0] else type(err).__name__)[:limit]
