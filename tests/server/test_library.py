"""server/library.py: the budget estimate prices the request the pipeline will send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from imagegate.api import AsyncImageGate
from imagegate.config_load import load
from imagegate.errors import InvalidRequest
from imagegate.server.library import LibraryBackend
from imagegate.server.options import RequestOptions
from imagegate.types import ImageRequest

TRANSLATE = RequestOptions(translate=True)


@pytest.fixture
async def backend() -> AsyncIterator[LibraryBackend]:
    gate = AsyncImageGate(load(None, {}))  # the emulated deployments; estimating sends nothing
    try:
        yield LibraryBackend(gate)
    finally:
        await gate.aclose()


def _price(backend: LibraryBackend, **params: object) -> Decimal:
    return backend.estimate_usd(ImageRequest(prompt="a fox", **params))  # type: ignore[arg-type]


def test_a_translated_request_is_held_at_least_at_its_translated_price(backend: LibraryBackend) -> None:
    """`x-imagegate-translate: true` maps DALL-E 3 values; the estimate must not refuse them first,
    and the hold covers what the translated request is billed (a value translation maps is held
    at the model's most expensive, ``policy.pricing.reservation_estimate``)."""
    hd = backend.estimate_usd(
        ImageRequest(prompt="a fox", model="gpt-image-1", quality="hd"), options=TRANSLATE
    )
    assert hd >= _price(backend, model="gpt-image-1", quality="high") > 0
    wide = backend.estimate_usd(
        ImageRequest(prompt="a fox", model="dall-e-3", size="1536x1024", quality="low"), options=TRANSLATE
    )
    assert wide >= _price(backend, model="dall-e-3", size="1792x1024", quality="standard") > 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"model": "gpt-image-1", "n": -1}, "n"),  # was a negative hold: a 500
        ({"model": "gpt-image-1", "n": 2**40}, "n"),  # was a 429 "budget exceeded"
        ({"model": "gpt-image-2", "size": "99999999999999999999x16"}, "size"),  # the same
        ({"model": "gpt-image-1", "quality": "hd"}, "quality"),  # without translation
    ],
)
def test_a_request_validation_refuses_is_refused_before_it_is_priced(
    backend: LibraryBackend, params: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        _price(backend, **params)
    assert refused.value.field == field


def test_an_unknown_model_holds_nothing(backend: LibraryBackend) -> None:
    """The pipeline refuses a model nothing serves before anything is sent (a 400 naming
    ``model``, or Azure's 404 on its deployment routes); the hold is nothing, not an error here."""
    assert _price(backend, model="no-such-model") == 0


async def test_a_stream_from_a_model_that_does_not_stream_names_stream(backend: LibraryBackend) -> None:
    """The client sent ``stream: true`` and no ``partial_images``: the error is about ``stream``
    (it said ``partial_images=2 is not allowed``, a value the client never sent)."""
    items = backend.stream(ImageRequest(prompt="a fox", model="dall-e-3"), request_id="req_1")
    with pytest.raises(InvalidRequest) as refused:
        await anext(items)
    assert refused.value.field == "stream" and "dall-e-3" in str(refused.value)
