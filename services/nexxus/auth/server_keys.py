"""Application server keys: how they are made, stored and checked.

A key is ``nxs_`` + 43 url-safe characters: 256 random bits. Such a secret
cannot be guessed, so it needs no slow password hash: the database keeps its
SHA-256 (``sha256$<hex>``), and a presented key is checked by hashing it once
and comparing in constant time — microseconds, so a flood of made-up keys
costs the server nothing (an argon2 check per unknown key was a cheap
unauthenticated way to burn CPU and memory). A presented credential that does
not even have a key's shape is refused before any hashing.

Hashes written before this scheme are argon2 PHC strings; they still verify
(through the password hasher) until the application's key is rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

__all__ = ["SERVER_KEY_PREFIX", "generate_server_key", "hash_server_key", "is_legacy_hash", "key_matches"]

SERVER_KEY_PREFIX = "nxs_"
_SCHEME = "sha256$"
_SHAPE = re.compile(r"nxs_[A-Za-z0-9_-]{43}")


def generate_server_key() -> str:
    """A new application server key: ``nxs_`` + 43 url-safe characters (256 bits)."""
    return SERVER_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_server_key(key: str) -> str:
    """What the database stores for `key`."""
    return _SCHEME + hashlib.sha256(key.encode()).hexdigest()


def is_legacy_hash(stored: str) -> bool:
    """True for a hash from before this scheme (argon2), checked by the password hasher."""
    return stored.startswith("$argon2")


def key_matches(stored: str, key: str) -> bool:
    """True when `key` is the key whose hash is `stored` (constant-time; never for a legacy hash)."""
    if not stored.startswith(_SCHEME) or not _SHAPE.fullmatch(key):
        return False
    return hmac.compare_digest(stored, hash_server_key(key))
