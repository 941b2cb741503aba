"""Serve a folder of outputs and the bundled Neuroglancer client over HTTP, offline.

``neuroglia5d serve DIR --port 9000`` answers, on localhost:

* ``/data/<path>``: files under ``DIR``, with CORS (any origin) and byte-range requests,
  so Neuroglancer (ours or any other) can stream precomputed and Zarr data;
* ``/v/<name>/``: the Neuroglancer client shipped in the ``neuroglancer`` PyPI package
  (no network needed). That client is built for the package's Python server, so the
  endpoints it calls (``/events``, ``/state``, ``/action``, ``/credentials``) are answered
  here too: ``/events/<name>`` pushes the viewer state registered under ``<name>`` (one
  per export timepoint, ``<export>-tNNN``, and one per pipeline OME-Zarr), as
  Neuroglancer's own Python server does. ``/v/neuroglia5d/#!{...}`` takes any state in
  the URL instead;
* ``/``: a redirect to the first export found (or the first pipeline OME-Zarr).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import mimetypes
import re
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..errors import InputError
from .export import MANIFEST
from .link import export_state, omezarr_state, state_url

TOKEN = "neuroglia5d"
_CLIENT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_\-.]*\.(?:js|map|css|wasm|html)$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def client_dir() -> Path:
    """Folder of the bundled Neuroglancer client (``neuroglancer/static/client``)."""
    try:
        root = importlib.resources.files("neuroglancer.static").joinpath("client")
    except ModuleNotFoundError:
        raise InputError("the `neuroglancer` package is not installed: pip install "
                         "'napari-neuroglia5d[ng]'") from None
    p = Path(str(root))
    if not (p / "index.html").is_file():
        raise InputError(f"{p}: the neuroglancer package has no built client")
    return p


def find_datasets(root: Path, max_depth: int = 4) -> dict[str, list[Path]]:
    """Exports (folders with a manifest) and pipeline OME-Zarr stores under ``root``."""
    found: dict[str, list[Path]] = {"exports": [], "omezarr": []}

    def walk(d: Path, depth: int) -> None:
        if (d / MANIFEST).is_file():
            found["exports"].append(d)
            return
        if d.name.endswith("_fused.ome.zarr"):
            found["omezarr"].append(d)
            return
        if depth >= max_depth:
            return
        with contextlib.suppress(OSError):
            for c in sorted(d.iterdir()):
                if c.is_dir() and not c.name.startswith(".") and not c.name.endswith(
                        ".partial"):
                    walk(c, depth + 1)

    walk(root, 0)
    return found


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet unless asked
        if self.server.verbose:
            super().log_message(format, *args)

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Range, Content-Type")
        self.send_header("Access-Control-Expose-Headers",
                         "Content-Range, Content-Length, Accept-Ranges, ETag")

    def _send(self, code: int, body: bytes, ctype: str = "text/plain",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self._cors()
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_OPTIONS(self) -> None:  # CORS preflight
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors()
        self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # the client's calls to the Python server it expects
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        # state updates from the client are acknowledged (and not kept: links are static)
        self._send(200, b'{"g": "1"}', "application/json")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/":
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", self.server.default_url)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/data/"):
            self._file(urllib.parse.unquote(path[len("/data/"):]))
            return
        m = re.match(r"^/events/([A-Za-z0-9_\-]+)$", path)
        if m:
            self._events(m.group(1))
            return
        m = re.match(r"^/v/([A-Za-z0-9_\-]+)/(.*)$", path)
        if m:
            name = m.group(2) or "index.html"
            if not _CLIENT_NAME.match(name) or not (self.server.client / name).is_file():
                self._send(404, b"not found")
                return
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            if name.endswith(".wasm"):
                ctype = "application/wasm"
            self._send(200, (self.server.client / name).read_bytes(), ctype)
            return
        self._send(404, b"not found")

    def _events(self, token: str) -> None:
        """Server-sent events the client listens to: the viewer state of ``/v/<token>/``
        once (when the token names a registered state), then keep-alive comments."""
        self.send_response(200)
        self._cors()
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            st = self.server.states.get(token)
            if st is not None:
                msg = json.dumps({"k": "s", "g": "1", "s": st}, separators=(",", ":"))
                self.wfile.write(f"data: {msg}\n\n".encode())
                self.wfile.flush()
            while not self.server.stopping.is_set():
                self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
                self.server.stopping.wait(15)
        except OSError:
            pass
        self.close_connection = True

    def _file(self, rel: str) -> None:
        root = self.server.root
        try:
            p = (root / rel).resolve()
            p.relative_to(root)
        except (ValueError, OSError):
            self._send(403, b"forbidden")
            return
        if not p.is_file():
            self._send(404, b"not found")
            return
        size = p.stat().st_size
        ctype = "application/json" if p.name in ("info", "zarr.json", ".zattrs",
                                                  ".zgroup", ".zarray") or p.suffix == ".json" \
            else (mimetypes.guess_type(p.name)[0] or "application/octet-stream")
        rng = self.headers.get("Range")
        start, end = 0, size - 1
        code = 200
        extra = {"Accept-Ranges": "bytes"}
        if rng:
            m = _RANGE.match(rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                self._send(416, b"bad range", extra={"Content-Range": f"bytes */{size}"})
                return
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(0, size - int(m.group(2)))
            if start >= size or start > end:
                self._send(416, b"range not satisfiable",
                           extra={"Content-Range": f"bytes */{size}"})
                return
            code = 206
            extra["Content-Range"] = f"bytes {start}-{end}/{size}"
        with open(p, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self._send(code, body, ctype, extra)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]+", "_", name).strip("_") or "data"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], root: Path, verbose: bool) -> None:
        super().__init__(addr, _Handler)
        self.root = root
        self.client = client_dir()
        self.verbose = verbose
        self.stopping = threading.Event()
        self.states: dict[str, dict[str, Any]] = {}
        self.default_url = f"/v/{TOKEN}/"


class Served:
    """A running server (see :func:`start_server`).

    Attributes
    ----------
    url : str
        ``http://host:port``.
    data_url : str
        URL of the served folder (``url + '/data'``).
    viewer_url : str
        URL of the bundled client.
    """

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.data_url = self.url + "/data"
        self.viewer_url = f"{self.url}/v/{TOKEN}/"

    def export_url(self, export_dir: Path, t: int = 0, **kw: Any) -> str:
        """Viewer URL opening timepoint ``t`` of an export under the served folder."""
        from .link import load_manifest

        rel = Path(export_dir).resolve().relative_to(self._server.root).as_posix()
        st = export_state(load_manifest(export_dir), f"{self.data_url}/{rel}", t, **kw)
        return self.register_state(f"{_safe(rel)}-t{t:03d}", st)

    def omezarr_url(self, store: Path, label_ids: Any = ()) -> str:
        """Viewer URL opening a pipeline ``*_fused.ome.zarr`` under the served folder."""
        from ..io.convert import load_outputs

        rel = Path(store).resolve().relative_to(self._server.root).as_posix()
        o = load_outputs(store)
        lab = o.arrays["labels"]
        if not len(label_ids):
            import fastremap
            import numpy as np

            label_ids = [int(i) for i in fastremap.unique(np.asarray(lab[0])) if i]
        st = omezarr_state(f"{self.data_url}/{rel}", o.spacing_um, lab.shape,
                           offset_zyx=o.offset_zyx, name=o.stem, label_ids=label_ids)
        return self.register_state(_safe(rel), st)

    def hash_url(self, state: dict[str, Any]) -> str:
        """``viewer_url#!state``: the state in the URL itself (any state, nothing stored).

        The bundled client restores such URL states during start-up, where it sometimes
        drops a layer ("Cannot read properties of undefined"); :meth:`register_state`
        URLs do not have that problem and are what ``serve`` prints.
        """
        return state_url(self.viewer_url, state)

    def register_state(self, name: str, state: dict[str, Any]) -> str:
        """Serve ``state`` at ``/v/<name>/`` (pushed to the client, no ``#!`` needed).

        The bundled client then restores the state once it is fully started, as it does
        under Neuroglancer's own Python server; returns the URL.
        """
        if not re.match(r"^[A-Za-z0-9_\-]+$", name):
            raise ValueError(f"state name {name!r}: letters, digits, _ and - only")
        self._server.states[name] = state
        return f"{self.url}/v/{name}/"

    def set_default(self, url: str) -> None:
        """Where ``/`` redirects to."""
        self._server.default_url = url

    def stop(self) -> None:
        """Shut the server down (ends open event streams too)."""
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_server(root: str | Path, *, port: int = 9000, host: str = "127.0.0.1",
                 verbose: bool = False) -> Served:
    """Serve ``root`` and the bundled client in a background thread.

    Parameters
    ----------
    root : str or Path
        Folder to serve under ``/data/``.
    port : int
        TCP port (0: any free port).
    host : str
        Address to bind (localhost by default: data stays on this machine).
    verbose : bool
        Log every request to stderr.
    """
    r = Path(root).resolve()
    if not r.is_dir():
        raise InputError(f"{root}: not a folder")
    try:
        srv = _Server((host, port), r, verbose)
    except OSError as e:
        raise InputError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror or e})"
                         ) from None
    th = threading.Thread(target=srv.serve_forever, name="neuroglia5d-serve", daemon=True)
    th.start()
    served = Served(srv, th)
    found = find_datasets(r)
    if found["exports"]:
        served.set_default(served.export_url(found["exports"][0]))
    elif found["omezarr"]:
        served.set_default(served.omezarr_url(found["omezarr"][0]))
    return served


def serve_forever(root: str | Path, *, port: int = 9000, host: str = "127.0.0.1",
                  verbose: bool = False, out: Any = None) -> None:
    """Serve until interrupted, printing the viewer URLs (the ``serve`` command)."""
    import sys

    out = out or sys.stdout
    s = start_server(root, port=port, host=host, verbose=verbose)
    found = find_datasets(s._server.root)
    print(f"serving {s._server.root} at {s.data_url}/ (CORS, range requests)", file=out)
    print(f"Neuroglancer client (offline): {s.viewer_url}", file=out)
    from .link import load_manifest

    for e in found["exports"]:
        n = len(load_manifest(e)["timepoints"])
        urls = [s.export_url(e, t) for t in range(n)]  # registers every timepoint
        print(f"export {e.name} ({n} timepoint(s)): {urls[0]}"
              + (f" ... {urls[-1]}" if n > 1 else ""), file=out)
    for z in found["omezarr"]:
        print(f"OME-Zarr {z.name}: {s.omezarr_url(z)}", file=out)
    if not found["exports"] and not found["omezarr"]:
        print("no export or *_fused.ome.zarr found; open the client and add layers from "
              f"{s.data_url}/", file=out)
    print(f"open {s.url}/ (Ctrl-C stops)", file=out, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        s.stop()
