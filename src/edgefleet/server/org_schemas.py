"""Bodies and replies of issue 15's endpoints: organizations, members, grants, notes, audit,
tokens."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Handle = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
MAX_ID = 2**53
"""Largest id or time (ms) accepted in a path or query (beyond: 422, not an overflow)."""
Role = Literal["owner", "developer", "operator", "viewer"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrgCreate(_In):
    handle: Handle


class OrgOut(BaseModel):
    handle: str
    personal: bool
    role: str | None = Field(description="Your role in it (None: a role on some fleets only).")


class MemberSet(_In):
    username: Handle
    role: Role
    fleet: str | None = Field(None, max_length=128,
                              description="A role on this fleet only (finer than the "
                                          "organization's).")


class MemberOut(BaseModel):
    username: str
    role: str
    fleet: str | None


class UserUpdate(_In):
    is_support: bool


class GrantCreate(_In):
    fleet: str | None = Field(None, max_length=128)
    device: str | None = Field(None, max_length=128)
    duration_s: int = Field(ge=5, le=30 * 86400)
    allow_reboot: bool = False


class GrantOut(BaseModel):
    id: int
    organization: str
    fleet: str
    device: str | None
    allow_reboot: bool
    created_by: str
    created_ms: int
    expires_ms: int
    revoked_ms: int | None
    active: bool


class NoteCreate(_In):
    text: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


class NoteOut(BaseModel):
    id: int
    author: str
    ts_ms: int
    text: str


class AuditOut(BaseModel):
    id: int
    ts_ms: int
    actor: str
    organization: str
    action: str
    fleet: str
    device: str
    target: str
    outcome: str
    detail: str
    # remote sessions (action `remote.<kind>`), as the session log of issue 14 showed them
    username: str = ""
    device_uuid: str = ""
    kind: str | None = None
    command: str | None = None
    started_ms: int | None = None
    ended_ms: int | None = None
    bytes_up: int | None = None
    bytes_down: int | None = None
    result: str | None = None


class TokenOut(BaseModel):
    id: int
    name: str
    scope: str
    created_ms: int
    expires_ms: int | None
