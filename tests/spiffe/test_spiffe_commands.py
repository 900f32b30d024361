"""The verify-svid and verify-jwt-svid commands, run in-process on files in tmp_path."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from spiffe_ca import JwtSigner, SpiffeCA, bundle_document, write_bundle

from credbroker.spiffe.commands import (
    EXIT_REJECTED,
    EXIT_USAGE,
    add_verify_jwt_svid_arguments,
    add_verify_svid_arguments,
    run_verify_jwt_svid,
    run_verify_svid,
)


def _svid_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="verify-svid")
    add_verify_svid_arguments(parser)
    return parser.parse_args(argv)


def _jwt_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="verify-jwt-svid")
    add_verify_jwt_svid_arguments(parser)
    return parser.parse_args(argv)


def _write_pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path


@pytest.fixture
def bundle_file(tmp_path: Path, ca: SpiffeCA, ec_signer: JwtSigner) -> Path:
    document = bundle_document(authorities=[ca.certificate], signers=[ec_signer])
    return write_bundle(tmp_path / "bundle.json", document)


async def test_verify_svid_ok(
    tmp_path: Path, ca: SpiffeCA, bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf, _ = ca.issue(path="/ns/shop/sa/web")
    cert = _write_pem(tmp_path / "svid.pem", leaf)

    code = await run_verify_svid(
        _svid_args(str(cert), "--bundle", str(bundle_file), "--trust-domain", "example.org")
    )

    output = json.loads(capsys.readouterr().out)
    assert code == 0
    assert output["spiffe_id"] == "spiffe://example.org/ns/shop/sa/web"
    assert output["trust_domain_pinned"] is True
    assert output["serial_number"] == format(leaf.serial_number, "x")
    assert output["expires_at"].endswith("Z")
    assert "note" not in output


async def test_verify_svid_unpinned(
    tmp_path: Path, ca: SpiffeCA, bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf, _ = ca.issue()
    cert = _write_pem(tmp_path / "svid.pem", leaf)

    code = await run_verify_svid(_svid_args(str(cert), "--bundle", str(bundle_file)))

    output = json.loads(capsys.readouterr().out)
    assert code == 0
    assert output["trust_domain_pinned"] is False
    assert "--trust-domain" in output["note"]


async def test_verify_svid_der_file(
    tmp_path: Path, ca: SpiffeCA, bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf, _ = ca.issue()
    cert = tmp_path / "svid.der"
    cert.write_bytes(leaf.public_bytes(serialization.Encoding.DER))

    code = await run_verify_svid(_svid_args(str(cert), "--bundle", str(bundle_file)))

    assert code == 0
    assert json.loads(capsys.readouterr().out)["spiffe_id"].startswith("spiffe://example.org/")


async def test_verify_svid_wrong_domain(
    tmp_path: Path, foreign_ca: SpiffeCA, bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf, _ = foreign_ca.issue()
    cert = _write_pem(tmp_path / "svid.pem", leaf)

    code = await run_verify_svid(
        _svid_args(str(cert), "--bundle", str(bundle_file), "--trust-domain", "example.org")
    )

    captured = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert captured.out == ""
    assert captured.err.startswith("rejected: TrustDomainMismatch: ")


async def test_verify_svid_foreign_chain(
    tmp_path: Path, foreign_ca: SpiffeCA, bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf, _ = foreign_ca.issue()
    cert = _write_pem(tmp_path / "svid.pem", leaf)

    code = await run_verify_svid(_svid_args(str(cert), "--bundle", str(bundle_file)))

    assert code == EXIT_REJECTED
    assert capsys.readouterr().err.startswith("rejected: SVIDChainInvalid: ")


async def test_verify_svid_expired(
    tmp_path: Path, ca: SpiffeCA, bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    leaf, _ = ca.issue(not_before=start, lifetime=timedelta(hours=1))
    cert = _write_pem(tmp_path / "svid.pem", leaf)

    code = await run_verify_svid(_svid_args(str(cert), "--bundle", str(bundle_file)))

    assert code == EXIT_REJECTED
    assert capsys.readouterr().err.startswith("rejected: SVIDExpired: ")


async def test_verify_svid_bad_bundle(
    tmp_path: Path, ca: SpiffeCA, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf, _ = ca.issue()
    cert = _write_pem(tmp_path / "svid.pem", leaf)
    broken = tmp_path / "bundle.json"
    broken.write_text('{"keys": "none"}')

    code = await run_verify_svid(_svid_args(str(cert), "--bundle", str(broken)))

    assert code == EXIT_REJECTED
    assert capsys.readouterr().err.startswith("rejected: BundleInvalid: ")


async def test_verify_svid_not_a_certificate(
    tmp_path: Path, bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert = tmp_path / "svid.pem"
    cert.write_text("not a certificate")

    code = await run_verify_svid(_svid_args(str(cert), "--bundle", str(bundle_file)))

    assert code == EXIT_REJECTED
    assert capsys.readouterr().err.startswith("rejected: MalformedSVID: ")


async def test_verify_svid_usage_errors(
    tmp_path: Path, bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = await run_verify_svid(
        _svid_args(str(tmp_path / "absent.pem"), "--bundle", str(bundle_file))
    )
    assert missing == EXIT_USAGE
    assert "cannot read" in capsys.readouterr().err

    bad_domain = await run_verify_svid(
        _svid_args(str(bundle_file), "--bundle", str(bundle_file), "--trust-domain", "Bad.Org")
    )
    assert bad_domain == EXIT_USAGE
    assert "--trust-domain" in capsys.readouterr().err


async def test_verify_jwt_svid_ok(
    ec_signer: JwtSigner, bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = ec_signer.mint(aud="credbroker")

    code = await run_verify_jwt_svid(
        _jwt_args(
            token,
            "--bundle",
            str(bundle_file),
            "--audience",
            "credbroker",
            "--trust-domain",
            "example.org",
        )
    )

    captured = capsys.readouterr()
    output = json.loads(captured.out)
    assert code == 0
    assert output["spiffe_id"] == "spiffe://example.org/ns/shop/sa/web"
    assert output["audiences"] == ["credbroker"]
    assert output["key_id"] == "ec-1"
    assert output["trust_domain_pinned"] is True
    assert token not in captured.out + captured.err


async def test_verify_jwt_svid_stdin(
    ec_signer: JwtSigner,
    bundle_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(ec_signer.mint() + "\n"))

    code = await run_verify_jwt_svid(
        _jwt_args("-", "--bundle", str(bundle_file), "--audience", "credbroker")
    )

    output = json.loads(capsys.readouterr().out)
    assert code == 0
    assert output["trust_domain_pinned"] is False
    assert "note" in output


async def test_verify_jwt_svid_wrong_audience(
    ec_signer: JwtSigner, bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = ec_signer.mint(aud="reports")

    code = await run_verify_jwt_svid(
        _jwt_args(token, "--bundle", str(bundle_file), "--audience", "credbroker")
    )

    captured = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert captured.err.startswith("rejected: AudienceMismatch: ")
    assert token not in captured.err


async def test_verify_jwt_svid_garbage(
    bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_verify_jwt_svid(
        _jwt_args("garbage", "--bundle", str(bundle_file), "--audience", "credbroker")
    )

    assert code == EXIT_REJECTED
    assert capsys.readouterr().err.startswith("rejected: MalformedToken: ")


async def test_verify_jwt_svid_empty_stdin(
    bundle_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))

    code = await run_verify_jwt_svid(
        _jwt_args("-", "--bundle", str(bundle_file), "--audience", "credbroker")
    )

    assert code == EXIT_USAGE
    assert "the token is empty" in capsys.readouterr().err


async def test_verify_jwt_svid_bad_leeway(
    ec_signer: JwtSigner, bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_verify_jwt_svid(
        _jwt_args(
            ec_signer.mint(),
            "--bundle",
            str(bundle_file),
            "--audience",
            "credbroker",
            "--leeway-seconds",
            "9999",
        )
    )

    assert code == EXIT_USAGE
    assert "leeway_seconds" in capsys.readouterr().err
