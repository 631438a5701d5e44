"""The data directory, and fetching a missing file into it safely.

A file appears in the data directory only complete and verified: it is downloaded to a temporary
file in the same directory, checked (sha256, or shape and header where no checksum is known), and
then renamed into place, which is atomic on one file system. An interrupted download leaves no
half file behind that a later run would trust.
"""

import hashlib
import http.client
import os
import pathlib
import shutil
import tarfile
import tempfile
import urllib.request

import numpy as np

from stdiff_jax.errors import MissingFileError, UserError

ENV_VAR = "STDIFF_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 60
FILE_MODE = 0o644  # mkstemp creates 0o600; data files are meant to be shared.


class DataUnavailableError(MissingFileError):
    """A data file is missing and could not be downloaded (offline, or the directory is read-only)."""


class ChecksumError(UserError):
    """A data file's sha256 differs from the known or recorded one."""


def resolve_data_dir(data_dir=None):
    """The data directory: `data_dir` (the config's `data.root`), else $STDIFF_DATA_DIR, else a cache.

    The cache is $XDG_CACHE_HOME/stdiff_jax, or ~/.cache/stdiff_jax when XDG_CACHE_HOME is unset.
    """
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR)
    if data_dir is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        data_dir = os.path.join(cache, "stdiff_jax")
    return pathlib.Path(data_dir).expanduser()


def is_writable(directory):
    """Whether files may be written in `directory` (existing, or creatable under an existing parent).

    A directory without write permission bits counts as read-only even for root, who could write
    there anyway: a shared, read-only data directory is left untouched.
    """
    directory = pathlib.Path(directory)
    while not directory.exists():
        directory = directory.parent
    return os.access(directory, os.W_OK) and bool(directory.stat().st_mode & 0o222)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def record_path(path):
    """Where the sha256 of a first download without a known checksum is recorded (sha256sum format)."""
    path = pathlib.Path(path)
    return path.with_name(path.name + ".sha256")


def _download(url, dest):
    """Streams `url` into the file `dest` (tests replace this function: no test touches the network)."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f)


def _extract_member(archive, member, dest):
    """Copies the one member of a .tar.gz whose base name is `member` into `dest`."""
    with tarfile.open(archive, "r:*") as tar:
        for info in tar:
            if info.isfile() and os.path.basename(info.name) == member:
                with tar.extractfile(info) as src, open(dest, "wb") as f:
                    shutil.copyfileobj(src, f)
                return
    raise ValueError(f"The archive downloaded as {archive} has no member named {member!r}.")


def _how_to_get(source, path):
    if source.archive_member:
        what = f"download {source.url}, extract its member {source.archive_member!r}"
    else:
        what = f"download {source.url}"
    return (f"{what} and put it at {path} (or point the config's data.root or ${ENV_VAR} at a "
            f"directory that holds {source.filename}).")


def _verify_existing(source, path):
    expected = source.sha256
    record = record_path(path)
    if expected is None and record.exists():
        expected = record.read_text().split()[0]
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(
            f"{path} has sha256 {actual}, expected {expected}: the file is corrupt or a different "
            f"version. Delete it to download it again, or {_how_to_get(source, path)}")


def ensure_file(source, data_dir=None, check=None):
    """Path of `source.filename` in the data directory, downloading and verifying it if missing.

    Args:
        source: a `sources.Source`.
        data_dir: the data directory (see `resolve_data_dir`).
        check: optional `check(path)` that raises when a fresh download has the wrong shape or header.

    Raises:
        DataUnavailableError: the file is missing and cannot be downloaded; the message names the
            file, the URL and where to put it.
        ChecksumError: the file's sha256 is not the expected one.
    """
    directory = resolve_data_dir(data_dir)
    path = directory / source.filename
    if path.exists():
        _verify_existing(source, path)
        return path
    if not is_writable(directory):
        raise DataUnavailableError(
            f"{source.filename} is not in {directory}, and that directory is read-only, so it "
            f"cannot be downloaded there. To get it, {_how_to_get(source, path)}")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".part-", suffix="-" + source.filename)
    os.close(fd)
    tmp = pathlib.Path(tmp)
    archive = tmp.with_name(tmp.name + ".download")
    try:
        try:
            _download(source.url, archive if source.archive_member else tmp)
        except (OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors.
            raise DataUnavailableError(
                f"{source.filename} is not in {directory} and could not be downloaded from "
                f"{source.url} ({e}). To get it by hand, {_how_to_get(source, path)}") from e
        if source.archive_member:
            _extract_member(archive, source.archive_member, tmp)
        digest = sha256_of(tmp)
        if source.sha256 is not None and digest != source.sha256:
            raise ChecksumError(
                f"The download of {source.url} has sha256 {digest}, expected {source.sha256}; "
                f"nothing was written to {path}.")
        if check is not None:
            check(tmp)
        if source.sha256 is None:  # recorded first: a file in place is never left unrecorded
            record_path(path).write_text(f"{digest}  {source.filename}\n")
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, archive):
            leftover.unlink(missing_ok=True)
    return path


def save_npy_atomic(path, array):
    """Writes `array` to `path` (.npy) through a temporary file and an atomic rename."""
    path = pathlib.Path(path)
    if not is_writable(path.parent):
        raise PermissionError(f"{path.parent} is read-only.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)
