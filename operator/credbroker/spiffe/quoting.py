"""Quoting of untrusted values in rejection messages.

SPIFFE IDs, header values and claims come from the party being verified, so
a message shows them through ``quote``, which caps their length.
"""

from typing import Any

MAX_QUOTED_CHARS = 120


def quote(value: Any) -> str:
    """Return ``repr(value)``, cut to MAX_QUOTED_CHARS characters plus ``...``."""
    text = repr(value)
    if len(text) > MAX_QUOTED_CHARS:
        return text[:MAX_QUOTED_CHARS] + "..."
    return text
