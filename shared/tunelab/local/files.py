"""The local runtime's own files: a data dir only its owner can enter, private files only its owner
can read (light: the command line imports it; nothing here loads boto3 or moto).

The data dir holds training data, trained models, deployments, the emails tunelab sent, the token
secret and the AWS endpoint's credentials of the running runtime. It is made `0700`; an existing
one of this user that others may enter is tightened to `0700` (and said so), one of another user is
refused. A private file (the token secret, the AWS credentials) is written `0600` and refused when
read if another user owns it or group or others may read or write it: whoever could read it could
sign tokens or call the AWS endpoint, and whoever could write it could choose the secret.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger("tunelab.local")

DATA_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class UnsafeFile(ValueError):  # noqa: N818  # named for what happened
    """A data dir or private file others can read or write, or that another user owns."""


def _owner_name(uid: int) -> str:
    try:
        import pwd  # noqa: PLC0415  # POSIX only; the name is for the message

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def secure_data_dir(data_dir: Path) -> Path:
    """`data_dir`, made `0700` if missing; tightened to `0700` when this user's and wider;
    `UnsafeFile` when another user owns it or it is not a folder."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=DATA_DIR_MODE)
    info = os.stat(data_dir)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFile(f"the data dir {data_dir} is not a folder")
    if info.st_uid != os.getuid():
        raise UnsafeFile(
            f"the data dir {data_dir} belongs to {_owner_name(info.st_uid)}, not to you: its files "
            "(the token secret among them) could be read or replaced by that user; use a data dir of "
            "your own (--data-dir or $TUNELAB_LOCAL_DATA_DIR)"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(data_dir, DATA_DIR_MODE)
        logger.warning(
            "the data dir %s was open to other users (mode %o); it is now 0700",
            data_dir,
            stat.S_IMODE(info.st_mode),
        )
    return data_dir


def check_private_file(path: Path, fd: int) -> None:
    """`UnsafeFile` unless the open file `fd` (at `path`) is a regular file of this user that
    neither group nor others may read or write."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(f"{path} is not a regular file; delete it and start again")
    if info.st_uid != os.getuid():
        raise UnsafeFile(
            f"{path} belongs to {_owner_name(info.st_uid)}, not to you, so it cannot be trusted: "
            "delete it (a new one is made) or use a data dir of your own"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise UnsafeFile(
            f"{path} may be read or written by other users (mode {mode:o}): run `chmod 600 {path}` "
            "if nobody else could have read or changed it, else delete it (a new one is made)"
        )


def read_private_file(path: Path) -> str:
    """The text of the private file `path` (see `check_private_file`); `FileNotFoundError` if absent."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "r", encoding="utf-8") as file:
        check_private_file(path, file.fileno())
        return file.read()


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` (`0600`), atomically: readers see the old file or the new one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
