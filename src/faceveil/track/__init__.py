"""Tracking faces across video frames: association, hold, look-ahead back-fill, smoothing."""
from .tracker import Tracker, TrackParams

__all__ = ["Tracker", "TrackParams"]
