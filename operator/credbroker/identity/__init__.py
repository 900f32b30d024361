"""Attest and verify which workload is asking; the result is a ``WorkloadIdentity``."""

from credbroker.identity.workload import WorkloadIdentity

__all__ = ["WorkloadIdentity"]
