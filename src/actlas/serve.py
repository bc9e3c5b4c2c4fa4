"""The browser viewer: build it from a run, serve it on loopback, export it as a static site.

A run holds one atlas per layer and grid size (``RUN/LAYER/grid-N/atlas.json`` and
``atlas.png``, see ``docs/run-directory.md``), and may hold class atlases
(``RUN/LAYER/class-<slug>/``) and two-class comparisons (``RUN/LAYER/compare-<a>-<b>/``) in
the same format. :func:`build_viewer` turns them all into ``RUN/viewer/``:

```
RUN/viewer/
  index.html viewer.js viewer.css      the static viewer (package data, actlas/viewer/)
  openseadragon/                       OpenSeadragon, copied from node_modules (npm ci)
  tiles/LAYER/FOLDER.dzi               deep-zoom pyramid of each atlas.png (pyvips dzsave);
  tiles/LAYER/FOLDER_files/{level}/{col}_{row}.jpg    FOLDER is grid-N, class-<slug> or compare-<a>-<b>
  data.json                            index: layers (main atlases), extras (class atlases and
                                       comparisons), grids, tile sources, cells, classes
  data.js                              the same index as a script (lets file:// pages load it)
```

Icons and dataset examples are not copied: ``data.json`` points at them in the run
(``../LAYER/grid-N/icons/3_7.png``), so the viewer's URL space is the run directory itself.
:func:`serve` serves ``RUN/viewer/`` plus exactly those files (:func:`is_servable`) with a
hardened ``http.server`` handler; :func:`export` copies the same set into a folder that any
static file server can serve.
"""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import urllib.parse
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import click

__all__ = [
    "build_viewer",
    "export",
    "find_openseadragon",
    "is_servable",
    "read_atlases",
    "serve",
    "show",
    "start_server",
    "viewer_digest",
    "ViewerServer",
]

VIEWER_DIR = "viewer"
STATIC_FILES = ("index.html", "viewer.js", "viewer.css")
OSD_ENV = "ACTLAS_OPENSEADRAGON_DIR"
TILE_SIZE = 256
TILE_OVERLAP = 1
TILE_FORMAT = "jpg"
TILE_QUALITY = 90

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
}

# Atlas folders of a layer: the main atlas per grid size, class atlases, two-class comparisons.
ATLAS_FOLDERS = ("grid-*", "class-*", "compare-*")
# Files of the run (outside viewer/) that the viewer may load: LAYER/FOLDER/{atlas*, icons/*, examples/*}.
RUN_FILE_PATTERNS = tuple(
    f"*/{folder}/{name}"
    for folder in ATLAS_FOLDERS
    for name in ("atlas.json", "atlas.png", "atlas-labelled.png", "compare.png", "icons/*.png",
                 "examples/*.jpg", "examples/*.jpeg", "examples/*.png")
)


# --------------------------------------------------------------------------- reading atlases


@dataclass(frozen=True)
class AtlasRef:
    """One ``RUN/LAYER/FOLDER/atlas.json`` (FOLDER: grid-N, class-<slug>, compare-<a>-<b>)."""

    layer: str
    grid: int
    folder: Path  # RUN/LAYER/FOLDER
    atlas: dict[str, Any] = field(repr=False)

    @property
    def kind(self) -> str:
        """``atlas`` (a main atlas, one per grid size), ``class`` or ``compare``."""
        return str(self.atlas.get("kind", "atlas"))

    @property
    def view(self) -> str:
        """The folder's name: ``grid-8``, ``class-great-white-shark``, ``compare-snorkel-scuba-diver``."""
        return self.folder.name


REQUIRED_KEYS = ("layer", "grid", "icon_size", "image", "size_px", "classes", "cells")
REQUIRED_CELL_KEYS = ("i", "j", "count", "label")


def read_atlases(run_dir: Path, layers: list[str] | None = None) -> list[AtlasRef]:
    """Read every atlas of a run, checked: ``RUN/*/grid-*/atlas.json`` in (layer, grid) order,
    then class atlases and comparisons (``RUN/*/class-*/``, ``RUN/*/compare-*/``) in (layer, kind, name) order.

    Layers follow ``layers`` when given, else ``manifest.json``'s ``layers``, else sorted names.
    Raises ``FileNotFoundError`` when the run has no atlas and ``ValueError`` when an
    atlas.json lacks a key of the format in ``docs/run-directory.md``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist; pass the run_dir of your config")
    refs = []
    paths = sorted(p for folder in ATLAS_FOLDERS for p in run_dir.glob(f"*/{folder}/atlas.json"))
    for path in paths:
        atlas = json.loads(path.read_text())
        missing = [k for k in REQUIRED_KEYS if k not in atlas]
        if missing:
            raise ValueError(f"{path} lacks {missing}; rebuild it with the atlas stage (see docs/run-directory.md)")
        for cell in atlas["cells"][:1]:
            missing = [k for k in REQUIRED_CELL_KEYS if k not in cell]
            if missing:
                raise ValueError(f"cells of {path} lack {missing}; rebuild it with the atlas stage")
        refs.append(AtlasRef(layer=path.parent.parent.name, grid=int(atlas["grid"]), folder=path.parent, atlas=atlas))
    if not refs:
        raise FileNotFoundError(
            f"no atlas in {run_dir} (expected {run_dir}/LAYER/grid-N/atlas.json); "
            "run the pipeline's atlas stage first, e.g. `snakemake --cores 2 atlas`"
        )
    order = _layer_order(run_dir, {r.layer for r in refs}, layers)
    kinds = ("atlas", "class", "compare")
    return sorted(refs, key=lambda r: (r.kind != "atlas", order.index(r.layer),
                                       kinds.index(r.kind) if r.kind in kinds else 3, r.grid, r.view))


def _layer_order(run_dir: Path, layers: set[str], given: list[str] | None = None) -> list[str]:
    """Layers in the ``given`` order, else manifest order (``manifest.json["layers"]``), then any others sorted."""
    listed: list[str] = list(given or [])
    manifest = run_dir / "manifest.json"
    if not listed and manifest.is_file():
        try:
            value = json.loads(manifest.read_text()).get("layers", [])
            listed = [v if isinstance(v, str) else v.get("name", "") for v in value]
        except (ValueError, AttributeError):
            listed = []
    ordered = [layer for layer in listed if layer in layers]
    return ordered + sorted(layers - set(ordered))


# --------------------------------------------------------------------------- the data index


def _round(value: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits (keeps data.json small)."""
    if value == 0 or not math.isfinite(value):
        return 0.0 if not math.isfinite(value) else value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def _run_relative(ref: AtlasRef, path: str) -> str:
    """Map a path inside ``LAYER/FOLDER/`` (as atlas.json writes it) to a URL relative to viewer/."""
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or ".." in parts:
        raise ValueError(f"{ref.folder}/atlas.json names {path!r}; paths must stay inside {ref.folder}")
    return "../" + "/".join((ref.layer, ref.view, *parts))


def cell_entry(ref: AtlasRef, cell: dict[str, Any]) -> dict[str, Any]:
    """One cell of atlas.json as the viewer reads it (paths relative to viewer/, values rounded)."""
    entry: dict[str, Any] = {
        "i": int(cell["i"]),
        "j": int(cell["j"]),
        "count": int(cell["count"]),
        "label": str(cell["label"]),
        "label_index": int(cell.get("label_index", -1)),
        "top": [[str(name), _round(float(v))] for name, v in cell.get("top", [])],
        "attribution": {str(k): _round(float(v)) for k, v in cell.get("attribution", {}).items()},
        "faithfulness": None if cell.get("faithfulness") is None else _round(float(cell["faithfulness"])),
        "icon": _run_relative(ref, cell["icon"]) if cell.get("icon") else None,
        "examples": [
            {
                "src": _run_relative(ref, ex["src"]),
                "label": ex.get("label"),
                "pred": ex.get("pred"),
                "prob": None if ex.get("prob") is None else _round(float(ex["prob"]), 3),
                "similarity": None if ex.get("similarity") is None else _round(float(ex["similarity"]), 3),
            }
            for ex in cell.get("examples", [])
        ],
    }
    return entry


def grid_entry(ref: AtlasRef, width: int, height: int) -> dict[str, Any]:
    """One grid of one layer: its tile pyramid (as an inline OpenSeadragon tile source) and cells."""
    tiles = f"tiles/{ref.layer}/{ref.view}"
    return {
        "grid": ref.grid,
        "icon_size": int(ref.atlas["icon_size"]),
        "size_px": [width, height],
        "dzi": f"{tiles}.dzi",
        "tile_source": {
            "Image": {
                "xmlns": "http://schemas.microsoft.com/deepzoom/2008",
                "Url": f"{tiles}_files/",
                "Format": TILE_FORMAT,
                "Overlap": str(TILE_OVERLAP),
                "TileSize": str(TILE_SIZE),
                "Size": {"Width": str(width), "Height": str(height)},
            }
        },
        "labelled": _run_relative(ref, ref.atlas["labelled"]) if ref.atlas.get("labelled") else None,
        "cells": [cell_entry(ref, c) for c in ref.atlas["cells"]],
    }


def extra_entry(ref: AtlasRef, width: int, height: int) -> dict[str, Any]:
    """A class atlas or comparison as the viewer lists it: id, title, description and its one grid."""
    a = ref.atlas
    if ref.kind == "compare":
        first, second = (list(a.get("pair", [])) + ["A", "B"])[:2]
        title = f"compare: {first} vs {second}"
        about = f"x: {a.get('x_axis', 'attribution to A minus B')}; y: {a.get('y_axis', '1-D layout')}."
        axis = {"left": f"more {second}", "right": f"more {first}"}
    else:
        title = f"class: {a.get('class', ref.view)}"
        about = (f"Samples whose attribution supports {a.get('class', 'the class')} "
                 f"(filter {a.get('filter', '?')}, at most {a.get('top', '?')}), laid out with {a.get('method', '?')}.")
        axis = None
    counts = [f"{a[k]} {k}" for k in ("samples", "images") if a.get(k) is not None]
    return {
        "id": f"{ref.layer}/{ref.view}",
        "layer": ref.layer,
        "kind": ref.kind,
        "title": title,
        "about": about + (" " + ", ".join(counts) + "." if counts else ""),
        "axis": axis,
        "grids": [grid_entry(ref, width, height)],
    }


def data_index(refs: list[AtlasRef], sizes: dict[tuple[str, str], tuple[int, int]], title: str) -> dict[str, Any]:
    """The viewer's ``data.json``: classes; layers in order, each with its main grids coarse to fine;
    extras: class atlases and comparisons, one grid each.

    ``sizes`` maps (layer, folder name) to the atlas image's (width, height) in pixels.
    """
    classes = list(refs[0].atlas["classes"])
    for ref in refs[1:]:
        if list(ref.atlas["classes"]) != classes:
            raise ValueError(
                f"{ref.folder}/atlas.json lists other classes than {refs[0].folder}/atlas.json; "
                "all atlases of a run must come from one model: rebuild the run"
            )
    layers: dict[str, list[dict[str, Any]]] = {}
    extras = []
    for ref in refs:
        size = sizes[(ref.layer, ref.view)]
        if ref.kind == "atlas":
            layers.setdefault(ref.layer, []).append(grid_entry(ref, *size))
        else:
            extras.append(extra_entry(ref, *size))
    return {
        "title": title,
        "classes": classes,
        "layers": [{"layer": name, "grids": grids} for name, grids in layers.items()],
        "extras": extras,
    }


# --------------------------------------------------------------------------- building


def find_openseadragon(openseadragon_dir: Path | None = None) -> Path:
    """Folder holding ``openseadragon.min.js`` and ``images/`` (OpenSeadragon's build output).

    Looks at ``openseadragon_dir``, then ``$ACTLAS_OPENSEADRAGON_DIR``, then
    ``node_modules/openseadragon/build/openseadragon`` under the working directory and under
    the actlas checkout.
    """
    candidates = [Path(p) for p in (openseadragon_dir, os.environ.get(OSD_ENV)) if p]
    sub = Path("node_modules/openseadragon/build/openseadragon")
    candidates += [Path.cwd() / sub, Path(__file__).resolve().parents[2] / sub]
    for folder in candidates:
        if (folder / "openseadragon.min.js").is_file():
            return folder
    raise FileNotFoundError(
        "OpenSeadragon not found (looked in " + ", ".join(map(str, candidates)) + "); "
        f"run `npm ci` in the actlas repository root, or set {OSD_ENV} to a folder holding openseadragon.min.js"
    )


def make_tiles(atlas_png: Path, out_base: Path) -> tuple[int, int]:
    """Write a deep-zoom pyramid of ``atlas_png``: ``out_base.dzi`` and ``out_base_files/``.

    Returns the image's (width, height) in pixels.
    """
    try:
        import pyvips
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("building the viewer needs pyvips: pip install pyvips pyvips-binary") from err
    if not atlas_png.is_file():
        raise FileNotFoundError(f"{atlas_png} is missing; rerun the atlas stage for this grid")
    image = pyvips.Image.new_from_file(str(atlas_png), access="sequential")
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    out_base.parent.mkdir(parents=True, exist_ok=True)
    image.dzsave(
        str(out_base),
        layout="dz",
        tile_size=TILE_SIZE,
        overlap=TILE_OVERLAP,
        suffix=f".{TILE_FORMAT}[Q={TILE_QUALITY}]",
    )
    return image.width, image.height


def _copy_static(dest: Path, osd: Path) -> None:
    """Copy the viewer's package data and OpenSeadragon into ``dest``."""
    package = resources.files("actlas") / "viewer"
    for name in STATIC_FILES:
        (dest / name).write_bytes((package / name).read_bytes())
    (dest / "openseadragon").mkdir()
    shutil.copy2(osd / "openseadragon.min.js", dest / "openseadragon" / "openseadragon.min.js")
    if (osd / "images").is_dir():
        shutil.copytree(osd / "images", dest / "openseadragon" / "images")


def build_viewer(
    run_dir: Path | str, openseadragon_dir: Path | str | None = None, layers: list[str] | None = None
) -> Path:
    """Build ``RUN/viewer/`` from every atlas of the run; returns the path of its index.html.

    ``layers`` orders the layer switch (default: manifest.json's order, else sorted);
    ``openseadragon_dir`` is OpenSeadragon's build folder (default: :func:`find_openseadragon`).

    Reads each ``RUN/LAYER/FOLDER/atlas.json`` and ``atlas.png``, tiles the PNG with pyvips
    ``dzsave``, writes ``data.json``/``data.js`` and copies the static viewer and OpenSeadragon.
    The folder is built next to the old one and swapped in, so a failed build leaves the old
    viewer intact.
    """
    run_dir = Path(run_dir)
    refs = read_atlases(run_dir, layers)
    osd = find_openseadragon(Path(openseadragon_dir) if openseadragon_dir else None)
    final = run_dir / VIEWER_DIR
    staging = Path(tempfile.mkdtemp(prefix=".viewer-", dir=run_dir))
    try:
        sizes = {
            (r.layer, r.view): make_tiles(r.folder / r.atlas["image"], staging / "tiles" / r.layer / r.view)
            for r in refs
        }
        index = data_index(refs, sizes, title=run_dir.resolve().name)
        text = json.dumps(index, separators=(",", ":"))
        (staging / "data.json").write_text(text)
        (staging / "data.js").write_text(f"window.ACTLAS_DATA={text};\n")
        _copy_static(staging, osd)
        staging.chmod(0o755)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final / "index.html"


def viewer_digest() -> str:
    """Digest of this module and the viewer's static files (a rule param: rebuild when they change)."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    package = resources.files("actlas") / "viewer"
    for name in STATIC_FILES:
        h.update(name.encode() + (package / name).read_bytes())
    return h.hexdigest()[:16]


def _ensure_viewer(run_dir: Path) -> None:
    """Build the viewer when the run has none yet."""
    if not (run_dir / VIEWER_DIR / "index.html").is_file():
        build_viewer(run_dir)


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
    return any(path.match(pattern) and len(path.parts) == len(PurePosixPath(pattern).parts) for pattern in RUN_FILE_PATTERNS)


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
        return f"{VIEWER_DIR}/index.html"
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
            except Exception:  # never let one bad request end the server
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

    def __enter__(self) -> "ViewerServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_server(
    run_dir: Path | str, host: str = "127.0.0.1", port: int = 0, verbose: bool = False
) -> ViewerServer:
    """Serve the run's viewer from a background thread; ``port=0`` picks a free port.

    Builds the viewer first when the run has none. Binding a host other than loopback
    warns: the run (icons, dataset examples) becomes readable from the network.
    """
    run_dir = Path(run_dir)
    _ensure_viewer(run_dir)
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
        raise OSError(f"cannot listen on {host}:{port} ({err.strerror}); pick another --port or 0 for any free one") from err
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
    print(f"actlas viewer of {run_dir}: {server.url}  (Ctrl-C stops)", flush=True)
    try:
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
    _ensure_viewer(run_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} is not an empty folder; choose a new OUT_DIR or empty it")
    if out_dir.resolve().is_relative_to(run_dir.resolve()):
        raise ValueError(f"{out_dir} is inside the run {run_dir}; export to a folder outside it")
    root = run_dir.resolve()
    for path in servable_files(run_dir):
        target = out_dir / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    (out_dir / "index.html").write_text(REDIRECT_PAGE)
    return out_dir / "index.html"


_SHOWN: dict[Path, ViewerServer] = {}


def show(run_dir: Path | str, width: int | str = "100%", height: int = 640, port: int = 0) -> Any:
    """Show the run's viewer in Jupyter: an IFrame to a loopback server started once per run.

    The server runs in a daemon thread of the kernel and stops with it.
    Example: ``actlas.show("runs/demo")`` as the last line of a cell.
    """
    try:
        from IPython.display import IFrame
    except ImportError as err:
        raise ImportError("actlas.show needs IPython (pip install ipython); or run `actlas serve RUN_DIR`") from err
    key = Path(run_dir).resolve()
    if key not in _SHOWN:
        _SHOWN[key] = start_server(key, port=port)
    return IFrame(_SHOWN[key].url, width=width, height=height)


# --------------------------------------------------------------------------- CLI (registered by actlas.cli)


@click.command("serve")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; any but loopback exposes the run.")
@click.option("--port", default=0, show_default=True, help="Port; 0 picks a free one.")
@click.option("--verbose", is_flag=True, help="Log every request to stderr.")
def serve_command(run_dir: Path, host: str, port: int, verbose: bool) -> None:
    """Serve the run's atlas viewer on http://127.0.0.1:PORT/ until Ctrl-C.

    Example: actlas serve runs/demo
    """
    if not _is_loopback(host):
        click.echo(f"warning: serving on {host} makes the run readable from the network", err=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            serve(run_dir, host=host, port=port, verbose=verbose)
    except (OSError, ValueError) as err:
        raise click.ClickException(str(err)) from err


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
def export_command(run_dir: Path, out_dir: Path) -> None:
    """Write the run's atlas viewer as a static site to OUT_DIR.

    Example: actlas export runs/demo site/ && python -m http.server -d site
    """
    try:
        index = export(run_dir, out_dir)
    except (OSError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"wrote {index}")
