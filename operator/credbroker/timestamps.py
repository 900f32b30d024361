"""RFC 3339 timestamps in UTC, the one format used in annotations, status and audit."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC to the second, such as ``2026-01-02T03:04:05Z``."""
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {moment.isoformat()} has no time zone; pass an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime; raise ``ValueError`` when invalid."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(
            f"timestamp {text!r} has no time zone; expected a form such as 2026-01-02T03:04:05Z"
        )
    return moment.astimezone(UTC)
