"""The one exception type that means "the user gave us something we cannot use"."""

EXIT_BAD_INPUT = 2
EXIT_STOPPED_BY_SIGNAL = 75  # SIGTERM/SIGINT: a checkpoint of the current step was saved; rerun to resume


class UserError(Exception):
    """Bad input (config, corpus, paths). The CLI prints it as one line and exits with code 2.

    The message must say what is wrong and what to do about it.
    """


def first_line(err: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type's name when it has none), cut to `limit`
    characters: what a one-line error quotes of a library's multi-line message."""
    lines = str(err).splitlines()
    return (lines[0] if lines and lines[0] else type(err).__name__)[:limit]
