"""Results: the JSON file, the targets each result is held against, and the docs table."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOC_START = "<!-- bench:results:start -->"
DOC_END = "<!-- bench:results:end -->"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Goal:
    """A target for one number of the results: it is met when the value is at most ``limit``."""

    key: str
    description: str
    limit: float
    unit: str
    read: Callable[[dict[str, Any]], float]


GOALS = (
    Goal(
        "latency_p50",
        "pod created to working login, p50",
        0.25,
        "s",
        lambda r: r["latency"]["working_login_seconds"]["p50"],
    ),
    Goal(
        "latency_p99",
        "pod created to working login, p99",
        1.0,
        "s",
        lambda r: r["latency"]["working_login_seconds"]["p99"],
    ),
    Goal(
        "throughput_seconds",
        "bindings created to every Secret present",
        60.0,
        "s",
        lambda r: r["throughput"]["seconds_to_all_secrets"],
    ),
    Goal("overhead", "operator time / floor time", 2.0, "", lambda r: r["overhead"]["ratio"]),
    Goal(
        "sweep_seconds",
        "sweep of the large run",
        10.0,
        "s",
        lambda r: r["sweep"]["runs"][-1]["seconds"],
    ),
    Goal(
        "rss_mib",
        "operator RSS with every pod",
        150.0,
        "MiB",
        lambda r: r["memory"][-1]["rss_bytes"] / MIB,
    ),
)


def evaluate_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Return each goal with its value and whether the value meets it."""
    evaluated = []
    for goal in GOALS:
        value = round(goal.read(results), 3)
        evaluated.append(
            {
                "key": goal.key,
                "description": goal.description,
                "limit": goal.limit,
                "unit": goal.unit,
                "value": value,
                "met": value <= goal.limit,
            }
        )
    return evaluated


def results_path(results_dir: Path, results: dict[str, Any]) -> Path:
    """Return ``<date>.json`` for a full run and ``<date>-<scale>.json`` for other scales."""
    day = results["date"][:10]
    scale = results["scale"]["name"]
    return results_dir / (f"{day}.json" if scale == "full" else f"{day}-{scale}.json")


def write_results(results: dict[str, Any], results_dir: Path) -> Path:
    """Write the results as JSON and return the file's path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_path(results_dir, results)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def update_doc(results: dict[str, Any], doc_path: Path, *, results_file: str) -> None:
    """Replace the generated block of ``doc_path`` with tables of ``results``."""
    text = doc_path.read_text()
    start = text.find(DOC_START)
    end = text.find(DOC_END)
    if start < 0 or end < start:
        raise ValueError(
            f"{doc_path} lacks the markers {DOC_START} and {DOC_END}; add them around the "
            "place where the results table belongs"
        )
    block = render_results(results, results_file=results_file)
    doc_path.write_text(text[: start + len(DOC_START)] + "\n" + block + text[end:])


def render_results(results: dict[str, Any], *, results_file: str) -> str:
    """Render the Markdown tables for one run."""
    scale = results["scale"]
    machine = results["machine"]
    versions = results["versions"]
    lines = [
        f"Run of {results['date']} at scale `{scale['name']}`, {results['duration_seconds']:.0f} s "
        f"in total; raw numbers in [{results_file}]({results_file}).",
        "",
        f"Machine: {machine['cpu_count']} cores ({machine['cpu_model']}), "
        f"{machine['memory_bytes'] / 2**30:.1f} GiB RAM, Linux {machine['kernel']}; load average "
        f"{_loads(results['load_average_at_start'])} at the start and "
        f"{_loads(results['load_average_at_end'])} at the end.",
        "",
        f"Versions: Kubernetes {versions['kubernetes']}, PostgreSQL {versions['postgresql']}, "
        f"Python {versions['python']}, credbroker {versions['credbroker']}, "
        f"kopf {versions['kopf']}, kubernetes client {versions['kubernetes_client']}, "
        f"psycopg {versions['psycopg']}, PyJWT {versions['pyjwt']}.",
        "",
        "| target | limit | result | met |",
        "| --- | --- | --- | --- |",
    ]
    for goal in results["goals"]:
        unit = f" {goal['unit']}" if goal["unit"] else ""
        lines.append(
            f"| {goal['description']} | ≤ {goal['limit']:g}{unit} | {goal['value']:g}{unit} | "
            f"{'yes' if goal['met'] else 'no'} |"
        )
    lines += ["", *_detail_table(results), ""]
    return "\n".join(lines)


def _detail_table(results: dict[str, Any]) -> list[str]:
    latency = results["latency"]
    throughput = results["throughput"]
    floor = results["floor"]
    verification = results["verification"]
    rows = [
        ("latency, pods", f"{latency['pods']}, one at a time, every credential logged in"),
        ("pod created to Secret seen", _spread(latency["secret_seconds"])),
        ("pod created to working login", _spread(latency["working_login_seconds"])),
        (
            "throughput",
            f"{throughput['bindings']} bindings x {throughput['pods'] // throughput['bindings']} "
            f"pods: every Secret after {throughput['seconds_to_all_secrets']:g} s, every pod "
            f"verified in status after {throughput['seconds_to_all_verified_in_status']:g} s",
        ),
        (
            "throughput rates",
            f"{throughput['issuances_per_second']:g} issuances/s, "
            f"{throughput['attestations_per_second']:g} attested pods/s",
        ),
        (
            "floor",
            f"{floor['seconds']:g} s with {floor['workers']} threads "
            f"({floor['token_requests']} TokenRequests and TokenReviews, "
            f"{floor['roles_created']} roles and Secrets)",
        ),
        ("overhead", f"{results['overhead']['ratio']:g} x the floor"),
    ]
    for run in results["sweep"]["runs"]:
        rows.append(
            (
                f"sweep, {run['live']} live + {run['revoked_expired']} expired",
                f"{run['seconds']:g} s, {run['api_calls']} API calls, "
                f"{run['target_calls']} PostgreSQL operations",
            )
        )
    for state in results["memory"]:
        rows.append(
            (
                f"RSS, {state['state']}",
                f"{state['rss_bytes'] / MIB:.1f} MiB with {state['pods_in_cluster']} pods in the "
                f"cluster, {state['selected_pods']} selected "
                f"(peak {state['peak_rss_bytes'] / MIB:.1f} MiB)",
            )
        )
    rows.append(
        (
            "JWT verification, JWKS cached",
            f"{verification['verifier_per_second']:g}/s "
            f"({verification['verifier_microseconds_each']:g} µs each); bare PyJWT "
            f"{verification['pyjwt_decode_per_second']:g}/s",
        )
    )
    table = ["| measurement | result |", "| --- | --- |"]
    table += [f"| {name} | {value} |" for name, value in rows]
    return table


def _spread(summary: dict[str, float]) -> str:
    return (
        f"p50 {summary['p50'] * 1000:.0f} ms, p95 {summary['p95'] * 1000:.0f} ms, "
        f"p99 {summary['p99'] * 1000:.0f} ms, max {summary['max'] * 1000:.0f} ms"
    )


def _loads(values: list[float]) -> str:
    return " / ".join(f"{value:g}" for value in values)
