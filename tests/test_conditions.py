"""merge_conditions: lastTransitionTime moves only when a condition's status changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from credbroker.conditions import Condition, ConditionType, merge_conditions
from credbroker.reasons import Reason

EARLIER = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW = EARLIER + timedelta(hours=1)
EARLIER_TEXT = "2026-01-02T03:04:05Z"
NOW_TEXT = "2026-01-02T04:04:05Z"


def ready(status: bool | None, reason: Reason = Reason.ISSUED, message: str = "ok") -> Condition:
    return Condition(type=ConditionType.READY, status=status, reason=reason, message=message)


def stored_ready(status: str, time: str = EARLIER_TEXT) -> dict[str, object]:
    return {
        "type": "Ready",
        "status": status,
        "reason": "Issued",
        "message": "old",
        "lastTransitionTime": time,
    }


def by_type(conditions: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {condition["type"]: condition for condition in conditions}


def test_status_text_spellings():
    assert ready(True).status_text == "True"
    assert ready(False).status_text == "False"
    assert ready(None).status_text == "Unknown"


def test_new_condition_gets_now():
    merged = merge_conditions(stored=None, decided=[ready(True)], generation=3, now=NOW)

    assert merged == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Issued",
            "message": "ok",
            "lastTransitionTime": NOW_TEXT,
            "observedGeneration": 3,
        }
    ]


def test_same_status_keeps_time():
    merged = merge_conditions(
        stored=[stored_ready("True")],
        decided=[ready(True, reason=Reason.RENEWED, message="renewed")],
        generation=1,
        now=NOW,
    )

    assert merged[0]["lastTransitionTime"] == EARLIER_TEXT
    assert merged[0]["reason"] == "Renewed"
    assert merged[0]["message"] == "renewed"


def test_changed_status_gets_now():
    merged = merge_conditions(
        stored=[stored_ready("True")],
        decided=[ready(False, reason=Reason.NO_VERIFIED_PODS)],
        generation=1,
        now=NOW,
    )

    assert merged[0]["status"] == "False"
    assert merged[0]["lastTransitionTime"] == NOW_TEXT


def test_unknown_to_true_gets_now():
    merged = merge_conditions(
        stored=[stored_ready("Unknown")], decided=[ready(True)], generation=1, now=NOW
    )

    assert merged[0]["lastTransitionTime"] == NOW_TEXT


def test_same_status_without_stored_time_gets_now():
    stored = stored_ready("True")
    del stored["lastTransitionTime"]

    merged = merge_conditions(stored=[stored], decided=[ready(True)], generation=1, now=NOW)

    assert merged[0]["lastTransitionTime"] == NOW_TEXT


def test_unknown_types_kept():
    foreign = {
        "type": "Progressing",
        "status": "True",
        "reason": "Other",
        "lastTransitionTime": EARLIER_TEXT,
    }

    merged = merge_conditions(
        stored=[stored_ready("True"), foreign], decided=[ready(True)], generation=1, now=NOW
    )

    assert by_type(merged)["Progressing"] == foreign
    assert [condition["type"] for condition in merged] == ["Ready", "Progressing"]


def test_stored_list_not_modified():
    stored = [stored_ready("True")]

    merge_conditions(stored=stored, decided=[ready(False)], generation=1, now=NOW)

    assert stored == [stored_ready("True")]


def test_each_type_merged_separately():
    decided = [
        ready(True),
        Condition(
            type=ConditionType.IDENTITY_VERIFIED,
            status=True,
            reason=Reason.VERIFIED,
            message="1 pod",
        ),
    ]
    stored = [
        stored_ready("True"),
        {"type": "IdentityVerified", "status": "False", "lastTransitionTime": EARLIER_TEXT},
    ]

    merged = by_type(merge_conditions(stored=stored, decided=decided, generation=2, now=NOW))

    assert merged["Ready"]["lastTransitionTime"] == EARLIER_TEXT
    assert merged["IdentityVerified"]["lastTransitionTime"] == NOW_TEXT


def test_generation_none_omits_field():
    merged = merge_conditions(stored=None, decided=[ready(True)], generation=None, now=NOW)

    assert "observedGeneration" not in merged[0]


def test_generation_updated_on_kept_condition():
    stored = {**stored_ready("True"), "observedGeneration": 1}

    merged = merge_conditions(stored=[stored], decided=[ready(True)], generation=5, now=NOW)

    assert merged[0]["observedGeneration"] == 5
