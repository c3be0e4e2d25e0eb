"""`faceveil bank ...`: build and inspect donor banks for the `replace` method."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import between, check_result_path, check_writable, strict_json, whole

# --size: replace's dense averaging of a donors bank needs crops of at least 12 px (OpenCV's DIS flow), and a face
# under 32 px holds no features to average; above 512 px a bank's memory grows (0.8 MB a face) with no detail gained
# (the shipped bank is 256 px)
SIZES = (32, 512)

EPILOG = """\
examples:
  faceveil bank build people/ -o donors.npz             # one sub-folder per person
  faceveil bank build photos/ --labels ids.csv -o donors.npz # CSV lines: file,identity
  faceveil bank build people/ -o ids.npz --average 64 --k 5  # only averages of 5 people (needs dlib)
  faceveil bank info ids.npz
  faceveil anonymize in/ -o out/ -m replace -p bank=ids.npz

Build from faces you may use (consented, or with a licence that allows it). A
bank of single donors holds real faces: keep it private; `--average N` keeps only
averages of k different people, each checked by dlib against its donors: as an
aligned crop, and fitted by replace into up to --check-photos of DIR's photos
(other people's), where it must stay --placed-distance from every donor photo.
"""


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    b = sub.add_parser("bank", help="build donor banks for the replace method", formatter_class=fmt, epilog=EPILOG)
    bs = b.add_subparsers(dest="bank_command", metavar="BANK_COMMAND", required=True)
    bb = bs.add_parser("build", help="detect, align and store faces from a folder", formatter_class=fmt, epilog=EPILOG)
    bb.add_argument("folder", metavar="DIR", help="photos: DIR/<person>/*.jpg, or any layout with --labels")
    bb.add_argument("-o", "--output", required=True, metavar="BANK", help="bank file to write (.npz)")
    bb.add_argument("--overwrite", action="store_true", help="replace BANK if it exists")
    bb.add_argument("--labels", metavar="CSV", help="file,identity per line (paths relative to DIR)")
    bb.add_argument("--min-face", type=whole(), default=60,
                    help="skip faces narrower than this many pixels (default 60)")
    bb.add_argument("--size", type=whole(*SIZES), default=128,
                    help=f"crop size in pixels, {SIZES[0]} to {SIZES[1]} (default 128)")
    bb.add_argument("--average", type=whole(), default=0, metavar="N",
                    help="store N synthesized identities (robust averages of k people, sharpened: the shipped "
                         "bank's recipe) instead of the donors")
    bb.add_argument("--k", type=int, default=5, help="people per average (>= 3, default 5)")
    bb.add_argument("--seed", type=whole(), default=0, help="seed for drawing the averages")
    bb.add_argument("--min-distance", type=between(0.0, 2.0), default=0.6,
                    help="with --average: keep adding identities only while each is at least this far (dlib "
                         "distance) from every one kept; 0 keeps N")
    bb.add_argument("--placed-distance", type=between(0.0, 2.0), default=0.6, metavar="D",
                    help="with --average: fitted into photos, an average must stay this far (dlib) from its donors' "
                         "photos (default 0.6; 0: the aligned check only)")
    bb.add_argument("--check-photos", type=int, default=64, metavar="N",
                    help="photos of DIR, evenly spaced, to fit the averages into (default 64)")
    bb.add_argument("--candidates", type=int, default=0, metavar="N",
                    help="averages drawn before choosing (default 8x --average, 4x without the placement check)")
    bb.add_argument("--merge-lookalikes", action="store_true",
                    help="join identities that dlib cannot tell apart (for loosely labelled folders)")
    bb.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    bb.add_argument("--debug", action="store_true", help="show tracebacks")
    bb.set_defaults(func=cmd_build)
    bi = bs.add_parser("info", help="print what a bank holds")
    bi.add_argument("bank", nargs="?", default="", help="bank file (default: the one shipped with faceveil)")
    bi.add_argument("--debug", action="store_true", help="show tracebacks")
    bi.set_defaults(func=cmd_info)


def cmd_build(args) -> int:
    from ..anonymize.bank import build_bank, list_labelled
    from ..errors import UsageError, one_line
    from ..io.inputs import refuse_unreachable

    refuse_unreachable(args.folder, args.labels, args.output)
    if args.k < 3:
        raise UsageError("--k must be at least 3")
    if args.check_photos < 1 or args.candidates < 0:  # --placed-distance: its type (0 to 2)
        raise UsageError("--candidates must be >= 0 and --check-photos >= 1")
    # a sub-folder that cannot be read is bad usage before any work, as in `people build`: a bank built from the
    # rest (exit 1) lacked that person's faces, and the whole build had to be run again to add them
    items = list_labelled(args.folder, args.labels)
    _check_output(args, items)
    if not items:  # a --labels CSV of its header alone said "DIR: no images found", naming the folder
        raise UsageError(f"{args.labels}: no file,identity line in it" if args.labels else
                         f"{args.folder}: no images found")
    labelled = {ident for _, ident in items}
    if args.average and None not in labelled:  # how many people there are is known before any work
        _check_average(args, len(labelled), args.folder, refuse=True)
    errors: list[str] = []
    try:
        bank, stats = build_bank(items, min_face=args.min_face, size=args.size, progress=not args.quiet,
                                 source=f"faceveil bank build {args.folder}", errors=errors)
    except UsageError as exc:  # the folder named: no usable face in it
        raise UsageError(f"{args.folder}: {exc}") from None
    finally:  # a bad photo is named, also when no face was left
        for line in errors:
            print(f"faceveil: error: {one_line(line)}", file=sys.stderr)
    report = {"faces": stats, "people": len(bank.people())}
    if args.merge_lookalikes:
        from ..anonymize.identity import merge_lookalikes

        bank, report["lookalike_merges"] = merge_lookalikes(bank)
        report["people"] = len(bank.people())
    if args.average:
        _check_average(args, report["people"], "the bank", refuse=False)
        bank, report["averages"] = _averages(bank, items, args)
    bank.save(args.output)  # a killed build's temporary beside it removed first
    # strict JSON: with one average kept its pairwise spread is undefined (NaN), printed as the bare token NaN before
    print(strict_json(report, indent=None).decode(), file=sys.stderr)
    if args.average and len(bank) < args.average:
        av = report["averages"]
        why = (f"the next was within --min-distance {args.min_distance:g} of a kept one (0 keeps going)"
               if av["stopped"] == "min_distance" else "the candidates ran out (--candidates draws more)")
        over = av.get("placement_check", {}).get("passed_over", 0)
        print(f"faceveil: warning: kept {len(bank)} of the {args.average} averages asked: {why}"
              + (f"; {over} were passed over by the placement check" if over else ""), file=sys.stderr)
    print(f"faceveil: bank of {len(bank)} {bank.kind} ({report['people']} people) -> {one_line(args.output)}",
          file=sys.stderr)
    return 1 if errors else 0


def _check_output(args, items) -> None:
    """-o is a new .npz file that can be written, not a photo of DIR (nor in DIR) or the labels, and replaces an
    existing file only with --overwrite: before any work. Before, -o a photo turned it into a zip, and a folder or an
    unwritable place failed with a traceback after all the detection."""
    from ..errors import UsageError

    out = args.output
    check_writable(out, "the bank")
    if Path(out).suffix.lower() != ".npz":
        raise UsageError(f"{out}: a bank is an .npz file; give a name ending in .npz")
    inputs = [p for p, _ in items] + ([args.labels] if args.labels else [])
    check_result_path(out, "the bank", inputs, folders=[args.folder], overwrite=True)
    if Path(out).exists() and not args.overwrite:
        raise UsageError(f"{out}: exists; give another name for the bank, or --overwrite to replace it")


def _check_average(args, people: int, where: str, refuse: bool) -> None:
    """--average at most the different sets of --k people there are: refused before any work where the labels say
    how many people there are, else lowered with a warning once the faces are found. Before, --average 1000000
    of 7 people drew 8 million averages of C(7,5) = 21 sets (an ETA of 2,000 hours)."""
    from math import comb

    from ..errors import UsageError

    if people < args.k:
        raise UsageError(f"{where}: holds {people} people; --k {args.k} needs at least {args.k}")
    most = comb(people, args.k)
    if args.average <= most:
        return
    line = f"--average {args.average}: {people} people give only {most} different averages of --k {args.k}"
    if refuse:
        raise UsageError(f"{where}: {line}; ask for at most {most}")
    print(f"faceveil: warning: {line}; drawing {most}", file=sys.stderr)
    args.average = most


def _averages(donors, items, args):
    """``--average``: the averages bank, with the placement check unless ``--placed-distance 0``."""
    from ..anonymize.identity import BANK_CRISP_GAIN, synthesize_bank
    from ..errors import UsageError
    from .common import evenly_spaced

    accept, check = None, args.placed_distance > 0
    if check:
        from ..anonymize.placement import photo_targets, placement_check

        targets = photo_targets(evenly_spaced([p for p, _ in items], args.check_photos))
        if not targets:
            raise UsageError(f"{args.folder}: no photo with a face to check the averages in (--placed-distance 0 "
                             "skips this check)")
        accept = placement_check(donors, targets, args.placed_distance, progress=not args.quiet)
    candidates = args.candidates or (8 if check else 4) * args.average
    try:
        bank, stats = synthesize_bank(donors, args.average, args.k, args.seed, candidates,
                                      min_distance=args.min_distance, progress=not args.quiet, accept=accept)
    finally:
        if accept is not None:
            accept.close()
    checked = f", and fitted into {len(targets)} photos: >= {args.placed_distance:g}" if check else ""
    bank.source = (f"faceveil bank build {args.folder}; robust averages of k={args.k}, unsharp gain "
                   f"{BANK_CRISP_GAIN:g}, donor-checked (aligned{checked})")
    if check:
        stats["placement_check"] = {"distance": args.placed_distance, "photos": len(targets),
                                    "checked": stats["checked_further"], "passed_over": stats["rejected_further"]}
    return bank, stats


def cmd_info(args) -> int:
    from ..anonymize.bank import load_bank

    bank = load_bank(args.bank or None)
    donors = {d for entry in bank.donors for d in str(entry).split("|")}
    info = {"entries": len(bank), "kind": bank.kind, "size": bank.size, "donor_people": len(donors),
            "k_min": int(bank.k.min()), "k_max": int(bank.k.max()), "source": bank.source}
    print(json.dumps(info, indent=1))
    return 0
