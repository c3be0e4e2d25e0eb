"""Video speed work (issue 20): stage busy times, detection on crops around tracks, scene cuts, Ray.

Clips are generated from skimage's astronaut (no shared data needed) with known face boxes.
"""
from __future__ import annotations

import numpy as np
import pytest

from faceveil.pipeline import Anonymizer
from synthetic_video import make_clip, sprite_from_photo, write_clip
from faceveil.video import VideoOptions, process_video

FPS = 24


@pytest.fixture(scope="module")
def sprites():
    import faceveil
    from skimage import data

    im = data.astronaut()
    d = faceveil.detect(im, "centerface")
    return [sprite_from_photo(im, d.xyxy[int(np.argmax(d.areas))])]


@pytest.fixture(scope="module")
def clip(sprites):
    return make_clip(sprites, (320, 240), 24, FPS, seed=5)


@pytest.fixture(scope="module")
def clip_file(clip, tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "astro.mp4"
    write_clip(path, clip.frames, FPS, audio=False)
    return path


@pytest.fixture(scope="module")
def anonymizer():
    return Anonymizer(preset="fast")


def test_stage_busy_times_in_result(anonymizer, clip_file, tmp_path):
    r = process_video(anonymizer, clip_file, tmp_path / "out.mp4", VideoOptions(), progress=False)
    assert r.status == "written", r.error
    stages = r.to_json()["stages"]
    assert set(stages) == {"decode", "detect", "anonymize", "encode"}
    assert all(v > 0 for v in stages.values()), stages
    # detection and anonymization run in the job's own thread: together they fit in its wall time
    assert stages["detect"] + stages["anonymize"] <= r.seconds
    # one detector run per frame at 320x240 takes milliseconds, not nothing and not seconds
    assert 0.001 * r.frames < stages["detect"] < 2.0 * r.frames
