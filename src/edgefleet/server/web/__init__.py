"""The dashboard: server-rendered pages (Jinja2 + htmx) under `/ui`, served by the fleet
server itself. JavaScript libraries are installed by scripts/setup from npm into
`web/vendor/node_modules` (gitignored; `EDGEFLEET_WEB_VENDOR` names another node_modules)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from edgefleet.server import user_api, user_passwords
from edgefleet.server.state import ServerState
from edgefleet.server.web import auth, device, pages, remote, support
from edgefleet.server.web.auth import SignInRequired, WebUser

HERE = Path(__file__).parent
VENDOR_FILES = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "xterm.js": "@xterm/xterm/lib/xterm.js",
    "xterm.css": "@xterm/xterm/css/xterm.css",
    "addon-fit.js": "@xterm/addon-fit/lib/addon-fit.js",
}
STATIC_FILES = {"app.css", "app.js", "logs.js", "terminal.js"}


def vendor_dir() -> Path:
    return Path(os.environ.get("EDGEFLEET_WEB_VENDOR") or HERE / "vendor" / "node_modules")


def install(app: FastAPI, *, state: ServerState) -> None:
    """Add the dashboard's routes, its static files and its sign-in redirect to `app`."""

    async def current(request: Request) -> WebUser:
        return await auth.session_user(state.db, request)

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, _exc: SignInRequired) -> Response:
        page = (request.method == "GET" and "hx-request" not in request.headers
                and "text/html" in request.headers.get("accept", ""))
        if page:
            return RedirectResponse(auth.login_redirect(request), status_code=303)
        return JSONResponse({"detail": "sign in first"}, status_code=401)

    @app.get("/ui", include_in_schema=False)
    def ui_root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/ui/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name in STATIC_FILES:
            return FileResponse(HERE / "static" / name)
        if name in VENDOR_FILES:
            path = vendor_dir() / VENDOR_FILES[name]
            if path.is_file():
                return FileResponse(path)
            raise HTTPException(404, f"{name} is not installed: run scripts/setup (it "
                                     f"installs the dashboard's libraries from npm)")
        raise HTTPException(404, f"no static file {name!r}")

    app.include_router(user_passwords.router(
        state=state, current_user=user_api.user_dependency(state=state)))
    app.include_router(pages.router(state=state, current=current))
    app.include_router(device.router(state=state, current=current))
    app.include_router(remote.router(state=state, current=current))
    app.include_router(support.router(state=state, current=current))
