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


def check_folder(path, what: str) -> None:
    """A folder named by ``what`` (an option, or what it is for) must be one: a mistyped one is bad usage saying so
    (the eval commands said "not a folder" of a path that is not there, and --anonymized's was exit 1, as if a file
    had failed; the review said "no such folder" of a file)."""
    from pathlib import Path

    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"{one_line(path)}: {'not a folder' if p.exists() else 'no such folder'} ({what})")


def check_bool(name: str, value) -> bool:
    """``value`` as a bool, or UsageError naming the option: a truthy string ('false', 'no') turned the option on."""
    import numpy as np

    if not isinstance(value, (bool, np.bool_)):  # numpy's too: what its comparisons give
        raise UsageError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def one_line(text) -> str:
    """``text`` (a message, a file name) with its control characters escaped as Python writes them (\\n, \\x1b): a
    file named 'x\\nfaceveil: 2 of 2 files anonymized' printed a fake status line."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
