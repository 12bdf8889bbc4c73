"""A small OData (v4, as Pine.js speaks it) grammar: a resource URL and its query options
parsed into plain values. Pure: no SQL, no I/O. What it does not know is an `ODataError`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, unquote_plus


class ODataError(Exception):
    """A request outside the supported subset (or malformed); answered in OData's error
    shape with `status`."""

    def __init__(self, message: str, *, status: int = 400, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Path:
    """`a/b/c`: fields and navigation properties; the first may be a lambda variable."""

    parts: tuple[str, ...]


@dataclass(frozen=True)
class BinOp:
    op: str
    """`eq ne gt ge lt le and or in`."""
    left: Any
    right: Any


@dataclass(frozen=True)
class Not:
    expr: Any


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Lambda:
    """`path/any(v: expr)` or `path/all(v: expr)` (`any()` without a body too)."""

    path: tuple[str, ...]
    kind: str
    var: str | None
    expr: Any


@dataclass(frozen=True)
class Count:
    """`path/$count` in a filter (the number of related rows)."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class Options:
    """Query options of a request or of one `$expand` item."""

    select: tuple[str, ...] | None = None
    expand: tuple[Expand, ...] = ()
    filter: Any = None
    orderby: tuple[tuple[tuple[str, ...], bool], ...] = ()
    """(path, descending) pairs."""
    top: int | None = None
    skip: int | None = None


@dataclass(frozen=True)
class Expand:
    name: str
    options: Options = field(default_factory=Options)
    count: bool = False


@dataclass(frozen=True)
class Query:
    """A parsed `/v7/<resource>(<key>)?<options>`."""

    resource: str
    key: Any = None
    """None, an id, or {field: value}."""
    count: bool = False
    options: Options = field(default_factory=Options)


_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^']|'')*')
  | (?P<dt>datetime'[^']*')
  | (?P<num>-?\d+(?:\.\d+)?(?![\w]))
  | (?P<alias>@[A-Za-z_]\w*)
  | (?P<ident>\$?[A-Za-z_][\w]*)
  | (?P<punct>[(),/:])
)""", re.VERBOSE)
_COMPARE = ("eq", "ne", "gt", "ge", "lt", "le")
FUNCTIONS = ("startswith", "endswith", "contains", "substringof", "tolower", "toupper")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ODataError(f"cannot parse {text[pos:pos + 20]!r} (at {pos} of {text!r})")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _FilterParser:
    """Recursive descent over the tokens of one `$filter` expression."""

    def __init__(self, text: str, aliases: dict[str, Any]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.text = text
        self.aliases = aliases

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise ODataError(f"expected {value!r} but found {tok[1] or 'the end'!r} "
                             f"in $filter {self.text!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        expr = self.or_()
        if self.peek()[0] != "end":
            raise ODataError(f"unexpected {self.peek()[1]!r} in $filter {self.text!r}")
        return expr

    def or_(self) -> Any:
        left = self.and_()
        while self.peek() == ("ident", "or"):
            self.take()
            left = BinOp("or", left, self.and_())
        return left

    def and_(self) -> Any:
        left = self.not_()
        while self.peek() == ("ident", "and"):
            self.take()
            left = BinOp("and", left, self.not_())
        return left

    def not_(self) -> Any:
        negations = 0
        while self.peek() == ("ident", "not"):
            self.take()
            negations += 1
        expr = self.compare()
        return Not(expr) if negations % 2 else expr

    def compare(self) -> Any:
        left = self.primary()
        kind, value = self.peek()
        if kind == "ident" and value in _COMPARE:
            self.take()
            return BinOp(value, left, self.primary())
        if kind == "ident" and value == "in":
            self.take()
            self.take("(")
            items = [self.primary()]
            while self.peek()[1] == ",":
                self.take()
                items.append(self.primary())
            self.take(")")
            return BinOp("in", left, Literal(tuple(i.value for i in items
                                                   if isinstance(i, Literal))))
        if kind == "ident" and value in ("add", "sub", "mul", "div", "mod", "has"):
            raise ODataError(f"the operator {value!r} is not supported", code="NotImplemented")
        return left

    def primary(self) -> Any:
        kind, value = self.take()
        if value == "(" and kind == "punct":
            inner = self.or_()
            self.take(")")
            return inner
        if kind == "str":
            return Literal(value[1:-1].replace("''", "'"))
        if kind == "dt":
            return Literal(value[9:-1])
        if kind == "num":
            return Literal(float(value) if "." in value else int(value))
        if kind == "alias":
            if value not in self.aliases:
                raise ODataError(f"the parameter alias {value} has no value")
            return Literal(self.aliases[value])
        if kind == "ident":
            if value in ("true", "false"):
                return Literal(value == "true")
            if value == "null":
                return Literal(None)
            if self.peek()[1] == "(":
                return self.call(value)
            return self.path(value)
        raise ODataError(f"unexpected {value or 'end'!r} in $filter {self.text!r}")

    def call(self, name: str) -> Any:
        if name not in FUNCTIONS:
            raise ODataError(f"the function {name!r} is not supported", code="NotImplemented")
        self.take("(")
        args = [self.or_()]
        while self.peek()[1] == ",":
            self.take()
            args.append(self.or_())
        self.take(")")
        return Call(name, tuple(args))

    def path(self, first: str) -> Any:
        parts = [first]
        while self.peek()[1] == "/":
            self.take()
            kind, value = self.take()
            if kind != "ident":
                raise ODataError(f"expected a name after '/' in $filter {self.text!r}")
            if value in ("any", "all") and self.peek()[1] == "(":
                return self.lambda_(tuple(parts), value)
            if value == "$count":
                return Count(tuple(parts))
            parts.append(value)
        return Path(tuple(parts))

    def lambda_(self, path: tuple[str, ...], kind: str) -> Lambda:
        self.take("(")
        if self.peek()[1] == ")":
            self.take()
            return Lambda(path, kind, None, None)
        var = self.take()[1]
        self.take(":")
        expr = self.or_()
        self.take(")")
        return Lambda(path, kind, var, expr)


def parse_filter(text: str, *, aliases: dict[str, Any] | None = None) -> Any:
    """A `$filter` expression as a tree of Literal/Path/BinOp/Not/Call/Lambda/Count."""
    return _FilterParser(text, aliases or {}).parse()


def split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside parentheses and quoted strings."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        elif not quote and depth == 0 and ch == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (x.strip() for x in parts) if p]


def parse_literal(text: str, *, aliases: dict[str, Any]) -> Any:
    expr = parse_filter(text, aliases=aliases)
    if not isinstance(expr, Literal):
        raise ODataError(f"expected a value, not {text!r}")
    return expr.value


def _orderby(text: str) -> tuple[tuple[tuple[str, ...], bool], ...]:
    out = []
    for item in split_top(text, ","):
        words = item.split()
        if len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise ODataError(f"cannot order by {item!r}: expected `field [asc|desc]`")
        out.append((tuple(words[0].split("/")), len(words) == 2 and words[1] == "desc"))
    return tuple(out)


def _int(name: str, text: str) -> int:
    if not text.isdigit():
        raise ODataError(f"{name} must be a non-negative integer, not {text!r}")
    return int(text)


def parse_options(items: dict[str, str], *, aliases: dict[str, Any]) -> Options:
    """Options from `{"$select": "...", ...}`; an unknown `$option` is an error."""
    known = {"$select", "$expand", "$filter", "$orderby", "$top", "$skip", "$format"}
    for name in items:
        if name.startswith("$") and name not in known:
            raise ODataError(f"the query option {name} is not supported",
                             code="NotImplemented")
    select = None
    if "$select" in items:
        select = tuple(s.strip() for s in items["$select"].split(",") if s.strip())
    expand = tuple(_expand(e, aliases) for e in split_top(items.get("$expand", ""), ","))
    flt = parse_filter(items["$filter"], aliases=aliases) if "$filter" in items else None
    return Options(select=select, expand=expand, filter=flt,
                   orderby=_orderby(items.get("$orderby", "")),
                   top=_int("$top", items["$top"]) if "$top" in items else None,
                   skip=_int("$skip", items["$skip"]) if "$skip" in items else None)


def _expand(text: str, aliases: dict[str, Any]) -> Expand:
    m = re.fullmatch(r"([A-Za-z_]\w*)(/\$count)?(?:\((.*)\))?", text, re.DOTALL)
    if m is None:
        raise ODataError(f"cannot parse the $expand item {text!r}")
    items: dict[str, str] = {}
    for part in split_top(m.group(3) or "", ";"):
        name, eq, value = part.partition("=")
        if not eq:
            raise ODataError(f"expected `$option=value` in $expand {text!r}")
        items[name.strip()] = value
    return Expand(name=m.group(1), count=bool(m.group(2)),
                  options=parse_options(items, aliases=aliases))


MAX_DEPTH = 32
"""Parentheses nest at most this deep (the parser recurses; the CLI's deepest is ~6)."""


def _depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    return deepest


def parse_query(*, path: str, raw_query: str) -> Query:
    """`path` is what follows `/v7/` (still percent-encoded); `raw_query` the URL's query."""
    if _depth(unquote_plus(raw_query)) > MAX_DEPTH or _depth(unquote(path)) > MAX_DEPTH:
        raise ODataError(f"the query nests parentheses deeper than {MAX_DEPTH}")
    params: dict[str, str] = {}
    for pair in raw_query.split("&") if raw_query else []:
        name, _, value = pair.partition("=")
        params[unquote_plus(name)] = unquote_plus(value)  # `+` is a space (form encoding)
    aliases = {name: parse_literal(value, aliases={})
               for name, value in params.items() if name.startswith("@")}
    m = re.fullmatch(r"([A-Za-z_]\w*)(?:\((.*)\))?(/\$count)?/?", unquote(path), re.DOTALL)
    if m is None:
        raise ODataError(f"cannot parse the resource path {path!r}")
    key: Any = None
    if m.group(2) is not None:
        parts = split_top(m.group(2), ",")
        if len(parts) == 1 and "=" not in parts[0]:
            key = parse_literal(parts[0], aliases=aliases)
        else:
            key = {}
            for part in parts:
                name, eq, value = part.partition("=")
                if not eq:
                    raise ODataError(f"cannot parse the key {m.group(2)!r}")
                key[name.strip()] = parse_literal(value.strip(), aliases=aliases)
    options = parse_options({k: v for k, v in params.items() if not k.startswith("@")},
                            aliases=aliases)
    return Query(resource=m.group(1), key=key, count=bool(m.group(3)), options=options)
