"""`aegen explore`: a local page for moving through a run's latent space and seeing the decoded
image change live.

The page (explore.html) talks to a small Flask app: `GET api/info` describes the axes and the
held-out images, `POST api/decode` turns axis positions into a PNG, `POST api/interpolate` decodes
the straight line between two held-out images' codes, `POST api/sample` draws a grid from one of
the run's fitted samplers and says where its codes fall on the axes. The axes are the code
itself for codes of up to 3 dimensions (a 2-d pad, or sliders), otherwise the first principal
directions of the held-out codes around their mean; a conditional model adds a choice of
label. Every request is checked; a bad one gets a 4xx JSON answer.

Limits, since the page is served without authentication: a body is at most MAX_REQUEST_BYTES of
JSON nested at most MAX_JSON_DEPTH deep (parsed here, so no body can reach a RecursionError); the
Host header must name this server (the defence against DNS rebinding, where a web page's own domain
is made to resolve to 127.0.0.1): the loopback names, or the --host given, any port (an SSH tunnel
changes it). Listening on all interfaces (0.0.0.0, ::) also accepts any IP address and this
machine's name, and `serve` warns on stderr whenever the host is not loopback. Each socket read or
write times out after REQUEST_TIMEOUT_S (werkzeug's request handler takes socketserver's
`timeout`); that frees a stalled connection's thread, not one a client keeps trickling bytes into.
At most MAX_CONNECTIONS connections are served at once (werkzeug has no such cap, so the server
class here adds one); further ones are closed at once.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import socket
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import torch

from aegen.data.pixels import unit_images
from aegen.errors import ConfigError, RunError
from aegen.export.files import image_grid_png
from aegen.trained import TrainedModel, load
from aegen.views.figures import png_data_url

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.serving import BaseWSGIServer

MAX_PCA_AXES = 6
SPAN = 3.5  # each axis covers mean +- SPAN standard deviations of the held-out codes
N_GALLERY = 40
N_PAD_POINTS = 1000
N_SAMPLES = 16
MAX_STEPS = 32
MAX_REQUEST_BYTES = 16 * 1024
MAX_JSON_DEPTH = 8  # the page sends depth 2: {"coords": [...]}
MAX_COORDINATE = 1e4
REQUEST_TIMEOUT_S = 10.0  # per socket read or write
MAX_CONNECTIONS = 32  # werkzeug closes each after one request; a browser opens about 6 at once
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ALL_INTERFACES = frozenset({"", "0.0.0.0", "::"})


class LatentAxes:
    """The explorer's coordinates: z = origin + coords @ basis, with a range for each axis."""

    def __init__(self, codes: torch.Tensor):
        codes = codes.double()
        dim = codes.shape[1]
        mean = codes.mean(0)
        if dim <= 3:
            self.kind = "code"
            self.origin = torch.zeros(dim, dtype=torch.float64)
            self.basis = torch.eye(dim, dtype=torch.float64)
            self.centre, spread = mean, codes.std(0)
            self.names = [f"z{i + 1}" for i in range(dim)]
        else:
            self.kind = "principal directions"
            _, singular, directions = torch.linalg.svd(codes - mean, full_matrices=False)
            k = min(MAX_PCA_AXES, dim, len(codes))
            self.origin, self.basis = mean, directions[:k].double()
            self.centre = torch.zeros(k, dtype=torch.float64)
            spread = singular[:k] / math.sqrt(max(len(codes) - 1, 1))
            self.names = [f"PC{i + 1}" for i in range(k)]
        spread = torch.where(spread > 0, spread, torch.ones_like(spread))
        self.low, self.high = self.centre - SPAN * spread, self.centre + SPAN * spread

    @property
    def count(self) -> int:
        return len(self.names)

    def to_code(self, coords: torch.Tensor) -> torch.Tensor:
        """Axis positions [N, count] -> codes [N, latent_dim]."""
        return (self.origin + coords.double() @ self.basis).float()

    def to_coords(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [N, latent_dim] -> axis positions (a projection for principal directions)."""
        return (codes.double() - self.origin) @ self.basis.T

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "min": lo, "max": hi, "start": start}
            for name, lo, hi, start in zip(
                self.names, self.low.tolist(), self.high.tolist(), self.centre.tolist()
            )
        ]


class Explorer:
    """What the page shows of one trained run; decoding is serialised (one model, many threads)."""

    def __init__(self, trained: TrainedModel):
        held_out = trained.split("val")
        self.trained, self.classes = trained, list(held_out.classes)
        sample = held_out.images[: max(N_GALLERY, N_PAD_POINTS)]
        self.labels = held_out.labels[: len(sample)]
        codes = trained.encode(sample, self.labels)
        self.axes = LatentAxes(codes)
        self.gallery = unit_images(sample[:N_GALLERY])
        self.gallery_codes = codes[:N_GALLERY]
        self.points = self.axes.to_coords(codes[:N_PAD_POINTS])
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """Everything the page needs to draw its controls and the gallery."""
        config = self.trained.config
        gallery_coords = self.axes.to_coords(self.gallery_codes).tolist()
        return {
            "model": self.trained.name,
            "dataset": config.dataset,
            "run": str(self.trained.run_dir),
            "latent_dim": self.trained.latent_dim,
            "axes_kind": self.axes.kind,
            "control": "pad" if self.axes.count == 2 else "sliders",
            "axes": self.axes.describe(),
            "classes": self.classes,
            "points": [[*p, int(label)] for p, label in zip(self.points.tolist(), self.labels)],
            "gallery": [
                {
                    "index": i,
                    "label": int(self.labels[i]),
                    "coords": gallery_coords[i],
                    "image": png_data_url(image_grid_png(self.gallery[i : i + 1], 1, scale=1)),
                }
                for i in range(len(self.gallery))
            ],
            "max_steps": MAX_STEPS,
            "conditional": self.trained.conditional,
            "samplers": self.samplers(),
        }

    def samplers(self) -> list[str]:
        """The samplers the page offers: prior and those already fitted and saved in the run
        (fitting a learned one takes a minute: `aegen sample RUN --sampler NAME` does it)."""
        fitted = sorted(
            path.name[len("sampler-") : -len(".safetensors")]
            for path in self.trained.run_dir.glob("sampler-*.safetensors")
        )
        return ["prior", *(name for name in fitted if name != "prior")]

    def sample(self, sampler: str, seed: int, label: int | None = None) -> dict[str, Any]:
        """A grid of N_SAMPLES images drawn by a saved sampler, and their codes' positions on
        the explorer's axes (where the sampler puts its codes, beside the held-out ones)."""
        with self._lock:
            self.trained.sampler(sampler, fit=False)  # never a minute's fit inside a request
            codes, labels = self.trained.draw_codes(N_SAMPLES, seed, sampler, label)
            images = self.trained.decode(codes, labels)
        return {
            "image": png_data_url(image_grid_png(images, 4, scale=1)),
            "points": self.axes.to_coords(codes).tolist(),
        }

    def decode(self, coords: list[float], label: int | None = None) -> bytes:
        """A PNG of the image decoded at these axis positions (with this label, if conditional)."""
        labels = torch.tensor([label]) if self.trained.conditional else None
        with self._lock:
            image = self.trained.decode(self.axes.to_code(torch.tensor([coords])), labels)
        return image_grid_png(image, 1, scale=1)

    def interpolate(self, first: int, second: int, steps: int) -> bytes:
        """A PNG strip decoded along the straight line between two gallery images' codes."""
        a, b = self.gallery_codes[first], self.gallery_codes[second]
        weights = torch.linspace(0, 1, steps).unsqueeze(1)
        labels = None
        if self.trained.conditional:  # the class blends along the line too
            one_hot = torch.eye(self.trained.classes)
            labels = (
                one_hot[self.labels[first]] * (1 - weights) + one_hot[self.labels[second]] * weights
            )
        with self._lock:
            strip = self.trained.decode(a * (1 - weights) + b * weights, labels)
        return image_grid_png(strip, steps, scale=1)


def _bad_request(message: str) -> NoReturn:
    from flask import abort

    abort(400, description=message)


def _json_depth(text: str) -> int:
    """The deepest nesting of [ and { in a JSON text, brackets inside strings not counted."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _json_object() -> dict:
    """The request's JSON object, parsed here: request.get_json lets a RecursionError through."""
    from flask import request

    message = "send a JSON object with Content-Type: application/json"
    if not request.is_json:
        _bad_request(message)
    try:
        text = request.get_data().decode("utf-8")  # over MAX_REQUEST_BYTES: a 413
    except UnicodeDecodeError:
        _bad_request("the body is not UTF-8")
    if _json_depth(text) > MAX_JSON_DEPTH:
        _bad_request(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        payload = json.loads(text)
    except ValueError:
        _bad_request("the body is not valid JSON")
    if not isinstance(payload, dict):
        _bad_request(message)
    return payload


def _coords(payload: dict, count: int) -> list[float]:
    values = payload.get("coords")
    if not isinstance(values, list) or len(values) != count:
        _bad_request(f"coords must be a list of {count} numbers")
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or abs(value) > MAX_COORDINATE
        ):
            _bad_request(f"coords must be finite numbers within +-{MAX_COORDINATE:g}")
    return [float(v) for v in values]


def _whole_number(payload: dict, key: str, low: int, high: int) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _bad_request(f"{key} must be a whole number in {low}..{high}")
    return value


def _host_name(header: str) -> str:
    """The name in a Host header, lower case, without port or IPv6 brackets ('' if malformed)."""
    try:
        return urlsplit(f"//{header}").hostname or ""
    except ValueError:
        return ""


def host_is_allowed(header: str, host: str) -> bool:
    """Whether a request's Host header names this server, listening on `host` (see the top)."""
    name, host = _host_name(header), host.strip("[]").lower()
    if name in LOOPBACK_NAMES or (name and name == host):
        return True
    if host not in ALL_INTERFACES:
        return False
    try:  # a page served from an IP address is no rebinding: its origin is that address
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name == socket.gethostname().lower()


def create_app(explorer: Explorer, host: str = "127.0.0.1") -> Flask:
    """The Flask app: the page and its four JSON/PNG endpoints, for a server on `host`."""
    from flask import Flask, Response, jsonify, request
    from werkzeug.exceptions import Conflict, HTTPException, InternalServerError

    app = Flask("aegen.views.explore")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    page = resources.files("aegen.views").joinpath("explore.html").read_text(encoding="utf-8")

    @app.errorhandler(HTTPException)
    def json_error(error: HTTPException):
        return jsonify(error=error.description, status=error.code), error.code

    @app.before_request
    def check_host() -> None:
        if not host_is_allowed(request.headers.get("Host", ""), host):
            _bad_request("unknown Host header; open the address aegen explore printed")

    @app.get("/")
    def index() -> Response:
        return Response(page, mimetype="text/html")

    @app.get("/api/info")
    def info() -> Response:
        return jsonify(explorer.info())

    @app.post("/api/decode")
    def decode() -> Response:
        payload = _json_object()
        coords = _coords(payload, explorer.axes.count)
        label = None
        if explorer.trained.conditional:
            label = _whole_number(payload, "label", 0, explorer.trained.classes - 1)
        return Response(explorer.decode(coords, label), mimetype="image/png")

    @app.post("/api/sample")
    def sample() -> Response:
        payload = _json_object()
        name = payload.get("sampler")
        if name not in explorer.samplers():
            _bad_request(
                "sampler must be one of the run's fitted samplers "
                f"({', '.join(explorer.samplers())}); `aegen sample RUN --sampler NAME` fits one"
            )
        seed = _whole_number(payload, "seed", 0, 2**31 - 1)
        label = None
        if explorer.trained.conditional and payload.get("label") is not None:
            label = _whole_number(payload, "label", 0, explorer.trained.classes - 1)
        try:
            return jsonify(explorer.sample(name, seed, label))
        except ConfigError as exc:  # fitted to other weights: `aegen sample` fits it again
            raise Conflict(str(exc)) from exc
        except RunError as exc:  # a damaged sampler file: the page shows the one line
            raise InternalServerError(str(exc)) from exc

    @app.post("/api/interpolate")
    def interpolate() -> Response:
        payload, last = _json_object(), len(explorer.gallery) - 1
        first = _whole_number(payload, "a", 0, last)
        second = _whole_number(payload, "b", 0, last)
        steps = _whole_number(payload, "steps", 2, MAX_STEPS)
        return Response(explorer.interpolate(first, second, steps), mimetype="image/png")

    return app


def make_server(
    run_dir: Path, host: str = "127.0.0.1", port: int = 8765, data_root: str | Path | None = None
) -> BaseWSGIServer:
    """A ready werkzeug server for the run (port 0 picks a free one; see `.port`)."""
    try:
        import flask  # noqa: F401  (the app itself is built in create_app)
    except ImportError:
        raise ConfigError("aegen explore needs Flask: pip install 'aegen[explore]'") from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per slider move
    _check_address(host, port)
    app = create_app(Explorer(load(run_dir, data_root)), host)
    return _threaded_server(host, port, app)


def _threaded_server(host: str, port: int, app: Flask) -> BaseWSGIServer:
    """werkzeug's threaded server with socket timeouts and at most MAX_CONNECTIONS threads."""
    from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        timeout = REQUEST_TIMEOUT_S  # socketserver sets it on each connection

    class Server(ThreadedWSGIServer):
        slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

        def process_request(self, request, client_address) -> None:
            if not self.slots.acquire(blocking=False):
                self.shutdown_request(request)  # full: close it rather than start another thread
                return
            try:
                super().process_request(request, client_address)
            except BaseException:  # no thread started, so none will give the slot back
                self.slots.release()
                raise

        def process_request_thread(self, request, client_address) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                self.slots.release()

    return Server(host, port, app, Handler)


def _check_address(host: str, port: int) -> None:
    """Fail with one line before loading anything when the address cannot be listened on
    (werkzeug itself would print several lines and exit)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "choose another --port or --host"
        ) from None


def exposure_warning(host: str) -> str | None:
    """The one-line warning for a host other machines can reach, None for a loopback one."""
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host.lower() == "localhost"
    if loopback:
        return None
    return (
        f"aegen explore: warning: listening on {host or 'all interfaces'}, the explorer is "
        "reachable from other machines and has no authentication"
    )


def serve(
    run_dir: Path, host: str = "127.0.0.1", port: int = 8765, data_root: str | Path | None = None
) -> None:
    """Serve the explorer until Ctrl-C."""
    server = make_server(run_dir, host, port, data_root)
    warning = exposure_warning(host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    shown = f"[{host}]" if ":" in host else host
    print(f"aegen explore: open http://{shown}:{server.port}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


__all__ = [
    "Explorer",
    "LatentAxes",
    "create_app",
    "exposure_warning",
    "host_is_allowed",
    "make_server",
    "serve",
]
