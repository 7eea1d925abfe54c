"""The upstream client keeps no cookies: one client serves every tenant's requests."""

from __future__ import annotations

import httpx

from imagegate.upstream.transport import UpstreamHTTPClient, pooled_client


async def test_a_cookie_set_by_one_response_is_not_sent_with_the_next_request() -> None:
    seen: list[str | None] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "ARRAffinity=tenant-a; Path=/"}, json={})

    async with UpstreamHTTPClient(transport=httpx.MockTransport(upstream)) as client:
        for _ in range(2):
            response = await client.post("https://aoai.example/openai/deployments/d/images/generations")
            assert response.cookies["ARRAffinity"] == "tenant-a"  # the response still shows it
        client.cookies = {"set": "later"}  # type: ignore[assignment]
        client.cookies.set("direct", "x")
        await client.post("https://aoai.example/x")
        assert list(client.cookies.jar) == []
    assert seen == [None, None, None]


async def test_the_production_client_is_the_cookieless_one() -> None:
    client = pooled_client()
    try:
        assert isinstance(client, UpstreamHTTPClient)
    finally:
        await client.aclose()
