"""``imagegate keys``, ``costs`` and ``audit export`` against a real SQLite file."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from imagegate.cli.main import app
from imagegate.policy.budget import BudgetSpec, Period
from imagegate.ports import EntryKind, LedgerEntry
from imagegate.stores.migrate import head_revision
from imagegate.stores.sql import open_sql_stores


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'gov.db'}"


def invoke(args: list[str], db: str, pepper: str = "pep") -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env={"IMAGEGATE_DATABASE_URL": db, "IMAGEGATE_KEY_PEPPER": pepper})
    return result.exit_code, result.stdout, result.stderr


def test_keys_create_list_revoke_and_audit(db: str) -> None:
    code, out, err = invoke(
        [
            "keys",
            "create",
            "--name",
            "team-a",
            "--models",
            "gpt-image-1",
            "--rpm",
            "30",
            "--budget-usd",
            "100",
            "--period",
            "month",
            "--max-quality",
            "high",
            "--max-n",
            "4",
        ],
        db,
    )
    assert code == 0, err
    plaintext = out.strip()
    assert plaintext.startswith("ig-") and "only time the key is shown" in err

    async def check() -> tuple[str, Decimal]:
        stores = await open_sql_stores(db, pepper=b"pep")
        try:
            record = await stores.keys.authenticate(plaintext)
            assert record is not None and record.scope.rpm == 30 and record.scope.max_n == 4
            budget = record.budget()
            assert budget == BudgetSpec(f"key:{record.id}", Decimal(100), Period.MONTH)
            r = await stores.budgets.reserve([budget], Decimal("1.5"), datetime.now(UTC))
            await stores.budgets.settle(r.id, Decimal("1.25"), datetime.now(UTC))
            return record.id, record.scope.budget_usd or Decimal(0)
        finally:
            await stores.aclose()

    key_id, _ = asyncio.run(check())
    code, listed, _ = invoke(["keys", "list"], db)
    assert code == 0 and key_id in listed and "team-a" in listed and plaintext[:7] in listed
    assert "$1.2500" in listed
    code, listed_json, _ = invoke(["keys", "list", "--json"], db)
    [row] = orjson.loads(listed_json)
    assert row["budget"] == "$100/month" and row["status"] == "active" and row["models"] == "gpt-image-1"

    code, _, err = invoke(["keys", "revoke", "team-a"], db)
    assert code == 0 and key_id in err
    assert orjson.loads(invoke(["keys", "list", "--json"], db)[1]) == []
    assert orjson.loads(invoke(["keys", "list", "--json", "--all"], db)[1])[0]["status"] == "revoked"

    code, exported, err = invoke(["audit", "export"], db)
    events = [orjson.loads(line) for line in exported.splitlines()]
    assert [e["action"] for e in events] == ["key.create", "key.revoke"]
    assert events[0]["details"]["rpm"] == 30 and events[0]["actor_kind"] == "admin"
    assert "exported 2 audit event(s)" in err
    secret = plaintext[3:]
    assert all(secret not in text for text in (listed, listed_json, exported))


def test_bad_input_exits_2_naming_the_field(db: str) -> None:
    code, _, err = invoke(["keys", "create", "--name", "x", "--max-quality", "ultra"], db)
    assert code == 2 and "--max-quality" in err and "'ultra'" in err
    code, _, err = invoke(["keys", "create", "--name", "x", "--budget-usd", "lots"], db)
    assert code == 2 and "--budget-usd" in err
    code, _, err = invoke(["keys", "create", "--name", "x", "--max-n", "0"], db)
    assert code == 2 and "--max-n=0" in err
    code, _, err = invoke(["keys", "create", "--name", "x", "--rpm", "-3"], db)
    assert code == 2 and "--rpm=-3" in err
    code, _, err = invoke(["keys", "revoke", "nobody"], db)
    assert code == 1 and "nobody" in err
    code, _, err = invoke(["costs", "--by", "colour"], db)
    assert code == 2 and "--by" in err and "deployment" in err
    code, _, err = invoke(["costs", "--since", "yesterday-ish"], db)
    assert code == 2 and "--since" in err


def seed_ledger(db: str) -> None:
    now = datetime.now(UTC)

    async def seed() -> None:
        stores = await open_sql_stores(db)
        try:
            for rid, model, cost, dep in [
                ("r1", "gpt-image-1", "0.04", "swe"),
                ("r2", "dall-e-3", "0.08", "eus"),
                ("r3", "gpt-image-1", "0.01109", "eus"),
            ]:
                common = {
                    "request_id": rid,
                    "started_at": now - timedelta(minutes=5),
                    "status": "ok",
                    "cost_usd": Decimal(cost),
                    "cost_exact": True,
                    "key_id": "key_x",
                    "logical_model": model,
                }
                await stores.ledger.record(LedgerEntry(kind=EntryKind.REQUEST, **common))  # type: ignore[arg-type]
                await stores.ledger.record(LedgerEntry(kind=EntryKind.ATTEMPT, deployment=dep, **common))  # type: ignore[arg-type]
        finally:
            await stores.aclose()

    asyncio.run(seed())


def test_costs_formats(db: str) -> None:
    seed_ledger(db)
    code, out, err = invoke(["costs", "--by", "model", "--format", "csv"], db)
    assert code == 0, err
    assert out.splitlines() == [
        "model,requests,images,cost_usd,estimated",
        "dall-e-3,1,1,0.08,0",
        "gpt-image-1,2,2,0.05109,0",
    ]
    code, out, _ = invoke(
        ["costs", "--by", "deployment", "--format", "json", "--since", "1h", "--tier", "0=10"], db
    )
    data = orjson.loads(out)
    assert {r["group"]: r["cost_usd"] for r in data["rows"]} == {"eus": "0.09109", "swe": "0.04"}
    assert data["total_usd"] == "0.13109"
    p = data["projection"]
    assert Decimal(p["month_to_date_usd"]) == Decimal("0.13109")
    assert Decimal(p["projected_discounted_usd"]) <= Decimal(p["projected_list_usd"])
    code, out, _ = invoke(["costs", "--by", "key"], db)
    assert code == 0 and "key_x" in out and "0.1311" in out and "projected $" in out
    code, out, _ = invoke(["costs", "--format", "csv", "--since", "2999-01-01"], db)
    assert out.splitlines() == ["key,requests,images,cost_usd,estimated"]


def test_keys_update_changes_budget_and_is_audited(db: str) -> None:
    code, _, err = invoke(["keys", "create", "--name", "team-b", "--rpm", "5", "--budget-usd", "10"], db)
    assert code == 0, err
    code, _, err = invoke(["keys", "update", "team-b", "--budget-usd", "25", "--period", "week"], db)
    assert code == 0, err
    assert "budget=$25/week" in err and "rpm=5" in err
    code, _, err = invoke(["keys", "update", "team-b", "--rpm", "0", "--models", "gpt-image-1,dall-e-3"], db)
    assert code == 0 and "rpm=None" in err
    [row] = orjson.loads(invoke(["keys", "list", "--json"], db)[1])
    assert row["budget"] == "$25/week" and row["rpm"] is None and row["models"] == "gpt-image-1,dall-e-3"
    actions = [orjson.loads(line)["action"] for line in invoke(["audit", "export"], db)[1].splitlines()]
    assert actions == ["key.create", "budget.set", "key.update"]
    code, _, err = invoke(["keys", "update", "team-b", "--period", "fortnight"], db)
    assert code == 2 and "--period" in err


def test_keys_update_of_the_period_counts_what_the_key_spent_in_it(db: str) -> None:
    """`keys update --period`: the new period's window counts the key's spend since it began
    (its ledger rows), not only what the windows of the old period happened to share with it."""
    code, _, err = invoke(["keys", "create", "--name", "team-c", "--budget-usd", "1", "--period", "day"], db)
    assert code == 0, err
    [row] = orjson.loads(invoke(["keys", "list", "--json"], db)[1])
    now = datetime.now(UTC)

    async def spend() -> None:
        stores = await open_sql_stores(db)
        try:
            for rid, days_ago, cost in (("r1", 40, "0.30"), ("r2", 0, "0.05")):
                await stores.ledger.record(
                    LedgerEntry(
                        EntryKind.REQUEST, rid, now - timedelta(days=days_ago, minutes=1), "ok",
                        cost_usd=Decimal(cost), key_id=row["id"],
                    )
                )  # fmt: skip
        finally:
            await stores.aclose()

    asyncio.run(spend())
    code, _, err = invoke(["keys", "update", "team-c", "--period", "total", "--budget-usd", "2"], db)
    assert code == 0, err
    [row] = orjson.loads(invoke(["keys", "list", "--json"], db)[1])
    assert row["budget"] == "$2/total" and row["spent"].startswith("$0.3500 ")


def test_data_dir_is_shared_with_the_gateway_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"IMAGEGATE_DATABASE_URL": "", "IMAGEGATE_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(app, ["keys", "create", "--name", "x"], env=env)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "data" / "imagegate.db").exists() and not (tmp_path / ".imagegate").exists()


def test_db_upgrade_and_sweep(db: str) -> None:
    code, _, err = invoke(["db", "upgrade"], db)
    assert code == 0 and f"database at revision {head_revision()}" in err
    code, _, err = invoke(["db", "sweep"], db)
    assert code == 0 and "released 0 stale budget hold(s); purged 0 expired idempotency key(s)" in err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["costs", "--until", "garbage"], "--until='garbage'"),
        (["costs", "--since", "99999999999d"], "--since='99999999999d'"),
        (["audit", "export", "--since", "99999999999h"], "--since='99999999999h'"),
        (["costs", "--tier", "1000=150"], "--tier='1000=150'"),
        (["costs", "--tier", "inf=5"], "--tier='inf=5'"),
        (["costs", "--tier", "garbage"], "--tier='garbage'"),
    ],
)
def test_bad_times_and_tiers_exit_2_naming_the_option_and_the_value(
    args: list[str], named: str, db: str
) -> None:
    code, _, err = invoke(args, db)
    assert code == 2, err
    assert named in err and "Traceback" not in err


CONFIG = """
models:
  cheap: [swc]
deployments:
  - name: swc
    endpoint: https://swc.openai.azure.com
    model: gpt-image-1
    api_key_env: SWC_KEY
"""
SERVED = ("cheap", "swc", "gpt-image-1", "default")  # logical, deployment, catalog model, default


def invoke_with_config(args: list[str], db: str, config: Path | None) -> tuple[int, str, str]:
    env = {
        "IMAGEGATE_DATABASE_URL": db,
        "IMAGEGATE_CONFIG": None if config is None else str(config),
        "AZURE_OPENAI_ENDPOINT": None,
        "SWC_KEY": "not-a-real-key",
    }
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("given", ["--config", "IMAGEGATE_CONFIG"])
def test_keys_refuse_a_model_the_configuration_does_not_serve(given: str, db: str, tmp_path: Path) -> None:
    # a typo used to be kept, and every request with the key was then a 403
    config = tmp_path / "imagegate.yaml"
    config.write_text(CONFIG)
    flag = ["--config", str(config)] if given == "--config" else []
    env_config = config if given == "IMAGEGATE_CONFIG" else None
    code, _, err = invoke_with_config(
        ["keys", "create", "--name", "x", "--models", "cheap,gpt-imgae-1", *flag], db, env_config
    )
    assert code == 2 and "--models='gpt-imgae-1' is not allowed" in err
    assert all(name in err for name in SERVED)
    assert orjson.loads(invoke_with_config(["keys", "list", "--json"], db, None)[1]) == []
    code, _, err = invoke_with_config(
        ["keys", "create", "--name", "x", "--models", ",".join(SERVED), *flag], db, env_config
    )
    assert code == 0 and "not checked" not in err
    code, _, err = invoke_with_config(["keys", "update", "x", "--models", "dall-e-3", *flag], db, env_config)
    assert code == 2 and "--models='dall-e-3' is not allowed" in err
    code, _, err = invoke_with_config(["keys", "update", "x", "--rpm", "5", *flag], db, env_config)
    assert code == 0 and "not checked" not in err
    [row] = orjson.loads(invoke_with_config(["keys", "list", "--json"], db, None)[1])
    assert row["models"] == ",".join(SERVED) and row["rpm"] == 5


def test_keys_without_a_configuration_take_any_model_and_say_it_was_not_checked(db: str) -> None:
    code, _, err = invoke_with_config(["keys", "create", "--name", "x", "--models", "gpt-imgae-1"], db, None)
    assert code == 0
    [note] = [line for line in err.splitlines() if "not checked" in line]
    assert "--models" in note and "--config" in note
    code, _, err = invoke_with_config(["keys", "update", "x", "--models", "dall-e-3"], db, None)
    assert code == 0 and "not checked" in err
    code, _, err = invoke_with_config(["keys", "create", "--name", "y"], db, None)
    assert code == 0 and "not checked" not in err  # no --models: nothing to check


def test_keys_with_a_configuration_that_does_not_load_here(db: str, tmp_path: Path) -> None:
    # the gateway's file names a secret this shell does not have: from the environment, the
    # names are not checked (said so); given with --config, its problems are the error
    config = tmp_path / "imagegate.yaml"
    config.write_text(CONFIG.replace("SWC_KEY", "UNSET_KEY_FOR_THIS_TEST"))
    code, _, err = invoke_with_config(["keys", "create", "--name", "x", "--models", "cheap"], db, config)
    assert code == 0
    [note] = [line for line in err.splitlines() if "not checked" in line]
    assert "UNSET_KEY_FOR_THIS_TEST" in note
    code, _, err = invoke_with_config(
        ["keys", "create", "--name", "y", "--models", "cheap", "--config", str(config)], db, None
    )
    assert code == 2 and "UNSET_KEY_FOR_THIS_TEST" in err
