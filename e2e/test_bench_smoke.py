"""Smoke test of the benchmark harness: a tiny run on the session cluster.

It checks that every benchmark runs and that the results file and the docs
block are well formed. Speed is not asserted here; ``make bench`` measures it.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import DOC_END, DOC_START, evaluate_goals, update_doc, write_results
from bench.runner import run_benchmarks
from bench.scales import SCALES

from localcluster import ClusterAccess
from operator_harness import prepare_postgres
from pgserver import PostgresServer

DATABASE = "bench"
TOP_LEVEL_KEYS = {
    "date",
    "scale",
    "machine",
    "versions",
    "verification",
    "latency",
    "floor",
    "throughput",
    "overhead",
    "sweep",
    "memory",
    "goals",
    "duration_seconds",
    "load_average_at_start",
    "load_average_at_end",
}


def _is_plausible(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def test_bench_tiny_run_writes_results(cluster: ClusterAccess, tmp_path: Path) -> None:
    scale = SCALES["tiny"]
    with PostgresServer(database=DATABASE) as postgres:
        prepare_postgres(postgres.admin_dsn())
        results = run_benchmarks(
            cluster=cluster,
            postgres=postgres,
            database=DATABASE,
            scale=scale,
            work_dir=tmp_path,
            progress=lambda message: None,
        )
        admin_password = postgres.admin_password
    results["goals"] = evaluate_goals(results)
    path = write_results(results, tmp_path / "results")
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{DOC_START}\n{DOC_END}\n")
    update_doc(results, doc, results_file=path.name)

    written = json.loads(path.read_text())
    assert set(written) == TOP_LEVEL_KEYS
    assert admin_password not in path.read_text()

    latency = written["latency"]
    assert latency["pods"] == scale.latency_pods
    assert latency["logins_checked"] == scale.latency_pods
    for summary in (latency["secret_seconds"], latency["working_login_seconds"]):
        assert set(summary) == {"p50", "p95", "p99", "min", "max", "mean"}
        assert all(_is_plausible(value) for value in summary.values())
        assert summary["min"] <= summary["p50"] <= summary["p95"] <= summary["p99"]
        assert summary["p99"] <= summary["max"]
    assert latency["secret_seconds"]["p50"] <= latency["working_login_seconds"]["p50"]

    throughput = written["throughput"]
    assert throughput["bindings"] == scale.throughput_bindings
    assert throughput["pods"] == scale.throughput_pods
    assert throughput["logins_checked"] >= 1
    assert throughput["seconds_to_all_secrets"] > 0
    assert throughput["seconds_to_all_verified_in_status"] >= throughput["seconds_to_all_secrets"]

    floor = written["floor"]
    assert floor["token_requests"] == scale.throughput_pods
    assert floor["token_reviews"] == scale.throughput_pods
    assert floor["roles_created"] == scale.throughput_bindings
    assert floor["secrets_created"] == scale.throughput_bindings
    assert floor["seconds"] > 0
    assert written["overhead"]["ratio"] > 0

    small, large = written["sweep"]["runs"]
    assert (small["live"], large["live"]) == (scale.sweep_live_small, scale.sweep_live_large)
    for run in (small, large):
        assert run["revoked_expired"] == scale.sweep_expired
        assert run["credentials_seen"] == run["live"] + scale.sweep_expired
        assert run["target_calls"] == 1 + scale.sweep_expired
        assert run["api_calls"] >= 1
        assert run["secrets_seen"] == run["live"]

    states = [state["state"] for state in written["memory"]]
    assert states == ["no pods", "selected pods only", "selected and unselected pods"]
    assert [state["selected_pods"] for state in written["memory"]] == [
        0,
        scale.throughput_pods,
        scale.throughput_pods,
    ]
    for state in written["memory"]:
        assert state["rss_bytes"] > 10 * 1024 * 1024
        assert state["peak_rss_bytes"] >= state["rss_bytes"]
    assert written["memory"][2]["pods_in_cluster"] >= scale.throughput_pods + scale.unselected_pods

    verification = written["verification"]
    assert verification["verifications"] == scale.verifications
    assert verification["verifier_per_second"] > 0
    assert verification["jwks_fetches"] == 1

    assert written["versions"]["kubernetes"].startswith("v")
    assert written["versions"]["postgresql"]
    assert written["machine"]["cpu_count"] >= 1
    assert [goal["key"] for goal in written["goals"]] == [
        "latency_p50",
        "latency_p99",
        "throughput_seconds",
        "overhead",
        "sweep_seconds",
        "rss_mib",
    ]

    rendered = doc.read_text()
    assert "| target | limit | result | met |" in rendered
    assert path.name in rendered
    assert rendered.index(DOC_START) < rendered.index("| target |") < rendered.index(DOC_END)


@pytest.mark.parametrize("percent", [0, 101])
def test_percentile_rejects_out_of_range(percent: float) -> None:
    from bench.stats import percentile

    with pytest.raises(ValueError, match="percent"):
        percentile([1.0, 2.0], percent)
