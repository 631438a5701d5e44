"""The workdir of a run: one path type for local folders and buckets, records written whole, one
writer at a time, and signals that stop a run without losing its work.

Paths. `as_path` makes a --workdir (or an output folder) an `etils.epath.Path`: a local path
becomes absolute, a `gs://` one stays as it is, and every read and write of the library goes
through that type (os.path and pathlib would turn `gs://b/x` into a local folder `gs:/b/x`).
epath reaches a bucket through fsspec (`pip install gcsfs`) or TensorFlow; Orbax writes the
checkpoints' arrays through TensorStore's own GCS driver.

Records. `writing(*paths)` yields a local file per record to write into, then puts them all in
place at once: locally a temporary file in the same folder, flushed to disk, renamed over the
record (a rename is atomic: a reader finds the old file or the new one, never a cut one); on a
bucket an upload (an object appears only once its upload is complete). SIGINT and SIGTERM wait
while the files are put in place, so samples.npy and samples.csv are replaced together. An error
or a signal before that leaves the records as they were and removes the temporary files; a full
or read-only disk is a `WorkdirError` paragraph. The training log, metrics.jsonl, is appended to
line by line (`append_line`; a bucket's objects cannot be appended to, so there it is rewritten)
and read by `read_jsonl`, which leaves out and reports a cut last line.

Lock. `locked(workdir)` holds workdir/lock.json (host, pid, start, command) for the block: a
second process is refused with a `WorkdirError` naming the first, and a lock whose process is gone
(same host, no such pid, or a pid started after the lock) is taken over with one log line. Process
0 of a multi-host run takes it for all hosts. Creating the lock is also the check that the workdir
can be written, before any long work (`writable_folder` checks another output folder,
`check_free_space` a local disk's room for large outputs). On a bucket the lock is best effort
(written, then read back: of two runs starting in the same instant, both may proceed).

Signals. `raising_on_signals` turns SIGINT and SIGTERM into `errors.Interrupted` (SIGTERM would
otherwise end the process at once, skipping every clean-up); `deferring_signals` lets a training
loop finish its step and save first. A handler's exception that lands in a callback Python runs
from C (a garbage-collection or weakref callback, `__del__`) is printed and dropped, so the signal
is also recorded: a `deferring_signals` block entered later starts stopped, and the
`raising_on_signals` block raises when it ends. Both act in single-process runs only: a multi-host
runtime keeps SIGTERM for JAX's preemption notice (train.py saves on it).
"""

import contextlib
import errno
import functools
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

import jax
import numpy as np
from absl import logging
from etils import epath

from stdiff_jax import errors
from stdiff_jax.errors import UserError

LOCK = "lock.json"
PARTIAL = ".partial-"  # in the names of records' temporary files
SIGNALS = (signal.SIGINT, signal.SIGTERM)
START_SLACK_S = 2.0  # /proc gives process start times to the boot time's whole second


class WorkdirError(UserError):
    """The workdir cannot be used: another run writes it, it is a file, or it cannot be written."""


class UnreadableRecord(Exception):
    """A JSON record is empty or not JSON; the message says which, in a few words."""


# ------------------------------------------------------------------------------------------------
# Paths.
# ------------------------------------------------------------------------------------------------
def as_path(path):
    """`path` as an epath.Path: a relative local path made absolute (links are not resolved), a
    URI such as gs://bucket/run unchanged."""
    path = epath.Path(path)
    return path if path.is_absolute() else path.absolute()


def is_remote(path):
    """Whether `path` is a URI (gs://, s3://, ...) rather than a local path."""
    return "://" in os.fspath(path)


# ------------------------------------------------------------------------------------------------
# Records.
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def writing(*paths):
    """Yields a list of local files, one per record in `paths`, to write the records' whole
    contents into; when the block ends they replace the records together. See the module
    docstring."""
    targets = [as_path(p) for p in paths]
    temps = [_temporary(t) for t in targets]
    try:
        yield temps
        with _signals_held():
            for temp, target in zip(temps, targets):
                _put(temp, target)
    except BaseException as e:
        for temp in temps:
            with contextlib.suppress(OSError):
                os.remove(temp)
        disk = errors.disk_error(e) if isinstance(e, Exception) else None
        if disk is not None:
            raise WorkdirError(errors.disk_error_message(
                disk, ", ".join(map(str, targets)))) from e
        raise


def _temporary(target):
    """A local file beside `target` (a hidden name keeping its suffix, which np.save wants), or a
    local temporary file for a record in a bucket."""
    if is_remote(target):
        handle, name = tempfile.mkstemp(suffix=target.suffix)
        os.close(handle)
        return epath.Path(name)
    return target.parent / f".{target.stem}{PARTIAL}{os.getpid()}{target.suffix}"


def _put(temp, target):
    if is_remote(target):
        with open(temp, "rb") as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink)
        os.remove(temp)
        return
    with open(temp, "rb") as f:
        os.fsync(f.fileno())  # the content is on disk before the name points at it
    os.replace(temp, target)


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait (are delivered after the block) in the calling thread."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def write_text(path, text):
    with writing(path) as (temp,):
        temp.write_text(text)


def write_bytes(path, data):
    with writing(path) as (temp,):
        temp.write_bytes(data)


def write_json(path, value):
    write_text(path, json.dumps(value, indent=2) + "\n")


def save_npy(path, array):
    with writing(path) as (temp,):
        np.save(temp, array)


def load_npy(path):
    with as_path(path).open("rb") as f:
        return np.load(f)


def read_json(path):
    """The JSON object (a dict) of the record at `path`; UnreadableRecord when it is empty, not
    JSON or another JSON value."""
    data = as_path(path).read_bytes()
    if not data.strip():
        raise UnreadableRecord("it is empty")
    try:
        value = json.loads(data)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise UnreadableRecord(f"it is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise UnreadableRecord(f"it holds a JSON {type(value).__name__}, not an object")
    return value


def read_jsonl(path):
    """(rows, complete) of a JSON-lines log: the objects of its readable lines, and whether every
    line was one. Unreadable lines (a cut last line is what a kill or a full disk leaves) are left
    out and reported in one warning line."""
    rows, bad = [], []
    text = as_path(path).read_bytes().decode("utf-8", "replace")
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(number)
    if bad:
        logging.warning("%s: left out %d unreadable line(s) (%s), as a kill or a full disk "
                        "leaves them.", path, len(bad), ", ".join(map(str, bad)))
    return rows, not bad


def append_line(path, line):
    """Appends `line` (ending in a newline) to the log at `path`."""
    path = as_path(path)
    try:
        if is_remote(path):  # objects are immutable: the log is uploaded again, whole
            write_text(path, (path.read_text() if path.exists() else "") + line)
            return
        with open(path, "a") as f:
            f.write(line)
    except OSError as e:
        if errors.disk_error(e) is None:
            raise
        raise WorkdirError(errors.disk_error_message(e, path)) from e


# ------------------------------------------------------------------------------------------------
# Lock and folders.
# ------------------------------------------------------------------------------------------------
_held = {}  # lock file -> record, the locks this process holds


@contextlib.contextmanager
def locked(workdir):
    """Holds workdir's lock for the block (process 0 only; a no-op where this process holds it
    already). Creates the workdir if needed, and removes the folders it created if they are empty
    when the block ends. See the module docstring."""
    workdir = as_path(workdir)
    lock = workdir / LOCK
    if jax.process_index() != 0 or os.fspath(lock) in _held:
        yield
        return
    created = _make_folder(workdir, "the workdir")
    try:
        _held[os.fspath(lock)] = _acquire(lock)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        _remove_partials(workdir)
        yield
    finally:
        _release(lock, _held.pop(os.fspath(lock)))
        _remove_empty(created)


def locking(mode):
    """`mode(config, workdir, ...)` (a mode that writes its workdir) run under `locked(workdir)`."""

    @functools.wraps(mode)
    def run(config, workdir, *args, **kwargs):
        with locked(workdir):
            return mode(config, workdir, *args, **kwargs)

    return run


def writable_folder(path, what):
    """`path` as a folder, created if missing, that a probe file was written into: checked before
    long work. `what` names it in the paragraph of a `WorkdirError` ("the output folder")."""
    folder = as_path(path)
    _make_folder(folder, what)
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise _cannot_write(folder, what, e) from e
    return folder


def check_free_space(folder, needed, what, fewer):
    """A WorkdirError, before the work, when the disk of a local `folder` has fewer than `needed`
    bytes free for `what` (a bucket has no such limit); `fewer` says how to write less."""
    if is_remote(folder):
        return
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise WorkdirError(
            f"{what} need about {needed / 2**20:.1f} MiB in {folder}, but its disk has "
            f"{free / 2**20:.1f} MiB free. Free space, {fewer}, or use a --workdir on another "
            f"disk.")


def _cannot_write(folder, what, error):
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        reason = "a file stands where a folder of that path should be"
    else:
        reason = errors.DISK_ERRNOS.get(error.errno, error.strerror or type(error).__name__)
    return WorkdirError(
        f"{what.capitalize()} {folder} cannot be written: {reason}. A run checks this before any "
        f"long work; pass a folder you can write, or free space or fix the folder's permissions.")


def _make_folder(folder, what):
    """Creates `folder` (and missing parents); returns the local folders it created, deepest
    first."""
    if folder.exists() and not folder.is_dir():
        raise WorkdirError(f"{what.capitalize()} {folder} is a file, not a folder. Pass a folder, "
                           f"or a path that does not exist yet (it is then created).")
    created, missing = [], folder
    while not is_remote(folder) and not missing.exists():
        created.append(missing)
        missing = missing.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cannot_write(folder, what, e) from e
    return created


def _remove_empty(folders):
    for folder in folders:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _acquire(lock):
    """Creates the lock (taking over a gone process's); returns its record."""
    mine = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
            "command": " ".join(" ".join(sys.orig_argv).split())}  # one line, for the message
    for _ in range(3):  # taking over a dead run's lock races with others doing the same
        try:
            if _create(lock, mine):
                return mine
        except OSError as e:
            raise _cannot_write(lock.parent, "the workdir", e) from e
        other = _read_lock(lock)
        if other is not None and not _is_gone(other):
            raise WorkdirError(_busy_message(lock, other))
        if other is not None:
            logging.warning("Taking over the workdir lock of process %s on %s (since %s), which "
                            "is no longer running.", other["pid"], other["host"],
                            _when(other["since"]))
        _remove_stale(lock)
    raise WorkdirError(f"Could not take the lock {lock}: other runs keep taking it. Run one at a "
                       f"time on a workdir.")


def _create(lock, record):
    """Creates the lock file holding `record` unless one exists; whether it did."""
    text = json.dumps(record)
    if is_remote(lock):
        if lock.exists():
            return False
        lock.write_text(text)
        return _read_lock(lock) == record  # of two runs writing at once, the last one wins
    temp = lock.parent / f".{LOCK}{PARTIAL}{os.getpid()}"
    temp.write_text(text)
    try:
        os.link(temp, lock)  # atomic: the lock appears with its content, or not at all
        return True
    except FileExistsError:
        return False
    finally:
        os.remove(temp)


def _read_lock(lock):
    """The record of a lock file; None when it is gone. An unreadable one is reported and
    treated as gone (a lock is created with its content at once, so none should be)."""
    try:
        record = read_json(lock)
        if {"host", "pid", "since"} <= record.keys():
            return record
        reason = "it is no lock record"
    except FileNotFoundError:
        return None
    except UnreadableRecord as e:
        reason = str(e)
    logging.warning("The workdir lock %s cannot be read (%s); taking it over.", lock, reason)
    return None


def _remove_stale(lock):
    with contextlib.suppress(FileNotFoundError):
        if is_remote(lock):
            lock.unlink()
            return
        aside = lock.parent / f".{LOCK}.stale-{os.getpid()}"
        os.rename(lock, aside)  # one of several runs doing this at once succeeds
        os.remove(aside)


def _release(lock, record):
    """Removes the lock if it still holds `record` (a run that took it over keeps it)."""
    with contextlib.suppress(OSError, UnreadableRecord):
        if read_json(lock) == record:
            lock.unlink()


def _is_gone(record):
    """Whether the process of a lock record is no longer running: on this host, no process has
    its pid, or the one that has it started after the lock was taken (a pid reused, as after a
    container's restart). On another host it cannot be told: not gone."""
    if record["host"] != socket.gethostname():
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: alive
        pass
    started = _process_start(record["pid"])
    return started is not None and started > record["since"] + START_SLACK_S


def _process_start(pid):
    """A process's start time (Unix seconds) from /proc; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])  # field 22, starttime
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _when(seconds):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _busy_message(lock, other):
    return (f"The workdir {lock.parent} is in use by another run: process {other['pid']} on "
            f"{other['host']}, since {_when(other['since'])} "
            f"({other.get('command') or 'command unknown'}). Two runs writing one workdir replace "
            f"each other's checkpoints and logs, so this one stops before writing anything. Wait "
            f"for that run to end (or stop it), or give this one another --workdir. If that "
            f"process no longer runs (a lock from another machine cannot be checked from here), "
            f"delete {lock} and run again.")


def _remove_partials(workdir):
    """Deletes the temporary files of records whose writing a kill cut short (the lock holder is
    the only writer, so none is in use)."""
    for folder in (workdir, workdir / "plots"):
        names = folder.iterdir() if folder.is_dir() else ()
        for path in [p for p in names if p.name.startswith(".") and PARTIAL in p.name]:
            logging.info("Removing %s, a record's unfinished copy that a stopped run left.", path)
            path.unlink()


# ------------------------------------------------------------------------------------------------
# Signals.
# ------------------------------------------------------------------------------------------------
def _signals_installable():
    return threading.current_thread() is threading.main_thread() and jax.process_count() == 1


class Stop:
    """The first SIGINT or SIGTERM a `deferring_signals` block received: `signum`, else None."""

    signum = None


_raised = Stop()  # The signal a `raising_on_signals` handler raised for, in case it was dropped.


def _interrupted(signum):
    return errors.Interrupted(signum, (
        f"Stopped by {errors.signal_name(signum)}. Records are written whole or not at all, so no "
        f"partial output file was left; run the same command again to finish."))


@contextlib.contextmanager
def raising_on_signals():
    """SIGINT and SIGTERM raise `errors.Interrupted` for the block (single-process runs); one whose
    exception was dropped (module docstring) raises when the block ends."""

    def handler(signum, frame):
        _raised.signum = signum
        raise _interrupted(signum)

    _raised.signum = None
    try:
        with _handling(handler):
            yield
            if _raised.signum is not None:
                raise _interrupted(_raised.signum)
    finally:
        _raised.signum = None


@contextlib.contextmanager
def deferring_signals():
    """Yields a `Stop` that the first SIGINT or SIGTERM sets (single-process runs; elsewhere it
    stays unset), or that is set already when an enclosing `raising_on_signals` block's exception
    was dropped; a second one raises `errors.Interrupted` at once."""
    stop = Stop()
    stop.signum = _raised.signum

    def handler(signum, frame):
        if stop.signum is not None:
            raise errors.Interrupted(signum, f"Stopped by a second signal "
                                             f"({errors.signal_name(signum)}) before saving.")
        stop.signum = signum

    with _handling(handler):
        yield stop


@contextlib.contextmanager
def _handling(handler):
    if not _signals_installable():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
