"""Authentication as Azure does it (§1.1, §1.2, §4.4).

- ``api-key: <key>`` works on every route.
- ``Authorization: Bearer <token>``: on a deployment configured with ``entra: true`` any token is
  accepted (the emulator does not validate Entra ID tokens; it cannot); on the v1 routes the key
  itself is also accepted as a Bearer token, as ``OpenAI(api_key=<azure key>)`` sends it.
- Anything else is 401 with Azure's exact body (the access-token wording when only a bearer token
  was sent). Keys are checked before the deployment is looked
  up, as at Azure's front door: a request with a bad key to an unknown deployment gets 401, one
  with a good key gets 404 DeploymentNotFound.
"""

from __future__ import annotations

from starlette.datastructures import Headers

from imagegate.emulator.azure_errors import unauthorized
from imagegate.emulator.state import DeploymentState, EmulatorState


def _credentials(headers: Headers) -> tuple[str | None, str | None]:
    key = headers.get("api-key") or None
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return key, bearer


def check_resource(state: EmulatorState, headers: Headers, *, v1: bool) -> None:
    """Credentials good for *some* deployment of this resource, or 401."""
    key, bearer = _credentials(headers)
    keys = state.all_keys()
    if key is not None and key in keys:
        return
    if bearer is not None and (state.any_entra() or (v1 and bearer in keys)):
        return
    raise unauthorized(bearer=key is None and bearer is not None)


def check_deployment(dep: DeploymentState, headers: Headers, *, v1: bool) -> None:
    """Credentials good for this deployment, or 401."""
    key, bearer = _credentials(headers)
    if key is not None and key in dep.spec.api_keys:
        return
    if bearer is not None and (dep.spec.entra or (v1 and bearer in dep.spec.api_keys)):
        return
    raise unauthorized(bearer=key is None and bearer is not None)
