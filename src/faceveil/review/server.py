"""The review page's HTTP side (Flask): a token on every request, files only from OUT and IN.

Endpoints (all need the token: ``?token=`` or header ``X-Faceveil-Token``; POSTs need the header.
The page itself and its assets (``/``, ``/static/``) are also served for the cookie the first page load
sets: a session value of its own, not the token, since a browser sends a host's cookies to every port
of it (another local server would get it); it opens nothing else):
  GET  /                       the page            GET /static/<file>   its assets
  GET  /api/items              items, flags first, counters, settings
  GET  /img/out/<rel>          anonymized output   GET /img/orig/<rel>  original (shown, never copied)
  GET  /thumb/<rel>            thumbnail of the output (a video's first face frame), kept in memory
  GET  /frame/<which>/<rel>?i=N[&w=W]   frame N of a video, output or original, as JPEG (memory only)
  GET  /api/frame/<rel>?i=N    the boxes anonymized on frame N of a video (its track record)
  GET  /api/compare            the methods the comparison panel can show (the run's first)
  GET  /compare/<method>/<rel>[?w=W]   an image's original hidden by that method, as JPEG (memory only)
  POST /api/apply              {path, version, manual: [[x1,y1,x2,y2]...], removed: [...]} -> re-anonymize
                               (a video: manual: [{box: [x1,y1,x2,y2], from: frame, to: frame}...],
                               flip: [track id...]: each track flipped whole between kept and hidden)
  POST /api/approve            {path, version, approved: true|false}
  version: the item's "version" the page showed; the output changed since (another tab's Apply): 409.
A bad request gets its status with a one-line JSON body {"error": ...}, never a traceback.
"""
from __future__ import annotations

import hmac
import json
import secrets
import sys
from pathlib import Path

from flask import Flask, Response, abort, jsonify, request, send_file, send_from_directory
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..errors import FaceveilError, one_line
from ..io.images import NOT_FOR_BROWSERS, display_png
from .pairs import page_name
from .store import ReviewSet

STATIC = Path(__file__).parent / "static"
HEADER = "X-Faceveil-Token"
MAX_BODY = 1 << 20  # edits are a few boxes
MAX_DEPTH = 8  # {"manual": [{"box": [x1, ...]}]} is 4 deep


def _too_deep(data, limit: int = MAX_DEPTH) -> bool:
    """Whether a parsed JSON value nests deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def _cookie_name() -> str:
    # One cookie per port, so two review servers on one host don't log each other out.
    return "faceveil_review_" + (request.host.rsplit(":", 1)[-1] if ":" in request.host else "80")


def create_app(rs: ReviewSet, token: str, debug: bool = False) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.url_map.merge_slashes = False  # "//etc/passwd" is a bad path (404), not a redirect to another one

    session = secrets.token_urlsafe(24)  # the cookie's value: never the token

    def same(given: str | None, secret: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), secret.encode())

    def authorized() -> bool:
        given = request.headers.get(HEADER)
        if request.method != "GET":
            return same(given, token)
        page = request.path in ("/", "/favicon.ico") or request.path.startswith("/static/")  # nothing of IN/OUT
        return same(given or request.args.get("token"), token) or (
            page and same(request.cookies.get(_cookie_name()), session))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        """Every refusal as its status and a one-line JSON reason (the page shows it)."""
        if isinstance(exc, RequestEntityTooLarge):  # a body too large is a bad request like any other
            return jsonify(error=f"request body over {MAX_BODY >> 20} MiB"), 400
        own = exc.description and exc.description != type(exc).description  # ours, not werkzeug's paragraph
        return jsonify(error=(exc.description if own else exc.name).splitlines()[0][:200]), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # never a traceback to the client; one line on the console (--debug: all)
        if debug:
            app.logger.exception("review: unexpected error")
        else:
            first = one_line((str(exc).splitlines() or [""])[0][:200])
            print(f"faceveil: error: {one_line(request.path)}: {exc.__class__.__name__}: {first}", file=sys.stderr)
        return jsonify(error=f"internal error ({exc.__class__.__name__})"), 500

    @app.before_request
    def check_token():
        if not authorized():
            abort(403)

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Cache-Control"] = "no-store"  # originals must not linger in the browser cache
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        return resp

    @app.get("/")
    def index():
        resp = send_from_directory(STATIC, "index.html")
        if request.args.get("token"):
            resp.set_cookie(_cookie_name(), session, httponly=True, samesite="Strict")
        return resp

    @app.get("/favicon.ico")
    def favicon():
        return "", 204  # browsers ask for it; a 404 would be noise in the console

    @app.get("/static/<path:name>")
    def static_file(name: str):
        return send_from_directory(STATIC, name)  # werkzeug's safe_join refuses traversal

    @app.get("/api/items")
    def items():
        return jsonify(rs.listing())

    def serve(which: str, rel: str):
        try:
            # werkzeug names the file and makes its ETag from the path, which fails on a name that is not UTF-8
            path = rs.file(which, rel)
            if path.suffix.lower() in NOT_FOR_BROWSERS:  # a HEIC (no browser shows it), an AVIF: a PNG of it
                return guarded(lambda: Response(display_png(path), mimetype="image/png"))
            return send_file(path, max_age=0, conditional=False, etag=False, download_name=page_name(path.name))
        except KeyError:
            abort(404)
        except PermissionError:
            abort(403)

    @app.get("/img/<which>/<path:rel>")
    def image(which: str, rel: str):
        return serve(which, rel)

    def guarded(make):
        """Unknown item: 404; outside the served folders: 403; a file faceveil cannot read: 500 with the reason."""
        try:
            return make()
        except KeyError:
            abort(404)
        except PermissionError:
            abort(403)
        except FaceveilError as exc:
            return jsonify(error=str(exc)), 500

    @app.get("/thumb/<path:rel>")
    def thumb(rel: str):
        return guarded(lambda: Response(rs.thumbnail(rel), mimetype="image/jpeg",
                                        headers={"Cache-Control": "no-store"}))

    def frame_index() -> tuple[int, int | None]:
        try:
            i = int(request.args.get("i", "0"))
            w = int(request.args["w"]) if "w" in request.args else None
        except ValueError:
            abort(400)
        if i < 0 or (w is not None and not 16 <= w <= 4096):
            abort(400)
        return i, w

    @app.get("/frame/<which>/<path:rel>")
    def frame(which: str, rel: str):
        i, w = frame_index()
        return guarded(lambda: Response(rs.frame(which, rel, i, w), mimetype="image/jpeg"))

    @app.get("/api/frame/<path:rel>")
    def frame_boxes(rel: str):
        i, _ = frame_index()
        return guarded(lambda: jsonify(rs.frame_boxes(rel, i)))

    @app.get("/api/compare")
    def compare_methods():
        return jsonify({"methods": rs.compare_methods(), "current": rs.config.method})

    @app.get("/compare/<method>/<path:rel>")
    def compare(method: str, rel: str):
        _, w = frame_index()
        return guarded(lambda: Response(rs.compare(rel, method, w), mimetype="image/jpeg"))

    def body() -> dict:
        """The request's JSON object; anything malformed, huge or deeply nested is a 400 with its reason."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            abort(400, f"request body over {MAX_BODY >> 20} MiB")
        try:
            data = json.loads(request.get_data(cache=False))
        except RecursionError:
            abort(400, "request body nested too deeply")
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            abort(400, f"request body is not JSON ({str(exc).splitlines()[0][:80]})")
        if _too_deep(data):
            abort(400, "request body nested too deeply")
        if not isinstance(data, dict) or not isinstance(data.get("path"), str):
            abort(400, 'expected a JSON object with a "path"')
        return data

    def version(data: dict) -> str | None:
        """The item version the edit was made on (absent: none named); the page sends the one it showed."""
        v = data.get("version")
        if v is not None and not isinstance(v, str):
            abort(400, '"version" must be the item\'s version string')
        if "version" in data and v is None:
            return ""  # the page showed an item with no output yet: stale once one was written
        return v

    @app.post("/api/apply")
    def apply():
        data = body()
        try:
            return jsonify(rs.apply(data["path"], data.get("manual", []), data.get("removed", []), data.get("flip"),
                                    version(data)))
        except KeyError:
            abort(404)
        except PermissionError:  # the original or output resolves out of IN / OUT now, or was not in the run
            abort(403)
        except ValueError as exc:
            return jsonify(error=str(exc)), 400
        except FaceveilError as exc:
            return jsonify(error=str(exc)), 409

    @app.post("/api/approve")
    def approve():
        data = body()
        approved = data.get("approved", True)
        if not isinstance(approved, bool):  # bool("no") is True: "no" approved the image
            return jsonify(error='"approved" must be true or false'), 400
        try:
            return jsonify(rs.approve(data["path"], approved, version(data)))
        except KeyError:
            abort(404)
        except FaceveilError as exc:  # stale, or the state cannot be saved: the cause, nothing changed
            return jsonify(error=str(exc)), 409

    return app
