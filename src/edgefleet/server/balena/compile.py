"""OData `$filter` and `$orderby` trees translated to SQLAlchemy expressions over the
resources' SELECTs (`schema.py`). Navigation paths become correlated EXISTS / scalar
subqueries, so a filter never multiplies rows and each query stays one statement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from edgefleet.server.balena.odata import (
    BinOp,
    Call,
    Count,
    Lambda,
    Literal,
    Not,
    ODataError,
    Path,
)
from edgefleet.server.balena.resource import Resource
from edgefleet.server.balena.schema import RESOURCES
from edgefleet.server.rights import member_orgs

Cond = sa.ColumnElement[bool]
Col = sa.ColumnElement[Any]


@dataclass(frozen=True)
class Source:
    """One resource's SELECT as a FROM item."""

    res: Resource
    sub: sa.Subquery

    @staticmethod
    def of(name: str) -> Source:
        res = RESOURCES.get(name)
        if res is None:
            raise ODataError(f"unknown resource {name!r}", status=404, code="NotFound")
        return Source(res, res.select().subquery())

    def visible(self, user_id: int) -> Cond:
        if self.res.public:
            return sa.true()
        return self.sub.c._owner.in_(member_orgs(user_id))

    def column(self, name: str) -> Col:
        if name.startswith("_") or name not in self.sub.c:
            if name in self.res.computed:
                raise ODataError(f"{self.res.name}.{name} is computed and cannot be used "
                                 "in $filter or $orderby", code="NotImplemented")
            raise ODataError(f"{self.res.name} has no field {name!r}")
        return self.sub.c[name]

    def nav(self, name: str) -> tuple[Source, Cond]:
        """The target of navigation `name` and the condition joining it to this row."""
        nav = self.res.navs.get(name)
        if nav is None:
            raise ODataError(f"{self.res.name} has no navigation property {name!r}")
        target = Source.of(nav.target)
        return target, target.sub.c[nav.remote] == self.sub.c[nav.local]


class FilterCompiler:
    """Compiles one request's filters for the user `user_id` (who sees only their rows)."""

    def __init__(self, *, user_id: int) -> None:
        self.user_id = user_id

    def compile(self, expr: Any, src: Source, env: dict[str, Source] | None = None) -> Cond:
        env = env or {}
        if isinstance(expr, BinOp) and expr.op in ("and", "or"):
            parts = [self.compile(expr.left, src, env), self.compile(expr.right, src, env)]
            return sa.and_(*parts) if expr.op == "and" else sa.or_(*parts)
        if isinstance(expr, Not):
            return sa.not_(self.compile(expr.expr, src, env))
        if isinstance(expr, BinOp):
            return self._compare(expr, src, env)
        if isinstance(expr, Lambda):
            return self._lambda(expr, src, env)
        if isinstance(expr, Call) and expr.name in ("startswith", "endswith", "contains",
                                                   "substringof"):
            return self._text_call(expr, src, env)
        if isinstance(expr, Literal) and isinstance(expr.value, bool):
            return sa.true() if expr.value else sa.false()
        if isinstance(expr, Path):
            return self._on_path(expr.parts, src, env, lambda col: col.is_(True))
        raise ODataError(f"this $filter term is not supported: {expr!r}",
                         code="NotImplemented")

    # --- paths ---------------------------------------------------------------------------
    def _on_path(self, parts: tuple[str, ...], src: Source, env: dict[str, Source],
                 fn: Callable[[Col], Cond]) -> Cond:
        """`fn(column)` for the field at the end of `parts`, through to-one navigations."""
        if parts[0] in env:
            src, parts = env[parts[0]], parts[1:]
            if not parts:
                raise ODataError("a lambda variable needs a field: `v/field`")
        if len(parts) == 1:
            if parts[0] not in src.sub.c and parts[0] in src.res.navs:
                raise ODataError(f"{parts[0]!r} is a navigation property; compare one of its "
                                 "fields (`nav/field`) or use any()")
            return fn(src.column(parts[0]))
        target, join = src.nav(parts[0])
        inner = self._on_path(parts[1:], target, env, fn)
        return sa.exists().where(join, target.visible(self.user_id), inner)

    def _value(self, node: Any, src: Source, env: dict[str, Source]
               ) -> tuple[tuple[str, ...] | None, Callable[[Col], Col], Any]:
        """(path or None, transform for the column, literal value)."""
        if isinstance(node, Path):
            return node.parts, lambda c: c, None
        if isinstance(node, Call) and node.name in ("tolower", "toupper") \
                and len(node.args) == 1 and isinstance(node.args[0], Path):
            func = sa.func.lower if node.name == "tolower" else sa.func.upper
            return node.args[0].parts, lambda c: func(c), None
        if isinstance(node, Literal):
            return None, lambda c: c, node.value
        if isinstance(node, Count):
            return None, lambda c: c, self._count(node.path, src, env)
        raise ODataError(f"this operand is not supported: {node!r}", code="NotImplemented")

    def _count(self, parts: tuple[str, ...], src: Source, env: dict[str, Source]) -> Col:
        if parts[0] in env:
            src, parts = env[parts[0]], parts[1:]
        if len(parts) != 1:
            raise ODataError("$count is supported on a direct navigation property only",
                             code="NotImplemented")
        target, join = src.nav(parts[0])
        return sa.select(sa.func.count()).select_from(target.sub).where(
            join, target.visible(self.user_id)).scalar_subquery()

    def _compare(self, expr: BinOp, src: Source, env: dict[str, Source]) -> Cond:
        lpath, lfn, lval = self._value(expr.left, src, env)
        rpath, rfn, rval = self._value(expr.right, src, env)
        if lpath is None and rpath is not None:
            flipped = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(expr.op, expr.op)
            return self._compare(BinOp(flipped, expr.right, expr.left), src, env)
        if lpath is None:
            left = lval if isinstance(lval, sa.ColumnElement) else sa.literal(lval)
            return _op(expr.op, left, rval)
        if rpath is not None:
            if len(lpath) != 1 or len(rpath) != 1 or lpath[0] in env or rpath[0] in env:
                raise ODataError("comparing two navigation paths is not supported",
                                 code="NotImplemented")
            return _op(expr.op, lfn(src.column(lpath[0])), rfn(src.column(rpath[0])))
        return self._on_path(lpath, src, env, lambda col: _op(expr.op, lfn(col), rval))

    def _text_call(self, expr: Call, src: Source, env: dict[str, Source]) -> Cond:
        if len(expr.args) != 2:
            raise ODataError(f"{expr.name}() takes two arguments")
        a, b = expr.args
        if expr.name == "substringof":
            a, b = b, a
        if not isinstance(a, Path) or not isinstance(b, Literal) \
                or not isinstance(b.value, str):
            raise ODataError(f"{expr.name}() needs a field and a string",
                             code="NotImplemented")
        text = str(b.value)
        method = {"startswith": "startswith", "endswith": "endswith"}.get(expr.name,
                                                                          "contains")
        return self._on_path(a.parts, src, env,
                             lambda col: getattr(col, method)(text, autoescape=True))

    def _lambda(self, expr: Lambda, src: Source, env: dict[str, Source]) -> Cond:
        parts = expr.path
        if parts[0] in env:
            src, parts = env[parts[0]], parts[1:]
        if len(parts) != 1:
            return self._nested_lambda(parts, expr, src, env)
        target, join = src.nav(parts[0])
        where: list[Cond] = [join, target.visible(self.user_id)]
        if expr.expr is not None and expr.var is not None:
            inner = self.compile(expr.expr, target, {**env, expr.var: target})
            where.append(inner if expr.kind == "any" else sa.not_(inner))
        if expr.kind == "any":
            return sa.exists().where(*where)
        return sa.not_(sa.exists().where(*where))

    def _nested_lambda(self, parts: tuple[str, ...], expr: Lambda, src: Source,
                       env: dict[str, Source]) -> Cond:
        target, join = src.nav(parts[0])
        inner = self._lambda(Lambda(parts[1:], expr.kind, expr.var, expr.expr), target, env)
        return sa.exists().where(join, target.visible(self.user_id), inner)

    # --- ordering ------------------------------------------------------------------------
    def order_column(self, parts: tuple[str, ...], src: Source) -> Col:
        if len(parts) == 1:
            return src.column(parts[0])
        target, join = src.nav(parts[0])
        inner = self.order_column(parts[1:], target)
        return sa.select(inner).where(join, target.visible(self.user_id)).limit(1) \
            .scalar_subquery()


def _op(op: str, left: Col, value: Any) -> Cond:
    if op == "in":
        return left.in_(list(value))
    if value is None and op in ("eq", "ne"):
        return left.is_(None) if op == "eq" else left.is_not(None)
    right = value if isinstance(value, sa.ColumnElement) else sa.literal(value)
    ops: dict[str, Callable[[Col, Col], Cond]] = {
        "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}
    if op not in ops:
        raise ODataError(f"the operator {op!r} is not supported", code="NotImplemented")
    result = ops[op](left, right)
    if op == "ne":  # OData: `x ne v` is true when x is null
        return sa.or_(result, left.is_(None))
    return result
