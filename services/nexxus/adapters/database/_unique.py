"""What a client is told when a user's unique key is taken, whatever the database."""

from __future__ import annotations

from nexxus.core.errors import AlreadyExists

__all__ = ["key_taken"]

_MESSAGES = {
    "username": "this username is already taken",
    "email": "this e-mail address is already taken",
    "external_id": "this external identity is already linked to a user",
}


def key_taken(field: str) -> AlreadyExists:
    """AlreadyExists naming the field (username, email, external_id), never the storage's text."""
    return AlreadyExists(_MESSAGES.get(field, "it already exists"), field=field)
