"""Secret redaction for diagnostics text: one function, `redact_text`, used on every line of
the report (and on each string of its config section). It removes

- known secret values (config.json's keys, the supervisor's API keys), raw and JSON-escaped;
- the value of any secret-named key: `KEY=value`, `key: value`, JSON `"key": "value"`,
  `--flag value`, `--flag=value` (names like API_KEY_2, deviceApiKey, password, token);
  a value runs to the end of the line (or of the JSON string it sits in), never to the first
  space or comma;
- `Bearer` / `Basic` credentials, URL credentials (`scheme://user:pass@host`), and the body
  of a PEM private key.

Quotes around a redacted value are kept, so redacted JSON is still JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from edgefleet.model.secret_names import is_secret_name, redact_urls

__all__ = ["MIN_SECRET_LEN", "REDACTED", "is_secret_name", "redact_text"]

REDACTED = "[REDACTED]"
MIN_SECRET_LEN = 6

# a name, then = or :, e.g. `API_KEY_2=`, `"password": `, `token: `, `--token=`
_ASSIGN = re.compile(r"""(?<![A-Za-z0-9_])(["'])?([A-Za-z_][A-Za-z0-9_.\-]*)(?(1)\1)[ \t]*([=:])"""
                     r"[ \t]*")
# `--password value` (a flag and the next word)
_FLAG = re.compile(r"(?<![^\s\"'])--?([A-Za-z][A-Za-z0-9_\-]*)[ \t]+(?=[^\s\-])")
# a value up to the end of the line, or to the `"` that closes the JSON string it sits in
_REST = re.compile(r'(?:\\.|"(?![ \t]*(?:[,:}\]]|$))|[^"\\\n])*', re.MULTILINE)
_CLOSING = re.compile(r'"[ \t]*(?:[,:}\]]|$)', re.MULTILINE)
_DQUOTED = re.compile(r'"((?:\\.|[^"\\\n])*)"')
_SQUOTED = re.compile(r"'([^'\n]*)'")
_WORD = re.compile(r"""(?:\\.|[^\s"'\\])+""")
_JSON_SCALAR = re.compile(r"[^\s,}\]]+")
_SCHEME_TOKEN = re.compile(r"\b(Bearer|bearer|BEARER|Basic|basic)[ \t]+([A-Za-z0-9._~+/=\-]{6,})")
_PEM_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----")
# without an END marker: the rest of the line (or JSON string) and the base64 lines after it
_PEM_REST = re.compile(r'(?:\\.|[^\n"\\])*(?:\n[A-Za-z0-9+/=]+)*')


def redact_text(text: str, *, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret replaced by [REDACTED] (see the module's docstring)."""
    known = {s for s in secrets if len(s) >= MIN_SECRET_LEN}
    forms = sorted(known | {json.dumps(s)[1:-1] for s in known}, key=len, reverse=True)
    if forms:
        text = re.sub("|".join(re.escape(f) for f in forms), REDACTED, text)
    text = _redact_pem(text)
    text = redact_urls(text)
    text = _SCHEME_TOKEN.sub(lambda m: m.group(1) + " " + REDACTED, text)
    return _redact_named(text)


def _redact_pem(text: str) -> str:
    """Replace the body of every PEM private key, markers kept (linear: a marker type found
    without its END once is not searched for again)."""
    out: list[str] = []
    last = 0
    unended: set[str] = set()
    for m in _PEM_BEGIN.finditer(text):
        if m.start() < last:
            continue
        kind = m.group(1)
        end = -1 if kind in unended else text.find(f"-----END {kind}PRIVATE KEY-----", m.end())
        if end < 0:
            unended.add(kind)
            rest = _PEM_REST.match(text, m.end())
            end = rest.end() if rest else m.end()
        out += [text[last:m.end()], REDACTED]
        last = end
    out.append(text[last:])
    return "".join(out)


def _value_span(text: str, pos: int, *, json_member: bool, flag: bool) -> tuple[int, int, str]:
    """Where the value starting at `pos` lies (start, end) and what replaces it."""
    if text.startswith('"', pos):
        if not json_member and _CLOSING.match(text, pos):
            return pos, pos, ""  # the quote ends the JSON string this empty value sits in
        if m := _DQUOTED.match(text, pos):
            return pos + 1, m.end() - 1, REDACTED
    if text.startswith("'", pos) and (m := _SQUOTED.match(text, pos)):
        return pos + 1, m.end() - 1, REDACTED
    if json_member:
        if text.startswith(("{", "[", "null", "true", "false"), pos):
            return pos, pos, ""
        m = _JSON_SCALAR.match(text, pos)
        return pos, m.end() if m else pos, f'"{REDACTED}"'
    m = (_WORD if flag else _REST).match(text, pos)
    return pos, m.end() if m else pos, REDACTED


def _redact_named(text: str) -> str:
    """Replace the value of every secret-named assignment, JSON member and flag, left to
    right; a name inside a value already redacted is not looked at (linear time)."""
    found = sorted([(m.start(), True, m) for m in _ASSIGN.finditer(text)]
                   + [(m.start(), False, m) for m in _FLAG.finditer(text)],
                   key=lambda x: x[0])
    out: list[str] = []
    last = 0
    for begin, is_assign, m in found:
        if begin < last:  # inside a value already redacted
            continue
        if not is_secret_name(m.group(2) if is_assign else m.group(1)):
            continue
        json_member = is_assign and m.group(1) == '"' and m.group(3) == ":"
        start, end, new = _value_span(text, m.end(), json_member=json_member,
                                      flag=not is_assign)
        if end > start and text[start:end] != REDACTED:
            out += [text[last:start], new]
            last = end
    out.append(text[last:])
    return "".join(out)
