"""The path of a video: decode -> detect (every Nth frame) -> track -> anonymize -> encode.

>>> import faceveil.video
>>> for frame, faces in faceveil.video.track("clip.mp4"):
...     print(faces.xyxy, faces.track_id)

Modules: ``options`` (VideoOptions, VideoResult), ``tracking`` (the tracking loop,
``track``), ``threads`` (decode and encode threads), ``record`` (the track record
`faceveil review` reads), ``job`` (one file: ``process_video``, ``anonymize_video``).
"""
from __future__ import annotations

from .job import anonymize_video, full_blur, preview_path, process_video
from .options import VideoOptions, VideoResult, options_from_json
from .record import tracks_path
from .tracking import TrackedFrame, track, tracked_frames

__all__ = ["VideoOptions", "VideoResult", "TrackedFrame", "anonymize_video", "full_blur", "options_from_json",
           "preview_path", "process_video", "track", "tracked_frames", "tracks_path"]
