"""Command line: argument parsing and messages only; the work happens in the library.

One module per command group (anonymize with videos, detect, listing, dataset, review, bench, bank,
eval, train), each with ``register(subparsers)``; the option groups they share and the one place
options become an AnonymizerConfig are in common.py. Library modules are imported inside the
command functions, not at the top: `faceveil --help` must not load onnxruntime, torch or the
models (the one reason for an import inside a function here).

Exit codes: 0 all done, 1 some items failed, 2 bad usage. No tracebacks unless --debug.
"""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import FaceveilError, UsageError, one_line
from . import anonymize, bank, bench, dataset, detect, eval as eval_commands, listing, people, review, train
from .parser import ArgumentParser

EPILOG_MAIN = """\
examples:
  faceveil anonymize photo.jpg -o out/               # blur every face (the default method)
  faceveil anonymize photos/ -o out/ --jobs 2        # a whole tree, mirrored under out/
  faceveil anonymize clip.mp4 -o out/                # videos: faces tracked, audio copied
  faceveil review out/ --originals photos/           # check the result, fix missed faces
  faceveil dataset anonymize --format voc --images imgs/ --labels xml/ -o anon/
  faceveil detect photos/ --json boxes.json          # boxes, scores and 5 landmarks per face
  faceveil methods                                   # every method with its parameters
"""


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = ArgumentParser(
        prog="faceveil", formatter_class=fmt, epilog=EPILOG_MAIN,
        description="Find every face in images and videos (anonymize) or in annotated datasets\n"
                    "(dataset) and hide it; check and fix the result in the browser (review);\n"
                    "measure how well it worked (eval leaks, eval privacy, bench).",
    )
    parser.add_argument("--version", action="version", version=f"faceveil {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (anonymize, detect, listing, dataset, review, bench, bank, people, eval_commands, train):
        group.register(sub)
    return parser


def _preload_native() -> None:
    """Import the native libraries the commands load lazily while the start-up handler still ends a Ctrl-C
    quietly: a Ctrl-C inside onnxruntime's native initialisation came out as a bare ``ImportError:
    initialization failed`` with no KeyboardInterrupt to recognise (a fresh-clone CI run). ~0.1 s warm."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:  # a broken install is reported by the command that needs it, with its own message
        pass
    try:
        import av  # noqa: F401
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    from ..signals import Terminated, restore_sigint, terminate_as_interrupt

    _preload_native()
    from ..heap import keep_freed

    keep_freed()  # this process is the command's: freed arrays kept for the next (replace: 1.2-1.3x on large faces)
    restore_sigint()  # from here on Ctrl-C unwinds (temporaries removed) and exits 130
    try:
        with terminate_as_interrupt():
            from ..io.images import max_pixels

            max_pixels()  # a bad FACEVEIL_MAX_PIXELS is bad usage, before any work
            if getattr(args, "output", None) == "-" and not getattr(args, "stdio", False):
                # `-o -` made a file or folder named "-" (the pipe habit from ffmpeg, where "-" is standard output);
                # --json -, --report -, --summary - are standard output
                raise UsageError("-o -: faceveil writes files, not standard output; give a file or folder name "
                                 "(one named '-': ./-)")
            return args.func(args)
    except Terminated as exc:
        print("faceveil: terminated; no partial files were left", file=sys.stderr)
        return 128 + int(exc.signum)
    except KeyboardInterrupt:
        print("faceveil: interrupted; no partial files were left", file=sys.stderr)
        return 130
    except ImportError as exc:  # Ctrl-C inside a native module's import (onnxruntime) surfaces as its ImportError
        cause = exc
        while cause is not None and not isinstance(cause, (KeyboardInterrupt, Terminated)):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        print(f"faceveil: {'terminated' if isinstance(cause, Terminated) else 'interrupted'}; no partial files "
              "were left", file=sys.stderr)
        return 128 + int(cause.signum) if isinstance(cause, Terminated) else 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except UsageError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"faceveil: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except FaceveilError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"faceveil: error: {one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
