"""Which names name a secret (API_KEY_2, deviceApiKey, password, psk): one rule shared by
diagnostics redaction and the server's audit trail; and `redact_urls`, the one function that
hides the credentials of URLs shown to people."""

from __future__ import annotations

import itertools
import re

_STRONG = frozenset({"password", "passwd", "passphrase", "secret", "token", "apikey", "psk",
                     "credential", "credentials", "authorization", "cookie", "privatekey"})
"""A name holding one of these words anywhere names a secret."""
_LAST = frozenset({"key", "pass", "pwd", "auth"})
"""A name whose last word (numeric suffixes dropped: API_KEY_2) is one of these names one."""


def is_secret_name(name: str) -> bool:
    """Whether a key, variable or flag name names a secret (API_KEY_2, deviceApiKey, psk)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]
    if any(w in _STRONG for w in words) or any(
            a == "api" and b == "key" for a, b in itertools.pairwise(words)):
        return True
    while words and words[-1].isdigit():
        words.pop()
    return bool(words) and words[-1] in _LAST


URL_REDACTED = "[REDACTED]"
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)([^\s/?#\"'<>]+)@")
"""Up to the authority's last `@`: a password may hold an unencoded `@`."""
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+")
_QUERY_PARAM = re.compile(r"([?&;])([A-Za-z_][A-Za-z0-9_.\-]*)=([^&;#\s\"'<>]*)")


def redact_urls(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by [REDACTED]: the user info
    of `scheme://user:password@host` (a lone user part may be a token), and the value of a
    secret-named query parameter (`?password=...`, `&token=...`). The one function for
    URLs and DSNs shown to people: `config show`, server and supervisor output, reports."""
    text = _URL_USERINFO.sub(lambda m: m.group(1) + URL_REDACTED + "@", text)
    if "=" not in text:
        return text

    def param(m: re.Match[str]) -> str:
        if not m.group(3) or not is_secret_name(m.group(2)):
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}={URL_REDACTED}"

    out: list[str] = []
    last = 0
    for url in _URL.finditer(text):
        out += [text[last:url.start()], _QUERY_PARAM.sub(param, url.group(0))]
        last = url.end()
    out.append(text[last:])
    return "".join(out)
