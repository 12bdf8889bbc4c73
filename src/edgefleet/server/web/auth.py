"""Dashboard sign-in: sessions in HttpOnly, SameSite=Strict cookies (Secure over TLS) and a
per-session CSRF token that every non-GET request must carry (form field or header).

A wrong password answers 401, which the server's brake (`server/limits.py`) counts: an address
that fails too often gets 429 for the rest of the minute.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import Response

from edgefleet.server import tables as t
from edgefleet.server.db import Database
from edgefleet.server.keys import UserPrincipal
from edgefleet.server.web.passwords import verify

COOKIE = "edgefleet_session"
LOGIN_COOKIE = "edgefleet_login"
SESSION_S = 12 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class WebUser:
    """A signed-in dashboard user and the session's CSRF token."""

    principal: UserPrincipal
    csrf: str


class SignInRequired(Exception):
    """No (valid) session: pages redirect to the sign-in page, other requests get 401."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


def set_cookie(request: Request, response: Response, name: str, value: str,
               max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/ui", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def check_password(db: Database, username: str, password: str) -> UserPrincipal | None:
    """The user when the password is right (None otherwise); the hash check is slow on
    purpose, so it runs in a thread."""
    with db.session() as s:
        user = s.execute(sa.select(t.User).where(t.User.username == username)).scalar()
        stored = user.password_hash if user is not None else ""
    if not verify(stored, password) or user is None:
        return None
    return UserPrincipal(user.id, user.username, user.is_admin)


def open_session(db: Database, user: UserPrincipal) -> str:
    """A new session for `user`; its cookie token."""
    token = secrets.token_urlsafe(32)
    now = now_ms()
    with db.session() as s:
        s.execute(sa.delete(t.WebSession).where(t.WebSession.expires_ms < now))
        s.add(t.WebSession(token_hash=_hash(token), user_id=user.user_id,
                           csrf=secrets.token_urlsafe(32), created_ms=now,
                           expires_ms=now + SESSION_S * 1000))
    return token


def close_session(db: Database, token: str) -> None:
    with db.session() as s:
        s.execute(sa.delete(t.WebSession).where(t.WebSession.token_hash == _hash(token)))


def _lookup(db: Database, token: str) -> WebUser | None:
    with db.session() as s:
        row = s.execute(sa.select(t.WebSession.csrf, t.WebSession.expires_ms, t.User.id,
                                  t.User.username, t.User.is_admin, t.User.is_support)
                        .join(t.User, t.User.id == t.WebSession.user_id)
                        .where(t.WebSession.token_hash == _hash(token))).first()
    if row is None or row[1] < now_ms():
        return None
    return WebUser(principal=UserPrincipal(row[2], row[3], bool(row[4]), bool(row[5])),
                   csrf=row[0])


async def cookie_user(db: Database, conn: HTTPConnection) -> WebUser:
    """The signed-in user of a request or websocket, from the session cookie alone."""
    token = conn.cookies.get(COOKIE)
    user = await run_in_threadpool(_lookup, db, token) if token else None
    if user is None:
        raise SignInRequired()
    return user


async def session_user(db: Database, request: Request) -> WebUser:
    """The signed-in user of this request, with the CSRF check done for non-GET requests."""
    user = await cookie_user(db, request)
    if request.method not in ("GET", "HEAD"):
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = str((await request.form()).get(CSRF_FIELD) or "")
        if not sent or not hmac.compare_digest(sent, user.csrf):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and "
                                     "try again")
    return user


def login_redirect(request: Request) -> str:
    return "/ui/login?next=" + quote(request.url.path)


def safe_next(target: str | None) -> str:
    """Only a local dashboard path may be the place to go after signing in."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/"
