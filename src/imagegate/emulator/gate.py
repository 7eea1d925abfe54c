"""What every emulated call goes through before the model runs, in Azure's order: credentials,
deployment lookup, api-version, operation support, scripted refusals, then the quota. Also the
headers every response carries and the bookkeeping when a call ends.

Order ([I], also in docs/emulator.md): auth (401) -> deployment (404) -> api-version (404/400) ->
operation (400) -> scripted refusal (fault) -> quota (429) -> body and parameters (400) ->
content filter (400) -> model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from imagegate.emulator import azure_errors as errors
from imagegate.emulator.auth import check_deployment, check_resource
from imagegate.emulator.azure_errors import AzureError
from imagegate.emulator.config import FaultSpec
from imagegate.emulator.delivery import Sleep
from imagegate.emulator.faults import FaultPlan
from imagegate.emulator.models import KNOWN_API_VERSIONS, V1_API_VERSIONS
from imagegate.emulator.reply import Reply, json_reply, new_request_id
from imagegate.emulator.state import DeploymentState, EmulatorState, region_display

OPERATIONS = {
    "generations": ("ImageGenerations_Create", "imagesGenerate"),
    "edits": ("ImageGenerations_Edit", "imagesEdit"),
    "chat": ("ChatCompletions_Create", "chatCompletion"),
}


@dataclass(slots=True)
class Call:
    """One request in flight: ids, the deployment once known, the fault plan, and whether it holds
    a concurrency slot."""

    state: EmulatorState
    request: Request
    route: str
    v1: bool
    request_id: str = field(default_factory=new_request_id)
    dep: DeploymentState | None = None
    api_version: str = ""
    plan: FaultPlan = field(default_factory=FaultPlan)
    holds_slot: bool = False
    remaining: int | None = None

    @property
    def sleep(self) -> Sleep:
        return self.state.sleep

    @property
    def operation_id(self) -> str:
        return OPERATIONS[self.route][0]

    def headers(self) -> dict[str, str]:
        out = {"apim-request-id": self.request_id, "x-request-id": self.request_id}
        client_id = self.request.headers.get("x-ms-client-request-id")
        if client_id:
            out["x-ms-client-request-id"] = client_id
        if self.dep is not None:
            out["x-ms-region"] = region_display(self.dep.spec.region)
            if self.remaining is None:
                self.remaining = self.dep.quota.remaining(self.state.clock())
            out["x-ratelimit-remaining-requests"] = str(self.remaining)
        else:
            out["x-ms-region"] = region_display("eastus2")
        return out

    def release(self) -> None:
        if self.holds_slot and self.dep is not None:
            self.dep.quota.release()
            self.holds_slot = False

    def record(self, outcome: str, status: int | None) -> None:
        if self.dep is not None:
            self.dep.counters.record(outcome, status)
            for name in self.plan.names:
                self.dep.counters.faults_fired[name] += 1

    def record_delivery(self, fault: FaultSpec | None) -> None:
        """Count a 200 about to be sent; a hang sends nothing, so its status is none."""
        if fault is None:
            self.record("ok", 200)
        else:
            self.record(f"fault_{fault.kind}", None if fault.kind == "hang" else 200)

    def error_reply(self, err: AzureError) -> Reply:
        self.release()
        self.record(err.outcome, err.status)
        return json_reply(err.status, err.body, {**self.headers(), **err.headers}, sleep=self.sleep)


def lookup(call: Call, name: str) -> DeploymentState:
    dep = call.state.deployments.get(name)
    if dep is None:
        raise errors.deployment_not_found()
    check_deployment(dep, call.request.headers, v1=call.v1)
    call.dep = dep
    return dep


def check_credentials(call: Call) -> None:
    check_resource(call.state, call.request.headers, v1=call.v1)
    if call.v1:
        version = call.request.query_params.get("api-version")
        if version is not None and version not in V1_API_VERSIONS:
            raise errors.api_version_not_supported()
        call.api_version = version or "v1"


def check_model(call: Call) -> DeploymentState:
    """api-version and operation checks for a deployment already found and authorised."""
    dep = call.dep
    assert dep is not None
    if not call.v1:
        version = call.request.query_params.get("api-version")
        if version is None or version not in KNOWN_API_VERSIONS:
            raise errors.resource_not_found()
        call.api_version = version
        if version not in dep.api_versions:
            raise errors.operation_not_supported(OPERATIONS[call.route][1], dep.spec.model)
    wants_chat = call.route == "chat"
    if dep.model.is_chat != wants_chat or (call.route == "edits" and not dep.model.edits):
        raise errors.operation_not_supported(OPERATIONS[call.route][1], dep.spec.model)
    return dep


def admit(call: Call) -> Reply | None:
    """Scripted refusals, then the quota. A Reply means the call ends here."""
    dep = call.dep
    assert dep is not None
    state = call.state
    dep.counters.saw_retry_count(call.request.headers.get("x-stainless-retry-count"))
    now = state.clock()
    call.plan = dep.faults.plan(now, call.route)
    refusal = call.plan.refusal
    if refusal is not None:
        if refusal.kind == "outage" and refusal.mode == "refuse":
            call.record("fault_refused", None)
            return Reply(0, {}, sleep=call.sleep, drop=True)
        if refusal.kind == "hang":
            call.record("fault_hang", None)
            return Reply(200, call.headers(), fault=refusal, sleep=call.sleep)
        status = 503 if refusal.kind == "outage" else refusal.status
        if status == 429:
            err = errors.rate_limited(
                call.operation_id,
                call.api_version,
                refusal.retry_after_s,
                headers=not call.plan.retry_after_missing,
            )
        elif status >= 500:
            err = errors.server_error(status, call.request_id)
        else:
            err = AzureError(status, {"error": {"code": str(status), "message": "Scripted client error."}})
        err.outcome = "fault_status"
        return call.error_reply(err)
    admission = dep.quota.admit(now)
    call.remaining = admission.remaining
    if not admission.admitted:
        return call.error_reply(
            errors.rate_limited(
                call.operation_id,
                call.api_version,
                admission.retry_after_s,
                headers=not call.plan.retry_after_missing,
            )
        )
    call.holds_slot = True
    return None


def crash_reply(call: Call) -> Reply:
    """An unexpected exception: Azure's 500 envelope, never a traceback."""
    return call.error_reply(errors.server_error(500, call.request_id))


def ok_headers(call: Call, extra: dict[str, Any] | None = None) -> dict[str, str]:
    return {**call.headers(), **(extra or {})}
