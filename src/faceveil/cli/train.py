"""``faceveil train learnedblur|harmonizer``: train the learned models faceveil ships and export them as ONNX.

torch is imported only when a command runs, so the CLI stays torch-free.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import time
from pathlib import Path

from ..errors import UsageError, one_line
from ..registry import MAX_THREADS
from .common import between, check_result_path, check_writable, strict_json, whole

LICENCE_NOTE = ("Licences: train only on photos whose licence allows shipping what you compute from them (facemask: "
                "CC0, deepface-unit: MIT); LFW and WIDER FACE are for evaluation only (a warning names them).")

EPILOG_LEARNEDBLUR = """\
examples:
  faceveil train learnedblur --images ../shared/data/facemask/images \\
      --labels ../shared/data/facemask/gt.txt --extra-images ../shared/data/deepface-unit \\
      --budget 40m --torch-threads 1 -o learnedblur.onnx
  faceveil train learnedblur ... --device cuda --budget 10m -o learnedblur.onnx

Only the train part of a seeded split is used: --split photo (default) trains on the tune side of
faceveil.eval.splits, whose held_out side bench/bench_learnedblur.py measures; --split fraction is
`faceveil eval train`'s split (--split-seed, --test-fraction). The split, the config and the loss
log go to OUTPUT.json. Use the model with `-m learnedblur -p model=learnedblur.onnx`.
""" + LICENCE_NOTE + "\n"


def register(sub) -> None:
    tr = sub.add_parser("train", help="train the learned models faceveil ships (needs the train extra: torch)")
    tr_sub = tr.add_subparsers(dest="train_command", metavar="TRAIN_COMMAND", required=True)
    register_learnedblur(tr_sub)
    register_harmonizer(tr_sub)


def register_learnedblur(sub) -> None:
    p = sub.add_parser("learnedblur", help="train the learned blur (DartBlur) refiner and export ONNX",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_LEARNEDBLUR,
                       description="A Gaussian blur refined so that detectors still find the faces.")
    p.add_argument("--images", required=True, help="folder of the labelled images")
    p.add_argument("--labels", required=True, help="WIDER-layout gt.txt (name, count, x y w h ... per face)")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write (plus OUTPUT.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT and OUTPUT.json")
    p.add_argument("--budget", default="20m", help="training time (20m, 90s, 1h; default 20m)")
    p.add_argument("--steps", type=whole(1),
                   help="stop after N steps or at --budget (--budget 0: reproducible weights)")
    p.add_argument("--seed", type=whole(), default=0)
    p.add_argument("--split", choices=("photo", "fraction"), default="photo",
                   help="photo (default): the project's one seeded split by photo name (faceveil.eval.splits), "
                        "train on its 'tune' side only; fraction: --test-fraction held out with --split-seed")
    p.add_argument("--split-seed", type=whole(), default=0,
                   help="--split fraction: seed of the train/test split (default 0)")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="--split fraction: share held out, never trained on (default 0.2)")
    p.add_argument("--extra-images", nargs="+", default=[], metavar="DIR",
                   help="unlabelled face photos added to training (all of them; faces found by CenterFace at 0.5, "
                        "each photo scaled so its largest face is 48 px wide)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--batch", type=whole(1), default=8)
    p.add_argument("--input-size", type=whole(32), default=128,
                   help="training crop side around a face (multiple of 32)")
    p.add_argument("--epsilon", type=between(0.0, 255.0), default=20.0,
                   help="L_rev budget: mean |g - blur| per pixel, 0..255")
    p.add_argument("--colour-epsilon", type=float, default=float("inf"),
                   help="L_rev budget for the colour part of g - blur (its distance from grey), 0..255 "
                        "(default inf: no colour term; 3 removes the tint but costs operation fidelity, README)")
    p.add_argument("--relative", type=positive, default=1.5,
                   help="Gaussian kernel / face width (as blur; default 1.5, what the shipped weights were trained "
                        "at; -m learnedblur runs them at 1.25)")
    p.add_argument("--kernel", type=whole(), default=0, help="fixed Gaussian kernel in pixels (0: use --relative)")
    p.add_argument("--init", default="", metavar="ONNX", help="start from this refiner's weights (default: from zero)")
    p.add_argument("--weights", default="1,1,1,1", metavar="REV,OPER,POST,CYCL",
                   help="loss weights of L_rev, L_oper, L_post, L_cycl (default 1,1,1,1, the paper's; with POST and "
                        "CYCL 0 the on-the-fly detector f_g is not trained at all, and a step costs far less)")
    p.add_argument("--lr", type=positive, default=5e-3, help="refiner learning rate (cosine decay; default 0.005)")
    p.add_argument("--scale", default="0.6,1.6", metavar="LO,HI",
                   help="scale jitter of the training crops (log-uniform; default 0.6,1.6)")
    p.add_argument("--torch-threads", type=whole(0, MAX_THREADS), default=0,
                   help="torch CPU threads (0: torch's default)")
    p.add_argument("--data-threads", type=whole(1), default=2,
                   help="threads preparing each batch (default 2)")
    p.add_argument("--max-images", type=whole(1), help="use only the first N labelled images (quick runs)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_learnedblur)


def cmd_learnedblur(args) -> int:
    from ..io.inputs import refuse_unreachable
    from ..train.train_on_anon import INSTALL_HINT, load_samples, parse_duration, split

    refuse_unreachable(args.images, args.labels, args.output, args.init, *args.extra_images)
    torch = _torch(INSTALL_HINT)
    from ..train import learnedblur as L

    budget = parse_duration(args.budget)
    if budget <= 0 and not args.steps:
        raise UsageError("--budget must be positive (or give --steps)")
    if args.input_size % 32:
        raise UsageError("--input-size must be a multiple of 32")
    if not (args.epsilon >= 0 and args.colour_epsilon >= 0):
        raise UsageError("--epsilon and --colour-epsilon must be >= 0")
    try:
        weights = tuple(float(v) for v in args.weights.split(","))
        scale = tuple(float(v) for v in args.scale.split(","))
    except ValueError:
        raise UsageError("--weights and --scale take comma-separated numbers") from None
    if len(weights) != 4 or not all(0 <= w < math.inf for w in weights) or not any(weights):
        raise UsageError("--weights takes four finite numbers >= 0, not all 0: REV,OPER,POST,CYCL")
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] < math.inf:
        raise UsageError("--scale takes LO,HI with 0 < LO <= HI, finite")
    _check_blur(args.kernel, args.relative)
    if not 0 < args.test_fraction < 1:
        raise UsageError("--test-fraction must be between 0 and 1")
    extra_dirs = _existing(args.extra_images, "--extra-images")
    card = args.output + ".json"
    _check_outputs(args, [args.output, card], inputs=[args.labels, args.init, *args.extra_images],
                   folders=[args.images, *extra_dirs])
    if args.init:
        _check_init(L, args.init)
    _check_device(torch, args.device)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    warn_evaluation_only([args.images, args.labels, *args.extra_images])
    samples = load_samples(args.images, args.labels, args.max_images)  # an image that cannot be read: exit 1 there
    if args.split == "photo":
        from ..eval.splits import side

        train_s = [s for s in samples if side(s.name) == "tune"]
        test_s = [s for s in samples if side(s.name) != "tune"]
        if not train_s:
            raise UsageError(f"--split photo: no photo of {args.images} is on the tune side")
    else:
        train_s, test_s = split(samples, args.test_fraction, args.split_seed)
    extra = L.pseudo_labelled(args.extra_images) if args.extra_images else []
    if not sum(len(s.boxes) for s in train_s) + len(extra):
        raise UsageError(f"{args.labels}: no labelled face in the {len(train_s)} training images (nothing to train on)")
    cfg = L.LBConfig(budget_s=budget if budget > 0 else float("inf"), max_steps=args.steps, seed=args.seed,
                     device=args.device, batch=args.batch, input_size=args.input_size, epsilon=args.epsilon,
                     colour_epsilon=args.colour_epsilon, kernel=args.kernel, relative=args.relative,
                     weights=weights, scale=scale, init=args.init, lr=args.lr,
                     threads=args.data_threads)
    if not args.quiet:
        print(f"faceveil: {len(train_s)} train images ({len(test_s)} held out) + {len(extra)} extra; "
              f"training on {args.device}", file=sys.stderr)
    t0 = time.perf_counter()
    images = [s.image for s in train_s] + [e[1] for e in extra]
    res = L.train(images, [s.boxes for s in train_s] + [e[2] for e in extra], cfg, progress=not args.quiet)
    out = Path(args.output)
    _remove_stale(out)
    with _both_or_neither(out, card) as tmp:  # a model without its card (or the reverse) is never left
        L.export_onnx(res.refiner, tmp)
        L.write_card(card, cfg, res, {
            "command": "faceveil train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None,
            "data": {"images": str(args.images), "labels": str(args.labels), "split_seed": args.split_seed,
                     "test_fraction": args.test_fraction, "split": args.split, "train": [s.name for s in train_s],
                     "extra": [e[0] for e in extra],
                     "test": [s.name for s in test_s]},
            "torch_threads": torch.get_num_threads()})
    print(f"faceveil: {res.steps} steps in {time.perf_counter() - t0:.0f} s -> {one_line(out)}", file=sys.stderr)
    return 0


def positive(text: str) -> float:
    """An argparse type: a finite number above 0 (a learning rate, a blur size); nan, inf or <= 0 is bad usage
    (before, --lr inf trained NaN weights and exported them)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


positive.__name__ = "number"


def _torch(hint: str):
    """torch, or bad usage (exit 2) naming the extra that installs it."""
    try:
        import torch
    except ImportError:
        raise UsageError(f"`faceveil train` needs torch: {hint}") from None
    return torch


def _check_device(torch, device: str) -> None:
    """--device is cpu or an available CUDA device: before any work (a bad name failed with a traceback)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {device!r}: expected cpu or cuda")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise UsageError(f"--device {device}: no such CUDA device is available to torch here")


def _check_blur(kernel: int, relative: float) -> None:
    """--kernel and --relative as the blur method takes them (a kernel of 1 blurs nothing, relative up to 4)."""
    from ..anonymize.methods.blur import Blur

    try:
        Blur.Params(kernel, relative)
    except ValueError as exc:
        raise UsageError(f"--kernel/--relative: {exc}") from None


def _check_init(L, path: str) -> None:
    """--init is a learned-blur refiner ONNX: loaded before any work (a text file, a truncated one or another model
    failed with a traceback after loading the data)."""
    if not Path(path).is_file():
        raise UsageError(f"--init {path}: file not found")
    try:
        L.load_onnx_weights(L.Refiner(L.LBConfig.width, L.LBConfig.prior), path)
    except Exception as exc:  # onnx's parse errors have no common type
        cause = str(exc).splitlines()[0].replace(f"{path}: ", "") if str(exc) else type(exc).__name__
        raise UsageError(f"{path}: --init is not a learned-blur refiner ONNX ({cause})") from None


def _existing(paths, option: str) -> list[str]:
    """The folders among ``paths``; a path that does not exist is bad usage (it was skipped without a word), and so
    is a folder that cannot be listed (read_folder: learnedblur's --extra-images was a traceback after loading)."""
    from ..io.inputs import read_folder

    for p in paths:
        if not os.path.exists(p):
            raise UsageError(f"{p}: {option}: no such file or folder")
    folders = [p for p in paths if os.path.isdir(p)]
    for folder in folders:
        read_folder(folder)
    return folders


def _check_outputs(args, outputs, inputs=(), folders=()) -> None:
    """-o (and the card beside it) are new files that can be written, not an input nor inside an input folder, and
    replace an existing file only with --overwrite: before any work. Before, -o a photo or the labels replaced them
    with ONNX bytes, and an existing model was replaced without a word; -o "" or a folder failed after the run."""
    if not args.output:
        raise UsageError("-o '': give a file name for the model")
    for out in outputs:
        check_writable(out, "the model")
        check_result_path(out, "the model", [q for q in inputs if q], folders=[f for f in folders if f],
                          overwrite=True)
        if Path(out).exists() and not args.overwrite:
            raise UsageError(f"{out}: exists; give another name for the model, or --overwrite to replace it")


def _remove_stale(out: Path) -> None:
    """Remove the temporaries a killed export left beside ``out`` (as anonymize does in its output folder)."""
    from ..io.atomic import remove_stale_temporaries

    remove_stale_temporaries([out.parent])


@contextlib.contextmanager
def _both_or_neither(model: Path, card: str):
    """``with _both_or_neither(model, card) as tmp``: the model is written to ``tmp`` and renamed into place only
    when the block (which writes the card) succeeds; the card is removed when the model cannot be put in place.
    Before, a failed card write left the model behind while the run exited 1."""
    from ..io.atomic import atomic_path

    written = False
    try:
        with atomic_path(model) as tmp:
            yield tmp
            written = True
    except BaseException:
        if written:
            Path(card).unlink(missing_ok=True)
        raise


# Evaluation-only data sets, by name or layout: WIDER FACE's event folders (0--Parade) and wider_face_* labels, LFW's
# Name/Name_0001.jpg. A renamed copy of another layout is not caught (docs/learned-models.md).
_EVAL_NAME = re.compile(r"(lfw|wider[_-]?face)([^a-z]|$)", re.I)
_WIDER_EVENT = re.compile(r"\d+--\w")
_LFW_FILE = re.compile(r"[A-Z][a-z][\w'-]*(_[A-Z][\w'-]*)+_\d{4}\.jpg")


def evaluation_only(path) -> str | None:
    """"WIDER FACE" or "LFW" when ``path`` (a photo, a labels file or a folder of them) looks like that data set."""
    p = Path(os.path.abspath(path))
    names = list(p.parts)
    if p.is_dir():
        try:
            children = sorted(os.scandir(p), key=lambda e: e.name)[:200]
        except OSError:
            children = []
        names += [e.name for e in children]
        if any(e.is_dir() and os.path.exists(os.path.join(e.path, e.name + "_0001.jpg")) for e in children[:20]):
            return "LFW"
    for n in names:
        m = _EVAL_NAME.match(n)
        if _WIDER_EVENT.match(n) or (m and m[1].lower() != "lfw"):
            return "WIDER FACE"
        if m or _LFW_FILE.fullmatch(n) or re.fullmatch(re.escape(p.parent.name) + r"_\d{4}\.jpg", p.name):
            return "LFW"
    return None


def warn_evaluation_only(paths) -> None:
    """One warning line per data set whose licence is for evaluation only (LFW, WIDER FACE): a model trained on
    them must not be shipped. Before, training on them gave no word."""
    seen = {}
    for path in paths:
        name = evaluation_only(path)
        if name and name not in seen:
            seen[name] = path
            print(f"faceveil: warning: {one_line(path)}: looks like {name}, licensed for evaluation only: do not ship "
                  "a model trained on it (docs/learned-models.md)", file=sys.stderr)


# train harmonizer ----------------------------------------------------------------

HARMONIZER_SUMMARY = ("`faceveil train harmonizer`: the U-Net that matches a pasted face's colour and light to its "
                      "scene.")

EPILOG_HARMONIZER = """\
examples:
  faceveil train harmonizer --images ../shared/data/facemask/images ../shared/data/deepface-unit \\
      -o harmonizer.onnx --budget 20m --seed 0 --threads 1
  faceveil anonymize in/ -o out/ -m replace -p harmonizer=unet -p harmonizer_model=harmonizer.onnx

--steps N stops after N steps (bit-reproducible under --seed on one machine);
--budget stops on wall-clock time (the step count then varies with the machine's load).
""" + LICENCE_NOTE + "\n"


def register_harmonizer(sub) -> None:
    p = sub.add_parser("harmonizer", help="train the U-Net harmonizer of the replace method (ONNX out)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_HARMONIZER,
                       description=HARMONIZER_SUMMARY)
    p.add_argument("--images", nargs="+", required=True, metavar="DIR", help="folders (or files) of face photos")
    p.add_argument("-o", "--output", required=True, metavar="ONNX", help="model file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing ONNX")
    p.add_argument("--budget", default="20m", help="training time (e.g. 20m, 90s, 1h; default 20m)")
    p.add_argument("--steps", type=whole(), default=0, help="stop after this many steps instead (reproducible)")
    p.add_argument("--seed", type=whole(), default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=whole(1, MAX_THREADS), default=1, help="torch CPU threads (default 1)")
    p.add_argument("--batch", type=whole(1), default=16, help="faces a step (default 16)")
    p.add_argument("--width", type=whole(1), default=16, help="channels of the first level (default 16; ~0.5 MB)")
    p.add_argument("--lr", type=positive, default=2e-3, help="AdamW's learning rate (default 0.002)")
    p.add_argument("--min-face", type=whole(), default=24, help="skip faces narrower than this many pixels")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_harmonizer)


def cmd_harmonizer(args) -> int:
    from ..io.inputs import refuse_unreachable
    from ..train.harmonizer import collect, parse_duration, train
    from ..train.train_on_anon import INSTALL_HINT

    refuse_unreachable(*args.images, args.output)
    torch = _torch(INSTALL_HINT)
    seconds = parse_duration(args.budget)
    if seconds <= 0 and not args.steps:
        raise UsageError("--budget must be positive (or give --steps)")
    folders = _existing(args.images, "--images")
    _check_outputs(args, [args.output], inputs=args.images, folders=folders)
    _check_device(torch, args.device)
    warn_evaluation_only(args.images)
    t = time.perf_counter()
    crops, stats = collect(args.images, min_face=args.min_face, progress=not args.quiet)
    prep_s = time.perf_counter() - t
    _remove_stale(Path(args.output))
    summary = train(crops, args.output, seconds=seconds, steps=args.steps, seed=args.seed, device=args.device,
                    threads=args.threads, batch_size=args.batch, width=args.width, lr=args.lr,
                    progress=not args.quiet)
    summary.update(data=stats, prepare_seconds=round(prep_s, 1), images=[str(d) for d in args.images])
    # strict JSON: with no face held out the validation errors are NaN, printed as the bare token NaN before
    print(strict_json(summary).decode(), file=sys.stderr)
    return 0
