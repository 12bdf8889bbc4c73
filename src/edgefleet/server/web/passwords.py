"""Dashboard passwords: argon2id hashes (argon2-cffi), checked in constant time."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("not a password of anyone")


def hash_password(password: str) -> str:
    """The argon2id hash to store; a ValueError says what is wrong with a weak password."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    return _HASHER.hash(password)


def verify(stored: str, password: str) -> bool:
    """Whether `password` matches `stored`; a user without a password never matches (the
    same work is done either way, so timing does not tell which users exist)."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and bool(stored)
    except (VerificationError, InvalidHashError):
        return False
