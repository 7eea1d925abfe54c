"""The rendered images: exact sizes and formats, realistic weight, transparency, determinism, the
PNG band splicer, and the prompt readable by OCR (tesseract)."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import zlib

import httpx
import pytest
from PIL import Image

from emulator.support import KEY, AppFactory, gen_url
from imagegate.emulator import DeploymentSpec, EmulatorConfig
from imagegate.emulator.png import BandCache, _adler_combine, encode_png
from imagegate.emulator.render import Renderer, RenderSpec


def decode(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


def ocr(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "PNG")
    done = subprocess.run(
        ["tesseract", "stdin", "stdout"], input=buf.getvalue(), capture_output=True, timeout=60
    )
    return done.stdout.decode("utf-8", "replace")


needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="tesseract-ocr not installed (make apt)"
)


@needs_tesseract
@pytest.mark.parametrize(("size", "fmt"), [("1024x1024", "png"), ("1536x1024", "jpeg")])
async def test_prompt_is_readable_by_ocr(client: httpx.AsyncClient, size: str, fmt: str) -> None:
    prompt = "a red fox jumping over a lazy dog"
    r = await client.post(
        gen_url(), headers=KEY, json={"prompt": prompt, "size": size, "output_format": fmt, "quality": "low"}
    )
    text = " ".join(ocr(decode(r.json()["data"][0]["b64_json"])).split()).lower()
    assert prompt in text


@pytest.mark.parametrize(
    ("deployment", "version", "body", "size", "fmt"),
    [
        ("gpt-image-1", "2025-04-01-preview", {"size": "1024x1536"}, (1024, 1536), "PNG"),
        ("gpt-image-1", "2025-04-01-preview", {"output_format": "jpeg"}, (1024, 1024), "JPEG"),
        ("gpt-image-2", "2025-04-01-preview", {"size": "2048x1152"}, (2048, 1152), "PNG"),
        ("gpt-image-2", "2025-04-01-preview", {"size": "512x1536"}, (512, 1536), "PNG"),
        ("dall-e-3", "2024-10-21", {"size": "1792x1024", "response_format": "b64_json"}, (1792, 1024), "PNG"),
    ],
)
async def test_sizes_and_formats(
    client: httpx.AsyncClient,
    deployment: str,
    version: str,
    body: dict[str, str],
    size: tuple[int, int],
    fmt: str,
) -> None:
    if deployment.startswith("gpt"):
        body = {**body, "quality": "low"}
    r = await client.post(gen_url(deployment, version), headers=KEY, json={"prompt": "sized", **body})
    assert r.status_code == 200, r.text
    img = decode(r.json()["data"][0]["b64_json"])
    assert (img.size, img.format) == (size, fmt)


async def test_transparent_background(client: httpx.AsyncClient) -> None:
    r = await client.post(
        gen_url(), headers=KEY, json={"prompt": "glass", "background": "transparent", "quality": "low"}
    )
    img = decode(r.json()["data"][0]["b64_json"])
    assert img.mode == "RGBA"
    assert img.getpixel((5, 5))[3] == 0  # background
    alphas = img.getchannel("A").getextrema()
    assert alphas == (0, 255)  # the text is opaque


async def test_realistic_and_small_weights(make_app: AppFactory) -> None:
    cfg = EmulatorConfig(
        deployments=(
            DeploymentSpec(name="real", model="gpt-image-1"),
            DeploymentSpec(name="small", model="gpt-image-1", image_bytes="small"),
        )
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(cfg)), base_url="http://e") as c:
        sizes = {}
        for name in ("real", "small"):
            r = await c.post(gen_url(name), headers=KEY, json={"prompt": "weight", "quality": "low"})
            sizes[name] = len(base64.b64decode(r.json()["data"][0]["b64_json"]))
    assert 1_000_000 <= sizes["real"] <= 2_500_000
    assert sizes["small"] < 100_000


def test_n_images_differ_and_repeat() -> None:
    r = Renderer()
    a0, a1 = (r.b64(RenderSpec("same prompt", 256, 256, index=i)) for i in (0, 1))
    assert a0 != a1
    assert (
        Renderer().b64(RenderSpec("same prompt", 256, 256, index=0)) == a0
    )  # deterministic across instances
    assert r.hits == 0 and r.b64(RenderSpec("same prompt", 256, 256, index=0)) == a0 and r.hits == 1


def test_png_band_splicing_decodes_to_the_same_pixels() -> None:
    img = Image.effect_noise((300, 200), 60).convert("RGB")
    cache = BandCache(10_000_000)
    keys: list[object] = ["k0", None, "k2", "k3"]
    first = encode_png(img, band_rows=64, band_keys=keys, cache=cache)  # type: ignore[arg-type]
    second = encode_png(img, band_rows=64, band_keys=keys, cache=cache)  # type: ignore[arg-type]
    for data in (first, second):
        back = Image.open(io.BytesIO(data))
        back.load()
        assert back.tobytes() == img.tobytes()
    rgba = img.convert("RGBA")
    assert Image.open(io.BytesIO(encode_png(rgba))).convert("RGBA").tobytes() == rgba.tobytes()


def test_adler_combine_matches_zlib() -> None:
    a, b = b"abc" * 5000, bytes(range(256)) * 300
    assert _adler_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)
