"""Per-deployment rpm over short windows and the 429 Azure sends, with a fake clock."""

from __future__ import annotations

import httpx

from emulator.support import KEY, PREVIEW, AppFactory, FakeClock, gen_url
from imagegate.emulator import DeploymentSpec, EmulatorConfig


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
