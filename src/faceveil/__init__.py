"""faceveil: remove faces from images, videos and datasets, and measure how well it worked."""
__version__ = "0.1.0"

import os as _os  # noqa: E402
import sys as _sys  # noqa: E402

if _sys.argv and (_sys.argv[0] == "-m" or _os.path.basename(_sys.argv[0]) == "faceveil"):
    # Started as the command line (`faceveil ...`, `python -m faceveil ...`): a Ctrl-C while numpy and the
    # models' code load, before cli.main() takes over the handling, ends the run quietly (130) instead of
    # printing an import traceback. Nothing has been written yet. Library imports are left alone.
    import signal as _signal

    def _startup_sigint(signum, frame):
        _os._exit(130)

    _signal.signal(_signal.SIGINT, _startup_sigint)

from .detections import Detections, Face  # noqa: E402
from .errors import FaceveilError  # noqa: E402
from .pipeline import Anonymizer  # noqa: E402
from .api import anonymize, detect  # noqa: E402

__all__ = ["Anonymizer", "Detections", "Face", "FaceveilError", "anonymize", "detect", "__version__"]


def __getattr__(name: str):
    # `import faceveil; faceveil.video.track(...)` as the README writes it (AttributeError before), without loading
    # the video stack on every `import faceveil`: it is imported on first use
    if name == "video":
        import importlib

        return importlib.import_module(".video", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
