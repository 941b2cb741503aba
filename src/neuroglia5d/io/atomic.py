"""The project's rule for every file it writes: ``NAME.partial`` first, renamed when complete.

An older complete output is therefore never replaced by a broken one, and a crash leaves
at most a ``NAME.partial`` next to the last good ``NAME``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputError

PARTIAL_SUFFIX = ".partial"


def partial_path(final: Path) -> Path:
    """Return the ``.partial`` sibling of ``final``."""
    return final.with_name(final.name + PARTIAL_SUFFIX)


def finalize(partial: Path, final: Path) -> Path:
    """Rename a finished ``partial`` (file or folder) to ``final``, replacing an older one.

    A folder cannot be replaced atomically; the older one is moved aside first and
    deleted only after the new one is in place.
    """
    if partial.is_dir():
        old = None
        if final.exists():
            old = final.with_name(final.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        try:
            os.replace(partial, final)
        except BaseException:
            if old is not None:  # put the older output back where it was
                os.replace(old, final)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, final)
    return final


def remove(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(final: Path, *, keep_partial_on_error: bool = False) -> Iterator[Path]:
    """Yield the ``.partial`` path to write to; rename it to ``final`` on success.

    Parameters
    ----------
    final : Path
        The output's final name.
    keep_partial_on_error : bool
        Keep the ``.partial`` when the block raises (streaming outputs keep their finished
        timepoints for ``--resume``); otherwise it is deleted.
    """
    part = partial_path(final)
    try:
        yield part
        finalize(part, final)
    except BaseException:
        if not keep_partial_on_error:
            remove(part)
        raise


def atomic_write_text(final: Path, text: str) -> Path:
    """Write a small text file atomically."""
    with os_errors(final), atomic_output(final) as part:
        part.write_text(text, encoding="utf-8")
    return final


def atomic_write_bytes(final: Path, data: bytes) -> Path:
    """Write a small binary file atomically."""
    with os_errors(final), atomic_output(final) as part:
        part.write_bytes(data)
    return final


@contextlib.contextmanager
def os_errors(path: Path) -> Iterator[None]:
    """Turn OS errors while writing ``path`` into one-line :class:`OutputError`."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise OutputError(f"{path}: no space left on device") from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OutputError(f"{path}: permission denied") from None
        if e.errno == errno.EISDIR:
            raise OutputError(f"{path}: is a folder, not a file") from None
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None


def ensure_output_dir(out: Path) -> Path:
    """Create the output folder, or raise when it is a file or cannot be created."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--out {out}: cannot create folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK):
        raise OutputError(f"--out {out}: folder is not writable")
    return out


def check_free_space(out: Path, needed_bytes: int) -> None:
    """Raise :class:`OutputError` when ``out`` has less free space than ``needed_bytes``."""
    free = shutil.disk_usage(out).free
    if free < needed_bytes:
        raise OutputError(
            f"--out {out}: not enough disk space: the outputs need about "
            f"{needed_bytes / 2**30:.2f} GiB, {free / 2**30:.2f} GiB free"
        )
