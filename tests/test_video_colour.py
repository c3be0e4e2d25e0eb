"""A video's colour tags: the output says how its pixels are to be shown, as the source did."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from faceveil.cli import main

av = pytest.importorskip("av")

BT2020, HLG, BT2020_NCL = 9, 18, 9  # FFmpeg's AVColorPrimaries, AVColorTransferCharacteristic, AVColorSpace


def _hlg_clip(path, frames: list[np.ndarray], fps: int = 12) -> None:
    """An HDR clip as a phone records it: BT.2020 primaries and matrix, HLG transfer, 10-bit (8-bit where this
    libx264 has no 10-bit)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height = frames[0].shape[1], frames[0].shape[0]
        v.options = {"crf": "12", "preset": "ultrafast"}
        cc = v.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = BT2020, HLG, BT2020_NCL, 1
        for fmt in ("yuv420p10le", "yuv420p"):
            v.pix_fmt = fmt
            try:
                packets = []
                for i, rgb in enumerate(frames):
                    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    frame.colorspace, frame.color_range = BT2020_NCL, 1
                    frame = frame.reformat(format=fmt)
                    frame.pts, frame.time_base = i, Fraction(1, fps)
                    packets += v.encode(frame)
                packets += v.encode(None)
                break
            except (av.FFmpegError, ValueError):
                continue
        for p in packets:
            out.mux(p)


def _first_frame(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        tags = (cc.color_primaries, cc.color_trc, cc.colorspace)
        return tags, next(c.decode(v)).to_ndarray(format="rgb24").astype(int)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_an_hdr_clip_keeps_its_primaries_and_transfer(tmp_path, suffix):
    """An HLG clip (an iPhone's default) came out tagged with no primaries and no transfer: players showed its
    HLG-coded values as SDR BT.709, flat and washed out. The output now says BT.2020 and HLG, as the source did
    (its matrix is BT.601's, the one faceveil encodes with), and its pixels are the source's as decoded."""
    yy, xx = np.mgrid[0:48, 0:64]
    base = np.stack([xx * 4, yy * 5, 255 - xx * 3], -1).clip(0, 255).astype(np.uint8)  # smooth: no chroma loss
    src = tmp_path / "hlg.mkv"
    _hlg_clip(src, [base] * 4)
    out = tmp_path / "out" / f"o{suffix}"
    assert main(["anonymize", str(src), "-o", str(out), "-q"]) == 0
    (p_in, t_in, _), rgb_in = _first_frame(src)
    (p_out, t_out, m_out), rgb_out = _first_frame(out)
    assert (p_in, t_in) == (BT2020, HLG)
    assert (p_out, t_out, m_out) == (BT2020, HLG, 6)  # 6: SMPTE 170M, the BT.601 matrix
    assert np.abs(rgb_out - rgb_in).mean() < 3  # no face: the picture as the source's, up to the codec (2.1)


def test_an_untagged_clip_stays_untagged(tmp_path):
    """A source that states no primaries nor transfer gets none (players assume the usual for its size)."""
    from synthetic_video import write_clip

    src = tmp_path / "plain.mp4"
    write_clip(src, [np.full((48, 64, 3), 120, np.uint8)] * 3, 12, audio=False)
    out = tmp_path / "out" / "o.mp4"
    assert main(["anonymize", str(src), "-o", str(out), "-q"]) == 0
    assert _first_frame(out)[0] == (2, 2, 6)
