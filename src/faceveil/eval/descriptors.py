"""dlib's face descriptor for the privacy evaluation: the one implementation is
``faceveil.anonymize.descriptors`` (below both ``eval`` and the keep step, which uses it too)."""
from ..anonymize.descriptors import DIM, DlibDescriber

__all__ = ["DIM", "DlibDescriber"]
