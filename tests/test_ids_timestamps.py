"""Credential ids and RFC 3339 timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from credbroker.ids import CREDENTIAL_ID_LENGTH, is_credential_id, new_credential_id
from credbroker.timestamps import format_timestamp, parse_timestamp, utcnow

# Credential ids


def test_new_id_has_the_pattern():
    credential_id = new_credential_id()

    assert len(credential_id) == CREDENTIAL_ID_LENGTH
    assert is_credential_id(credential_id)


def test_new_ids_use_only_lowercase_and_digits():
    characters = set("".join(new_credential_id() for _ in range(200)))

    assert characters <= set("abcdefghijklmnopqrstuvwxyz0123456789")


def test_new_ids_differ():
    ids = {new_credential_id() for _ in range(1000)}

    assert len(ids) == 1000


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a" * 19,
        "a" * 21,
        "A" * 20,
        "abcdefghij-klmnopqrs",
        "abcdefghij_klmnopqrs",
        "abcdefghijklmnopqrs\n",
        " abcdefghijklmnopqrs",
        "abcdéfghijklmnopqrst",
    ],
)
def test_is_credential_id_rejects(text):
    assert not is_credential_id(text)


def test_is_credential_id_accepts():
    assert is_credential_id("0123456789abcdefghij")


# Timestamps


def test_format_utc():
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    assert format_timestamp(moment) == "2026-01-02T03:04:05Z"


def test_format_drops_microseconds():
    moment = datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC)

    assert format_timestamp(moment) == "2026-01-02T03:04:05Z"


def test_format_converts_to_utc():
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2026, 1, 2, 1, 4, 5, tzinfo=plus_two)

    assert format_timestamp(moment) == "2026-01-01T23:04:05Z"


def test_format_naive_raises():
    with pytest.raises(ValueError, match="no time zone"):
        format_timestamp(datetime(2026, 1, 2, 3, 4, 5))


def test_parse_z_suffix():
    parsed = parse_timestamp("2026-01-02T03:04:05Z")

    assert parsed == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parsed.tzinfo is UTC


def test_parse_offset_to_utc():
    parsed = parse_timestamp("2026-01-02T05:04:05+02:00")

    assert parsed == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)


def test_parse_fraction():
    parsed = parse_timestamp("2026-01-02T03:04:05.250Z")

    assert parsed == datetime(2026, 1, 2, 3, 4, 5, 250_000, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-01-02T03:04:05", "2026-01-02"])
def test_parse_without_zone_raises(text):
    with pytest.raises(ValueError, match="no time zone"):
        parse_timestamp(text)


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-02T03:04:05Z", "2026-01-02T25:00:00Z"])
def test_parse_invalid_raises(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_format_parse_round_trip():
    moment = datetime(2030, 12, 31, 23, 59, 59, tzinfo=UTC)

    assert parse_timestamp(format_timestamp(moment)) == moment


def test_utcnow_is_aware_utc():
    before = datetime.now(UTC)
    now = utcnow()
    after = datetime.now(UTC)

    assert now.utcoffset() == timedelta(0)
    assert before <= now <= after
