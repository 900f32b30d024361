"""kopf wiring: thin handlers that feed events to the pipeline and write what it decides.

kopf handles no Secrets and no Pods: pods are listed and watched by
``podwatch.PodWatcher``, which keeps a few fields per pod, and Secrets are
read and written through the API client. Each binding gets a daemon (its
reconcile loop) and a deletion handler, which revokes everything. Each
target gets a timer (the sweep) and an event handler that keeps its latest
body.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, cast

import kopf
from kubernetes import client as k8s

from credbroker.conditions import Condition, ConditionType, merge_conditions
from credbroker.errors import CredbrokerError
from credbroker.kube import BINDINGS_PLURAL, GROUP, TARGETS_PLURAL, VERSION
from credbroker.lifecycle.sweeper import sweep_target
from credbroker.lifecycle.teardown import revoke_binding
from credbroker.metrics import start_metrics_server
from credbroker.reasons import Reason
from credbroker.resources import parse_binding, parse_target
from credbroker.runtime import Runtime, build_runtime
from credbroker.settings import OperatorSettings
from credbroker.timestamps import utcnow

logger = logging.getLogger(__name__)

FINALIZER = "credbroker.dev/finalizer"
DAEMON_CANCELLATION_TIMEOUT_SECONDS = 10.0


class KopfEventRecorder:
    """Posts Kubernetes Events through kopf's background poster."""

    def emit(self, obj: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
        """Queue one event; kopf posts it and logs failures itself."""
        try:
            kopf.event(
                cast(kopf.Body, obj),
                type="Warning" if warning else "Normal",
                reason=reason,
                message=message,
            )
        except Exception as error:  # an event must never break a reconcile
            logger.warning("Posting event %s failed: %s", reason, type(error).__name__)


def _runtime(memo: Any) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if runtime is None:
        raise kopf.TemporaryError("credbroker is still starting", delay=1)
    assert isinstance(runtime, Runtime)
    return runtime


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    """Apply credbroker's production settings to kopf."""
    kopf_settings.persistence.finalizer = FINALIZER
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="credbroker.dev"
    )
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="credbroker.dev", key="last-handled-configuration"
    )
    kopf_settings.posting.level = logging.INFO
    # The API server parses timeoutSeconds as an integer.
    kopf_settings.watching.server_timeout = int(settings.watch_server_timeout_seconds)
    kopf_settings.watching.client_timeout = settings.watch_client_timeout_seconds
    if settings.peering_name:
        kopf_settings.peering.name = settings.peering_name
        kopf_settings.peering.priority = settings.priority
        kopf_settings.peering.mandatory = True
        kopf_settings.peering.clusterwide = settings.clusterwide
    else:
        kopf_settings.peering.standalone = True


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """Register every handler on ``registry`` with intervals taken from ``settings``."""

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_kopf(settings, operator_settings)
        from kubernetes import config as k8s_config

        configuration = k8s.Configuration()
        try:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = operator_settings.api_threads
        api_client = k8s.ApiClient(configuration)
        memo.runtime = await build_runtime(
            settings=operator_settings, api_client=api_client, recorder=KopfEventRecorder()
        )
        if memo.runtime.pod_watcher is not None:
            memo.runtime.pod_watcher.start()
        if memo.runtime.exchange_server is not None:
            await memo.runtime.exchange_server.start()
        port = operator_settings.metrics_port
        if port:
            try:
                memo.runtime.metrics_server = start_metrics_server(
                    port=port,
                    registry=memo.runtime.metrics.registry,
                    address=operator_settings.metrics_address,
                )
            except OSError as error:
                # Credentials matter more than their metrics: keep brokering, and
                # let the failed scrape (up == 0) show that metrics are missing.
                logger.error(
                    "Serving metrics on %s:%d failed, continuing without metrics: %s; "
                    "free the port or pass another --metrics-port",
                    operator_settings.metrics_address,
                    port,
                    error,
                )
        logger.info("credbroker started")

    operator_settings = settings

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same sources, in the same order, as the API client of the pipeline.
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        if info is None:
            return None
        # kopf posts events about cluster-scoped targets into the default
        # namespace of the login, which must be one the operator may write.
        return dataclasses.replace(info, default_namespace=operator_settings.namespace)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        runtime = getattr(memo, "runtime", None)
        if isinstance(runtime, Runtime):
            await runtime.close()
        logger.info("credbroker stopped")

    @kopf.on.event(GROUP, VERSION, BINDINGS_PLURAL, registry=registry)
    def binding_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
        runtime = getattr(memo, "runtime", None)
        body = event.get("object") or {}
        metadata = body.get("metadata") or {}
        key = f"{metadata.get('namespace')}/{metadata.get('name')}"
        generation = int(metadata.get("generation") or 0)
        if isinstance(runtime, Runtime) and runtime.seen_generations.get(key) != generation:
            runtime.seen_generations[key] = generation
            runtime.pods.wake(key)

    @kopf.on.event(GROUP, VERSION, TARGETS_PLURAL, registry=registry)
    def target_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
        runtime = getattr(memo, "runtime", None)
        if isinstance(runtime, Runtime):
            body = event.get("object") or {}
            runtime.kube.remember_target(body, deleted=event.get("type") == "DELETED")
            runtime.pods.wake_all()

    @kopf.daemon(
        GROUP,
        VERSION,
        BINDINGS_PLURAL,
        registry=registry,
        cancellation_timeout=DAEMON_CANCELLATION_TIMEOUT_SECONDS,
    )
    async def binding_daemon(
        body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
    ) -> None:
        runtime = _runtime(memo)
        namespace = str(body.metadata.namespace)
        name = str(body.metadata.name)
        key = f"{namespace}/{name}"
        logger.info("Binding %s: reconcile loop started", key)
        stop_waiter: asyncio.Task[Any] = asyncio.ensure_future(stopped.wait())
        try:
            while not stopped:
                wake = runtime.pods.subscribe(
                    key=key, namespace=namespace, matches=_selector_of(body.get("spec") or {})
                )
                wake.clear()
                result = await runtime.reconciler.reconcile(body)
                if _status_changed(body.get("status") or {}, result.status):
                    await runtime.kube.patch_binding_status(
                        namespace=namespace, name=name, status=result.status
                    )
                wake_waiter = asyncio.create_task(wake.wait())
                await asyncio.wait(
                    {wake_waiter, stop_waiter},
                    timeout=result.next_run_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                wake_waiter.cancel()
        finally:
            stop_waiter.cancel()
            runtime.pods.unsubscribe(key)
            logger.info("Binding %s: reconcile loop stopped", key)

    @kopf.on.delete(GROUP, VERSION, BINDINGS_PLURAL, registry=registry)
    async def binding_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        runtime = _runtime(memo)
        key = f"{body.metadata.namespace}/{body.metadata.name}"
        runtime.reconciler.forget(key)
        runtime.seen_generations.pop(key, None)
        try:
            await revoke_binding(
                body=body,
                kube=runtime.kube,
                targets=runtime.targets,
                secrets=runtime.secrets,
                metrics=runtime.metrics,
            )
        except CredbrokerError as error:
            logger.warning("Binding %s: revocation on delete failed, retrying: %s", key, error)
            raise kopf.TemporaryError(
                str(error), delay=operator_settings.retry_delay_seconds
            ) from None

    @kopf.timer(
        GROUP,
        VERSION,
        TARGETS_PLURAL,
        registry=registry,
        interval=settings.sweep_interval_seconds,
        initial_delay=min(5.0, settings.sweep_interval_seconds),
    )
    async def target_sweep(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        runtime = _runtime(memo)
        name = str(body.metadata.name)
        now = utcnow()
        try:
            spec = parse_target(body.get("spec") or {})
            target = await runtime.targets.get(name=name, body=body, spec=spec)
            report = await sweep_target(
                target_name=name,
                target=target,
                secrets=runtime.secrets,
                namespaces=operator_settings.watch_namespaces or None,
                now=now,
                orphan_min_age=timedelta(seconds=operator_settings.orphan_min_age_seconds),
                metrics=runtime.metrics,
            )
        except CredbrokerError as error:
            logger.warning("Sweep of target %s failed: %s", name, error)
            condition = Condition(
                type=ConditionType.READY, status=False, reason=error.reason, message=error.message
            )
            await _write_target_status(runtime, body=body, condition=condition, active=None)
            return
        condition = Condition(
            type=ConditionType.READY,
            status=True,
            reason=Reason.SWEPT,
            message=(
                f"reachable; last sweep removed {report.revoked_expired} expired and "
                f"{report.revoked_orphaned} orphaned credential(s)"
            ),
        )
        active = report.credentials_seen - report.revoked_expired - report.revoked_orphaned
        await _write_target_status(runtime, body=body, condition=condition, active=active)

    @kopf.on.delete(GROUP, VERSION, TARGETS_PLURAL, registry=registry)
    async def target_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        runtime = _runtime(memo)
        await runtime.targets.forget(str(body.metadata.name))


async def _write_target_status(
    runtime: Runtime, *, body: kopf.Body, condition: Condition, active: int | None
) -> None:
    generation = body.metadata.get("generation")
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": merge_conditions(
            stored=(body.get("status") or {}).get("conditions"),
            decided=[condition],
            generation=generation,
            now=utcnow(),
        ),
    }
    if active is not None:
        status["activeCredentials"] = active
    await runtime.kube.patch_target_status(name=str(body.metadata.name), status=status)


def _selector_of(spec: Mapping[str, Any]) -> Any:
    try:
        return parse_binding(spec).pod_selector.matches
    except CredbrokerError:
        return _match_nothing


def _match_nothing(labels: Mapping[str, str]) -> bool:
    return False


def _status_changed(stored: Mapping[str, Any], decided: Mapping[str, Any]) -> bool:
    return any(stored.get(key) != value for key, value in decided.items())
