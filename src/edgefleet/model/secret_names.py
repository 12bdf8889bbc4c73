"""Which names name a secret (API_KEY_2, deviceApiKey, password, psk): one rule shared by
diagnostics redaction and the server's audit trail."""

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
