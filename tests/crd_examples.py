"""Valid and invalid CredentialTarget and CredentialBinding manifests for schema tests.

tests/test_crd_schema.py checks every example offline against the CRD schema
and the pydantic models, and e2e/test_crds.py sends the same examples to a
real API server with a server-side dry run, so the CEL rules run there too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = REPO_ROOT / "crds"
API_VERSION = "credbroker.dev/v1alpha1"

Kind = Literal["CredentialTarget", "CredentialBinding"]

REMOVE = object()
"""Marker for ``replaced``: delete the key instead of setting it."""


@dataclass(frozen=True)
class SpecExample:
    """One spec and whether the CRD and the model must accept it.

    ``field`` is the camelCase path that a rejection must name, such as
    ``spec.renewAfter``. ``cel_message`` is set on examples that only a CEL
    rule of the CRD rejects, which the offline schema check cannot run, and is
    a part of that rule's message.
    """

    id: str
    kind: Kind
    spec: dict[str, Any]
    valid: bool
    field: str | None = None
    cel_message: str | None = None


@dataclass(frozen=True)
class StatusExample:
    """One status that the CRD's status schema must accept or reject."""

    id: str
    kind: Kind
    status: dict[str, Any]
    valid: bool
    field: str | None = None


TARGET_SPEC: dict[str, Any] = {
    "type": "postgresql",
    "postgresql": {
        "host": "127.0.0.1",
        "database": "shop",
        "adminSecretRef": {"name": "orders-postgres-admin"},
    },
    "allowedNamespaces": ["shop"],
    "allowedRoles": ["orders_rw", "orders_ro"],
}

BINDING_SPEC: dict[str, Any] = {
    "targetRef": {"name": "orders-postgres"},
    "role": "orders_rw",
    "podSelector": {"matchLabels": {"app": "orders"}},
    "serviceAccounts": ["orders"],
    "secretName": "orders-db",
}


def replaced(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Return a deep copy of ``base`` with changes at dotted paths.

    Keyword names use ``__`` for a dot, so ``postgresql__port=0`` sets
    ``postgresql.port``. A value of ``REMOVE`` deletes the key.
    """
    result = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = result
        for parent in parents:
            node = node[parent]
        if value is REMOVE:
            del node[leaf]
        else:
            node[leaf] = value
    return result


def _target(
    id: str, spec: dict[str, Any], *, field: str | None = None, cel_message: str | None = None
) -> SpecExample:
    return SpecExample(
        id=id,
        kind="CredentialTarget",
        spec=spec,
        valid=field is None,
        field=field,
        cel_message=cel_message,
    )


def _binding(
    id: str, spec: dict[str, Any], *, field: str | None = None, cel_message: str | None = None
) -> SpecExample:
    return SpecExample(
        id=id,
        kind="CredentialBinding",
        spec=spec,
        valid=field is None,
        field=field,
        cel_message=cel_message,
    )


TARGET_EXAMPLES: list[SpecExample] = [
    _target("target-minimal", TARGET_SPEC),
    _target(
        "target-every-field",
        {
            "type": "postgresql",
            "postgresql": {
                "host": "db.shop.svc.cluster.local",
                "port": 6432,
                "database": "shop",
                "sslMode": "verify-full",
                "adminSecretRef": {
                    "name": "orders-postgres-admin",
                    "usernameKey": "user",
                    "passwordKey": "pass.word",
                },
                "connectTimeout": "5m",
            },
            "allowedNamespaces": ["shop", "billing"],
            "allowedRoles": ["orders_rw", "_audit"],
            "maxTTL": "2h30m",
            "defaultTTL": "2h30m",
        },
    ),
    _target("target-all-namespaces", replaced(TARGET_SPEC, allowedNamespaces=["*"])),
    _target("target-ipv6-host", replaced(TARGET_SPEC, postgresql__host="::1")),
    _target("target-seconds-ttl", replaced(TARGET_SPEC, maxTTL="90s", defaultTTL="60s")),
    _target("target-no-type", replaced(TARGET_SPEC, type=REMOVE), field="spec.type"),
    _target("target-unknown-type", replaced(TARGET_SPEC, type="mysql"), field="spec.type"),
    _target(
        "target-no-postgresql",
        replaced(TARGET_SPEC, postgresql=REMOVE),
        field="spec.postgresql",
        cel_message="postgresql is required when type is postgresql",
    ),
    _target(
        "target-no-namespaces",
        replaced(TARGET_SPEC, allowedNamespaces=[]),
        field="spec.allowedNamespaces",
    ),
    _target(
        "target-star-and-namespace",
        replaced(TARGET_SPEC, allowedNamespaces=["*", "shop"]),
        field="spec.allowedNamespaces",
        cel_message="must contain '*' alone",
    ),
    _target(
        "target-duplicate-namespace",
        replaced(TARGET_SPEC, allowedNamespaces=["shop", "shop"]),
        field="spec.allowedNamespaces[1]",
    ),
    _target(
        "target-uppercase-namespace",
        replaced(TARGET_SPEC, allowedNamespaces=["Shop"]),
        field="spec.allowedNamespaces[0]",
    ),
    _target(
        "target-role-with-dash",
        replaced(TARGET_SPEC, allowedRoles=["orders-rw"]),
        field="spec.allowedRoles[0]",
    ),
    _target(
        "target-role-too-long",
        replaced(TARGET_SPEC, allowedRoles=["r" * 64]),
        field="spec.allowedRoles[0]",
    ),
    _target(
        "target-no-roles",
        replaced(TARGET_SPEC, allowedRoles=[]),
        field="spec.allowedRoles",
    ),
    _target("target-ttl-in-days", replaced(TARGET_SPEC, maxTTL="1d"), field="spec.maxTTL"),
    _target("target-ttl-fraction", replaced(TARGET_SPEC, maxTTL="1.5h"), field="spec.maxTTL"),
    _target("target-ttl-empty", replaced(TARGET_SPEC, maxTTL=""), field="spec.maxTTL"),
    _target("target-ttl-newline", replaced(TARGET_SPEC, maxTTL="1h\n"), field="spec.maxTTL"),
    _target(
        "target-ttl-units-reversed",
        replaced(TARGET_SPEC, maxTTL="30m1h"),
        field="spec.maxTTL",
    ),
    _target(
        "target-max-ttl-too-short",
        replaced(TARGET_SPEC, maxTTL="30s", defaultTTL="30s"),
        field="spec.maxTTL",
        cel_message="maxTTL must be at least 1m",
    ),
    _target(
        "target-default-above-max",
        replaced(TARGET_SPEC, maxTTL="1h", defaultTTL="2h"),
        field="spec.defaultTTL",
        cel_message="defaultTTL must not exceed maxTTL",
    ),
    # defaultTTL defaults to 15m, which exceeds this maxTTL.
    _target(
        "target-max-below-default",
        replaced(TARGET_SPEC, maxTTL="10m"),
        field="spec.defaultTTL",
        cel_message="defaultTTL must not exceed maxTTL",
    ),
    _target(
        "target-port-zero", replaced(TARGET_SPEC, postgresql__port=0), field="spec.postgresql.port"
    ),
    _target(
        "target-port-string",
        replaced(TARGET_SPEC, postgresql__port="5432"),
        field="spec.postgresql.port",
    ),
    _target(
        "target-port-too-big",
        replaced(TARGET_SPEC, postgresql__port=65536),
        field="spec.postgresql.port",
    ),
    _target(
        "target-bad-ssl-mode",
        replaced(TARGET_SPEC, postgresql__sslMode="on"),
        field="spec.postgresql.sslMode",
    ),
    _target(
        "target-host-with-space",
        replaced(TARGET_SPEC, postgresql__host="db host"),
        field="spec.postgresql.host",
    ),
    _target(
        "target-empty-database",
        replaced(TARGET_SPEC, postgresql__database=""),
        field="spec.postgresql.database",
    ),
    _target(
        "target-no-admin-secret",
        replaced(TARGET_SPEC, postgresql__adminSecretRef=REMOVE),
        field="spec.postgresql.adminSecretRef",
    ),
    _target(
        "target-password-in-spec",
        replaced(TARGET_SPEC, postgresql__password="placeholder"),
        field="spec.postgresql.password",
    ),
    _target(
        "target-same-secret-keys",
        replaced(
            TARGET_SPEC,
            postgresql__adminSecretRef={
                "name": "admin",
                "usernameKey": "login",
                "passwordKey": "login",
            },
        ),
        field="spec.postgresql.adminSecretRef.passwordKey",
        cel_message="passwordKey must differ from usernameKey",
    ),
    _target(
        "target-connect-timeout-zero",
        replaced(TARGET_SPEC, postgresql__connectTimeout="0s"),
        field="spec.postgresql.connectTimeout",
        cel_message="connectTimeout must be between 1s and 5m",
    ),
    _target(
        "target-connect-timeout-long",
        replaced(TARGET_SPEC, postgresql__connectTimeout="6m"),
        field="spec.postgresql.connectTimeout",
        cel_message="connectTimeout must be between 1s and 5m",
    ),
    _target(
        "target-snake-case-field",
        replaced(TARGET_SPEC, allowed_roles=["orders_rw"], allowedRoles=REMOVE),
        field="spec.allowed_roles",
    ),
]

BINDING_EXAMPLES: list[SpecExample] = [
    _binding("binding-minimal", BINDING_SPEC),
    _binding(
        "binding-every-field",
        {
            "targetRef": {"name": "orders-postgres"},
            "role": "orders_rw",
            "podSelector": {
                "matchLabels": {"app": "orders", "example.com/tier": "backend", "canary": ""},
                "matchExpressions": [
                    {"key": "track", "operator": "In", "values": ["stable", "beta"]},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                    {"key": "example.com/owner", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist", "values": []},
                ],
            },
            "serviceAccounts": ["orders", "orders-worker"],
            "ttl": "15m",
            "renewAfter": "10m",
            "secretName": "orders-db",
            "gracePeriod": "0s",
        },
    ),
    _binding("binding-empty-selector", replaced(BINDING_SPEC, podSelector={})),
    # Without ttl the operator compares renewAfter with the target's defaultTTL.
    _binding("binding-renew-without-ttl", replaced(BINDING_SPEC, renewAfter="5m")),
    _binding("binding-shortest-ttl", replaced(BINDING_SPEC, ttl="1m", renewAfter="5s")),
    _binding("binding-no-target", replaced(BINDING_SPEC, targetRef=REMOVE), field="spec.targetRef"),
    _binding(
        "binding-no-selector", replaced(BINDING_SPEC, podSelector=REMOVE), field="spec.podSelector"
    ),
    _binding(
        "binding-no-accounts",
        replaced(BINDING_SPEC, serviceAccounts=[]),
        field="spec.serviceAccounts",
    ),
    _binding(
        "binding-duplicate-accounts",
        replaced(BINDING_SPEC, serviceAccounts=["orders", "orders"]),
        field="spec.serviceAccounts[1]",
    ),
    _binding(
        "binding-too-many-accounts",
        replaced(BINDING_SPEC, serviceAccounts=[f"sa-{index}" for index in range(33)]),
        field="spec.serviceAccounts",
    ),
    _binding(
        "binding-uppercase-account",
        replaced(BINDING_SPEC, serviceAccounts=["Orders"]),
        field="spec.serviceAccounts[0]",
    ),
    _binding(
        "binding-spiffe-only",
        replaced(
            BINDING_SPEC,
            serviceAccounts=REMOVE,
            spiffe={
                "trustDomain": "example.org",
                "allowedIDs": [
                    {"exact": "spiffe://example.org/ns/shop/sa/orders"},
                    {"pathPrefix": "/ns/shop/"},
                ],
                "bundleRef": {"kind": "ConfigMap", "name": "example-org-bundle"},
            },
            delivery={"exchange": {"returnCredential": True, "refreshSecret": False}},
        ),
    ),
    _binding(
        "binding-spiffe-whole-domain",
        replaced(
            BINDING_SPEC,
            spiffe={
                "trustDomain": "example.org",
                "allowedIDs": [{"pathPrefix": "/"}],
                "bundleRef": {"kind": "Secret", "name": "bundle", "key": "td.json"},
            },
        ),
    ),
    _binding(
        "binding-no-identities",
        replaced(BINDING_SPEC, serviceAccounts=REMOVE),
        field="spec.serviceAccounts",
        cel_message="serviceAccounts is required unless spiffe.allowedIDs is set",
    ),
    _binding(
        "binding-spiffe-without-ids",
        replaced(BINDING_SPEC, serviceAccounts=REMOVE, spiffe={"trustDomain": "example.org"}),
        field="spec.serviceAccounts",
        cel_message="serviceAccounts is required unless spiffe.allowedIDs is set",
    ),
    _binding(
        "binding-spiffe-no-trust-domain",
        replaced(BINDING_SPEC, spiffe={"allowedIDs": [{"pathPrefix": "/"}]}),
        field="spec.spiffe.trustDomain",
    ),
    _binding(
        "binding-spiffe-uppercase-domain",
        replaced(BINDING_SPEC, spiffe={"trustDomain": "Example.org"}),
        field="spec.spiffe.trustDomain",
    ),
    _binding(
        "binding-spiffe-id-other-domain",
        replaced(
            BINDING_SPEC,
            spiffe={
                "trustDomain": "example.org",
                "allowedIDs": [{"exact": "spiffe://other.org/ns/shop/sa/orders"}],
            },
        ),
        field="spec.spiffe.allowedIDs",
        cel_message="must be in the trust domain",
    ),
    _binding(
        "binding-spiffe-id-both-forms",
        replaced(
            BINDING_SPEC,
            spiffe={
                "trustDomain": "example.org",
                "allowedIDs": [
                    {"exact": "spiffe://example.org/ns/shop/sa/orders", "pathPrefix": "/ns/"}
                ],
            },
        ),
        field="spec.spiffe.allowedIDs[0].exact",
        cel_message="set exactly one of exact and pathPrefix",
    ),
    _binding(
        "binding-spiffe-id-no-form",
        replaced(BINDING_SPEC, spiffe={"trustDomain": "example.org", "allowedIDs": [{}]}),
        field="spec.spiffe.allowedIDs[0].exact",
        cel_message="set exactly one of exact and pathPrefix",
    ),
    _binding(
        "binding-spiffe-prefix-no-slash",
        replaced(
            BINDING_SPEC,
            spiffe={"trustDomain": "example.org", "allowedIDs": [{"pathPrefix": "/ns/shop"}]},
        ),
        field="spec.spiffe.allowedIDs[0].pathPrefix",
    ),
    _binding(
        "binding-spiffe-id-query",
        replaced(
            BINDING_SPEC,
            spiffe={
                "trustDomain": "example.org",
                "allowedIDs": [{"exact": "spiffe://example.org/a?b"}],
            },
        ),
        field="spec.spiffe.allowedIDs[0].exact",
    ),
    _binding(
        "binding-bundle-kind",
        replaced(
            BINDING_SPEC,
            spiffe={"trustDomain": "example.org", "bundleRef": {"kind": "Pod", "name": "x"}},
        ),
        field="spec.spiffe.bundleRef.kind",
    ),
    _binding(
        "binding-exchange-flag-string",
        replaced(BINDING_SPEC, delivery={"exchange": {"returnCredential": "yes"}}),
        field="spec.delivery.exchange.returnCredential",
    ),
    _binding("binding-role-with-dash", replaced(BINDING_SPEC, role="orders-rw"), field="spec.role"),
    _binding(
        "binding-ttl-too-short",
        replaced(BINDING_SPEC, ttl="30s"),
        field="spec.ttl",
        cel_message="ttl must be at least 1m",
    ),
    _binding("binding-ttl-with-space", replaced(BINDING_SPEC, ttl="15 m"), field="spec.ttl"),
    _binding("binding-ttl-number", replaced(BINDING_SPEC, ttl=900), field="spec.ttl"),
    _binding(
        "binding-renew-too-soon",
        replaced(BINDING_SPEC, renewAfter="4s"),
        field="spec.renewAfter",
        cel_message="renewAfter must be at least 5s",
    ),
    _binding(
        "binding-renew-equals-ttl",
        replaced(BINDING_SPEC, ttl="15m", renewAfter="15m"),
        field="spec.renewAfter",
        cel_message="renewAfter must be shorter than ttl",
    ),
    _binding(
        "binding-renew-after-ttl",
        replaced(BINDING_SPEC, ttl="15m", renewAfter="1h"),
        field="spec.renewAfter",
        cel_message="renewAfter must be shorter than ttl",
    ),
    _binding(
        "binding-negative-grace",
        replaced(BINDING_SPEC, gracePeriod="-1m"),
        field="spec.gracePeriod",
    ),
    _binding(
        "binding-secret-uppercase",
        replaced(BINDING_SPEC, secretName="Orders_DB"),
        field="spec.secretName",
    ),
    _binding(
        "binding-secret-too-long",
        replaced(BINDING_SPEC, secretName="s" * 254),
        field="spec.secretName",
    ),
    _binding(
        "binding-secret-newline",
        replaced(BINDING_SPEC, secretName="orders-db\n"),
        field="spec.secretName",
    ),
    _binding(
        "binding-in-without-values",
        replaced(
            BINDING_SPEC, podSelector={"matchExpressions": [{"key": "app", "operator": "In"}]}
        ),
        field="spec.podSelector.matchExpressions[0].values",
        cel_message="values must be non-empty for In and NotIn",
    ),
    _binding(
        "binding-exists-with-values",
        replaced(
            BINDING_SPEC,
            podSelector={
                "matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]
            },
        ),
        field="spec.podSelector.matchExpressions[0].values",
        cel_message="empty for Exists and DoesNotExist",
    ),
    _binding(
        "binding-unknown-operator",
        replaced(
            BINDING_SPEC,
            podSelector={
                "matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]
            },
        ),
        field="spec.podSelector.matchExpressions[0].operator",
    ),
    _binding(
        "binding-label-value-space",
        replaced(BINDING_SPEC, podSelector={"matchLabels": {"app": "my orders"}}),
        field="spec.podSelector.matchLabels.app",
    ),
    _binding(
        "binding-label-key-space",
        replaced(BINDING_SPEC, podSelector={"matchLabels": {"my app": "orders"}}),
        field="spec.podSelector.matchLabels",
        cel_message="every key of matchLabels must be a label key",
    ),
    _binding(
        "binding-label-key-comma",
        replaced(BINDING_SPEC, podSelector={"matchLabels": {"app,tier": "orders"}}),
        field="spec.podSelector.matchLabels",
        cel_message="every key of matchLabels must be a label key",
    ),
    _binding(
        "binding-expression-key-comma",
        replaced(
            BINDING_SPEC,
            podSelector={"matchExpressions": [{"key": "app,tier", "operator": "Exists"}]},
        ),
        field="spec.podSelector.matchExpressions[0].key",
    ),
    _binding(
        "binding-unknown-field",
        replaced(BINDING_SPEC, ttlSeconds=900),
        field="spec.ttlSeconds",
    ),
    _binding(
        "binding-snake-case-field",
        replaced(BINDING_SPEC, secret_name="orders-db", secretName=REMOVE),
        field="spec.secret_name",
    ),
]

SPEC_EXAMPLES: list[SpecExample] = TARGET_EXAMPLES + BINDING_EXAMPLES

_CONDITION: dict[str, Any] = {
    "type": "Ready",
    "status": "True",
    "reason": "Issued",
    "message": "Credential issued for 1 verified pod",
    "lastTransitionTime": "2026-01-02T03:04:05Z",
    "observedGeneration": 1,
}

BINDING_STATUS: dict[str, Any] = {
    "observedGeneration": 1,
    "conditions": [
        _CONDITION,
        {**_CONDITION, "type": "IdentityVerified", "reason": "Verified"},
        {**_CONDITION, "type": "CredentialIssued"},
    ],
    "credentialId": "k3x9q2m7w1p5z8c4v6b0",
    "issuedAt": "2026-01-02T03:04:05Z",
    "expiresAt": "2026-01-02T03:19:05Z",
    "secretName": "orders-db",
    "verifiedPods": 1,
    "rejectedPods": 1,
    "rejected": [
        {
            "pod": "orders-7d4f9-x2x9k",
            "reason": "ServiceAccountNotAllowed",
            "message": "Pod runs as default; set spec.serviceAccounts to include it",
        }
    ],
}

TARGET_STATUS: dict[str, Any] = {
    "observedGeneration": 3,
    "conditions": [{**_CONDITION, "reason": "Verified", "message": "Admin login works"}],
    "activeCredentials": 2,
}

STATUS_EXAMPLES: list[StatusExample] = [
    StatusExample("binding-status-full", "CredentialBinding", BINDING_STATUS, valid=True),
    StatusExample(
        "binding-status-pending",
        "CredentialBinding",
        {
            "observedGeneration": 1,
            "conditions": [
                {**_CONDITION, "status": "False", "reason": "WaitingForPods", "message": ""}
            ],
            "verifiedPods": 0,
            "rejectedPods": 0,
            "rejected": [],
        },
        valid=True,
    ),
    StatusExample("target-status-full", "CredentialTarget", TARGET_STATUS, valid=True),
    StatusExample(
        "binding-status-condition-yes",
        "CredentialBinding",
        replaced(BINDING_STATUS, conditions=[{**_CONDITION, "status": "Yes"}]),
        valid=False,
        field="status.conditions[0].status",
    ),
    StatusExample(
        "binding-status-condition-no-reason",
        "CredentialBinding",
        replaced(
            BINDING_STATUS,
            conditions=[{key: value for key, value in _CONDITION.items() if key != "reason"}],
        ),
        valid=False,
        field="status.conditions[0].reason",
    ),
    StatusExample(
        "binding-status-condition-twice",
        "CredentialBinding",
        replaced(BINDING_STATUS, conditions=[_CONDITION, _CONDITION]),
        valid=False,
        field="status.conditions[1]",
    ),
    StatusExample(
        "binding-status-eleven-rejected",
        "CredentialBinding",
        replaced(
            BINDING_STATUS,
            rejected=[{"pod": f"orders-{index}", "reason": "PodMismatch"} for index in range(11)],
        ),
        valid=False,
        field="status.rejected",
    ),
    StatusExample(
        "binding-status-negative-count",
        "CredentialBinding",
        replaced(BINDING_STATUS, verifiedPods=-1),
        valid=False,
        field="status.verifiedPods",
    ),
    StatusExample(
        "binding-status-bad-time",
        "CredentialBinding",
        replaced(BINDING_STATUS, expiresAt="tomorrow"),
        valid=False,
        field="status.expiresAt",
    ),
    StatusExample(
        "target-status-count-string",
        "CredentialTarget",
        replaced(TARGET_STATUS, activeCredentials="2"),
        valid=False,
        field="status.activeCredentials",
    ),
]


def manifest(
    kind: Kind, spec: dict[str, Any], *, name: str, namespace: str | None = None
) -> dict[str, Any]:
    """Return a whole object of ``kind`` with ``spec``, namespaced for bindings."""
    metadata: dict[str, Any] = {"name": name}
    if kind == "CredentialBinding":
        if namespace is None:
            raise ValueError("a CredentialBinding needs a namespace")
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": metadata,
        "spec": copy.deepcopy(spec),
    }
