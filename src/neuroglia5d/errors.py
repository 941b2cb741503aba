"""User-facing errors.

Every error a user can cause (a bad file, a bad parameter, a full disk) is raised as a
subclass of :class:`Neuroglia5DError` whose message is one line naming the file or
parameter and what is wrong. The command line prints that line and exits non-zero; the
napari layer shows it as a notification.
"""

from __future__ import annotations


class Neuroglia5DError(Exception):
    """Base class of errors whose message is meant for the user, on one line."""

    exit_code: int = 2


class InputError(Neuroglia5DError):
    """An input file or folder is missing, unreadable or inconsistent."""


class ParameterError(Neuroglia5DError, ValueError):
    """A parameter has the wrong type, is out of range, or is unknown under ``strict``."""


class OutputError(Neuroglia5DError):
    """An output cannot be written (path is a file, no space left, ...)."""


class Cancelled(Neuroglia5DError):
    """The user cancelled a long-running job; partial outputs were left as ``.partial``."""

    exit_code = 130
