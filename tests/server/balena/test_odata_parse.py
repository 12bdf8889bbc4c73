"""The OData grammar, from OData's rules: precedence, literals, lambdas, parameter aliases,
nested `$expand` options, keys, and errors for what is outside the subset."""

from __future__ import annotations

import pytest

from edgefleet.server.balena.odata import (
    BinOp,
    Call,
    Count,
    Lambda,
    Literal,
    Not,
    ODataError,
    Path,
    parse_filter,
    parse_query,
)


def test_and_binds_tighter_than_or() -> None:
    expr = parse_filter("a eq 1 or b eq 2 and c eq 3")
    assert expr == BinOp("or", BinOp("eq", Path(("a",)), Literal(1)),
                         BinOp("and", BinOp("eq", Path(("b",)), Literal(2)),
                               BinOp("eq", Path(("c",)), Literal(3))))


def test_many_nots_fold() -> None:
    assert parse_filter("not " * 5001 + "a eq 1") == Not(BinOp("eq", Path(("a",)), Literal(1)))
    assert parse_filter("not " * 5000 + "a eq 1") == BinOp("eq", Path(("a",)), Literal(1))


def test_parentheses_and_not() -> None:
    expr = parse_filter("not (a eq 1 or b ne null)")
    assert expr == Not(BinOp("or", BinOp("eq", Path(("a",)), Literal(1)),
                             BinOp("ne", Path(("b",)), Literal(None))))


def test_literals() -> None:
    assert parse_filter("x eq 'it''s'").right == Literal("it's")
    assert parse_filter("x eq -1.5").right == Literal(-1.5)
    assert parse_filter("x eq true").right == Literal(True)
    assert parse_filter("x eq datetime'2024-01-01T00:00:00Z'").right == \
        Literal("2024-01-01T00:00:00Z")
    assert parse_filter("x in (1, 2, 3)") == BinOp("in", Path(("x",)), Literal((1, 2, 3)))


def test_lambda_with_alias_and_nested_paths() -> None:
    expr = parse_filter("service_install/any(si:si/device/any(d:d/belongs_to__application "
                        "eq 5))")
    assert expr == Lambda(("service_install",), "any", "si", Lambda(
        ("si", "device"), "any", "d",
        BinOp("eq", Path(("d", "belongs_to__application")), Literal(5))))
    assert parse_filter("owns__device/any()") == Lambda(("owns__device",), "any", None, None)
    assert parse_filter("a/$count gt 2") == BinOp("gt", Count(("a",)), Literal(2))


def test_functions() -> None:
    assert parse_filter("startswith(name,'ab')") == Call(
        "startswith", (Path(("name",)), Literal("ab")))
    with pytest.raises(ODataError, match="function 'length'"):
        parse_filter("length(name) eq 2")


def test_parameter_alias() -> None:
    q = parse_query(path="device(uuid=@uuid)", raw_query="$filter=id%20eq%20@n&@uuid='abc'&@n=4")
    assert q.key == {"uuid": "abc"}
    assert q.options.filter == BinOp("eq", Path(("id",)), Literal(4))
    with pytest.raises(ODataError, match="@x has no value"):
        parse_query(path="device", raw_query="$filter=id%20eq%20@x")


def test_percent_encoded_strings_keep_their_characters() -> None:
    """pinejs-client encodes a string's content (encodeURIComponent), quotes doubled."""
    q = parse_query(path="application", raw_query="$filter=slug%20eq%20'a%2Fb%26c(%27%27)'")
    assert q.options.filter.right == Literal("a/b&c('')".replace("''", "'"))


def test_nested_expand_options() -> None:
    q = parse_query(path="application(7)", raw_query=(
        "$select=id,slug&$expand=owns__device($select=uuid;$filter=is_online%20eq%20true;"
        "$orderby=device_name%20desc;$top=2;$expand=is_running__release($select=commit)),"
        "owns__release/$count($filter=status%20eq%20'success')"))
    assert q.key == 7 and q.options.select == ("id", "slug")
    devices, count = q.options.expand
    assert devices.name == "owns__device" and devices.options.select == ("uuid",)
    assert devices.options.orderby == ((("device_name",), True),)
    assert devices.options.top == 2
    assert devices.options.expand[0].name == "is_running__release"
    assert count.name == "owns__release" and count.count
    assert count.options.filter == BinOp("eq", Path(("status",)), Literal("success"))


def test_resource_count_and_keys() -> None:
    assert parse_query(path="device/$count", raw_query="").count
    assert parse_query(path="application('x')", raw_query="").key == "x"
    assert parse_query(path="a(b=1,c='d')", raw_query="").key == {"b": 1, "c": "d"}


@pytest.mark.parametrize(("path", "query", "message"), [
    ("device", "$filter=id%20eq", "expected a value|unexpected"),
    ("device", "$filter=id%20add%201%20eq%202", "operator 'add'"),
    ("device", "$apply=groupby(x)", r"\$apply is not supported"),
    ("device", "$top=-1", "non-negative"),
    ("device", "$orderby=a%20sideways", "cannot order by"),
    ("dev ice", "", "cannot parse the resource path"),
    ("device", "$filter=a%20eq%20'unterminated", "cannot parse"),
    ("device", "$filter=" + "(" * 5000 + "a eq 1" + ")" * 5000, "deeper than 32"),
])
def test_errors(path: str, query: str, message: str) -> None:
    with pytest.raises(ODataError, match=message) as err:
        parse_query(path=path, raw_query=query)
    assert err.value.status == 400
