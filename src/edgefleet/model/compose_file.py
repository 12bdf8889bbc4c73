"""Reading a compose file as compose-go does: YAML 1.2, then `include`, `extends`, `env_file`
and `label_file` expanded (at push, where the project's files are), `x-*` fields dropped.

YAML 1.2 matters: PyYAML reads YAML 1.1, where `UDEV: on` is a boolean and `ports: [80:80]`
is the sexagesimal number 4880. Here only `true`/`false` are booleans, `null`/`~`/empty are
null, and numbers are decimal, `0o` octal or `0x` hex.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from edgefleet.model.errors import InvalidInput, Problem

MAX_DEPTH = 64
MAX_INCLUDES = 32


class Yaml12Loader(yaml.SafeLoader):
    """A SafeLoader with YAML 1.2 core schema scalars."""


Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN\0"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$",
     "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+.0123456789"),
):
    Yaml12Loader.add_implicit_resolver(_tag, re.compile(_regexp), list(_first))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if len(text) > 30:
        raise yaml.constructor.ConstructorError(None, None, f"number too long: {text[:20]}...",
                                                node.start_mark)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


def _construct_tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """`!override value` is the value; `!reset value` clears it (compose merge tags, which
    only matter when files are merged: a single file keeps or drops the value)."""
    if node.tag == "!reset":
        return None
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


Yaml12Loader.add_constructor("!override", _construct_tagged)
Yaml12Loader.add_constructor("!reset", _construct_tagged)
Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


MAX_NODES = 200_000


def _depth(value: Any, limit: int) -> None:
    """Refuse deep or huge documents (anchors can make a small file expand enormously)."""
    stack = [(value, 0)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ValueError(f"more than {MAX_NODES} values (after expanding anchors)")
        if depth > limit:
            raise ValueError(f"nested more than {limit} levels deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def parse_yaml(text: str, *, what: str = "compose file") -> Any:
    """YAML 1.2 text → data; any problem is an InvalidInput naming the line."""
    if _nesting(text) > MAX_DEPTH:
        raise InvalidInput(what, [Problem("", f"nested more than {MAX_DEPTH} levels deep")])
    try:
        doc = yaml.load(text, Loader=Yaml12Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidInput(what, [Problem(where, str(exc).splitlines()[0])]) from None
    except (ValueError, RecursionError, TypeError) as exc:
        raise InvalidInput(what, [Problem("", str(exc)[:200] or type(exc).__name__)]) from None
    try:
        _depth(doc, MAX_DEPTH)
    except ValueError as exc:
        raise InvalidInput(what, [Problem("", str(exc))]) from None
    return doc


def _nesting(text: str) -> int:
    """An upper bound on flow nesting ([ and {), found without parsing (the parser recurses)."""
    depth = best = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return best


def _inside(base: Path, name: Any, where: str) -> Path:
    path = (base / str(name)).resolve()
    if not path.is_relative_to(base.resolve()):
        raise InvalidInput("compose file", [Problem(where, f"{name!r} is outside the project")])
    if not path.is_file():
        raise InvalidInput("compose file", [Problem(where, f"no file {name!r} in the project")])
    return path


def _env_lines(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value if sep else ""
    return out


def _files(value: Any, base: Path | None = None) -> list[str]:
    """File names of env_file/include entries (strings, or mappings with `path`; a missing
    file marked `required: false` is left out)."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, dict):
            optional = item.get("required") is False
            item = item.get("path")
            if optional and (base is None or not (base / str(item)).is_file()):
                continue
        if isinstance(item, list):
            out.extend(str(i) for i in item if isinstance(i, str))
        elif isinstance(item, str):
            out.append(item)
        elif item is not None:
            raise InvalidInput("compose file", [Problem("", f"not a file name: {item!r}")])
    return out


def _expand_service(name: str, conf: Any, services: dict[str, Any], base: Path | None,
                    seen: tuple[str, ...] = ()) -> Any:
    if not isinstance(conf, dict):
        return conf
    conf = dict(conf)
    where = f"services.{name}"
    ext = conf.pop("extends", None)
    if ext is not None:
        if not isinstance(ext, str | dict):
            raise InvalidInput("compose file", [Problem(f"{where}.extends",
                                                        "expected a service name or a mapping")])
        other = ext if isinstance(ext, str) else ext.get("service")
        if isinstance(ext, dict) and ext.get("file"):
            if base is None:
                raise InvalidInput("compose file", [Problem(f"{where}.extends",
                                                            "extends.file needs the project")])
            doc = parse_yaml(_inside(base, ext["file"], f"{where}.extends").read_text())
            pool = (doc or {}).get("services") or {} if isinstance(doc, dict) else {}
        else:
            pool = services
        if not isinstance(pool, dict) or not isinstance(other, str) or other in seen \
                or other not in pool:
            raise InvalidInput("compose file", [Problem(f"{where}.extends",
                                                        f"cannot extend {other!r}")])
        parent = _expand_service(str(other), pool[other], pool, base, (*seen, name))
        if isinstance(parent, dict):
            merged = dict(parent)
            for key, value in conf.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
            conf = merged
    for key, target in (("env_file", "environment"), ("label_file", "labels")):
        if key not in conf:
            continue
        files = conf.pop(key)
        if base is None:
            raise InvalidInput("compose file", [Problem(f"{where}.{key}",
                                                        f"{key} needs the project's files")])
        values: dict[str, str] = {}
        for f in _files(files, base):
            values.update(_env_lines(_inside(base, f, f"{where}.{key}")))
        own = conf.get(target)
        if isinstance(own, list):
            own = {str(i).partition("=")[0]: str(i).partition("=")[2] for i in own}
        conf[target] = {**values, **(own if isinstance(own, dict) else {})}
    return conf


def expand(doc: Any, *, base: Path | None = None, depth: int = 0) -> Any:
    """`include`, `extends`, `env_file`, `label_file` expanded; top-level `name` and `x-*`
    dropped. Files are read from `base` (the project) and must stay inside it."""
    if not isinstance(doc, dict):
        return doc
    doc = {k: v for k, v in doc.items() if not str(k).startswith("x-") and k != "name"}
    includes = doc.pop("include", None)
    if includes is not None:
        if base is None or depth > 3:
            raise InvalidInput("compose file", [Problem("include",
                                                        "include needs the project's files")])
        for i, f in enumerate(_files(includes)[:MAX_INCLUDES]):
            sub = expand(parse_yaml(_inside(base, f, f"include[{i}]").read_text()),
                         base=base, depth=depth + 1)
            for section in ("services", "volumes", "networks"):
                if isinstance(sub, dict) and isinstance(sub.get(section), dict):
                    doc.setdefault(section, {})
                    if isinstance(doc[section], dict):
                        doc[section] = {**sub[section], **doc[section]}
    services = doc.get("services")
    if isinstance(services, dict):
        bad = [Problem(f"services.{name}", "a service must be a mapping")
               for name, conf in services.items() if not isinstance(conf, dict | None)]
        if bad:
            raise InvalidInput("compose file", bad)
        doc["services"] = {name: _expand_service(str(name), conf, services, base)
                           for name, conf in services.items()}
    return doc


def _escape(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value


def load_compose(text: str, *, base: Path | None = None,
                 variables: dict[str, str] | None = None) -> Any:
    """A compose file's text → its expanded document (see `expand`). In a project (`base`),
    variables are interpolated from `variables` and the project's `.env` file (whose values
    may use the variables before them), as compose does; what is left is escaped (`$` →
    `$$`), so interpolating again later changes nothing."""
    from edgefleet.model.formats import interpolate

    doc = parse_yaml(text)
    if base is not None and isinstance(doc, dict):
        known = dict(variables or {})
        dotenv = base / ".env"
        for key, value in (_env_lines(dotenv) if dotenv.is_file() else {}).items():
            known.setdefault(key, str(interpolate(value, known)))
        doc = _escape(interpolate(doc, known))
    return expand(doc, base=base)
