"""faceveil: remove faces from images, videos and datasets, and measure how well it worked."""
__version__ = "0.1.0"

from .detections import Detections, Face  # noqa: E402
from .errors import FaceveilError  # noqa: E402
from .pipeline import Anonymizer  # noqa: E402
from .api import anonymize, detect  # noqa: E402

__all__ = ["Anonymizer", "Detections", "Face", "FaceveilError", "anonymize", "detect", "__version__"]
