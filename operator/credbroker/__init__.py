"""credbroker: turn a verified workload identity into a short-lived credential.

The package is split by concept: ``identity`` proves who a pod is, ``policy``
decides what it may have, ``targets`` mint and revoke credentials on the
systems that need them, ``delivery`` writes the Secret, and ``lifecycle``
renews, revokes and sweeps. ``handlers`` wires them into kopf.
"""

__version__ = "0.1.0"
