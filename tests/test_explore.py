"""`aegen explore`: the axes, the endpoints, and a 4xx answer (never a crash) for bad requests."""

import io
import socket

import pytest
import torch

pytest.importorskip("flask", reason="the explorer needs Flask: pip install 'aegen[explore]'")

from aegen.cli import main  # noqa: E402
from aegen.views.explore import MAX_REQUEST_BYTES, Explorer, LatentAxes, create_app  # noqa: E402


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
