"""Credential ids: short, random, and safe to use inside role names and labels."""

import re
import secrets

CREDENTIAL_ID_LENGTH = 20
CREDENTIAL_ID_PATTERN = re.compile(r"^[a-z0-9]{20}$")

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_credential_id() -> str:
    """Return a new random credential id of 20 lowercase letters and digits (about 103 bits)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(CREDENTIAL_ID_LENGTH))


def is_credential_id(text: str) -> bool:
    """Tell whether ``text`` has the shape of a credential id."""
    return CREDENTIAL_ID_PATTERN.fullmatch(text) is not None
