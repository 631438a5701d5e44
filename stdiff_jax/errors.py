"""Errors a user can fix, told apart from bugs, and how the command line reports them.

`UserError` marks a problem with what the user gave (the data, the config, a missing file, a
workdir that is damaged or belongs to another run) whose message already says what is wrong and
what to do. The command line prints that message alone and exits with status 2
(`reporting_user_errors`, `flags_parser`); any other exception is a bug and keeps its traceback.
The classes also derive from the built-in types the errors had before (ValueError,
FileNotFoundError), so existing `except` clauses still catch them.

`Interrupted` is a run stopped by SIGINT or SIGTERM (stdiff_jax/workdir.py turns the signals into
it): the command line prints its one line and exits with status 128 + the signal's number (130,
143), what shells and batch schedulers expect of a process a signal stopped.
"""

import errno
import os
import re
import signal
import sys

from absl import flags

USER_ERROR_STATUS = 2
# The errors of a disk or a folder that a user fixes outside the program, with what each means.
DISK_ERRNOS = {errno.ENOSPC: "no space is left on the device",
               errno.EDQUOT: "the disk quota is exceeded",
               errno.EROFS: "the file system is read-only",
               errno.EACCES: "permission is denied", errno.EPERM: "permission is denied"}


class UserError(ValueError):
    """A problem with the user's data, config or workdir, described in one paragraph."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the run needs (data, config.json, checkpoints, samples) does not exist."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; `message` says what was kept and how to go on."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum, self.message = signum, message

    @property
    def exit_status(self):
        return 128 + self.signum


def signal_name(signum):
    return signal.Signals(signum).name


def disk_error(error):
    """The first error of a disk or folder problem (`DISK_ERRNOS`) in an exception chain, as an
    OSError, else None. Orbax re-raises a background thread's failure inside its own errors,
    TensorStore raises ValueError("... [os_error_code='28']"), and numpy's np.save reports a
    full disk as a short write, OSError("N requested and M written") without an errno."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
            return error
        if isinstance(error, OSError) and re.fullmatch(r"\d+ requested and \d+ written",
                                                       str(error)):
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        code = re.search(r"os_error_code='(\d+)'", str(error))
        if code and int(code[1]) in DISK_ERRNOS:
            return OSError(int(code[1]), os.strerror(int(code[1])))
        error = error.__cause__ or error.__context__
    return None


def disk_error_message(error, where):
    """The paragraph for `disk_error(error)` (an OSError) met while writing `where`."""
    file = f" ({error.filename})" if error.filename else ""
    return (f"Writing {where} failed: {DISK_ERRNOS[error.errno]}{file}. Records are written whole "
            f"or not at all, so what the workdir held before is intact. Free space (or give "
            f"write access, or use a --workdir on another disk) and run the same command again "
            f"(training resumes from its last checkpoint).")


def exit_with_user_error(message):
    """Prints a user error's paragraph (no traceback: it is not a bug) and exits with status 2."""
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(USER_ERROR_STATUS)


def reporting_user_errors(main_fn):
    """main_fn(argv), with a UserError reported by `exit_with_user_error` and an `Interrupted` by
    its line and status; any other error keeps its traceback."""

    def run(argv):
        try:
            return main_fn(argv)
        except UserError as e:
            exit_with_user_error(e)
        except Interrupted as e:
            print(e.message, file=sys.stderr)
            sys.exit(e.exit_status)

    return run


def unknown_field_message(error, argv):
    """The paragraph for an unknown --config.FIELD, from what ml_collections raises for it:
    AttributeError(KeyError("'field'\\nDid you mean ...?"))."""
    key, _, hint = str(error.args[0].args[0]).partition("\n")
    field = key.strip("'")
    overrides = [a for a in argv[1:]
                 if a.startswith("--config.") and field in a.partition("=")[0].split(".")]
    where = f" in {', '.join(overrides)}" if overrides else ""
    return f"Unknown config field {key}{where}. {hint}".strip()


def first_user_error(error):
    """The first UserError raised in an exception chain, else None: ml_collections re-raises a
    config file's error with its traceback as the message, and absl wraps that again."""
    first = None
    while error is not None:
        first = error if isinstance(error, UserError) else first
        error = error.__cause__ or error.__context__
    return first


def flags_parser(flag_values):
    """A `flags_parser` for absl's app.run: parses `flag_values` (which define a `config` flag)
    and reports a bad flag or config (a missing config file, an unknown field, a bad value or
    variant) by `exit_with_user_error`."""

    def parse(argv):
        try:
            remaining = flag_values(argv)
            flag_values.config.get("name")  # a config file that failed to load raises when read
            return remaining
        except AttributeError as e:
            if not (e.args and isinstance(e.args[0], KeyError)):
                raise
            exit_with_user_error(unknown_field_message(e, argv))
        except (flags.Error, UserError, OSError) as e:
            exit_with_user_error(first_user_error(e) or e)

    return parse
