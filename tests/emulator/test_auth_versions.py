"""Auth (api-key, Entra bearer, key as bearer on v1), unknown deployments, api-versions and
unsupported operations, with Azure's bodies."""

from __future__ import annotations

import httpx
import pytest

from emulator.support import KEY, gen_url

BODY = {"prompt": "p", "quality": "low"}
UNAUTHORIZED = {
    "error": {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API endpoint for your "
        "resource.",
    }
}


@pytest.mark.parametrize(
    ("url", "headers", "status"),
    [
        (gen_url(), {"api-key": "emulator-key"}, 200),
        (gen_url(), {"api-key": "wrong"}, 401),
        (gen_url(), {}, 401),
        (gen_url(), {"authorization": "Bearer emulator-key"}, 401),  # key as bearer only on v1
        (gen_url(), {"authorization": "Bearer some.entra.token"}, 401),  # not an Entra deployment
        (gen_url("gpt-image-1-swc"), {"authorization": "Bearer some.entra.token"}, 200),
        (gen_url("gpt-image-1-swc"), {"authorization": "Basic abc"}, 401),
        (gen_url("nope"), {"api-key": "wrong"}, 401),  # credentials before the deployment lookup
        (gen_url("nope"), {"api-key": "emulator-key"}, 404),
    ],
)
async def test_auth_matrix(client: httpx.AsyncClient, url: str, headers: dict[str, str], status: int) -> None:
    r = await client.post(url, headers=headers, json=BODY)
    assert r.status_code == status, r.text
    bearer = headers.get("authorization", "").startswith("Bearer ")
    if status == 401 and not bearer:
        assert r.json() == UNAUTHORIZED
        assert "apim-request-id" in r.headers
    if status == 401 and bearer:
        assert r.json()["error"]["code"] == "401"
        assert r.json()["error"]["message"].startswith("Unauthorized. Access token is missing, invalid")
    if status == 404:
        assert r.json()["error"]["code"] == "DeploymentNotFound"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"authorization": "Bearer emulator-key"}, 200),
        ({"api-key": "emulator-key"}, 200),
        ({"authorization": "Bearer token"}, 401),
    ],
)
async def test_v1_auth(client: httpx.AsyncClient, headers: dict[str, str], status: int) -> None:
    r = await client.post(
        "/openai/v1/images/generations", headers=headers, json={"model": "gpt-image-1", **BODY}
    )
    assert r.status_code == status


async def test_v1_entra_token_on_entra_deployment(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/openai/v1/images/generations",
        headers={"authorization": "Bearer eyJ.x.y"},
        json={"model": "gpt-image-1-swc", **BODY},
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("/openai/deployments/gpt-image-1/images/generations", 404, "404"),
        (gen_url(version="2099-01-01"), 404, "404"),
        (gen_url(version="2024-10-21"), 400, "OperationNotSupported"),
        (gen_url("dall-e-3", "2023-06-01-preview"), 400, "OperationNotSupported"),
        (gen_url("gpt-4o"), 400, "OperationNotSupported"),
        ("/openai/v1/images/generations?api-version=2025-04-01-preview", 400, "BadRequest"),
        ("/openai/v1/images/generations?api-version=latest", 200, None),
        (
            "/openai/deployments/gpt-image-1/chat/completions?api-version=2024-10-21",
            400,
            "OperationNotSupported",
        ),
        ("/openai/deployments/gpt-image-1/embeddings?api-version=2024-10-21", 404, "404"),
        ("/openai/images/generations?api-version=2025-04-01-preview", 404, "404"),
    ],
)
async def test_versions_and_operations(
    client: httpx.AsyncClient, url: str, status: int, code: str | None
) -> None:
    r = await client.post(url, headers=KEY, json={"model": "gpt-image-1", **BODY} if "/v1/" in url else BODY)
    assert r.status_code == status, r.text
    if code is not None:
        assert r.json()["error"]["code"] == code


async def test_wrong_method_is_json(client: httpx.AsyncClient) -> None:
    r = await client.get(gen_url(), headers=KEY)
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "405"
    assert r.headers["apim-request-id"] and r.headers["x-ms-region"]
    r = await client.post("/openai/deployments/x/embeddings?api-version=2024-10-21", headers=KEY)
    assert r.status_code == 404 and r.headers["apim-request-id"]


async def test_v1_needs_model(client: httpx.AsyncClient) -> None:
    r = await client.post("/openai/v1/images/generations", headers=KEY, json=BODY)
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = await client.post("/openai/v1/images/generations", headers=KEY, json={"model": "ghost", **BODY})
    assert r.status_code == 404 and r.json()["error"]["code"] == "DeploymentNotFound"


async def test_every_response_carries_ids_and_region(client: httpx.AsyncClient) -> None:
    for r in (
        await client.post(gen_url(), headers=KEY, json=BODY),
        await client.post(gen_url(), headers=KEY, json={}),
        await client.post(
            gen_url("dall-e-3", "2024-10-21"),
            headers={**KEY, "x-ms-client-request-id": "c1"},
            json={"prompt": "p"},
        ),
    ):
        assert r.headers["apim-request-id"] == r.headers["x-request-id"]
        assert r.headers["x-ms-region"]
        assert "x-ratelimit-remaining-requests" in r.headers
    assert r.headers["x-ms-region"] == "East US"
    assert r.headers["x-ms-client-request-id"] == "c1"
