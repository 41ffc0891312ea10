"""Errors in the shape OpenAI clients parse: `{"error": {"message", "type", "code"}}` (as vLLM sends them).

FastAPI's default is a 422 with a `detail` list; clients would show that as an opaque failure. Every mistake a
client can make maps to one `APIError` with a one-line message and a 4xx status; anything else is a 500 whose
message names the exception without a traceback.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi.responses import JSONResponse

# vLLM's type names for the statuses we send
ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    413: "RequestEntityTooLargeError",
    499: "ClientClosedRequestError",  # nginx's status for a client gone before its answer; not in HTTPStatus
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class APIError(Exception):
    """A request the server refuses; `status` is the HTTP status, `param` the offending field if known."""

    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.message = " ".join(str(message).split())
        self.status = status
        self.param = param


def error_body(message: str, status: int, param: str | None = None) -> dict:
    kind = ERROR_TYPES.get(status) or HTTPStatus(status).phrase.replace(" ", "") + "Error"
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error_body(error.message, error.status, error.param), status_code=error.status)
