"""The exchange's reads from the cluster, behind one small interface that tests replace.

``KubeExchangeCluster`` implements ``ExchangeCluster`` with the operator's
own pieces: the Kubernetes gateway, the target registry and the operator's
namespace, where bundle ConfigMaps and Secrets live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from credbroker.errors import CredbrokerError, IdentityRejected, PolicyRejected
from credbroker.exchange.tls import CertificatePair
from credbroker.identity.attestation import _call_api, _check_review_status
from credbroker.identity.pods import PodRef
from credbroker.kube import GROUP, VERSION, KubeGateway
from credbroker.reasons import Reason
from credbroker.resources import (
    CredentialTargetSpec,
    SpiffeBundleRef,
    parse_binding,
    parse_target,
)
from credbroker.spiffe import bundle as bundles
from credbroker.spiffe.bundle import Bundle
from credbroker.targets.base import Target
from credbroker.targets.registry import TargetRegistry

logger = logging.getLogger(__name__)

BINDINGS_PLURAL = "credentialbindings"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedTarget:
    """A CredentialTarget's validated spec and its live target."""

    name: str
    spec: CredentialTargetSpec
    target: Target


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleSource:
    """A binding's bundle reference together with the trust domain it is for."""

    ref: SpiffeBundleRef
    trust_domain: str


class ExchangeCluster(Protocol):
    """The reads and reviews one exchange needs. Each raises a ``CredbrokerError`` on failure."""

    async def get_binding(self, *, namespace: str, name: str) -> Mapping[str, Any] | None:
        """Return the CredentialBinding, or None when it does not exist or is not served."""
        ...

    async def get_pod(self, *, namespace: str, name: str) -> Mapping[str, Any] | None:
        """Return the Pod, or None when it does not exist."""
        ...

    async def review_token(self, token: str, *, pod: PodRef, audience: str) -> None:
        """Raise ``IdentityRejected`` unless TokenReview authenticates the token as ``pod``."""
        ...

    async def load_bundle(self, source: BundleSource) -> Bundle:
        """Read and parse a SPIFFE bundle; raise BUNDLE_INVALID when missing or invalid."""
        ...

    async def list_bundle_sources(self) -> list[BundleSource]:
        """Return the bundle references of every binding that has one."""
        ...

    async def resolve_target(self, name: str) -> ResolvedTarget:
        """Return the named target; raise TARGET_NOT_FOUND or the target's own error."""
        ...

    async def read_tls_pair(
        self, *, namespace: str, name: str, cert_key: str, key_key: str
    ) -> tuple[str, CertificatePair]:
        """Return a TLS Secret's resourceVersion and its certificate and key."""
        ...


class KubeExchangeCluster:
    """``ExchangeCluster`` on the official client, as the operator process runs it."""

    def __init__(
        self,
        *,
        kube: KubeGateway,
        targets: TargetRegistry,
        operator_namespace: str,
        served_namespaces: Sequence[str] = (),
    ) -> None:
        """Serve bindings of ``served_namespaces``, or of every namespace when it is empty."""
        self._kube = kube
        self._targets = targets
        self._operator_namespace = operator_namespace
        self._served_namespaces = tuple(served_namespaces)

    async def get_binding(self, *, namespace: str, name: str) -> Mapping[str, Any] | None:
        """Return the CredentialBinding, or None when it does not exist or is not served."""
        if self._served_namespaces and namespace not in self._served_namespaces:
            return None
        return await self._read(
            self._kube.custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            BINDINGS_PLURAL,
            name,
            what=f"CredentialBinding {namespace}/{name}",
        )

    async def get_pod(self, *, namespace: str, name: str) -> Mapping[str, Any] | None:
        """Return the Pod, or None when it does not exist.

        Raises ``PolicyRejected`` for a pod outside the served namespaces: no
        binding this operator serves can accept it, and it may not read there.
        """
        if self._served_namespaces and namespace not in self._served_namespaces:
            raise PolicyRejected(
                Reason.NAMESPACE_NOT_ALLOWED,
                f"pod {namespace}/{name} is in a namespace this operator does not serve; "
                f"it serves {', '.join(self._served_namespaces)}",
            )
        return await self._read(
            self._kube.core.read_namespaced_pod, name, namespace, what=f"pod {namespace}/{name}"
        )

    async def review_token(self, token: str, *, pod: PodRef, audience: str) -> None:
        """Raise ``IdentityRejected`` unless TokenReview authenticates the token as ``pod``."""
        body = client.V1TokenReview(
            api_version="authentication.k8s.io/v1",
            kind="TokenReview",
            spec=client.V1TokenReviewSpec(token=token, audiences=[audience]),
        )
        # The response echoes spec.token, so only its status is read.
        response = await _call_api(
            self._kube.authn.create_token_review,
            body,
            reason=Reason.TOKEN_REVIEW_REJECTED,
            action=f"TokenReview of the token presented for pod {pod}",
            hints={403: "Grant the operator's ServiceAccount 'create' on tokenreviews"},
        )
        del body
        _check_review_status(getattr(response, "status", None), pod=pod, audience=audience)

    async def load_bundle(self, source: BundleSource) -> Bundle:
        """Read and parse a SPIFFE bundle; raise BUNDLE_INVALID when missing or invalid."""
        ref = source.ref
        namespace = self._operator_namespace
        if ref.kind == "ConfigMap":
            method: Callable[..., Any] = self._kube.core.read_namespaced_config_map
        else:
            method = self._kube.core.read_namespaced_secret
        body = await self._read(method, ref.name, namespace, what=f"{ref.kind} {ref.name}")
        if body is None:
            raise IdentityRejected(
                Reason.BUNDLE_INVALID,
                f"{ref.kind} {namespace}/{ref.name} with the SPIFFE bundle of trust domain "
                f"{source.trust_domain} was not found; create it in the operator's namespace",
            )
        if ref.kind == "ConfigMap":
            return bundles.from_config_map(body, trust_domain=source.trust_domain, key=ref.key)
        return bundles.from_secret(body, trust_domain=source.trust_domain, key=ref.key)

    async def list_bundle_sources(self) -> list[BundleSource]:
        """Return the bundle references of every binding that has one."""
        sources: list[BundleSource] = []
        bodies: list[dict[str, Any]] = []
        for namespace in self._served_namespaces or (None,):
            bodies.extend(await self._kube.list_bindings(namespace))
        for body in bodies:
            try:
                spec = parse_binding(body.get("spec") or {})
            except PolicyRejected:
                continue
            if spec.spiffe is not None and spec.spiffe.bundle_ref is not None:
                source = BundleSource(
                    ref=spec.spiffe.bundle_ref, trust_domain=spec.spiffe.trust_domain
                )
                if source not in sources:
                    sources.append(source)
        return sources

    async def resolve_target(self, name: str) -> ResolvedTarget:
        """Return the named target; raise TARGET_NOT_FOUND or the target's own error."""
        body = await self._kube.get_target(name)
        if body is None:
            raise PolicyRejected(
                Reason.TARGET_NOT_FOUND,
                f"CredentialTarget {name} was not found; create it or fix spec.targetRef.name "
                "of the binding",
            )
        try:
            spec = parse_target(body.get("spec") or {})
        except PolicyRejected as error:
            raise PolicyRejected(
                Reason.INVALID_SPEC, f"CredentialTarget {name} is invalid: {error.message}"
            ) from None
        target = await self._targets.get(name=name, body=body, spec=spec)
        return ResolvedTarget(name=name, spec=spec, target=target)

    async def read_tls_pair(
        self, *, namespace: str, name: str, cert_key: str, key_key: str
    ) -> tuple[str, CertificatePair]:
        """Return a TLS Secret's resourceVersion and its certificate and key."""
        secret = await self._kube.read_secret_data(namespace=namespace, name=name)
        if secret is None:
            raise CredbrokerError(
                Reason.INVALID_SPEC,
                f"TLS Secret {namespace}/{name} of the exchange endpoint was not found; create "
                "it (cert-manager writes one from a Certificate)",
            )
        missing = [key for key in (cert_key, key_key) if key not in secret.data]
        if missing:
            raise CredbrokerError(
                Reason.INVALID_SPEC,
                f"TLS Secret {namespace}/{name} has no key {', '.join(missing)}; it needs "
                f"{cert_key} and {key_key}",
            )
        pair = CertificatePair(cert_pem=secret.data[cert_key], key_pem=secret.data[key_key])
        return secret.resource_version, pair

    async def _read(
        self, method: Callable[..., Any], *args: Any, what: str
    ) -> Mapping[str, Any] | None:
        try:
            result = await asyncio.to_thread(method, *args)
        except ApiException as error:
            if error.status == 404:
                return None
            # The status line only: a response body may quote the object.
            raise CredbrokerError(
                Reason.KUBERNETES_API_ERROR,
                f"reading {what} failed with HTTP {error.status} {error.reason or ''}".rstrip(),
            ) from None
        if isinstance(result, Mapping):
            return dict(result)
        serialized = self._kube.api_client.sanitize_for_serialization(result)  # type: ignore[no-untyped-call]
        return dict(serialized) if isinstance(serialized, Mapping) else None
