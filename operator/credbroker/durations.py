"""Go-style durations such as ``90s``, ``15m`` or ``1h30m``, as the CRDs spell them.

Only the units ``h``, ``m`` and ``s`` are accepted, each at most once, in that
order, with a whole number of at most six digits. That is a subset of Go's
``time.ParseDuration``, so the API server's CEL ``duration()`` reads every
value the same way this module does (e2e/test_crds.py runs both on the same
examples). ``DURATION_PATTERN`` is the exact
``pattern`` both CRDs put on duration fields, and a test checks that they match.
"""

import logging
import re
from datetime import timedelta

logger = logging.getLogger(__name__)

DURATION_PATTERN = r"^([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?$"
"""Anchored regular expression, valid in both Python ``re`` and Go RE2.

It also matches the empty string, which the CRDs reject with ``minLength: 1``
and ``parse_duration`` rejects by hand.
"""

DURATION_MAX_LENGTH = 21
"""Maximum length in characters of a duration, ``999999h999999m999999s``.

The CRDs set it as ``maxLength`` so the API server can bound the cost of the
CEL rules that read durations.
"""

DURATION_FORM = "whole numbers with the units h, m and s in that order, such as 90s, 15m or 1h30m"

_DURATION_RE = re.compile(DURATION_PATTERN)
_SECONDS_PER_MINUTE = 60
_SECONDS_PER_HOUR = 3600


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``1h30m`` into a ``timedelta``.

    Raises ``ValueError`` naming the value and the accepted form when ``text``
    is empty, uses another unit or order, or has a fraction or a sign.
    """
    match = _DURATION_RE.fullmatch(text) if text else None
    if match is None:
        raise ValueError(f"invalid duration {text!r}: expected {DURATION_FORM}")

    hours, minutes, seconds = (int(group[:-1]) if group else 0 for group in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Format a ``timedelta`` the way Go prints a duration, without zero parts.

    ``timedelta(minutes=90)`` becomes ``1h30m`` and zero becomes ``0s``.
    Sub-second parts are dropped. ``parse_duration`` reads the result back to
    the same value when every part fits in six digits. Raises ``ValueError``
    for a negative ``delta``.
    """
    if delta < timedelta(0):
        raise ValueError(f"invalid duration {delta}: a duration must not be negative")

    total_seconds = delta.days * 24 * _SECONDS_PER_HOUR + delta.seconds
    hours, remainder = divmod(total_seconds, _SECONDS_PER_HOUR)
    minutes, seconds = divmod(remainder, _SECONDS_PER_MINUTE)

    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return "".join(parts)
