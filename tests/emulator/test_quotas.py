"""Per-deployment rpm over short windows and the 429 Azure sends, with a fake clock."""

from __future__ import annotations

import httpx
from hypothesis import given
from hypothesis import strategies as st

from emulator.support import KEY, PREVIEW, AppFactory, FakeClock, gen_url
from imagegate.emulator import DeploymentSpec, EmulatorConfig
from imagegate.emulator.quotas import WindowQuota


async def test_window_quota_429_body_headers_and_recovery(make_app: AppFactory, clock: FakeClock) -> None:
    cfg = EmulatorConfig(deployments=(DeploymentSpec(name="img", model="gpt-image-1", rpm=12, window_s=10),))
    clock.now = 1000.0  # window [1000, 1010)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(cfg)), base_url="http://e") as c:
        body = {"prompt": "p", "quality": "low"}
        ok = [await c.post(gen_url("img"), headers=KEY, json=body) for _ in range(2)]
        assert [r.status_code for r in ok] == [200, 200]
        assert [r.headers["x-ratelimit-remaining-requests"] for r in ok] == ["1", "0"]
        clock.advance(3.5)
        limited = await c.post(gen_url("img"), headers=KEY, json=body)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "7"
        assert limited.headers["retry-after-ms"] == "7000"
        assert limited.json() == {
            "error": {
                "code": "429",
                "message": "Requests to the ImageGenerations_Create Operation under Azure OpenAI API "
                f"version {PREVIEW} have exceeded call rate limit of your current AIServices S0 pricing "
                "tier. Please retry after 7 seconds. Please contact Azure support service if you would "
                "like to further increase the default rate limit.",
            }
        }
        clock.advance(7)
        assert (await c.post(gen_url("img"), headers=KEY, json=body)).status_code == 200
        stats = (await c.get("/_emulator/deployments/img")).json()["counters"]
        assert stats["rate_limited"] == 1
        assert stats["images_billed"] == 3
        assert stats["requests"]["by_status"] == {"200": 3, "429": 1}


@given(
    per_window=st.integers(1, 20),
    window=st.sampled_from([1, 10]),
    gaps=st.lists(st.floats(0, 3, allow_nan=False), min_size=1, max_size=80),
)
def test_window_never_admits_more_than_its_allowance(per_window: int, window: int, gaps: list[float]) -> None:
    quota = WindowQuota(per_window, window, concurrency=10**6)
    now = 0.0
    admitted: dict[int, int] = {}
    for gap in gaps:
        now += gap
        answer = quota.admit(now)
        index = int(now // window)
        if answer.admitted:
            quota.release()
            admitted[index] = admitted.get(index, 0) + 1
            assert answer.remaining == per_window - admitted[index]
        else:
            # refused only when the window is full, and told to come back when it ends
            assert admitted.get(index, 0) == per_window
            assert 1 <= answer.retry_after_s <= window
            assert now + answer.retry_after_s >= (index + 1) * window
    assert all(n <= per_window for n in admitted.values())


def test_per_window_follows_rpm() -> None:
    assert DeploymentSpec(name="a", model="gpt-image-1", rpm=9, window_s=10).per_window == 1
    assert DeploymentSpec(name="a", model="gpt-image-1", rpm=600, window_s=1).per_window == 10
    assert DeploymentSpec(name="a", model="gpt-image-1", rpm=60, window_s=10).per_window == 10
    assert DeploymentSpec(name="a", model="gpt-image-1", rpm=1, window_s=1).per_window == 1


async def test_chat_and_edits_have_their_own_operation_in_the_429(make_app: AppFactory) -> None:
    cfg = EmulatorConfig(deployments=(DeploymentSpec(name="c", model="gpt-4o", rpm=6, window_s=10),))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(cfg)), base_url="http://e") as c:
        url = "/openai/deployments/c/chat/completions?api-version=2024-10-21"
        body = {"messages": [{"role": "user", "content": "hi"}]}
        assert (await c.post(url, headers=KEY, json=body)).status_code == 200
        r = await c.post(url, headers=KEY, json=body)
        assert r.status_code == 429
        assert (
            "ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21"
            in r.json()["error"]["message"]
        )
