"""``faceveil train learnedblur|harmonizer``: train the learned models faceveil ships and export them as ONNX.

torch is imported only when a command runs, so the CLI stays torch-free.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import FaceveilError, UsageError
from .common import whole

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
"""


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
    p.add_argument("--budget", default="20m", help="training time (20m, 90s, 1h; default 20m)")
    p.add_argument("--steps", type=int, help="stop after this many steps (reproducible weights)")
    p.add_argument("--seed", type=whole(), default=0)
    p.add_argument("--split", choices=("photo", "fraction"), default="photo",
                   help="photo (default): the project's one seeded split by photo name (faceveil.eval.splits), "
                        "train on its 'tune' side only; fraction: --test-fraction held out with --split-seed")
    p.add_argument("--split-seed", type=int, default=0,
                   help="--split fraction: seed of the train/test split (default 0)")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="--split fraction: share held out, never trained on (default 0.2)")
    p.add_argument("--extra-images", nargs="+", default=[], metavar="DIR",
                   help="unlabelled face photos added to training (all of them; faces found by CenterFace at 0.5, "
                        "each photo scaled so its largest face is 48 px wide)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--input-size", type=int, default=128, help="training crop side around a face (multiple of 32)")
    p.add_argument("--epsilon", type=float, default=20.0, help="L_rev budget: mean |g - blur| per pixel, 0..255")
    p.add_argument("--colour-epsilon", type=float, default=float("inf"),
                   help="L_rev budget for the colour part of g - blur (its distance from grey), 0..255 "
                        "(default inf: no colour term; 3 removes the tint but costs operation fidelity, README)")
    p.add_argument("--relative", type=float, default=1.5,
                   help="Gaussian kernel / face width (as blur; default 1.5, the method's default)")
    p.add_argument("--kernel", type=int, default=0, help="fixed Gaussian kernel in pixels (0: use --relative)")
    p.add_argument("--init", default="", metavar="ONNX", help="start from this refiner's weights (default: from zero)")
    p.add_argument("--weights", default="1,1,1,1", metavar="REV,OPER,POST,CYCL",
                   help="loss weights of L_rev, L_oper, L_post, L_cycl (default 1,1,1,1, the paper's; with POST and "
                        "CYCL 0 the on-the-fly detector f_g is not trained at all, and a step costs far less)")
    p.add_argument("--lr", type=float, default=5e-3, help="refiner learning rate (cosine decay; default 0.005)")
    p.add_argument("--scale", default="0.6,1.6", metavar="LO,HI",
                   help="scale jitter of the training crops (log-uniform; default 0.6,1.6)")
    p.add_argument("--torch-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--data-threads", type=int, default=2,
                   help="threads preparing each batch (crops, blur, CenterFace targets; default 2)")
    p.add_argument("--max-images", type=int, help="use only the first N labelled images (quick runs)")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_learnedblur)


def cmd_learnedblur(args) -> int:
    from ..train.train_on_anon import INSTALL_HINT, load_samples, parse_duration, split

    try:
        import torch
    except ImportError:
        raise FaceveilError(f"`faceveil train learnedblur` needs torch: {INSTALL_HINT}") from None
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
    if len(weights) != 4 or min(weights) < 0:
        raise UsageError("--weights takes four numbers >= 0: REV,OPER,POST,CYCL")
    if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
        raise UsageError("--scale takes LO,HI with 0 < LO <= HI")
    if not args.lr > 0:
        raise UsageError("--lr must be positive")
    if args.init and not Path(args.init).is_file():
        raise UsageError(f"--init {args.init}: file not found")
    if not 0 < args.test_fraction < 1:
        raise UsageError("--test-fraction must be between 0 and 1")
    if args.data_threads < 1:
        raise UsageError("--data-threads must be at least 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available to torch here")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    samples, problems = load_samples(args.images, args.labels, args.max_images)
    for msg in problems:
        print(f"faceveil: warning: skipped {msg}", file=sys.stderr)
    if args.split == "photo":
        from ..eval.splits import side

        train_s = [s for s in samples if side(s.name) == "tune"]
        test_s = [s for s in samples if side(s.name) != "tune"]
        if not train_s:
            raise UsageError(f"--split photo: no photo of {args.images} is on the tune side")
    else:
        train_s, test_s = split(samples, args.test_fraction, args.split_seed)
    extra = L.pseudo_labelled(args.extra_images) if args.extra_images else []
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
    L.export_onnx(res.refiner, out)
    L.write_card(out.with_name(out.name + ".json"), cfg, res, {
        "command": "faceveil train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None,
        "data": {"images": str(args.images), "labels": str(args.labels), "split_seed": args.split_seed,
                 "test_fraction": args.test_fraction, "split": args.split, "train": [s.name for s in train_s],
                 "extra": [e[0] for e in extra],
                 "test": [s.name for s in test_s]},
        "torch_threads": torch.get_num_threads()})
    print(f"faceveil: {res.steps} steps in {time.perf_counter() - t0:.0f} s -> {out}", file=sys.stderr)
    return 0


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
Train only on photos whose licence allows shipping what you compute from them.
"""


def register_harmonizer(sub) -> None:
    p = sub.add_parser("harmonizer", help="train the U-Net harmonizer of the replace method (ONNX out)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_HARMONIZER,
                       description=HARMONIZER_SUMMARY)
    p.add_argument("--images", nargs="+", required=True, metavar="DIR", help="folders (or files) of face photos")
    p.add_argument("-o", "--output", required=True, metavar="ONNX", help="model file to write")
    p.add_argument("--budget", default="20m", help="training time (e.g. 20m, 90s, 1h; default 20m)")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps instead (reproducible)")
    p.add_argument("--seed", type=whole(), default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--width", type=int, default=16, help="channels of the first level (default 16; ~0.5 MB)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-face", type=int, default=24, help="skip faces narrower than this many pixels")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_harmonizer)


def cmd_harmonizer(args) -> int:
    from ..train.harmonizer import collect, parse_duration, train

    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("training needs torch: pip install 'faceveil[train]'") from None
    seconds = parse_duration(args.budget)
    t = time.perf_counter()
    crops, stats = collect(args.images, min_face=args.min_face, progress=not args.quiet)
    prep_s = time.perf_counter() - t
    summary = train(crops, args.output, seconds=seconds, steps=args.steps, seed=args.seed, device=args.device,
                    threads=args.threads, batch_size=args.batch, width=args.width, lr=args.lr,
                    progress=not args.quiet)
    summary.update(data=stats, prepare_seconds=round(prep_s, 1), images=[str(d) for d in args.images])
    print(json.dumps(summary, indent=1), file=sys.stderr)
    return 0
