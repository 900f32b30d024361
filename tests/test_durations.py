"""Go-style durations: parsing, formatting, and the pattern the CRDs share."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import yaml

from crd_examples import CRD_DIR
from credbroker.durations import (
    DURATION_MAX_LENGTH,
    DURATION_PATTERN,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2h0m5s", timedelta(hours=2, seconds=5)),
        ("1m30s", timedelta(minutes=1, seconds=30)),
        ("0s", timedelta(0)),
        ("007m", timedelta(minutes=7)),
        ("48h", timedelta(days=2)),
        ("999999h999999m999999s", timedelta(hours=999999, minutes=999999, seconds=999999)),
    ],
)
def test_parse_duration_valid(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "15",
        "1d",
        "1.5h",
        "-1m",
        "+1m",
        "1h 30m",
        " 1h",
        "1h\n",
        "30m1h",
        "1h1h",
        "1ms",
        "1us",
        "15M",
        "1000000s",
        "h",
        "PT15M",
    ],
)
def test_parse_duration_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as caught:
        parse_duration(text)

    assert repr(text) in str(caught.value)
    assert "such as 90s, 15m or 1h30m" in str(caught.value)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(minutes=15), "15m"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(hours=1, seconds=1), "1h1s"),
        (timedelta(days=2, minutes=1), "48h1m"),
        (timedelta(seconds=59, microseconds=999999), "59s"),
    ],
)
def test_format_duration(delta: timedelta, expected: str) -> None:
    assert format_duration(delta) == expected


def test_format_duration_negative() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        format_duration(timedelta(seconds=-1))


@pytest.mark.parametrize("seconds", [0, 1, 59, 60, 61, 3599, 3600, 3661, 86400, 3599999999])
def test_duration_round_trip(seconds: int) -> None:
    delta = timedelta(seconds=seconds)

    assert parse_duration(format_duration(delta)) == delta


def test_pattern_accepts_what_parser_accepts() -> None:
    for text in ["90s", "1h30m", "999999h999999m999999s"]:
        assert re.fullmatch(DURATION_PATTERN, text)
    for text in ["1d", "30m1h", "1.5h"]:
        assert not re.fullmatch(DURATION_PATTERN, text)


def test_max_length_fits_longest() -> None:
    assert len("999999h999999m999999s") == DURATION_MAX_LENGTH


def _duration_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every schema node below ``node`` that looks like a duration field."""
    found = []
    if "pattern" in node and "h)?" in node["pattern"]:
        found.append(node)
    for child in node.get("properties", {}).values():
        found += _duration_nodes(child)
    if isinstance(node.get("items"), dict):
        found += _duration_nodes(node["items"])
    return found


@pytest.mark.parametrize("file_name", ["credentialtargets.yaml", "credentialbindings.yaml"])
def test_crd_duration_pattern_identical(file_name: str) -> None:
    crd = yaml.safe_load((CRD_DIR / file_name).read_text())
    nodes = _duration_nodes(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])

    assert len(nodes) == 3
    for node in nodes:
        assert node["pattern"] == DURATION_PATTERN
        assert node["maxLength"] == DURATION_MAX_LENGTH
        if "default" in node:
            assert format_duration(parse_duration(node["default"])) == node["default"]
