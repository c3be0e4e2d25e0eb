"""`faceveil review OUT --originals IN`: start the review page (the work is in faceveil.review)."""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import socketserver
import sys
from pathlib import Path

from ..anonymize import RegionParams
from ..detect.presets import DEFAULT_PRESET, PRESETS
from ..errors import FaceveilError, UsageError, one_line
from ..pipeline import AnonymizerConfig
from ..signals import Terminated
from .common import (add_detection_args, anonymizer_config, between, check_jpeg_quality, detector_params_from_args,
                     region_from_args, resolve_detection, whole)

# The defaults --help prints are the ones that apply: the default preset's region, the library's method.
_REGION = {**{k: v.default for k, v in RegionParams.__dataclass_fields__.items()}, **PRESETS[DEFAULT_PRESET]["region"]}
_CONFIG = AnonymizerConfig()

EPILOG = """\
examples:
  faceveil anonymize photos/ -o out/ --report report.json
  faceveil review out/ --originals photos/ --from-report report.json --open
  faceveil review out/ --originals photos/ -m pixelate -p cells=10  # that run's options

The page lists risky images first (faces a second detector found that the output
left unchanged, faces just under the threshold, very small faces, failed files).
Draw a box on a missed face and press Apply: the ORIGINAL is re-anonymized with the
same method plus the regions the run hid (from its --report) and your boxes, and
written over the output; whatever the run changed stays changed, but for a box you
drop as no face (a click on it), whose pixels show again. Edits and approvals
are kept in OUT/.faceveil/review.json, so running the command again resumes. Only the
run's files are shown (an output in OUT, or named by the report); originals are shown
on the page only, never copied; detections and output thumbnails are cached in the
user cache folder (see --cache-dir).
"""


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    r = sub.add_parser("review", help="check an anonymized set in the browser, fix missed faces",
                       formatter_class=fmt, epilog=EPILOG,
                       description="Serve a local page to review anonymized images against their originals.")
    r.add_argument("output", metavar="OUT", help="the anonymized folder (the -o of `faceveil anonymize`)")
    r.add_argument("--originals", "-i", required=True, metavar="IN", help="the input folder it was made from")
    r.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    r.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    r.add_argument("--open", action="store_true", help="open the page in the default browser")
    r.add_argument("--from-report", metavar="FILE",
                   help="take method, parameters, region, detector and seed from an `anonymize --report` file or a "
                        "dataset manifest.jsonl (default for a dataset output: OUT/manifest.jsonl)")
    a = r.add_argument_group("anonymization (as in the anonymize run; used by Apply)")
    a.add_argument("--method", "-m", help=f"anonymization method (default {_CONFIG.method})")
    a.add_argument("--param", "-p", action="append", metavar="NAME=VALUE", default=[], help="a method parameter")
    a.add_argument("--shape", choices=["ellipse", "box"],
                   help=f"region shape (default {_REGION['shape']}, the {DEFAULT_PRESET} preset's)")
    a.add_argument("--mask-scale", metavar="X",
                   help=f"region size relative to the box, at least 1.0, for an ellipse 1.1; or X,Y@PX: Y for boxes "
                        f"from PX px (default {_REGION['mask_scale']})")
    a.add_argument("--feather", type=float, help=f"soft edge, fraction of face size (default {_REGION['feather']})")
    a.add_argument("--seed", type=whole(), help=f"seed for random methods (default {_CONFIG.seed})")
    a.add_argument("--jpeg-quality", type=int,
                   help=f"JPEG/WebP/AVIF/HEIC quality of rewrites (default: the report's, else {_CONFIG.jpeg_quality})")
    a.add_argument("--keep-metadata", action="store_true", default=None,
                   help="keep the originals' metadata in rewritten files (default: the report's)")
    add_detection_args(r)
    f = r.add_argument_group("flags")
    f.add_argument("--second", default="auto", metavar="NAMES",
                   help="independent detector(s), comma-separated, or none (default auto: yunet, else dlib-hog)")
    f.add_argument("--near", type=between(0, 1), default=0.5,
                   help="flag faces scoring from this share (0-1) of the threshold (default 0.5)")
    f.add_argument("--small-face", type=whole(), default=20,
                   help="flag detected faces smaller than this, px (default 20)")
    f.add_argument("--cache-dir", metavar="DIR",
                   help="where detections and output thumbnails are cached "
                        "(default $XDG_CACHE_HOME/faceveil/review/<hash of OUT>, i.e. ~/.cache/...)")
    r.add_argument("--quiet", "-q", action="store_true", help="print only the URL")
    r.add_argument("--debug", action="store_true", help="show tracebacks")
    r.set_defaults(func=cmd_review)


def _report_path(args) -> str | None:
    """The record of the run: --from-report, else a dataset output's own manifest."""
    report = args.from_report
    manifest = Path(args.output) / "manifest.jsonl"
    try:
        dataset = manifest.is_file()
    except OSError:  # an OUT that cannot be read: the ReviewSet names it (a traceback here)
        dataset = False
    if not report and dataset and not (args.method or args.param or args.seed is not None):
        report = str(manifest)  # a dataset output: Apply must redo its images with the run's settings
    return report


def _unreadable(path: str, exc: OSError, what: str) -> str:
    """The line for a --from-report that cannot be opened: Python's own text repeated the path ("cannot read report
    ([Errno 2] No such file or directory: 'r.json')")."""
    if isinstance(exc, FileNotFoundError):
        return f"{one_line(path)}: no such file (--from-report)"
    if isinstance(exc, IsADirectoryError):
        return f"{one_line(path)}: a folder, not a {what} file (--from-report)"
    return f"{one_line(path)}: cannot read {what} ({exc.strerror or exc})"


def _read_report(path: str) -> dict:
    not_ours = f"{one_line(path)}: not a `faceveil anonymize --report` file"
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(_unreadable(path, exc, "report")) from None
    except UnicodeDecodeError:
        raise UsageError(f"{not_ours} (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:  # "Expecting value: line 1 column 1 (char 0)" did not say it was not JSON
        raise UsageError(f"{not_ours} (not JSON: {exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{not_ours} ({exc})") from None
    if not isinstance(doc, dict) or "method" not in doc:
        raise UsageError(f"{path}: not a `faceveil anonymize --report` file (no method)")
    return doc


def run_record_from_args(args):
    """What the run did per file (regions, files given), from --from-report; None without a report
    (a dataset's manifest is read by the ReviewSet itself)."""
    from ..review.runs import load_run_record

    if not args.from_report or args.from_report.endswith(".jsonl"):
        return None
    return load_run_record(_read_report(args.from_report), args.from_report, args.output, args.originals)


def counted(images: int, videos: int) -> str:
    """ "1 image and 2 videos", "2 videos", "3 images" (nothing: "0 images")."""
    parts = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((images, "image"), (videos, "video")) if n]
    return " and ".join(parts) or "0 images"


def config_from_args(args):
    """An AnonymizerConfig: an anonymize report as the base, explicit options on top."""
    from ..detect.presets import resolve
    from ..registry import parse_assignments
    from ..review.runs import plain_params

    base: dict = {}
    report = _report_path(args)
    if report and report.endswith(".jsonl"):  # a dataset manifest: its last image entry has the settings
        from ..io.manifest import read_manifest

        try:
            with open(report, "rb"):  # a missing one read as empty: "a manifest with no anonymized image"
                pass
            images = [e for e in read_manifest(report)[0] if e.get("kind") == "image"]
        except OSError as exc:
            raise UsageError(_unreadable(report, exc, "manifest")) from None
        except FaceveilError as exc:
            raise UsageError(f"{report}: cannot read manifest ({exc})") from None
        base = images[-1] if images else {}
        if "method" not in base:
            raise UsageError(f"{report}: a manifest with no anonymized image")
    elif report:
        base = _read_report(report)
    method = args.method or base.get("method", _CONFIG.method)
    method_params = plain_params(base.get("method_params")) if method == base.get("method") else {}
    method_params.update(parse_assignments(args.param))
    region = region_from_args(args)
    cli_det_params = detector_params_from_args(args)
    if base.get("detector") and not args.detect and args.detector in (None, base["detector"]):
        # Detection as in the anonymize run the report describes, explicit options on top.
        detector = base["detector"]
        det_params = plain_params(base.get("detector_params"))
        det_params.pop("threads", None)
        det_params.update(cli_det_params)
        if args.threshold is not None:
            _, det_params, _ = resolve(None, detector, det_params, None, args.threshold)
    else:  # as `faceveil anonymize` would resolve the same options (default: the balanced preset)
        detector, det_params, region = resolve_detection(args, region)
    if isinstance(base.get("region"), dict):
        # Apply redraws the run's regions: always the run's shape and scale (explicit options on top),
        # even when the review detects with other settings to flag more.
        region = {**base["region"], **region_from_args(args)}
    # Apply writes as the run did: its JPEG quality and metadata choice, as recorded, unless given here.
    args.jpeg_quality = args.jpeg_quality if args.jpeg_quality is not None else int(base.get("jpeg_quality",
                                                                                             _CONFIG.jpeg_quality))
    args.keep_metadata = bool(base.get("keep_metadata", False)) if args.keep_metadata is None else args.keep_metadata
    check_jpeg_quality(args)
    return anonymizer_config(args, method, method_params, detection=(detector, det_params, region),
                             seed=args.seed if args.seed is not None else int(base.get("seed", 0)))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int):
    """The server's socket, bound now: an address in use or not of this machine is bad usage (one line, exit 2),
    not werkzeug's paragraph and exit 1."""
    import socket

    if not 0 <= port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:  # socket.gaierror (no such address) too
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def _lock_out(out: str):
    """Hold OUT (an flock on the folder, dropped by the kernel when this process ends): a second review of the same
    OUT would save its own review.json over the first's edits and approvals. None where no locks exist (Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(out, os.O_RDONLY)
    except OSError:  # no such folder: the ReviewSet says so
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"{out}: another `faceveil review` is serving this folder; use its page, or stop it "
                         "first") from None
    return fd


def _open_page(url: str) -> Path | None:
    """Open the page through a private (0600) local file that redirects to ``url``, as Jupyter does: the token
    never goes on the browser's command line, which every local user sees (ps). None where no browser could be
    started (no display, no BROWSER): one line says to open ``url`` by hand (--open said nothing)."""
    import html
    import tempfile
    import webbrowser

    fd, name = tempfile.mkstemp(prefix="faceveil-review-", suffix=".html")
    with os.fdopen(fd, "w") as f:
        f.write(f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(url)}">'
                f'<a href="{html.escape(url)}">faceveil review</a>\n')
    try:
        opened = webbrowser.open(Path(name).as_uri())
    except (webbrowser.Error, OSError):  # a BROWSER naming a program that is not there
        opened = False
    if opened:
        return Path(name)
    Path(name).unlink(missing_ok=True)
    print(f"faceveil: warning: --open: no browser could be started here; open {url} by hand", file=sys.stderr)
    return None


def cmd_review(args) -> int:
    from ..io.inputs import refuse_unreachable

    # every path the review reads or writes (OUT/.faceveil/review.json, the cache): a traceback at the first look
    refuse_unreachable(args.output, args.originals, args.cache_dir, args.from_report)
    try:
        from werkzeug.serving import WSGIRequestHandler, make_server

        from ..review.server import create_app
    except ImportError:
        raise UsageError("`faceveil review` needs Flask: pip install 'faceveil[review]'") from None

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *a, **k) -> None:  # one line per image would bury the URL (and log the token)
            pass
    sock = _listen(args.host, args.port)
    lock = _lock_out(args.output)
    try:
        return _serve(args, sock, QuietHandler, make_server, create_app)
    finally:
        sock.close()
        if lock is not None:
            os.close(lock)


def _serve(args, sock, handler, make_server, create_app) -> int:
    from ..review.store import REVIEW_FILE, ReviewSet, ReviewSettings

    settings = ReviewSettings(second=tuple(s.strip() for s in args.second.split(",")), near=args.near,
                              small_face=args.small_face)
    rs = ReviewSet(args.output, args.originals, config_from_args(args), settings, args.cache_dir,
                   progress=False, background=True, run=run_record_from_args(args))
    for rel, why in rs.refused.items():
        print(f"faceveil: warning: {one_line(rel)}: {one_line(why)}", file=sys.stderr)  # why: a report's text too
    if "auto" in settings.second and not rs.second_detectors:  # the page only said "second: none" (an audit)
        print("faceveil: warning: no second detector (yunet or dlib-hog) is installed: faces only another detector "
              "finds are not flagged; pip install 'faceveil[yunet]'", file=sys.stderr)
    token = secrets.token_urlsafe(24)
    server = make_server(args.host, args.port, create_app(rs, token, args.debug), threaded=True,
                         request_handler=handler, fd=sock.fileno())
    if not _is_loopback(args.host):
        print(f"faceveil: warning: listening on {one_line(args.host)}, not only this machine: anyone who can reach it "
              "and learns the URL sees the ORIGINAL images", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{server.port}/?token={token}"
    say = (lambda *a, **k: None) if args.quiet else print
    n_videos = sum(i.video for i in rs.items.values())
    stale = f"; {rs.stale} temporary files of interrupted Applies removed" if rs.stale else ""
    say(f"faceveil: reviewing {counted(len(rs.items) - n_videos, n_videos)} ({rs.checking} to check, in the "
        f"background: the page fills in as they are done); edits saved in {one_line(rs.out_root / REVIEW_FILE)}; "
        f"cache {one_line(rs.cache_dir)}{stale}", file=sys.stderr)
    print(url, flush=True)
    say("faceveil: press Ctrl-C to stop", file=sys.stderr)
    page = _open_page(url) if args.open else None
    rs.start_checking()
    try:
        # socketserver's loop: werkzeug's own swallows Ctrl-C and SIGTERM (KeyboardInterrupt) and returns, and the
        # process then exited (exit 0, or 134 'terminate called' when a video's Apply was running: its temporary left)
        socketserver.BaseServer.serve_forever(server)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: an Apply under way ends first (no temporary left)
        server.server_close()  # no new request meanwhile
        rs.close()
        say("faceveil: stopped; run the same command again to resume", file=sys.stderr)
        return 128 + int(exc.signum) if isinstance(exc, Terminated) else 130
    finally:
        server.server_close()
        if page is not None:
            page.unlink(missing_ok=True)
    return 0
