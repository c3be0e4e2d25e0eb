"""`faceveil people build`: describe consenting people once (`anonymize --keep-people` reads the file),
and the keep options of `faceveil anonymize`."""
from __future__ import annotations

import argparse
import os
import sys

EPILOG = """\
examples:
  faceveil people build consent/ -o people.npz    # consent/<name>/*.jpg: one folder per person
  faceveil anonymize photos/ -o out/ --keep-people people.npz

Each photo must show the person's face clearly (a photo with several faces of similar size is
skipped). The file holds face descriptors and names only, never the photos. See docs/keep.md.
"""


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("people", help="describe consenting people for anonymize --keep-people",
                       formatter_class=fmt, epilog=EPILOG)
    ps = p.add_subparsers(dest="people_command", metavar="PEOPLE_COMMAND", required=True)
    b = ps.add_parser("build", help="describe the faces in consent/<name>/*.jpg", formatter_class=fmt, epilog=EPILOG)
    b.add_argument("folder", metavar="DIR", help="DIR/<name>/*.jpg (or DIR/<name>.jpg), one folder per person")
    b.add_argument("-o", "--output", required=True, metavar="FILE", help="people file to write (.npz)")
    b.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    b.add_argument("--debug", action="store_true", help="show tracebacks")
    b.set_defaults(func=cmd_people_build)


def cmd_people_build(args) -> int:
    from pathlib import Path

    from ..errors import UsageError, one_line
    from ..io.inputs import refuse_unreachable
    from ..people import People
    from .common import check_result_path, check_writable

    refuse_unreachable(args.folder, args.output)
    # never over a consent photo (or anything else in the consent folder), nor over a file unasked
    check_result_path(args.output, "the people file", folders=[args.folder], overwrite=True)
    if Path(args.output).is_dir() or args.output.endswith(("/", os.sep)):  # it said "exists; ... or --overwrite"
        raise UsageError(f"{args.output}: a folder; the people file is one .npz file: give its name, as in "
                         f"-o {Path(args.output) / 'people.npz'}")
    if Path(args.output).exists() and not args.overwrite:
        raise UsageError(f"{args.output}: exists; give another name for the people file, or --overwrite to replace it")
    if Path(args.output).suffix.lower() != ".npz":
        raise UsageError(f"{args.output}: a people file is an .npz file; give a name ending in .npz")
    check_writable(args.output, "the people file")
    people = People.build(args.folder)
    report_skipped(people)
    people.save(args.output)  # a killed build's temporary beside it removed first
    print(f"faceveil: {len(people)} people, {len(people.descriptors)} photos described "
          f"({len(people.skipped)} skipped{f', {len(people.failed)} could not be read' if people.failed else ''})"
          f" -> {one_line(args.output)}", file=sys.stderr)
    return 1 if people.failed else 0


def report_skipped(people) -> None:
    """Name the consent photos a gallery was built without: an error line for one that cannot be read (it failed:
    `people build` exits 1, as `bank build` does; it was only a warning), a warning for one without a usable face."""
    from ..errors import one_line

    for s in people.skipped:
        print(f"faceveil: {'error' if s in people.failed else 'warning'}: {one_line(s)}: skipped", file=sys.stderr)


def add_keep_args(p) -> None:
    """--keep-people, --keep-region, --only-region (one help line each at most: the help fits a screen)."""
    p.add_argument("--keep-people", metavar="SRC", help="leave faces matching consent/<name>/*.jpg or people.npz "
                                                         "as they are")
    p.add_argument("--keep-region", action="append", default=[], metavar="R",
                   help="keep faces centred in R=x,y,w,h[@t0-t1]; --only-region R: hide only in R")
    p.add_argument("--only-region", action="append", default=[], help=argparse.SUPPRESS)


def keep_policy(args, detector=None):
    """The KeepPolicy the options ask for, or None. Builds a folder's descriptors once, here."""
    from ..io.inputs import refuse_unreachable
    from ..people import KeepPolicy, People, Region

    refuse_unreachable(args.keep_people)
    keep_regions = tuple(Region.parse(r) for r in args.keep_region)
    only_regions = tuple(Region.parse(r) for r in args.only_region)
    people = People.open(args.keep_people, detector) if args.keep_people else None
    if people is not None:  # a folder of photos, built here: its skipped photos said as `people build` says them
        report_skipped(people)
        if people.failed:  # whoever such a photo shows may be hidden like a stranger: no run on an incomplete set
            from ..errors import UsageError

            n = len(people.failed)
            it = "them" if n > 1 else "it"
            raise UsageError(f"{args.keep_people}: {n} consent photo{'s' if n > 1 else ''} could not be read (named "
                             f"above): whoever {'they show' if n > 1 else 'it shows'} may be hidden like a stranger; "
                             f"nothing anonymized (make {it} readable, or move {it} out)")
    policy = KeepPolicy(people, keep_regions, only_regions)
    if people is not None:  # dlib and its model files: missing ones fail now, before any work
        from ..people import _describer

        _describer()
    return policy if policy else None
