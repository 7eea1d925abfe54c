"""Azure's error bodies, byte for byte where the reference has a capture (§4), and the one
exception the emulator raises to send one.

Choices for what the reference leaves open ([I], also in docs/emulator.md):

- Unknown or missing ``api-version`` on a deployment route: 404 ``{"error":{"code":"404",
  "message":"Resource not found"}}`` (what Azure's front door says for paths it cannot route).
- A known dated api-version that does not serve the deployment's model, or an operation the model
  does not do (edits on dall-e-3, images on a chat deployment): 400 ``OperationNotSupported``.
- An ``api-version`` on the v1 routes other than preview/latest/v1: 400 ``BadRequest`` "API version
  not supported".
- Parameter errors use OpenAI's validation envelope, which Azure passes through for the image
  models: ``{"error":{"message","type":"invalid_request_error","param","code"}}``.
- 503 uses the 500 envelope (no capture exists).
"""

from __future__ import annotations

from typing import Any

SUPPORT_LINK = "https://go.microsoft.com/fwlink/?linkid=2213926"


class AzureError(Exception):
    """Raised anywhere in request handling; the app renders it as ``status`` + ``body``.

    ``outcome`` names the counter bucket (client_error, rate_limited, content_filtered, ...);
    ``billed`` says whether Azure would have charged for the request anyway."""

    def __init__(
        self,
        status: int,
        body: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        outcome: str = "client_error",
    ) -> None:
        super().__init__(f"{status}: {body.get('error', body)}")
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.outcome = outcome


def unauthorized(*, bearer: bool = False) -> AzureError:
    """401. With a bearer token (and no api-key) Azure answers about the access token instead [I:
    the wording widely reported for Entra ID failures; the reference has only the key variant]."""
    if bearer:
        message = (
            "Unauthorized. Access token is missing, invalid, audience is incorrect "
            "(https://cognitiveservices.azure.com), or have expired."
        )
        return AzureError(401, {"error": {"code": "401", "message": message}}, outcome="unauthorized")
    return AzureError(
        401,
        {
            "error": {
                "code": "401",
                "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                "to provide a valid key for an active subscription and use a correct regional API "
                "endpoint for your resource.",
            }
        },
        outcome="unauthorized",
    )


def deployment_not_found() -> AzureError:
    return AzureError(
        404,
        {
            "error": {
                "code": "DeploymentNotFound",
                "message": "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again.",
            }
        },
        outcome="not_found",
    )


def resource_not_found() -> AzureError:
    return AzureError(404, {"error": {"code": "404", "message": "Resource not found"}}, outcome="not_found")


def api_version_not_supported() -> AzureError:
    return AzureError(400, {"error": {"code": "BadRequest", "message": "API version not supported"}})


def operation_not_supported(operation: str, model: str) -> AzureError:
    return AzureError(
        400,
        {
            "error": {
                "code": "OperationNotSupported",
                "message": f"The {operation} operation does not work with the specified model, {model}. "
                "Please choose different model and try again. You can learn more about which models "
                "can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993.",
            }
        },
    )


def invalid(param: str | None, message: str, code: str | None = "invalid_value") -> AzureError:
    return AzureError(
        400,
        {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}},
    )


def bad_json() -> AzureError:
    return invalid(
        None,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
        "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
        "valid JSON. If you have trouble figuring out how to fix this, please contact us through an "
        "Azure support request.)",
        code=None,
    )


def payload_too_large(limit_mb: int) -> AzureError:
    return AzureError(
        413,
        {
            "error": {
                "code": "RequestEntityTooLarge",
                "message": f"The request body is too large; the limit is {limit_mb} MB.",
            }
        },
    )


def server_error(status: int, request_id: str) -> AzureError:
    return AzureError(
        status,
        {
            "error": {
                "message": "An error occurred while processing your request. You can retry your request, "
                f"or contact us through an Azure support request at: {SUPPORT_LINK} if the error "
                f"persists. Please include the request ID {request_id} in your message.",
                "type": "server_error",
                "param": None,
                "code": "server_error",
            }
        },
        outcome="server_error",
    )


def rate_limited(operation: str, api_version: str, retry_after_s: int, *, headers: bool = True) -> AzureError:
    """The call-rate 429 (§4.3). ``headers=False`` is the 'retry-after missing' fault."""
    message = (
        f"Requests to the {operation} Operation under Azure OpenAI API version {api_version} have "
        "exceeded call rate limit of your current AIServices S0 pricing tier. Please retry after "
        f"{retry_after_s} seconds. Please contact Azure support service if you would like to further "
        "increase the default rate limit."
    )
    hdrs = {"retry-after": str(retry_after_s), "retry-after-ms": str(retry_after_s * 1000)} if headers else {}
    hdrs["policy-id"] = "DeploymentRatelimit-Call"
    return AzureError(
        429, {"error": {"code": "429", "message": message}}, headers=hdrs, outcome="rate_limited"
    )
