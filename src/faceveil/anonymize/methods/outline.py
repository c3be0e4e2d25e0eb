from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ...registry import param
from ..base import METHODS, Method, parse_color


@METHODS.register("outline")
class Outline(Method):
    """Draw boxes, scores and landmarks only: for checking detections. Hides nothing."""

    hides = False

    @dataclass(frozen=True)
    class Params:
        color: str = param("0,255,0", "line colour")
        scores: bool = param(True, "write each score above its box")

        def __post_init__(self):
            parse_color(self.color)

    def apply(self, frame, detections, compositor, rng):
        out = np.ascontiguousarray(frame.copy())
        color = parse_color(self.params.color)
        thick = max(1, round(max(frame.shape[:2]) / 500))
        far = 2 * max(frame.shape[:2]) + 16  # coordinates clipped here stay off the frame (1e30 raised cv2.error)
        for box, face in zip(np.clip(compositor.scaled_boxes(detections), -far, far), detections):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
            if self.params.scores:
                cv2.putText(out, f"{face.score:.2f}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                            0.4 * thick, color, thick)
            if face.landmarks is not None:
                for x, y in np.clip(face.landmarks, -far, far):
                    cv2.circle(out, (int(round(x)), int(round(y))), thick + 1, (255, 0, 0), -1)
        return out
