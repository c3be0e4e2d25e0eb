import pytest

from faceveil.anonymize import METHODS, get_method
from faceveil.detect import DETECTORS
from faceveil.errors import UsageError
from faceveil.registry import parse_assignments


def test_every_conventional_method_is_registered():
    assert {"blur", "pixelate", "blackout", "block", "noise", "eyebar", "fullblur", "overlay", "outline"} <= set(
        METHODS.names()
    )
    assert {"centerface", "yunet", "dlib-hog", "dlib-cnn", "haar"} <= set(DETECTORS.names())


def test_params_parse_from_strings():
    m = get_method("blur", {"kernel": "25", "sigma": "3"})
    assert m.params.kernel == 25 and m.params.sigma == 3.0
    assert get_method("blur", {"relative": "1/2"}).params.relative == 0.5
    assert get_method("outline", {"scores": "no"}).params.scores is False


@pytest.mark.parametrize(
    "name,params,fragment",
    [
        ("blur", {"kernel": "abc"}, "expected an integer"),
        ("blur", {"kernal": "3"}, "unknown parameter 'kernal'"),
        ("blur", {"kernel": "-3"}, "kernel must be 0 .* or at least 2"),
        ("noise", {"amount": "150"}, "at most 100"),
        ("blackout", {"color": "300"}, "0..255"),
        ("nope", {}, "unknown method 'nope'"),
        # threads=100000 ran out of memory (16 GB, killed with no message); -1 was taken
        ("learnedblur", {"threads": "100000"}, r"threads must be in \[0, 64\]"),
        ("learnedblur", {"threads": "-1"}, r"threads must be in \[0, 64\]"),
    ],
)
def test_bad_params_are_usage_errors(name, params, fragment):
    with pytest.raises(UsageError, match=fragment):
        get_method(name, params)


@pytest.mark.parametrize("name,params", [
    ("eyebar", {"extend": "nan"}), ("eyebar", {"height": "inf"}), ("eyebar", {"extend": "1e999"}),
    ("blur", {"sigma": "nan"}), ("blur", {"sigma": float("inf")}), ("noise", {"amount": float("nan")}),
])
def test_a_non_finite_number_is_refused_for_every_method(name, params):
    """eyebar extend=nan drew no bar and blur sigma=inf was taken, each run reported as anonymized (exit 0)."""
    with pytest.raises(UsageError, match="expected a finite number"):
        get_method(name, params)


@pytest.mark.parametrize("params", [{"height": "1e9"}, {"extend": "1e9"}, {"extend": 5}])
def test_an_eyebar_too_large_to_draw_is_refused(params):
    """height or extend 1e9 overflowed the bar's coordinates: no bar drawn, 'anonymized'."""
    with pytest.raises(UsageError, match=r"height must be in \(0, 4\] and extend in \[0, 4\]"):
        get_method("eyebar", params)


@pytest.mark.parametrize("name,params", [("pixelate", {"block": 2.5}), ("fullblur", {"kernel": 18.5})])
def test_a_fractional_integer_parameter_from_python_is_a_one_line_usage_error(name, params):
    """faceveil.anonymize(im, "pixelate", block=2.5) raised OpenCV's multi-line cv2.error."""
    import numpy as np

    import faceveil

    with pytest.raises(UsageError, match="expected an integer") as exc:
        faceveil.anonymize(np.zeros((64, 64, 3), np.uint8), name, **params)
    assert "\n" not in str(exc.value)
    assert get_method(name, {k: 20.0 for k in params}).params == get_method(name, {k: 20 for k in params}).params


def test_parse_assignments():
    assert parse_assignments(["kernel=25", "color=1,2,3"]) == {"kernel": "25", "color": "1,2,3"}
    with pytest.raises(UsageError):
        parse_assignments(["kernel"])


def test_describe_lists_defaults_and_help():
    blur = next(m for m in METHODS.describe() if m["name"] == "blur")
    kernel = next(p for p in blur["params"] if p["name"] == "kernel")
    assert kernel["default"] == 0 and kernel["type"] == "int" and kernel["help"]


def test_tuple_params_parse_from_comma_separated_text():
    from faceveil.detect import get_detector

    assert get_detector("multiscale", {"big_scales": "0.6, 0.9"}).params.big_scales == (0.6, 0.9)
    assert get_detector("multiscale", {"big_scales": ""}).params.big_scales == ()
    ms = next(d for d in DETECTORS.describe() if d["name"] == "multiscale")
    big = next(p for p in ms["params"] if p["name"] == "big_scales")
    assert big["type"] == "comma-separated floats" and big["default"] == ()


@pytest.mark.parametrize("name", ["centerface", "multiscale", "masked"])
def test_a_detectors_thread_count_is_bounded_and_a_machines_share_capped(name, monkeypatch):
    """A detector's onnxruntime threads were unbounded (learnedblur's threads=100000 took 16 GB and was killed); the
    bound is refused before a session is made, and a batch's share of a many-core machine is capped at it."""
    import faceveil.batch as batch
    from faceveil.detect import get_detector
    from faceveil.pipeline import AnonymizerConfig
    from faceveil.registry import MAX_THREADS

    for bad in ("100000", "-1"):
        with pytest.raises(UsageError, match=rf"threads must be in \[0, {MAX_THREADS}\]"):
            get_detector(name, {"threads": bad})
    monkeypatch.setattr(batch, "usable_cores", lambda: 256)
    cfg = batch._with_threads(AnonymizerConfig(detector=name), batch._threads_per_worker(1))
    assert cfg.detector_params["threads"] == MAX_THREADS
