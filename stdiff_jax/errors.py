"""Errors a user can fix, told apart from bugs.

`UserError` marks a problem with what the user gave (the data, the config, a missing file, a
workdir that is damaged or belongs to another run) whose message already says what is wrong and
what to do. The command line prints that message alone and exits with status 2; any other
exception is a bug and keeps its traceback. The classes also derive from the built-in types the
errors had before (ValueError, FileNotFoundError), so existing `except` clauses still catch them.
"""


class UserError(ValueError):
    """A problem with the user's data, config or workdir, described in one paragraph."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the run needs (data, config.json, checkpoints, samples) does not exist."""
