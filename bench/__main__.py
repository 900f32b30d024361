"""Command line: ``python -m bench --scale full`` runs every benchmark on a new local cluster."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The local control plane, PostgreSQL server and operator harness live in e2e/.
sys.path.insert(0, str(REPO_ROOT / "e2e"))

from bench.report import evaluate_goals, update_doc, write_results  # noqa: E402
from bench.runner import run_benchmarks  # noqa: E402
from bench.scales import SCALES  # noqa: E402
from localcluster import LocalCluster  # noqa: E402
from operator_harness import prepare_postgres  # noqa: E402
from pgserver import PostgresServer  # noqa: E402

DATABASE = "bench"
DEFAULT_DOC = REPO_ROOT / "docs" / "benchmarks.md"
DEFAULT_RESULTS_DIR = REPO_ROOT / "bench" / "results"

logger = logging.getLogger("bench")


def main(argv: list[str] | None = None) -> int:
    """Start a local cluster and PostgreSQL, run the benchmarks, and write the results."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scale", choices=sorted(SCALES), default="small", help="benchmark sizes (default: small)"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_RESULTS_DIR,
        help=f"folder for the results file (default: {DEFAULT_RESULTS_DIR.relative_to(REPO_ROOT)})",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="Markdown file whose generated block gets the results "
        f"(default: {DEFAULT_DOC.relative_to(REPO_ROOT)} for --scale full, none otherwise)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # The sweep runs credbroker code in this process; its per-credential lines would drown
    # the progress messages.
    logging.getLogger("credbroker").setLevel(logging.WARNING)
    scale = SCALES[args.scale]
    doc = args.doc
    if doc is None and scale.name == "full":
        doc = DEFAULT_DOC

    with tempfile.TemporaryDirectory(prefix="credbroker-bench-") as work:
        cluster = LocalCluster.start()
        try:
            with PostgresServer(database=DATABASE) as postgres:
                prepare_postgres(postgres.admin_dsn())
                results = run_benchmarks(
                    cluster=cluster,
                    postgres=postgres,
                    database=DATABASE,
                    scale=scale,
                    work_dir=Path(work),
                    progress=logger.info,
                )
        finally:
            cluster.stop()

    results["goals"] = evaluate_goals(results)
    path = write_results(results, args.results_dir)
    logger.info("results written to %s", path)
    if doc is not None:
        update_doc(results, doc, results_file=_link_from(doc, path))
        logger.info("updated %s", doc)
    for goal in results["goals"]:
        logger.info(
            "%s: %s (limit %s) %s",
            goal["description"],
            goal["value"],
            goal["limit"],
            "met" if goal["met"] else "NOT met",
        )
    return 0


def _link_from(doc: Path, target: Path) -> str:
    """Return ``target`` relative to the folder of ``doc`` when possible, for a Markdown link."""
    try:
        return str(target.resolve().relative_to(doc.resolve().parent))
    except ValueError:
        return os.path.relpath(target.resolve(), doc.resolve().parent)


if __name__ == "__main__":
    sys.exit(main())
