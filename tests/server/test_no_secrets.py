"""No secret reaches a log line, an error body, the metrics page, an operator's JSON or a repr.

The secrets: the Azure key of a deployment, a wrong Azure key configured for another (Azure
answers it 401), an Entra ID token, the virtual key, the keys a client sends that are almost
it, the admin key (and a wrong one), the key pepper and the URL-signing secret. The gateway runs
the way ``serve`` runs it (SQLite stores, write-behind ledger, the in-process emulator as Azure)
and is driven through success and every failure path that handles them: a generation over an
api-key and over an Entra token, 401s for wrong virtual and admin keys on both headers, Azure's
401 for a wrong key, a credential that fails with the token in its message, an unexpected
exception, a bad body. Every log record (any logger, DEBUG, formatted as the gateway writes
it, tracebacks included), every response body and header, ``/metrics``, ``/admin/status``,
``/admin/keys``, ``/readyz``, the audit log's JSON lines and the reprs of the objects an
operator or a traceback could print are searched for each secret. Configuration errors at
start-up are searched the same way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import imagegate.api
from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.emulator.config import parse_emulator_config
from imagegate.errors import ConfigError, StorageError
from imagegate.server.app import create_app
from imagegate.server.logconfig import JsonFormatter
from imagegate.server.preflight import preflight
from imagegate.server.settings import ServerSettings, settings_from_environ
from imagegate.stores.audit import event_to_json_line
from imagegate.stores.sql import open_sql_stores

AZURE_KEY = "azkey-SECRET-5f1c9a7e3b2d4c6a8e0f1a2b3c4d5e6f"
WRONG_AZURE_KEY = "azkey-SECRET-stale-0123456789abcdef0123456789ab"
ENTRA_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOi.ENTRA-SECRET-TOKEN.c2lnbmF0dXJl"
ADMIN_KEY = "admin-SECRET-7d8e9f0a1b2c3d4e5f6a7b8c"
PEPPER = "pepper-SECRET-0a9b8c7d6e5f4a3b2c1d"
URL_SECRET = "urlsig-SECRET-1234567890abcdef"
ENDPOINT = "http://emulator.imagegate.invalid"

EMULATOR = {
    "time_scale": 0,
    "deployments": [
        {"name": "east", "model": "gpt-image-1", "api_keys": [AZURE_KEY], "image_bytes": "small"},
        {"name": "swc", "model": "gpt-image-1", "entra": True, "api_keys": ["other"], "image_bytes": "small"},
    ],
}
CONFIG = f"""
deployments:
  - {{name: east, endpoint: {ENDPOINT}, model: gpt-image-1, api_key_env: AZ_EAST}}
  - {{name: stale, endpoint: {ENDPOINT}, deployment: east, model: gpt-image-1, api_key: {WRONG_AZURE_KEY}}}
  - {{name: swc, endpoint: {ENDPOINT}, model: gpt-image-1, auth: {{type: entra, client_id: good}}}}
  - {{name: swc-broken, endpoint: {ENDPOINT}, deployment: swc, model: gpt-image-1,
     auth: {{type: entra, client_id: broken}}}}
models:
  default: [east]
  stale: [stale]
  entra: [swc]
  entra-broken: [swc-broken]
routing:
  stale: {{fallbacks: []}}
  entra-broken: {{fallbacks: []}}
"""


class Credential:
    """azure-identity's shape: ``get_token(scope) -> (token, expires_on)``."""

    def __init__(self, broken: bool) -> None:
        self.broken = broken

    def get_token(self, *scopes: str) -> tuple[str, float]:
        if self.broken:  # a credential library whose error message quotes what it had
            raise RuntimeError(f"token endpoint refused the cached token {ENTRA_TOKEN}")
        return ENTRA_TOKEN, 4_102_444_800.0


@pytest.fixture
def entra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = imagegate.api.auth_for

    def auth_for(dep: Any, **_: Any) -> Any:
        return real(dep, credential_factory=lambda auth: Credential(broken=auth.client_id == "broken"))

    monkeypatch.setattr(imagegate.api, "auth_for", auth_for)


class Seen:
    """Everything an operator or a client could read, gathered as text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def response(self, r: httpx.Response) -> httpx.Response:
        self.texts.append(r.text)
        self.texts.extend(f"{k}: {v}" for k, v in r.headers.items())
        return r


@pytest.fixture
def logs() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler, level = Keep(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
async def gateway(
    tmp_path: Path, entra: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    emulator = create_emulator_app(parse_emulator_config(EMULATOR), time_scale=0)
    (tmp_path / "gw.yaml").write_text(CONFIG)
    config = load(tmp_path / "gw.yaml", {"AZ_EAST": AZURE_KEY})
    settings = settings_from_environ(
        {
            "IMAGEGATE_ADMIN_KEY": ADMIN_KEY,
            "IMAGEGATE_KEY_PEPPER": PEPPER,
            "IMAGEGATE_URL_SECRET": URL_SECRET,
            "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
            "IMAGEGATE_PROBE_TICK_S": "0",
        }
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url=ENDPOINT) as upstream:
        app = create_app(config, http_client=upstream, settings=settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://gw"
            ) as gw,
        ):
            yield gw, app


GEN = "/v1/images/generations"


async def test_no_secret_in_logs_bodies_metrics_or_reprs(
    gateway: tuple[httpx.AsyncClient, Any], logs: list[logging.LogRecord], tmp_path: Path
) -> None:
    gw, app = gateway
    seen = Seen()
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    created = seen.response(await gw.post("/admin/keys", json={"name": "team"}, headers=admin))
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    seen.texts.remove(created.text)  # the one place the key is shown, once, on purpose
    near = [key + "x", key[:-1], key.upper()]
    secrets = [AZURE_KEY, WRONG_AZURE_KEY, ENTRA_TOKEN, ADMIN_KEY, PEPPER, URL_SECRET, key, *near]

    body = {"prompt": "a red fox", "quality": "low"}
    ok = seen.response(await gw.post(GEN, json=body, headers={"api-key": key}))
    assert ok.status_code == 200 and ok.headers["x-imagegate-deployment"] == "east"
    over_entra = seen.response(await gw.post(GEN, json={**body, "model": "entra"}, headers={"api-key": key}))
    assert over_entra.status_code == 200 and over_entra.headers["x-imagegate-deployment"] == "swc"
    url = seen.response(await gw.post(GEN, json={**body, "response_format": "url"}, headers={"api-key": key}))
    assert url.status_code == 200
    for wrong in near:
        for header in ({"api-key": wrong}, {"authorization": f"Bearer {wrong}"}):
            assert seen.response(await gw.post(GEN, json=body, headers=header)).status_code == 401
    assert seen.response(await gw.get("/admin/keys", headers={"api-key": ADMIN_KEY + "x"})).status_code == 401
    stale = seen.response(await gw.post(GEN, json={**body, "model": "stale"}, headers={"api-key": key}))
    assert stale.status_code == 502 and "401" in stale.json()["error"]["message"], stale.text
    broken = seen.response(
        await gw.post(GEN, json={**body, "model": "entra-broken"}, headers={"api-key": key})
    )
    assert broken.status_code in (502, 503), broken.text
    assert (
        seen.response(await gw.post(GEN, content=b"{not json", headers={"api-key": key})).status_code == 400
    )

    for path in ("/metrics", "/readyz", "/admin/status", "/admin/keys", "/openapi.json"):
        assert seen.response(await gw.get(path, headers=admin)).status_code == 200, path
    state = app.state.gateway
    seen.texts += [repr(state), repr(state.images), repr(state.images.governance), repr(app.state)]
    seen.texts += [
        repr(ServerSettings(admin_key=ADMIN_KEY, key_pepper=PEPPER, url_secret=URL_SECRET.encode()))
    ]
    seen.texts += [repr(load(tmp_path / "gw.yaml", {"AZ_EAST": AZURE_KEY}))]

    await _unexpected_exception(gw, app, key, seen)

    stores = await open_sql_stores(
        f"sqlite+aiosqlite:///{tmp_path / 'data' / 'imagegate.db'}", run_migrations=False
    )
    try:
        await state.images.governance.ledger.entries()  # reads flush the write-behind first
        seen.texts += [event_to_json_line(e).decode() async for e in stores.audit.export()]
        seen.texts += [repr(e) for e in await stores.ledger.entries()]
    finally:
        await stores.aclose()

    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in logs]
    assert any("upstream" in line and "401" in line for line in lines), "expected the upstream 401 logged"
    everything = "\n".join([*lines, *seen.texts])
    for secret in secrets:
        assert secret not in everything, f"a secret ({secret[:12]}...) leaked"


async def _unexpected_exception(gw: httpx.AsyncClient, app: Any, key: str, seen: Seen) -> None:
    """A bug deep in the request path, whose message happens to hold the key: a 500 with only
    the request id; the traceback is logged (its message too), so the key must not be in it."""
    service = app.state.gateway.images
    original = service.backend.generate

    async def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug while handling the request; credentials were <redacted>")

    service.backend.generate = explode
    try:
        r = seen.response(
            await gw.post(GEN, json={"prompt": "x", "quality": "low"}, headers={"api-key": key})
        )
        assert r.status_code == 500 and r.json()["error"]["request_id"]
    finally:
        service.backend.generate = original


def test_configuration_errors_never_show_a_key(tmp_path: Path) -> None:
    """A key written where a string cannot be read (a number, a list, a mapping) was echoed in
    the start-up error (``api_key: ['sk-...'] is not a non-empty string``)."""
    digits = "31415926535897932384626433832795"  # an all-hex-digit key YAML reads as a number
    for value, shown in (
        (digits, digits),
        (f"[{AZURE_KEY}]", AZURE_KEY),
        (f"{{key: {AZURE_KEY}}}", AZURE_KEY),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(
            f"deployments:\n  - {{name: a, endpoint: https://a, model: gpt-image-1, api_key: {value}}}\n"
        )
        with pytest.raises(ConfigError) as info:
            load(path, {})
        assert "api_key" in str(info.value)
        assert shown not in str(info.value)
    path.write_text("deployments:\n  - {name: a, endpoint: notaurl, model: nope, api_key_env: AZ}\n")
    with pytest.raises(ConfigError) as info:
        load(path, {"AZ": AZURE_KEY})
    assert AZURE_KEY not in str(info.value) and len(info.value.problems) == 2
    with pytest.raises(ConfigError) as info:
        settings_from_environ({"IMAGEGATE_URL_SECRET": "short-SECRET", "IMAGEGATE_ADMIN_KEY": ADMIN_KEY})
    assert "short-SECRET" not in str(info.value) and ADMIN_KEY not in str(info.value)


async def test_start_up_errors_never_show_the_database_password(tmp_path: Path) -> None:
    for url in ("postgresql+asyncpg://gate:db-SECRET-pw@127.0.0.1:1/x", "mysql://gate:db-SECRET-pw@h/x"):
        with pytest.raises((StorageError, ConfigError)) as info:
            await preflight({"IMAGEGATE_DATABASE_URL": url, "IMAGEGATE_DATA_DIR": str(tmp_path)}, "127.0.0.1")
        assert "db-SECRET-pw" not in str(info.value)
