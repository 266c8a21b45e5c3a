"""Client errors: a JSON body `{"detail": ..., "parameter": ...}` naming the parameter at fault."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from marketflow_assets.api.models import ErrorResponse


class ApiError(Exception):
    def __init__(self, status: int, parameter: str | None, detail: str):
        super().__init__(detail)
        self.status, self.parameter, self.detail = status, parameter, detail


def error_response(status: int, parameter: str | None, detail: str) -> JSONResponse:
    body = ErrorResponse(detail=detail, parameter=parameter).model_dump()
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


async def api_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.parameter, exc.detail)


async def validation_error_handler(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for a malformed parameter, as a 400 that names it."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header")]
    parameter = loc[0] if loc else None
    message = first.get("msg", "invalid request")
    return error_response(400, parameter, f"invalid {parameter or 'request'}: {message}")


# Documented on every data endpoint, so the OpenAPI schema lists what a client can get.
ERROR_RESPONSES: dict[int | str, dict] = {
    304: {"description": "Not modified: the snapshot is the one the client's ETag names"},
    400: {"model": ErrorResponse, "description": "Invalid parameter (named in `parameter`)"},
    401: {"model": ErrorResponse, "description": "Missing or unknown X-API-Key"},
    404: {"model": ErrorResponse, "description": "Unknown ticker, or nothing published"},
    503: {"model": ErrorResponse, "description": "No snapshot has been published yet"},
}
