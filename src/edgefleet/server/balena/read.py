"""Answering a GET: one statement for the rows asked for, then one per `$expand` level
(`WHERE key IN (...)` over every parent at once), never one per row."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.server.balena.compile import FilterCompiler, Source
from edgefleet.server.balena.odata import Expand, ODataError, Options, Query
from edgefleet.server.balena.resource import Resource

Row = dict[str, Any]
CHUNK = 5000
"""Parent keys per `IN (...)` (SQLite allows 32766 bound values in one statement)."""
Compute = Callable[[Session, Resource, list[Row]], None]
"""Fills a resource's computed fields into its rows (one batch per query level)."""


@dataclass(frozen=True)
class ReadContext:
    user_id: int
    compute: Compute


def iso(ms: Any) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def key_condition(src: Source, key: Any) -> sa.ColumnElement[bool]:
    if isinstance(key, dict):
        return sa.and_(*(src.column(k) == v for k, v in key.items()))
    cond: sa.ColumnElement[bool] = src.column("id") == key
    return cond


def _apply(stmt: sa.Select[Any], src: Source, options: Options,
           fc: FilterCompiler, *, paginate: bool) -> sa.Select[Any]:
    if options.filter is not None:
        stmt = stmt.where(fc.compile(options.filter, src))
    order = [fc.order_column(p, src).desc() if desc else fc.order_column(p, src)
             for p, desc in options.orderby]
    stmt = stmt.order_by(*order, src.sub.c.id)
    if paginate and options.top is not None:
        stmt = stmt.limit(options.top)
    if paginate and options.skip:
        stmt = stmt.offset(options.skip)
    return stmt


def check_expands(res: Resource, options: Options) -> None:
    """Every `$expand` names a navigation property (checked before any row is read)."""
    for exp in options.expand:
        nav = res.navs.get(exp.name)
        if nav is None:
            raise ODataError(f"{res.name} has no navigation property {exp.name!r} to $expand")
        check_expands(Source.of(nav.target).res, exp.options)


def read(s: Session, *, query: Query, ctx: ReadContext) -> list[Row] | int:
    """The rows (rendered) or, for `/$count`, their number."""
    src = Source.of(query.resource)
    check_expands(src.res, query.options)
    fc = FilterCompiler(user_id=ctx.user_id)
    stmt = sa.select(src.sub).where(src.visible(ctx.user_id))
    if query.key is not None:
        stmt = stmt.where(key_condition(src, query.key))
    if query.count:
        if query.options.filter is not None:
            stmt = stmt.where(fc.compile(query.options.filter, src))
        return int(s.execute(sa.select(sa.func.count()).select_from(stmt.subquery()))
                   .scalar() or 0)
    stmt = _apply(stmt, src, query.options, fc, paginate=True)
    rows = [dict(r) for r in s.execute(stmt).mappings()]
    _fill(s, src.res, rows, query.options, ctx, fc)
    return [render(src.res, r, query.options) for r in rows]


def _fill(s: Session, res: Resource, rows: list[Row], options: Options, ctx: ReadContext,
          fc: FilterCompiler) -> None:
    """Computed fields and expansions of `rows`, in place (under the key `__expanded`)."""
    if not rows:
        return
    if res.computed:
        ctx.compute(s, res, rows)
    for exp in options.expand:
        _expand(s, res, rows, exp, ctx, fc)


def _expand(s: Session, res: Resource, rows: list[Row], exp: Expand, ctx: ReadContext,
            fc: FilterCompiler) -> None:
    nav = res.navs.get(exp.name)
    if nav is None:
        raise ODataError(f"{res.name} has no navigation property {exp.name!r} to $expand")
    target = Source.of(nav.target)
    keys = sorted({r[nav.local] for r in rows if r.get(nav.local) is not None})
    remote = target.sub.c[nav.remote]
    if exp.count:
        counts: dict[Any, int] = {}
        for start in range(0, len(keys), CHUNK):
            stmt = sa.select(remote, sa.func.count()).where(
                remote.in_(keys[start:start + CHUNK]), target.visible(ctx.user_id))
            if exp.options.filter is not None:
                stmt = stmt.where(fc.compile(exp.options.filter, target))
            counts.update({k: n for k, n in s.execute(stmt.group_by(remote)).all()})
        for r in rows:
            r.setdefault("__expanded", {})[exp.name] = counts.get(r.get(nav.local), 0)
        return
    children: list[Row] = []
    for start in range(0, len(keys), CHUNK):  # one statement per CHUNK parents
        stmt = sa.select(target.sub).where(remote.in_(keys[start:start + CHUNK]),
                                           target.visible(ctx.user_id))
        stmt = _apply(stmt, target, exp.options, fc, paginate=False)
        children += [dict(c) for c in s.execute(stmt).mappings()]
    groups: dict[Any, list[Row]] = {}
    for child in children:
        groups.setdefault(child[nav.remote], []).append(child)
    skip, top = exp.options.skip or 0, exp.options.top
    for key, group in groups.items():
        groups[key] = group[skip:] if top is None else group[skip:skip + top]
    kept = [c for g in groups.values() for c in g]
    _fill(s, target.res, kept, exp.options, ctx, fc)
    for r in rows:
        r.setdefault("__expanded", {})[exp.name] = (
            target.res, exp.options, groups.get(r.get(nav.local), []))


def _field(res: Resource, row: Row, name: str) -> Any:
    value = row.get(name)
    if name in res.fks:
        return None if value is None else {"__id": value}
    if name in res.dates:
        return iso(value)
    if name in res.bools:
        return None if value is None else bool(value)
    if name in res.json_fields and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def render(res: Resource, row: Row, options: Options) -> Row:
    """A row as Pine answers it: selected fields, `{"__id": n}` for foreign keys, expanded
    navigation properties as arrays (a number for `$count`)."""
    expanded = row.get("__expanded", {})
    names = options.select if options.select is not None else [
        k for k in row if not k.startswith("_")]
    out: Row = {}
    for name in names:
        if name not in expanded:
            out[name] = _field(res, row, name)
    for name, value in expanded.items():
        if isinstance(value, int):
            out[name] = value
        else:
            target, opts, children = value
            out[name] = [render(target, c, opts) for c in children]
    return out
