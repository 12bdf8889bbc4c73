"""API errors as balena sends them: `{status: "failed", message}` with the HTTP status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


class ApiError(HTTPException):
    """An error a caller can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status_code=status, detail=message)


def failed(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "failed", "message": message}, status_code=status)


def install(app: FastAPI) -> None:
    """Answer HTTP and validation errors in balena's shape (bad input is a 400)."""

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return failed(exc.status_code, str(exc.detail))

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else
                         str(err.get("msg", "invalid")))
        return failed(400, "; ".join(parts) or "invalid request")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
