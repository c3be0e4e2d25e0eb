"""Errors that carry a message meant for the user.

Only the CLI turns them into one-line messages and exit codes; library callers
catch them like any exception.
"""


class FaceveilError(Exception):
    """A failure with a one-line, user-facing message (no traceback needed)."""


class UsageError(FaceveilError):
    """Bad option, bad parameter value, unknown name: exit code 2."""


class InputError(FaceveilError):
    """An input file that cannot be read or processed: reported, batch goes on."""


class ModelError(FaceveilError):
    """A model file or the package that ships it is missing or broken."""
