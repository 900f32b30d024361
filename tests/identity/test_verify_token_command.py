"""The verify-token command, run in-process against a local issuer."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from identity_issuer import AUDIENCE, LocalIssuer, SigningKey
from identity_tls import TLSFiles

from credbroker.identity import verify_command
from credbroker.identity.pods import PodRef

KUBERNETES_ISSUER = "https://kubernetes.default.svc.cluster.local"
OPERATOR_TOKEN = "operator-bearer-41c7a9"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="credbroker verify-token")
    verify_command.add_arguments(parser)
    return parser.parse_args(argv)


def issuer_options(issuer: LocalIssuer) -> list[str]:
    assert issuer.issuer is not None
    return ["--issuer", issuer.issuer, "--audience", AUDIENCE]


def pod_options(pod: PodRef) -> list[str]:
    return [
        "--namespace",
        pod.namespace,
        "--pod",
        pod.name,
        "--pod-uid",
        pod.uid,
        "--service-account",
        pod.service_account,
    ]


async def test_good_token_with_pod(
    issuer: LocalIssuer, pod: PodRef, capsys: pytest.CaptureFixture[str]
) -> None:
    token = issuer.token_for(pod)

    exit_code = await verify_command.run(parse(*issuer_options(issuer), *pod_options(pod), token))

    output = capsys.readouterr()
    assert exit_code == 0, output.err
    result = json.loads(output.out)
    assert result["pod_binding_checked"] is True
    assert result["identity"]["pod_uid"] == pod.uid
    assert result["identity"]["service_account"] == "api"
    assert result["identity"]["token_expires_at"].endswith("+00:00")
    assert token not in output.out


async def test_good_token_without_pod(
    issuer: LocalIssuer, pod: PodRef, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = await verify_command.run(parse(*issuer_options(issuer), issuer.token_for(pod)))

    output = capsys.readouterr()
    assert exit_code == 0, output.err
    result = json.loads(output.out)
    assert result["pod_binding_checked"] is False
    assert "skipped" in result["note"]
    assert result["claims"]["pod_name"] == pod.name
    assert result["claims"]["subject"] == "system:serviceaccount:shop:api"


async def test_token_from_stdin(
    issuer: LocalIssuer,
    pod: PodRef,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(issuer.token_for(pod) + "\n"))

    exit_code = await verify_command.run(parse(*issuer_options(issuer), *pod_options(pod), "-"))

    output = capsys.readouterr()
    assert exit_code == 0, output.err
    assert json.loads(output.out)["identity"]["pod_name"] == pod.name


async def test_expired_token(
    issuer: LocalIssuer, pod: PodRef, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = issuer.claims(pod)
    claims["exp"] -= 3600
    token = issuer.mint(claims)

    exit_code = await verify_command.run(parse(*issuer_options(issuer), *pod_options(pod), token))

    output = capsys.readouterr()
    assert exit_code == verify_command.EXIT_REJECTED
    assert output.out == ""
    assert output.err.startswith("rejected: TokenExpired: token expired at")
    assert token not in output.err


async def test_token_for_other_pod(
    issuer: LocalIssuer, pod: PodRef, capsys: pytest.CaptureFixture[str]
) -> None:
    other = PodRef(
        namespace=pod.namespace, name="api-other", uid="9d0c", service_account=pod.service_account
    )

    exit_code = await verify_command.run(
        parse(*issuer_options(issuer), *pod_options(pod), issuer.token_for(other))
    )

    output = capsys.readouterr()
    assert exit_code == verify_command.EXIT_REJECTED
    assert "PodMismatch" in output.err
    assert "'api-other'" in output.err


async def test_issuer_unreachable(
    issuer: LocalIssuer, pod: PodRef, capsys: pytest.CaptureFixture[str]
) -> None:
    token = issuer.token_for(pod)
    issuer.fail_status = 503

    exit_code = await verify_command.run(parse(*issuer_options(issuer), token))

    output = capsys.readouterr()
    assert exit_code == verify_command.EXIT_REJECTED
    assert "JWKSUnavailable" in output.err
    assert "HTTP 503" in output.err


async def test_incomplete_pod_options(
    issuer: LocalIssuer, pod: PodRef, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = await verify_command.run(
        parse(*issuer_options(issuer), "--pod", pod.name, issuer.token_for(pod))
    )

    output = capsys.readouterr()
    assert exit_code == verify_command.EXIT_USAGE
    assert "--namespace" in output.err
    assert "--pod-uid" in output.err
    assert issuer.jwks_requests == 0


async def test_empty_stdin(
    issuer: LocalIssuer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))

    exit_code = await verify_command.run(parse(*issuer_options(issuer), "-"))

    assert exit_code == verify_command.EXIT_USAGE
    assert "token is empty" in capsys.readouterr().err


@pytest.fixture
async def api_server(
    tls_files: TLSFiles, rsa_signing_key: SigningKey
) -> AsyncIterator[LocalIssuer]:
    """A stand-in API server: mutual TLS, a bearer token and an issuer name that is not its URL."""
    server = LocalIssuer(
        keys=[rsa_signing_key],
        issuer=KUBERNETES_ISSUER,
        ssl_context=tls_files.server_context(require_client_cert=True),
        required_bearer_token=OPERATOR_TOKEN,
    )
    await server.start()
    yield server
    await server.close()


def write_kubeconfig(path: Path, *, server: str, tls_files: TLSFiles) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": server, "certificate-authority": str(tls_files.ca_file)},
            }
        ],
        "users": [
            {
                "name": "operator",
                "user": {
                    "client-certificate": str(tls_files.client_cert_file),
                    "client-key": str(tls_files.client_key_file),
                    "token": OPERATOR_TOKEN,
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "operator"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def test_kubeconfig_reaches_api_server(
    api_server: LocalIssuer,
    tls_files: TLSFiles,
    pod: PodRef,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig", server=api_server.url, tls_files=tls_files
    )
    token = api_server.token_for(pod)

    exit_code = await verify_command.run(
        parse(
            "--issuer",
            KUBERNETES_ISSUER,
            "--audience",
            AUDIENCE,
            "--kubeconfig",
            str(kubeconfig),
            *pod_options(pod),
            token,
        )
    )

    output = capsys.readouterr()
    assert exit_code == 0, output.err
    assert json.loads(output.out)["identity"]["pod_uid"] == pod.uid
    assert api_server.jwks_requests == 1
    assert api_server.discovery_requests == 0
    assert OPERATOR_TOKEN not in output.out + output.err


async def test_missing_kubeconfig(
    issuer: LocalIssuer, pod: PodRef, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-kubeconfig"

    exit_code = await verify_command.run(
        parse(*issuer_options(issuer), "--kubeconfig", str(missing), issuer.token_for(pod))
    )

    assert exit_code == verify_command.EXIT_USAGE
    assert "no-kubeconfig" in capsys.readouterr().err
