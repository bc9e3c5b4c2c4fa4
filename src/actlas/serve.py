"""The viewer's server: serve a run's viewer on loopback, export it as a static site, show it in Jupyter.

The viewer itself is built by the ``viewer`` stage (``actlas.stages.viewer``, ``RUN/viewer/``);
its ``data.json`` points at icons and dataset examples in the run, so the viewer's URL space is
the run directory itself. :func:`serve` serves ``RUN/viewer/`` plus exactly those files
(:func:`is_servable`) with a hardened ``http.server`` handler; :func:`export` copies the same set
into a folder that any static file server can serve.
"""

from __future__ import annotations

import http.server
import ipaddress
import os
import shutil
import socket
import sys
import threading
import urllib.parse
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import paths
from .errors import ConfigError, DependencyError, ExistsError
from .stages.viewer import ensure_viewer

VIEWER_DIR = paths.VIEWER

__all__ = ["export", "is_servable", "serve", "show", "start_server", "ViewerServer"]

# Content types of everything the server may send; any other extension is never served.
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".dzi": "application/xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",  # patch reports: shown as text, never rendered
}

# Files of the run (outside viewer/) that the viewer may load: LAYER/FOLDER/{atlas*, icons/*, examples/*},
# LAYER/concepts/{icons/*, examples/*},
# and the patch experiments' reports and figures the cells link to (patches/NAME/).
RUN_FILE_PATTERNS = tuple(
    f"*/{folder}/{name}"
    for folder in paths.ATLAS_FOLDERS
    for name in (
        paths.ATLAS_JSON,
        paths.ATLAS_PNG,
        paths.ATLAS_LABELLED,
        paths.COMPARE_PNG,
        f"{paths.ICONS}/*.png",
        f"{paths.EXAMPLES}/*.jpg",
        f"{paths.EXAMPLES}/*.jpeg",
        f"{paths.EXAMPLES}/*.png",
    )
) + (f"{paths.PATCHES}/*/{paths.REPORT_MD}", f"{paths.PATCHES}/*/*.png")
# a layer's concepts: their icons and exemplars (LAYER/concepts/)
RUN_FILE_PATTERNS += (f"*/{paths.CONCEPTS}/{paths.ICONS}/*.png", f"*/{paths.CONCEPTS}/{paths.EXAMPLES}/*.jpg")


# --------------------------------------------------------------------------- what may be served


def is_servable(rel: str) -> bool:
    """Whether the run-relative POSIX path ``rel`` is part of the viewer's URL space.

    That is everything under ``viewer/`` and the atlas files, icons and examples of each
    ``LAYER/grid-N/``, ``LAYER/class-*/`` and ``LAYER/compare-*/``, with a known content type.
    Pure: no file-system access.
    """
    path = PurePosixPath(rel)
    if path.is_absolute() or not path.parts or any(p in ("", ".", "..") for p in path.parts):
        return False
    if path.suffix.lower() not in CONTENT_TYPES or any(p.startswith(".") for p in path.parts):
        return False
    if path.parts[0] == VIEWER_DIR:
        return len(path.parts) > 1
    return any(
        path.match(pattern) and len(path.parts) == len(PurePosixPath(pattern).parts) for pattern in RUN_FILE_PATTERNS
    )


def servable_files(run_dir: Path) -> Iterable[Path]:
    """Every file of the run that :func:`is_servable` admits (used by :func:`export`)."""
    root = run_dir.resolve()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and is_servable(rel) and path.resolve().is_relative_to(root):
            yield path


def url_to_relative(raw_path: str) -> str | None:
    """Map a request target to a run-relative path, or None when it is not a plain local path.

    ``/`` maps to ``viewer/index.html`` and a folder path ending in ``/`` to its index.html;
    query and fragment are dropped; percent-escapes are decoded once; any ``.``/``..``
    segment, backslash, NUL or doubled slash gives None.
    """
    if not raw_path.startswith("/") or raw_path.startswith("//"):
        return None  # absolute-form ("http://...") and authority-form targets
    path = urllib.parse.urlsplit(raw_path).path
    try:
        decoded = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None
    if any(c in decoded for c in ("\\", "\x00")) or any(ord(c) < 32 for c in decoded):
        return None
    if decoded == "/":
        return f"{VIEWER_DIR}/{paths.VIEWER_INDEX}"
    parts = decoded[1:].split("/")
    if decoded.endswith("/"):
        parts[-1] = "index.html"
    if any(p in ("", ".", "..") for p in parts):
        return None
    return "/".join(parts)


# --------------------------------------------------------------------------- the server


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names the loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_handler(root: Path, loopback_only: bool) -> type[http.server.BaseHTTPRequestHandler]:
    """A request handler serving the viewer's URL space of the run at ``root`` (GET and HEAD only).

    When ``loopback_only``, requests whose Host header is not a loopback name get 400
    (guards against DNS rebinding).
    """
    root = root.resolve()

    class ViewerHandler(http.server.BaseHTTPRequestHandler):
        server_version = "actlas"
        sys_version = ""
        protocol_version = "HTTP/1.1"
        default_request_version = "HTTP/1.0"  # never answer in HTTP/0.9 (no status line)
        timeout = 30  # seconds a connection may stay idle; frees threads held by slow clients

        def parse_request(self) -> bool:
            if not super().parse_request():
                return False
            if self.command not in ("GET", "HEAD"):
                self._send_error(405, "only GET and HEAD", {"Allow": "GET, HEAD"})
                return False
            return True

        def do_GET(self) -> None:
            self._respond(body=True)

        def do_HEAD(self) -> None:
            self._respond(body=False)

        def _respond(self, body: bool) -> None:
            try:
                if loopback_only and not self._host_ok():
                    return self._send_error(400, "bad Host header")
                if urllib.parse.urlsplit(self.path).path in ("", "/"):
                    return self._redirect(f"/{VIEWER_DIR}/")
                rel = url_to_relative(self.path)
                if rel is None:
                    return self._send_error(403, "forbidden")
                if not is_servable(rel):
                    return self._send_error(404, "not found")
                path = (root / rel).resolve()
                if not path.is_relative_to(root):
                    return self._send_error(403, "forbidden")
                if path.is_dir():
                    return self._redirect(urllib.parse.quote(f"/{rel}/"))
                if not path.is_file():
                    return self._send_error(404, "not found")
                self._send_file(path, body)
            except (ConnectionError, TimeoutError):
                self.close_connection = True
            except Exception:  # noqa: BLE001 - never let one bad request end the server
                self.close_connection = True
                try:
                    self._send_error(500, "internal error")
                except OSError:
                    pass

        def _host_ok(self) -> bool:
            host = self.headers.get("Host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return _is_loopback(name.strip("[]"))

        def _send_file(self, path: Path, body: bool) -> None:
            ctype = CONTENT_TYPES[path.suffix.lower()]
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(size))
                self.send_header("Cache-Control", "no-cache")
                self._security_headers()
                self.end_headers()
                if body:
                    shutil.copyfileobj(f, self.wfile)

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self._security_headers()
            self.end_headers()

        def _send_error(self, code: int, message: str, extra: dict[str, str] | None = None) -> None:
            data = f"{code} {message}\n".encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self._security_headers()
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            # Malformed request lines end here (from parse_request); answer without echoing input.
            self.close_connection = True
            try:
                phrase = http.HTTPStatus(code).phrase
            except ValueError:
                phrase = "error"
            self._send_error(code, phrase)

        def _security_headers(self) -> None:
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                "script-src 'self'; connect-src 'self'; frame-ancestors *",
            )

        def log_message(self, format: str, *args: Any) -> None:
            if getattr(self.server, "verbose", False):
                sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    return ViewerHandler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    verbose = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # One broken connection is no reason to print a traceback or to stop.
        if self.verbose:
            super().handle_error(request, client_address)


@dataclass
class ViewerServer:
    """A running viewer server (see :func:`start_server`): its URL and a way to stop it."""

    httpd: http.server.ThreadingHTTPServer
    thread: threading.Thread
    url: str

    def close(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> ViewerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_server(run_dir: Path | str, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> ViewerServer:
    """Serve the run's viewer from a background thread; ``port=0`` picks a free port.

    Builds the viewer first when the run has none. Binding a host other than loopback
    warns: the run (icons, dataset examples) becomes readable from the network.
    """
    run_dir = Path(run_dir)
    ensure_viewer(run_dir)
    loopback = _is_loopback(host)
    if not loopback:
        warnings.warn(
            f"serving on {host} makes the run readable from the network; "
            "use the default --host 127.0.0.1 unless you mean it",
            stacklevel=2,
        )
    server_class = _Server
    if ":" in host:
        server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
    try:
        httpd = server_class((host, port), make_handler(run_dir, loopback_only=loopback))
    except OSError as err:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({err.strerror}); pick another --port or 0 for any free one"
        ) from err
    httpd.verbose = verbose
    thread = threading.Thread(target=httpd.serve_forever, name="actlas-viewer", daemon=True)
    thread.start()
    bound_host, bound_port = httpd.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    return ViewerServer(httpd=httpd, thread=thread, url=f"http://{shown}:{bound_port}/")


def serve(run_dir: Path | str, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
    """Serve the viewer of a run until Ctrl-C, printing its URL.

    Example: ``actlas serve runs/demo`` then open the printed http://127.0.0.1:PORT/.
    """
    server = start_server(run_dir, host=host, port=port, verbose=verbose)
    try:  # Ctrl-C may come as soon as the URL is out: the print is inside the try
        print(f"actlas viewer of {run_dir}: {server.url}  (Ctrl-C stops)", flush=True)
        while server.thread.is_alive():
            server.thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


# --------------------------------------------------------------------------- export and Jupyter

REDIRECT_PAGE = (
    '<!doctype html><meta charset="utf-8"><title>actlas viewer</title>'
    '<link rel="icon" href="data:,"><meta http-equiv="refresh" content="0; url=viewer/index.html">'
    '<a href="viewer/index.html">open the viewer</a>\n'
)


def export(run_dir: Path | str, out_dir: Path | str) -> Path:
    """Write a static copy of the run's viewer to ``out_dir``; returns ``out_dir/index.html``.

    The copy holds ``viewer/`` and the icons and examples it shows, laid out as in the run, so
    any static file server (``python -m http.server -d OUT``) serves it. ``out_dir`` must be
    empty or absent.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    ensure_viewer(run_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExistsError(f"{out_dir} is not an empty folder; choose a new OUT_DIR or empty it")
    if out_dir.resolve().is_relative_to(run_dir.resolve()):
        raise ConfigError(f"{out_dir} is inside the run {run_dir}; export to a folder outside it")
    root = run_dir.resolve()
    for path in servable_files(run_dir):
        target = out_dir / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    (out_dir / paths.VIEWER_INDEX).write_text(REDIRECT_PAGE)
    return out_dir / paths.VIEWER_INDEX


_SHOWN: dict[Path, ViewerServer] = {}


def show(run_dir: Path | str, width: int | str = "100%", height: int = 640, port: int = 0) -> Any:
    """Show the run's viewer in Jupyter: an IFrame to a loopback server started once per run.

    The server runs in a daemon thread of the kernel and stops with it.
    Example: ``actlas.show("runs/demo")`` as the last line of a cell.
    """
    try:
        from IPython.display import IFrame
    except ImportError as err:
        raise DependencyError("actlas.show needs IPython (pip install ipython); or run `actlas serve RUN_DIR`") from err
    key = Path(run_dir).resolve()
    if key not in _SHOWN:
        _SHOWN[key] = start_server(key, port=port)
    return IFrame(_SHOWN[key].url, width=width, height=height)
