"""``UpstreamHTTPClient.send``: straight to the transport when httpx's loop would do nothing,
httpx's own ``send`` (hooks, auth, redirects) otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from imagegate.upstream.transport import UpstreamHTTPClient


def _upstream(seen: list[httpx.Request]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/moved":
            return httpx.Response(307, headers={"location": "/images"})
        return httpx.Response(200, json={"path": request.url.path})

    return httpx.MockTransport(answer)


async def test_the_direct_path_reads_the_body_and_keeps_the_timeouts() -> None:
    seen: list[httpx.Request] = []
    async with UpstreamHTTPClient(transport=_upstream(seen), timeout=httpx.Timeout(7.0)) as client:
        response = await client.post("https://aoai.example/images", timeout=httpx.Timeout(3.0, read=9.0))
        assert response.json() == {"path": "/images"} and response.is_closed
        assert response.request is seen[0] and response.elapsed.total_seconds() >= 0
        assert seen[0].extensions["timeout"] == {"connect": 3.0, "read": 9.0, "write": 3.0, "pool": 3.0}
        # a request built by hand, without a timeout: the client's, as httpx's send would set
        bare = httpx.Request("POST", "https://aoai.example/images")
        assert (await client.send(bare)).status_code == 200
        assert seen[1].extensions["timeout"]["read"] == 7.0


async def test_a_redirect_is_an_answer_not_followed() -> None:
    seen: list[httpx.Request] = []
    async with UpstreamHTTPClient(transport=_upstream(seen)) as client:
        response = await client.post("https://aoai.example/moved")
    assert response.status_code == 307 and len(seen) == 1


async def test_a_stream_is_left_open_for_the_caller() -> None:
    async def pieces() -> AsyncIterator[bytes]:
        yield b"data: one\n\n"
        yield b"data: two\n\n"

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=pieces()))
    async with UpstreamHTTPClient(transport=transport) as client:
        request = client.build_request("POST", "https://aoai.example/images")
        response = await client.send(request, stream=True)
        assert not response.is_closed
        assert [line async for line in response.aiter_lines() if line] == ["data: one", "data: two"]
        assert response.is_closed


async def test_hooks_auth_and_redirects_still_go_through_httpx() -> None:
    seen: list[httpx.Request] = []
    heard: list[int] = []

    async def on_response(response: httpx.Response) -> None:
        heard.append(response.status_code)

    async with UpstreamHTTPClient(
        transport=_upstream(seen), event_hooks={"response": [on_response]}, auth=("user", "pass")
    ) as client:
        response = await client.post("https://aoai.example/moved", follow_redirects=True)
    assert response.status_code == 200 and response.json() == {"path": "/images"}
    assert heard == [307, 200]
    assert all(r.headers["authorization"].startswith("Basic ") for r in seen)


async def test_a_transport_error_names_its_request_and_a_closed_client_refuses() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")  # raised without a request, as some transports do

    client = UpstreamHTTPClient(transport=httpx.MockTransport(broken))
    with pytest.raises(httpx.ConnectError) as caught:
        await client.post("https://aoai.example/images")
    assert caught.value.request.url == "https://aoai.example/images"
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.post("https://aoai.example/images")


def _same(a: httpx.Request, b: httpx.Request) -> None:
    assert (a.method, a.url, a.headers.raw, a.content, a.extensions) == (
        b.method,
        b.url,
        b.headers.raw,
        b.content,
        b.extensions,
    )


async def test_built_requests_are_what_httpx_builds() -> None:
    settings: dict[str, object] = {"headers": {"accept-encoding": "identity"}, "timeout": httpx.Timeout(5.0)}
    ours, theirs = UpstreamHTTPClient(**settings), httpx.AsyncClient(**settings)  # type: ignore[arg-type]
    url = httpx.URL(
        "https://aoai.example/openai/deployments/d/images/generations", params={"api-version": "v"}
    )
    headers = {"content-type": "application/json", "api-key": "k-1"}
    async with ours, theirs:
        for timeout in (httpx.Timeout(3.0, read=9.0), httpx.USE_CLIENT_DEFAULT):
            for _ in range(2):  # the second time from the kept merge
                kwargs = {"headers": headers, "content": b'{"prompt": "x"}', "timeout": timeout}
                _same(ours.build_request("POST", url, **kwargs), theirs.build_request("POST", url, **kwargs))  # type: ignore[arg-type]
        # a new key (a refreshed token) and a client header changed in place: merged afresh
        for client in (ours, theirs):
            client.headers["x-extra"] = "1"
        rotated = {**headers, "api-key": "k-2"}
        _same(
            ours.build_request("POST", url, headers=rotated),
            theirs.build_request("POST", url, headers=rotated),
        )
        assert ours.build_request("POST", url, headers=rotated).headers["x-extra"] == "1"
        # client-level query parameters are merged as httpx merges them
        with_params = {"params": {"trace": "1"}}
        async with UpstreamHTTPClient(**with_params) as p1, httpx.AsyncClient(**with_params) as p2:  # type: ignore[arg-type]
            assert (
                p1.build_request("POST", url, headers=headers).url
                == p2.build_request("POST", url, headers=headers).url
            )
        # anything else (a form, a string URL, params) is httpx's own build_request
        form = {"data": {"prompt": "x"}, "files": [("image", ("a.png", b"png", "image/png"))]}
        a = ours.build_request("POST", str(url), params={"q": "1"}, **form)  # type: ignore[arg-type]
        b = theirs.build_request("POST", str(url), params={"q": "1"}, **form)  # type: ignore[arg-type]
        assert (a.url, a.headers["content-type"].split(";")[0]) == (b.url, "multipart/form-data")
