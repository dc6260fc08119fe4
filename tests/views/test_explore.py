"""`aegen explore`: the axes, the endpoints, and a 4xx answer (never a crash) for bad requests."""

import http.client
import io
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("flask", reason="the explorer needs Flask: pip install 'aegen[explore]'")

from aegen.cli import main  # noqa: E402
from aegen.views import explore  # noqa: E402
from aegen.views.explore import (  # noqa: E402
    MAX_REQUEST_BYTES,
    Explorer,
    LatentAxes,
    create_app,
    exposure_warning,
    host_is_allowed,
    make_server,
    serve,
)


def png_size(payload: bytes) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(payload)).size


@pytest.fixture(scope="module")
def explorers(trained_runs):
    return {name: Explorer(trained_runs[name]) for name in ("ae", "vae")}


@pytest.fixture
def client(explorers):
    return create_app(explorers["ae"]).test_client()


def test_small_codes_are_their_own_axes_large_ones_principal_directions():
    g = torch.Generator().manual_seed(0)
    small = LatentAxes(torch.randn(500, 3, generator=g) * torch.tensor([1.0, 2.0, 3.0]))
    assert small.kind == "code" and small.names == ["z1", "z2", "z3"]
    codes = torch.randn(5, 3)
    assert torch.allclose(small.to_code(small.to_coords(codes)), codes, atol=1e-6)
    assert small.high[2] - small.low[2] == pytest.approx(2 * 3.5 * 3.0, rel=0.1)

    stretched = torch.randn(2000, 20, generator=g)
    stretched[:, 7] *= 10  # the widest direction is axis 7
    large = LatentAxes(stretched)
    assert large.kind == "principal directions" and large.count == 6
    assert abs(large.basis[0, 7]) > 0.99
    assert torch.allclose(large.basis @ large.basis.T, torch.eye(6, dtype=torch.float64), atol=1e-6)


def test_info_describes_sliders_gallery_and_points(client):
    info = client.get("/api/info").get_json()
    assert info["control"] == "sliders" and [a["name"] for a in info["axes"]] == ["z1", "z2", "z3"]
    assert len(info["gallery"]) == 40 and info["gallery"][0]["image"].startswith("data:image/png")
    assert len(info["points"]) == 500 and len(info["points"][0]) == 4  # mnist-5k: 500 held out


def test_decoding_a_gallery_images_coords_gives_its_reconstruction(client, explorers):
    explorer = explorers["ae"]
    item = client.get("/api/info").get_json()["gallery"][3]
    answer = client.post("/api/decode", json={"coords": item["coords"]})
    assert answer.status_code == 200 and answer.mimetype == "image/png"
    import numpy as np
    from PIL import Image

    shown = np.asarray(Image.open(io.BytesIO(answer.data)).convert("L"), dtype=np.float32) / 255
    assert shown.shape == (28, 28)
    rebuilt = explorer.trained.reconstruct(explorer.gallery[3:4])[0, 0].numpy()
    assert np.abs(shown - rebuilt).max() <= 1 / 255 + 1e-6


def test_vae_axes_are_principal_directions_and_decode(explorers):
    client = create_app(explorers["vae"]).test_client()
    info = client.get("/api/info").get_json()
    assert info["axes_kind"] == "principal directions" and len(info["axes"]) == 6
    answer = client.post("/api/decode", json={"coords": [1, -1, 0.5, 0, 0, 2]})
    assert answer.status_code == 200 and png_size(answer.data) == (28, 28)


def test_interpolation_strip_has_one_image_per_step(client):
    answer = client.post("/api/interpolate", json={"a": 0, "b": 5, "steps": 7})
    assert answer.status_code == 200 and png_size(answer.data) == (2 + 7 * 30, 32)


@pytest.mark.parametrize(
    "path, body, code",
    [
        ("/api/decode", {"coords": [0, 0]}, 400),  # wrong size
        ("/api/decode", {"coords": [0, 0, "1"]}, 400),  # not a number
        ("/api/decode", {"coords": [0, 0, True]}, 400),
        ("/api/decode", {"coords": [0, 0, 1e300]}, 400),
        ("/api/decode", {"coords": "0,0,0"}, 400),
        ("/api/decode", [0, 0, 0], 400),  # not an object
        ("/api/interpolate", {"a": 0, "b": 40, "steps": 5}, 400),  # no such image
        ("/api/interpolate", {"a": 0, "b": 1, "steps": 1000}, 400),
        ("/api/interpolate", {"a": 0.5, "b": 1, "steps": 5}, 400),
        ("/api/interpolate", {"a": -1, "b": 1, "steps": 5}, 400),
    ],
)
def test_bad_requests_get_a_4xx_json_answer(client, path, body, code):
    answer = client.post(path, json=body)
    assert answer.status_code == code and answer.get_json()["error"]


def test_samples_come_from_a_fitted_sampler_with_their_codes_on_the_axes(trained_runs, tmp_path):
    import shutil

    from aegen import load

    run_dir = tmp_path / "run"
    shutil.copytree(trained_runs["ae"].run_dir, run_dir)
    for path in run_dir.glob("sampler-*.safetensors"):
        path.unlink()
    client = create_app(Explorer(load(run_dir))).test_client()
    assert client.get("/api/info").get_json()["samplers"] == ["prior"]
    answer = client.post("/api/sample", json={"sampler": "gaussian", "seed": 0})
    assert (
        answer.status_code == 400
        and "aegen sample RUN --sampler NAME" in answer.get_json()["error"]
    )

    load(run_dir).sampler("gaussian")  # fitted and saved, as `aegen sample` does
    explorer = Explorer(load(run_dir))
    client = create_app(explorer).test_client()
    assert client.get("/api/info").get_json()["samplers"] == ["prior", "gaussian"]
    answer = client.post("/api/sample", json={"sampler": "gaussian", "seed": 3})
    assert answer.status_code == 200
    body = answer.get_json()
    codes, _ = load(run_dir).draw_codes(16, 3, "gaussian", None)
    expected = explorer.axes.to_coords(codes).float()
    assert torch.allclose(torch.tensor(body["points"]), expected, atol=1e-5)
    assert body["image"].startswith("data:image/png;base64,")
    for bad in ({"sampler": "../config", "seed": 0}, {"sampler": "gaussian", "seed": -1}):
        assert client.post("/api/sample", json=bad).status_code == 400


def test_a_damaged_or_stale_sampler_file_is_a_json_answer_not_a_fit(trained_runs, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from aegen import load

    run_dir = tmp_path / "run"
    shutil.copytree(trained_runs["ae"].run_dir, run_dir)
    load(run_dir).sampler("gaussian")
    path = run_dir / "sampler-gaussian.safetensors"
    original = path.read_bytes()
    tensors = load_file(path)
    save_file(tensors, path, {"sampler": "gaussian", "model": "ae", "weights": "other"})
    answer = (
        create_app(Explorer(load(run_dir)))
        .test_client()
        .post("/api/sample", json={"sampler": "gaussian", "seed": 0})
    )
    assert answer.status_code == 409 and "aegen sample" in answer.get_json()["error"]
    assert path.read_bytes() != original  # left as it was: no fit inside the request
    path.write_bytes(original[:-8])  # truncated
    answer = (
        create_app(Explorer(load(run_dir)))
        .test_client()
        .post("/api/sample", json={"sampler": "gaussian", "seed": 0})
    )
    assert answer.status_code == 500 and "delete it" in answer.get_json()["error"]


def test_not_json_nan_huge_and_wrong_method_are_refused(client):
    assert client.post("/api/decode", data="coords=1", content_type="text/plain").status_code == 400
    assert (
        client.post(
            "/api/decode", data='{"coords": [NaN, 0, 0]}', content_type="application/json"
        ).status_code
        == 400
    )
    huge = b'{"coords": [' + b"0," * MAX_REQUEST_BYTES + b"0]}"
    assert client.post("/api/decode", data=huge, content_type="application/json").status_code == 413
    assert client.get("/api/decode").status_code == 405
    assert client.get("/no-such-page").status_code == 404
    assert (
        client.post("/api/decode", json={"coords": [0, 0, 0]}).status_code == 200
    )  # still serving


def test_the_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and b"aegen explore" in page.data and b"api/decode" in page.data


def test_a_taken_port_is_one_clear_line(capsys, trained_runs):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["explore", str(trained_runs["ae"].run_dir), "--port", str(port)])
    err = capsys.readouterr().err
    assert status == 2 and f"cannot listen on 127.0.0.1:{port}" in err


@pytest.mark.parametrize(
    "body",
    [
        "[" * 5000 + "]" * 5000,  # 10 KB, under the size limit: once a RecursionError and a 500
        '{"coords": ' + "[" * 5000 + "]" * 5000 + "}",
        "{" * 3000,
        '{"coords": [0, 0, 0]',  # cut short
        '{"coords": [0, 0, 1' + "0" * 5000 + "]}",  # an integer too long to convert
        "",
    ],
)
def test_malformed_or_deeply_nested_json_gets_a_4xx(client, body):
    answer = client.post("/api/decode", data=body, content_type="application/json")
    assert answer.status_code == 400 and answer.get_json()["error"]
    bad_utf8 = client.post(
        "/api/decode", data=b'{"coords": "\xff"}', content_type="application/json"
    )
    assert bad_utf8.status_code == 400


def test_brackets_inside_strings_do_not_count_as_nesting(client):
    answer = client.post("/api/decode", json={"coords": [0, 0, 0], "note": "[{" * 100 + '\\"'})
    assert answer.status_code == 200


def test_a_foreign_host_header_is_refused_the_servers_own_accepted(client):
    for host in ("evil.example:8765", "evil.example", "127.0.0.1.evil.example", "[::1"):
        answer = client.get("/api/info", headers={"Host": host})
        assert answer.status_code == 400 and "Host" in answer.get_json()["error"]
    assert client.post("/", headers={"Host": "evil.example"}).status_code == 400
    for host in ("127.0.0.1:8765", "localhost:9000", "[::1]:8765", "LOCALHOST"):
        assert client.get("/", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "header, host, allowed",
    [
        ("192.168.1.7:8765", "192.168.1.7", True),
        ("myhost.lan:8765", "MyHost.lan", True),
        ("192.168.1.8:8765", "192.168.1.7", False),
        ("evil.example", "192.168.1.7", False),
        ("192.168.1.7:8765", "0.0.0.0", True),  # all interfaces: any IP address
        ("[fe80::1]:8765", "::", True),
        (socket.gethostname() + ":8765", "0.0.0.0", True),
        ("evil.example:8765", "0.0.0.0", False),
        ("", "0.0.0.0", False),
    ],
)
def test_host_allow_list(header, host, allowed):
    assert host_is_allowed(header, host) is allowed


@pytest.fixture
def live_server(monkeypatch, trained_runs):
    """A real server on a free port with the given socket timeout and connection cap."""
    servers = []

    def start(timeout: float, connections: int = 32):
        monkeypatch.setattr(explore, "REQUEST_TIMEOUT_S", timeout)
        monkeypatch.setattr(explore, "MAX_CONNECTIONS", connections)
        server = make_server(trained_runs["ae"].run_dir, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.port

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def seconds_until_closed(port: int) -> float:
    """Connect, send nothing, and time how long the server keeps the connection open."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
        start = time.monotonic()
        assert silent.recv(1) == b""
        return time.monotonic() - start


def get(port: int, path: str, host: str | None = None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("GET", path, skip_host=host is not None)
    if host is not None:
        connection.putheader("Host", host)
    connection.endheaders()
    status = connection.getresponse().status
    connection.close()
    return status


def test_a_silent_connection_is_closed_after_the_timeout(live_server):
    port = live_server(timeout=0.5)
    assert seconds_until_closed(port) < 3
    assert get(port, "/") == 200  # still serving
    assert get(port, "/", host="evil.example") == 400


def test_connections_over_the_cap_are_closed_at_once(live_server):
    port = live_server(timeout=5, connections=2)
    threads = threading.active_count()
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    deadline = time.monotonic() + 5
    while threading.active_count() < threads + 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # until the server has a thread on each silent connection
    assert seconds_until_closed(port) < 2.5  # not after the 5 s timeout
    for connection in held:
        connection.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.7", "myhost.lan"])
def test_a_host_other_machines_can_reach_is_warned_about(host):
    warning = exposure_warning(host)
    assert warning and "\n" not in warning and "no authentication" in warning


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_a_loopback_host_gets_no_warning(host):
    assert exposure_warning(host) is None


def test_serve_prints_the_warning_to_stderr(monkeypatch, capsys):
    class StoppedAtOnce:
        port = 8765

        def serve_forever(self) -> None:
            raise KeyboardInterrupt

        def server_close(self) -> None:
            pass

    monkeypatch.setattr(explore, "make_server", lambda *args: StoppedAtOnce())
    serve(Path("run"), "0.0.0.0", 8765)
    printed = capsys.readouterr()
    assert printed.err.count("\n") == 1 and "reachable from other machines" in printed.err
    assert "http://0.0.0.0:8765/" in printed.out
