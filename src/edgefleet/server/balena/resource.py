"""What a balena resource is: a SELECT over edgefleet's tables with OData field names, and
its navigation properties."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

View = sa.Select[*tuple[Any, ...]]
"""A resource's SELECT (any columns)."""
INSTALL_FACTOR = 1_000_000
"""An install (device x service, device x image) has id `device id * FACTOR + its id`."""


@dataclass(frozen=True)
class Nav:
    """A navigation property: rows of `target` whose `remote` column equals this row's
    `local` column; `many` for one-to-many."""

    target: str
    local: str
    remote: str
    many: bool


@dataclass(frozen=True)
class Resource:
    """One `/v7/<name>` resource."""

    name: str
    select: Callable[[], View]
    navs: dict[str, Nav] = field(default_factory=dict)
    fks: frozenset[str] = frozenset()
    """Fields holding another resource's id: `{"__id": n}` unless expanded."""
    dates: frozenset[str] = frozenset()
    """Fields held as epoch ms, shown as ISO 8601."""
    bools: frozenset[str] = frozenset()
    json_fields: frozenset[str] = frozenset()
    computed: frozenset[str] = frozenset()
    """Fields filled in after the query (see `computed.py`); not filterable."""
    public: bool = False


def many(target: str, remote: str) -> Nav:
    """One-to-many: rows of `target` whose `remote` is this row's id."""
    return Nav(target, "id", remote, True)


def one(target: str, local: str) -> Nav:
    """Many-to-one: the `target` row whose id is this row's `local`."""
    return Nav(target, local, "id", False)
