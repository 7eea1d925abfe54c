"""The content filter: Azure's content_policy_violation body, the moderation_blocked style, the
output-stage variant (billed), DALL·E 3 annotations, and chat's content_filter."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emulator.schemas import DALLE_ERROR_RESPONSE, check
from emulator.support import KEY, AppFactory, gen_url
from imagegate.emulator import DeploymentSpec, EmulatorConfig
from imagegate.emulator.config import BlockTerm


async def stats(c: httpx.AsyncClient, name: str) -> dict[str, Any]:
    result: dict[str, Any] = (await c.get(f"/_emulator/deployments/{name}")).json()["counters"]
    return result


async def test_prompt_filter_azure_style_for_dalle3(client: httpx.AsyncClient) -> None:
    r = await client.post(
        gen_url("dall-e-3", "2024-10-21"), headers=KEY, json={"prompt": "A MASSACRE at dawn"}
    )
    assert r.status_code == 400
    body = r.json()
    check(DALLE_ERROR_RESPONSE, body)
    error = body["error"]
    assert (error["code"], error["type"]) == ("content_policy_violation", "invalid_request_error")
    inner = error["inner_error"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_results"]["violence"] == {"filtered": True, "severity": "high"}
    assert inner["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}
    assert inner["revised_prompt"].endswith("A MASSACRE at dawn")
    assert (await stats(client, "dall-e-3"))["images_billed"] == 0


async def test_prompt_filter_azure_style_for_gpt_image_1_has_no_revised_prompt(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(gen_url(), headers=KEY, json={"prompt": "thoughts of suicide", "quality": "low"})
    inner = r.json()["error"]["inner_error"]
    assert "revised_prompt" not in inner
    assert inner["content_filter_results"]["self_harm"] == {"filtered": True, "severity": "medium"}


async def test_moderation_style_is_the_default_for_gpt_image_2(client: httpx.AsyncClient) -> None:
    r = await client.post(gen_url("gpt-image-2"), headers=KEY, json={"prompt": "genocide", "quality": "low"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["code"], error["type"], error["param"]) == (
        "moderation_blocked",
        "image_generation_user_error",
        "",
    )
    assert "safety_violations=[hate]" in error["message"]
    assert error["moderation_details"] == {"moderation_stage": "input", "categories": ["hate"]}


async def test_output_filter_passes_the_prompt_and_bills(client: httpx.AsyncClient) -> None:
    r = await client.post(gen_url(), headers=KEY, json={"prompt": "a gore scene", "quality": "low"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["message"] == "Generated image was filtered as a result of our safety system."
    assert error["inner_error"]["content_filter_results"]["violence"]["filtered"] is True
    counters = await stats(client, "gpt-image-1")
    assert counters["images_billed"] == 1 and counters["tokens_billed"]["image_output"] == 272
    assert counters["requests"]["by_outcome"] == {"content_filtered": 1}


async def test_configured_style_and_blocklist(make_app: AppFactory) -> None:
    cfg = EmulatorConfig(
        deployments=(
            DeploymentSpec(
                name="m",
                model="gpt-image-1",
                content_filter_style="moderation",
                blocklist=(
                    BlockTerm(term="pineapple pizza", category="hate", severity="low", stage="output"),
                ),
            ),
        )
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(cfg)), base_url="http://e") as c:
        ok = await c.post(gen_url("m"), headers=KEY, json={"prompt": "massacre", "quality": "low"})
        assert ok.status_code == 200  # the default list is replaced
        r = await c.post(gen_url("m"), headers=KEY, json={"prompt": "Pineapple Pizza!", "quality": "low"})
        assert r.status_code == 400
        assert r.json()["error"]["moderation_details"] == {
            "moderation_stage": "output",
            "categories": ["hate"],
        }


@pytest.mark.parametrize("prompt", ["nudes", "suicidesque", "gorey"])
async def test_terms_match_whole_words_only(client: httpx.AsyncClient, prompt: str) -> None:
    r = await client.post(gen_url(), headers=KEY, json={"prompt": prompt, "quality": "low"})
    assert r.status_code == 200


async def test_chat_prompt_filter(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        headers=KEY,
        json={"messages": [{"role": "user", "content": "describe a beheading"}]},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "content_filter" and error["param"] == "prompt"
    assert error["innererror"]["content_filter_result"]["violence"] == {"filtered": True, "severity": "high"}
