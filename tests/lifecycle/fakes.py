"""In-memory stand-ins for the systems the lifecycle talks to, with call counters.

The real ``SecretStore`` runs on top of ``FakeCoreV1Api``, so ownership
checks, conflict handling and paging are the product's own code. Every fake
reads time from one ``FakeClock`` that a test moves forward by hand.
"""

from __future__ import annotations

import base64
import copy
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from credbroker.delivery import SecretStore
from credbroker.errors import IdentityRejected, TargetError
from credbroker.identity.pods import PodRef
from credbroker.identity.workload import WorkloadIdentity
from credbroker.lifecycle.binding import BindingReconciler
from credbroker.pods import PodRegistry
from credbroker.reasons import Reason
from credbroker.settings import OperatorSettings
from credbroker.targets.base import CredentialRequest, FoundCredential, IssuedCredential

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

NAMESPACE = "apps"
BINDING_NAME = "web-db"
BINDING_UID = "0b5c1f6e-binding-web-db"
SECRET_NAME = "web-db-credentials"
TARGET_NAME = "pg-main"
ROLE = "app_rw"
SERVICE_ACCOUNT = "web"


class FakeClock:
    """A clock that moves only when the test calls ``advance``."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class ProcessCrash(BaseException):
    """Raised by a fake to stop a pass the way a killed process would.

    It derives from ``BaseException`` so that no ``except Exception`` in the
    product catches it, as nothing catches a real crash.
    """


# Target


@dataclass
class StoredCredential:
    request: CredentialRequest
    username: str
    password: str
    created_at: datetime


class FakeTarget:
    """An in-memory target that mints logins with random passwords."""

    kind = "fake"

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.credentials: dict[str, StoredCredential] = {}
        self.passwords: list[str] = []
        self.calls: Counter[str] = Counter()
        self.revoked: list[str] = []
        self.fail_issue: TargetError | None = None
        self.fail_revoke: TargetError | None = None

    async def issue(self, request: CredentialRequest) -> IssuedCredential:
        self.calls["issue"] += 1
        if self.fail_issue is not None:
            raise self.fail_issue
        password = secrets.token_urlsafe(24)
        self.passwords.append(password)
        username = f"cb_{request.credential_id}"
        self.credentials[request.credential_id] = StoredCredential(
            request=request, username=username, password=password, created_at=self.clock()
        )
        data = {
            "username": username,
            "password": password,
            "uri": f"postgresql://{username}:{password}@127.0.0.1:5432/app",
        }
        return IssuedCredential(
            credential_id=request.credential_id,
            username=username,
            expires_at=request.expires_at,
            data=data,
        )

    async def revoke(self, credential_id: str) -> bool:
        self.calls["revoke"] += 1
        if self.fail_revoke is not None:
            raise self.fail_revoke
        self.revoked.append(credential_id)
        return self.credentials.pop(credential_id, None) is not None

    async def list_credentials(self) -> Sequence[FoundCredential]:
        self.calls["list_credentials"] += 1
        return [
            FoundCredential(
                credential_id=credential_id,
                username=stored.username,
                binding_namespace=stored.request.binding_namespace,
                binding_name=stored.request.binding_name,
                secret_name=stored.request.secret_name,
                created_at=stored.created_at,
                expires_at=stored.request.expires_at,
            )
            for credential_id, stored in self.credentials.items()
        ]

    async def close(self) -> None:
        self.calls["close"] += 1

    def add(
        self,
        credential_id: str,
        *,
        created_at: datetime,
        expires_at: datetime,
        namespace: str = NAMESPACE,
        binding_name: str = BINDING_NAME,
        secret_name: str = SECRET_NAME,
    ) -> None:
        """Put a credential on the target directly, as an earlier process would have."""
        password = secrets.token_urlsafe(24)
        self.passwords.append(password)
        request = CredentialRequest(
            credential_id=credential_id,
            binding_namespace=namespace,
            binding_name=binding_name,
            secret_name=secret_name,
            role=ROLE,
            expires_at=expires_at,
        )
        self.credentials[credential_id] = StoredCredential(
            request=request,
            username=f"cb_{credential_id}",
            password=password,
            created_at=created_at,
        )


class FakeTargetRegistry:
    """A registry that returns the fake target by name, like ``TargetRegistry.get``."""

    def __init__(self, targets: Mapping[str, FakeTarget]) -> None:
        self.targets = dict(targets)
        self.calls = 0

    async def get(self, *, name: str, body: Mapping[str, Any], spec: Any) -> FakeTarget:
        self.calls += 1
        target = self.targets.get(name)
        if target is None:
            raise TargetError(Reason.TARGET_UNAVAILABLE, f"target {name} is not configured")
        return target


# Identity


class FakeAttestor:
    """An attestor that verifies each pod as its own service account unless rejected."""

    def __init__(self, clock: FakeClock, *, token_lifetime: timedelta = timedelta(hours=1)) -> None:
        self.clock = clock
        self.token_lifetime = token_lifetime
        self.rejections: dict[str, IdentityRejected] = {}
        self.attested: list[PodRef] = []

    def reject(self, pod_name: str, reason: Reason, message: str) -> None:
        self.rejections[pod_name] = IdentityRejected(reason, message)

    async def attest(self, pod: PodRef) -> WorkloadIdentity:
        self.attested.append(pod)
        rejection = self.rejections.get(pod.name)
        if rejection is not None:
            raise rejection
        return WorkloadIdentity(
            namespace=pod.namespace,
            service_account=pod.service_account,
            pod_name=pod.name,
            pod_uid=pod.uid,
            node_name=pod.node_name,
            token_jti=f"jti-{pod.uid}",
            token_expires_at=self.clock() + self.token_lifetime,
        )


# Kubernetes API


class FakeApiClient:
    """The serializer of ``kubernetes.client.ApiClient``, for objects that are already dicts."""

    def sanitize_for_serialization(self, obj: Any) -> Any:
        return copy.deepcopy(obj)


def _label_selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeCoreV1Api:
    """Secrets of ``kubernetes.client.CoreV1Api`` in memory, with the API server's rules.

    It assigns ``uid`` and ``resourceVersion``, returns 409 on a second
    create or a stale replace, honours delete preconditions, filters lists
    by an equality label selector and pages them with ``limit``/``_continue``.
    """

    def __init__(self) -> None:
        self.api_client = FakeApiClient()
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, BaseException] = {}
        self._version = 0

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _check_failure(self, verb: str) -> None:
        self.calls[verb] += 1
        failure = self.fail.get(verb)
        if failure is not None:
            raise failure

    def put(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store a Secret directly, as a person or another controller would."""
        stored = copy.deepcopy(dict(body))
        metadata = stored.setdefault("metadata", {})
        metadata.setdefault("uid", f"uid-{metadata['name']}-{self._next_version()}")
        metadata["resourceVersion"] = self._next_version()
        self.secrets[(metadata["namespace"], metadata["name"])] = stored
        return stored

    def read_namespaced_secret(self, name: str, namespace: str) -> dict[str, Any]:
        self._check_failure("read")
        stored = self.secrets.get((namespace, name))
        if stored is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(stored)

    def create_namespaced_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check_failure("create")
        name = body["metadata"]["name"]
        if (namespace, name) in self.secrets:
            raise ApiException(status=409, reason="Conflict")
        return copy.deepcopy(self.put(body))

    def replace_namespaced_secret(
        self, name: str, namespace: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        self._check_failure("replace")
        stored = self.secrets.get((namespace, name))
        if stored is None:
            raise ApiException(status=404, reason="Not Found")
        expected = body["metadata"].get("resourceVersion")
        if expected != stored["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        replacement = copy.deepcopy(dict(body))
        replacement["metadata"]["uid"] = stored["metadata"]["uid"]
        return copy.deepcopy(self.put(replacement))

    def delete_namespaced_secret(
        self, name: str, namespace: str, *, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        self._check_failure("delete")
        stored = self.secrets.get((namespace, name))
        if stored is None:
            raise ApiException(status=404, reason="Not Found")
        preconditions = body.get("preconditions") or {}
        for key in ("uid", "resourceVersion"):
            if preconditions.get(key) not in (None, stored["metadata"][key]):
                raise ApiException(status=409, reason="Conflict")
        del self.secrets[(namespace, name)]
        return {"kind": "Status", "status": "Success"}

    def list_secret_for_all_namespaces(
        self, *, label_selector: str, limit: int, _continue: str | None = None
    ) -> dict[str, Any]:
        self._check_failure("list")
        return self._page(None, label_selector=label_selector, limit=limit, token=_continue)

    def list_namespaced_secret(
        self, namespace: str, *, label_selector: str, limit: int, _continue: str | None = None
    ) -> dict[str, Any]:
        self._check_failure("list")
        return self._page(namespace, label_selector=label_selector, limit=limit, token=_continue)

    def _page(
        self, namespace: str | None, *, label_selector: str, limit: int, token: str | None
    ) -> dict[str, Any]:
        matching = [
            secret
            for (secret_namespace, _), secret in sorted(self.secrets.items())
            if namespace is None or secret_namespace == namespace
            if _label_selector_matches(label_selector, secret["metadata"].get("labels") or {})
        ]
        start = int(token) if token else 0
        items = [copy.deepcopy(secret) for secret in matching[start : start + limit]]
        following = start + limit
        metadata = {"continue": str(following)} if following < len(matching) else {}
        return {"metadata": metadata, "items": items}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.secrets.get((namespace, name))


class FakeKubeGateway:
    """A gateway that serves CredentialTargets and patches annotations in ``FakeCoreV1Api``."""

    def __init__(self, core: FakeCoreV1Api) -> None:
        self.core = core
        self.targets: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()

    async def get_target(self, name: str) -> dict[str, Any] | None:
        self.calls["get_target"] += 1
        body = self.targets.get(name)
        return copy.deepcopy(body) if body is not None else None

    async def patch_secret_annotations(
        self, *, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        self.calls["patch_secret_annotations"] += 1
        stored = self.core.secrets.get((namespace, name))
        if stored is None:
            raise ApiException(status=404, reason="Not Found")
        current = stored["metadata"].setdefault("annotations", {})
        for key, value in annotations.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        stored["metadata"]["resourceVersion"] = self.core._next_version()


@dataclass
class RecordedEvent:
    kind: str
    name: str
    warning: bool
    reason: str
    message: str


@dataclass
class RecordingRecorder:
    """An event recorder that keeps every event the product posts."""

    events: list[RecordedEvent] = field(default_factory=list)

    def emit(self, obj: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
        metadata = obj.get("metadata") or {}
        self.events.append(
            RecordedEvent(
                kind=str(obj.get("kind")),
                name=str(metadata.get("name")),
                warning=warning,
                reason=reason,
                message=message,
            )
        )

    def of(self, kind: str, *, reason: str | None = None) -> list[RecordedEvent]:
        return [
            event
            for event in self.events
            if event.kind == kind and (reason is None or event.reason == reason)
        ]


# Objects


def target_body(
    *,
    name: str = TARGET_NAME,
    allowed_namespaces: Sequence[str] = (NAMESPACE,),
    allowed_roles: Sequence[str] = (ROLE,),
    max_ttl: str = "1h",
    default_ttl: str = "15m",
) -> dict[str, Any]:
    return {
        "apiVersion": "credbroker.dev/v1alpha1",
        "kind": "CredentialTarget",
        "metadata": {"name": name, "resourceVersion": "7", "generation": 1},
        "spec": {
            "type": "postgresql",
            "postgresql": {
                "host": "127.0.0.1",
                "database": "app",
                "adminSecretRef": {"name": "pg-admin"},
            },
            "allowedNamespaces": list(allowed_namespaces),
            "allowedRoles": list(allowed_roles),
            "maxTTL": max_ttl,
            "defaultTTL": default_ttl,
        },
    }


def binding_body(
    *,
    namespace: str = NAMESPACE,
    name: str = BINDING_NAME,
    uid: str = BINDING_UID,
    generation: int = 1,
    target: str = TARGET_NAME,
    role: str = ROLE,
    service_accounts: Sequence[str] = (SERVICE_ACCOUNT,),
    secret_name: str = SECRET_NAME,
    ttl: str | None = "15m",
    grace_period: str = "2m",
    app: str = "web",
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targetRef": {"name": target},
        "role": role,
        "podSelector": {"matchLabels": {"app": app}},
        "serviceAccounts": list(service_accounts),
        "secretName": secret_name,
        "gracePeriod": grace_period,
    }
    if ttl is not None:
        spec["ttl"] = ttl
    body: dict[str, Any] = {
        "apiVersion": "credbroker.dev/v1alpha1",
        "kind": "CredentialBinding",
        "metadata": {"namespace": namespace, "name": name, "uid": uid, "generation": generation},
        "spec": spec,
    }
    if status is not None:
        body["status"] = dict(status)
    return body


def pod_body(
    name: str,
    *,
    namespace: str = NAMESPACE,
    service_account: str = SERVICE_ACCOUNT,
    app: str = "web",
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"uid-{namespace}-{name}",
            "labels": {"app": app},
        },
        "spec": {"serviceAccountName": service_account, "nodeName": "node-1"},
        "status": {"phase": "Running"},
    }


def unowned_secret(name: str = SECRET_NAME, namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "annotations": {"owner": "team-a"}},
        "data": {"password": base64.b64encode(b"hand-made").decode("ascii")},
    }


# Everything wired together


class World:
    """One operator's services built on the fakes, for one or more reconcilers."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.settings = OperatorSettings(namespace="credbroker", retry_delay_seconds=10.0)
        self.core = FakeCoreV1Api()
        self.secrets = SecretStore(self.core)
        self.kube = FakeKubeGateway(self.core)
        self.target = FakeTarget(self.clock)
        self.targets = FakeTargetRegistry({TARGET_NAME: self.target})
        self.attestor = FakeAttestor(self.clock)
        self.pods = PodRegistry()
        self.recorder = RecordingRecorder()
        self.kube.targets[TARGET_NAME] = target_body()
        self.reconciler = self.new_reconciler()

    def new_reconciler(self) -> BindingReconciler:
        """Build a reconciler with an empty cache, as a restarted process has."""
        return BindingReconciler(
            settings=self.settings,
            kube=self.kube,  # type: ignore[arg-type]
            pods=self.pods,
            attestor=self.attestor,  # type: ignore[arg-type]
            targets=self.targets,  # type: ignore[arg-type]
            secrets=self.secrets,
            recorder=self.recorder,
            clock=self.clock,
        )

    def add_pod(self, name: str, **kwargs: Any) -> None:
        self.pods.observe(event_type="ADDED", pod=pod_body(name, **kwargs))

    def remove_pod(self, name: str, **kwargs: Any) -> None:
        self.pods.observe(event_type="DELETED", pod=pod_body(name, **kwargs))

    def secret(self, name: str = SECRET_NAME, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        return self.core.get(namespace, name)

    def annotations(self, name: str = SECRET_NAME) -> dict[str, str]:
        secret = self.secret(name)
        assert secret is not None, f"Secret {name} does not exist"
        return dict(secret["metadata"].get("annotations") or {})

    def secret_data(self, name: str = SECRET_NAME) -> dict[str, str]:
        secret = self.secret(name)
        assert secret is not None, f"Secret {name} does not exist"
        return {
            key: base64.b64decode(value).decode("utf-8")
            for key, value in (secret.get("data") or {}).items()
        }
