"""PostgresTarget against a real PostgreSQL server started by the test session.

Tests marked ``postgres`` use the ``postgres_server`` fixture, which fails
with an install hint when PostgreSQL is missing. The rest check input
validation and need no server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from credbroker.errors import TargetError
from credbroker.reasons import Reason
from credbroker.targets.base import CredentialRequest, IssuedCredential
from credbroker.targets.postgres import (
    COMMENT_MARKER,
    NO_EXPIRY_REPORTED_AS,
    PostgresTarget,
    connection_uri,
)
from pgserver import PostgresServer

TEST_DATABASE = "credbroker_target_tests"
TARGET_NAME = "orders-db"
CANARY_ROLE = "canary_victim"
HOSTILE_ROLES = (
    'it\'s "quoted"',
    "with space",
    "semi;colon",
    f'"; DROP ROLE {CANARY_ROLE}; --',
)
# Roles that exist and are allowed by the target but reach server-level powers.
POWERFUL_ROLES = ("creates_roles", "via_superuser", "reads_server_files")
MISSING_ROLE = "ghost_role"
ALLOWED_ROLES = ("orders_rw", *HOSTILE_ROLES, *POWERFUL_ROLES, MISSING_ROLE)
ID_ALPHABET = string.ascii_lowercase + string.digits


def new_credential_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(20))


def make_request(
    *,
    role: str = "orders_rw",
    credential_id: str | None = None,
    expires_in: timedelta = timedelta(minutes=10),
    binding_namespace: str = "shop",
    binding_name: str = "orders-api",
    secret_name: str = "orders-db-credentials",
) -> CredentialRequest:
    return CredentialRequest(
        credential_id=new_credential_id() if credential_id is None else credential_id,
        binding_namespace=binding_namespace,
        binding_name=binding_name,
        secret_name=secret_name,
        role=role,
        expires_at=datetime.now(UTC) + expires_in,
    )


def admin_connect(server: PostgresServer, database: str = TEST_DATABASE) -> psycopg.Connection[Any]:
    return psycopg.connect(server.admin_dsn(database), autocommit=True)


def login_connect(credential: IssuedCredential) -> psycopg.Connection[Any]:
    return psycopg.connect(credential.data["uri"], autocommit=True)


def role_exists(server: PostgresServer, name: str) -> bool:
    with admin_connect(server) as conn:
        row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    return row is not None


def credbroker_role_names(server: PostgresServer) -> set[str]:
    with admin_connect(server) as conn:
        rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'credbroker%'")
        return {row[0] for row in rows}


def create_role(conn: psycopg.Connection[Any], name: str, attributes: str = "NOLOGIN") -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    if exists is None:
        conn.execute(
            sql.SQL("CREATE ROLE {} " + attributes).format(sql.Identifier(name))  # type: ignore[arg-type]
        )


def assert_secret_absent(secret: str, text: str, where: str) -> None:
    """Fail without printing ``secret`` or ``text`` when ``text`` contains ``secret``."""
    leaked = secret in text
    assert not leaked, f"a password appears in {where}"


def closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def app_database(postgres_server: PostgresServer) -> str:
    """The test database with roles, a schema and two tables, one of them not granted."""
    with admin_connect(postgres_server, "postgres") as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (TEST_DATABASE,)
        ).fetchone()
    if exists is None:
        postgres_server.create_database(TEST_DATABASE)
    with admin_connect(postgres_server) as conn:
        for role in ("orders_rw", "billing_rw", CANARY_ROLE, *HOSTILE_ROLES):
            create_role(conn, role)
        create_role(conn, "creates_roles", "NOLOGIN CREATEROLE")
        create_role(conn, "hidden_superuser", "NOLOGIN SUPERUSER")
        create_role(conn, "via_superuser")
        create_role(conn, "reads_server_files")
        conn.execute("GRANT hidden_superuser TO via_superuser")
        conn.execute("GRANT pg_read_server_files TO reads_server_files")
        conn.execute("CREATE SCHEMA IF NOT EXISTS app")
        conn.execute("GRANT USAGE, CREATE ON SCHEMA app TO orders_rw")
        conn.execute("CREATE TABLE IF NOT EXISTS app.orders (id int PRIMARY KEY, item text)")
        conn.execute("GRANT SELECT, INSERT ON app.orders TO orders_rw")
        conn.execute("CREATE TABLE IF NOT EXISTS app.payroll (id int, salary int)")
        conn.execute("INSERT INTO app.payroll VALUES (1, 100000)")
    return TEST_DATABASE


def make_target(
    server: PostgresServer,
    *,
    target_name: str = TARGET_NAME,
    admin_user: str | None = None,
    admin_password: str | None = None,
    allowed_roles: tuple[str, ...] = ALLOWED_ROLES,
) -> PostgresTarget:
    return PostgresTarget(
        target_name=target_name,
        host=server.host,
        port=server.port,
        database=TEST_DATABASE,
        ssl_mode="disable",
        admin_user=admin_user or server.admin_user,
        admin_password=admin_password or server.admin_password,
        allowed_roles=allowed_roles,
        connect_timeout_seconds=5,
    )


@pytest.fixture
def target(postgres_server: PostgresServer, app_database: str) -> PostgresTarget:
    return make_target(postgres_server)


@pytest.fixture
def unreachable_target() -> PostgresTarget:
    return PostgresTarget(
        target_name=TARGET_NAME,
        host="127.0.0.1",
        port=closed_loopback_port(),
        database=TEST_DATABASE,
        ssl_mode="disable",
        admin_user="postgres",
        admin_password="unreachable-admin-password-7f3a",
        allowed_roles=ALLOWED_ROLES,
        connect_timeout_seconds=3,
    )


# Issuing and what the login may do.


@pytest.mark.postgres
async def test_issued_login_uses_granted_role(
    target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    credential = await target.issue(make_request())

    assert credential.username == f"credbroker_{credential.credential_id}"
    assert set(credential.data) == {"username", "password", "host", "port", "database", "uri"}
    assert credential.data["host"] == postgres_server.host
    assert credential.data["port"] == str(postgres_server.port)
    assert credential.data["database"] == TEST_DATABASE
    password_length = len(credential.data["password"])
    assert password_length >= 32
    order_id = secrets.randbelow(10**9)
    with login_connect(credential) as conn:
        user_row = conn.execute("SELECT current_user").fetchone()
        conn.execute("INSERT INTO app.orders VALUES (%s, 'book')", (order_id,))
        item_row = conn.execute("SELECT item FROM app.orders WHERE id = %s", (order_id,)).fetchone()
    assert user_row == (credential.username,)
    assert item_row == ("book",)


@pytest.mark.postgres
async def test_issued_login_cannot_read_ungranted_table(target: PostgresTarget) -> None:
    credential = await target.issue(make_request())

    with login_connect(credential) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT salary FROM app.payroll")


@pytest.mark.postgres
async def test_issued_login_has_no_admin_powers(
    target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    credential = await target.issue(make_request())

    with admin_connect(postgres_server) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolinherit"
            " FROM pg_roles WHERE rolname = %s",
            (credential.username,),
        ).fetchone()
    assert row == (False, False, False, False, False, True)
    with login_connect(credential) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE made_by_login")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(postgres_server.admin_user)))


@pytest.mark.postgres
async def test_issued_uri_matches_fields(target: PostgresTarget) -> None:
    credential = await target.issue(make_request())

    parsed = conninfo_to_dict(credential.data["uri"])
    assert parsed["user"] == credential.data["username"]
    password_matches = parsed["password"] == credential.data["password"]
    assert password_matches, "the uri's password differs from the password key"
    assert parsed["host"] == credential.data["host"]
    assert parsed["port"] == credential.data["port"]
    assert parsed["dbname"] == credential.data["database"]
    assert parsed["sslmode"] == "disable"


@pytest.mark.postgres
async def test_duplicate_credential_id_fails(target: PostgresTarget) -> None:
    request = make_request()
    first = await target.issue(request)

    with pytest.raises(TargetError) as caught:
        await target.issue(request)

    assert caught.value.reason == Reason.ISSUE_FAILED
    assert "42710" in caught.value.message
    with login_connect(first) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# Expiry and revocation.


@pytest.mark.postgres
async def test_login_rejected_after_expiry(target: PostgresTarget) -> None:
    credential = await target.issue(make_request(expires_in=timedelta(seconds=3)))
    with login_connect(credential) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    wait_seconds = (credential.expires_at - datetime.now(UTC)).total_seconds() + 1.5
    await asyncio.sleep(max(wait_seconds, 0))

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login_connect(credential)


@pytest.mark.postgres
async def test_login_rejected_after_revocation(
    target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    credential = await target.issue(make_request())
    with login_connect(credential) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    revoked = await target.revoke(credential.credential_id)

    assert revoked is True
    assert not role_exists(postgres_server, credential.username)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login_connect(credential)


@pytest.mark.postgres
async def test_revoke_twice_returns_false(target: PostgresTarget) -> None:
    credential = await target.issue(make_request())

    first = await target.revoke(credential.credential_id)
    second = await target.revoke(credential.credential_id)

    assert first is True
    assert second is False


@pytest.mark.postgres
async def test_revoke_login_with_objects_and_open_session(
    target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    credential = await target.issue(make_request())
    table = f"made_by_{credential.credential_id}"
    session = login_connect(credential)
    session.execute(sql.SQL("CREATE TABLE app.{} (note text)").format(sql.Identifier(table)))
    # Leave a transaction open that holds a lock on the login's own table.
    session.autocommit = False
    session.execute(sql.SQL("INSERT INTO app.{} VALUES ('kept')").format(sql.Identifier(table)))

    try:
        revoked = await target.revoke(credential.credential_id)

        assert revoked is True
        assert not role_exists(postgres_server, credential.username)
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    finally:
        session.close()
    with admin_connect(postgres_server) as conn:
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'app' AND tablename = %s",
            (table,),
        ).fetchone()
    assert owner == (postgres_server.admin_user,)


@pytest.mark.postgres
async def test_non_superuser_admin_issues_and_revokes(
    postgres_server: PostgresServer, app_database: str
) -> None:
    """An admin with CREATEROLE and ADMIN OPTION on the granted role suffices.

    NOTE: this runs on whichever PostgreSQL the machine has; the
    PostgreSQL 16+ path (GRANT ... WITH INHERIT TRUE) runs only there.
    """
    admin_password = secrets.token_urlsafe(24)
    with admin_connect(postgres_server) as conn:
        create_role(conn, "broker_admin", "LOGIN CREATEROLE")
        conn.execute(
            sql.SQL("ALTER ROLE broker_admin PASSWORD {}").format(sql.Literal(admin_password))
        )
        conn.execute("GRANT orders_rw TO broker_admin WITH ADMIN OPTION")
    target = make_target(
        postgres_server,
        admin_user="broker_admin",
        admin_password=admin_password,
        allowed_roles=("orders_rw",),
    )
    credential = await target.issue(make_request())
    table = f"made_by_{credential.credential_id}"
    session = login_connect(credential)
    session.execute(sql.SQL("CREATE TABLE app.{} (note text)").format(sql.Identifier(table)))

    try:
        revoked = await target.revoke(credential.credential_id)

        assert revoked is True
        assert not role_exists(postgres_server, credential.username)
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    finally:
        session.close()
    with admin_connect(postgres_server) as conn:
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'app' AND tablename = %s",
            (table,),
        ).fetchone()
    assert owner == ("broker_admin",)


# Sweeping.


@pytest.mark.postgres
async def test_sweep_finds_login_left_by_crash(target: PostgresTarget) -> None:
    request = make_request(binding_namespace="shop", binding_name="cart", secret_name="cart-db")
    before_issue = datetime.now(UTC).replace(microsecond=0)
    credential = await target.issue(request)  # the Secret is never written: a crash

    found = {c.credential_id: c for c in await target.list_credentials()}

    assert credential.credential_id in found
    left = found[credential.credential_id]
    assert left.username == credential.username
    assert left.binding_namespace == "shop"
    assert left.binding_name == "cart"
    assert left.secret_name == "cart-db"
    assert left.expires_at == request.expires_at.replace(microsecond=0)
    assert left.created_at is not None
    assert before_issue <= left.created_at <= datetime.now(UTC)
    assert await target.revoke(left.credential_id) is True
    remaining = {c.credential_id for c in await target.list_credentials()}
    assert credential.credential_id not in remaining


@pytest.mark.postgres
async def test_sweep_lists_unmarked_logins(
    target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    with_expiry = new_credential_id()
    without_expiry = new_credential_id()
    with admin_connect(postgres_server) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN VALID UNTIL '2030-01-02T03:04:05Z'").format(
                sql.Identifier(f"credbroker_{with_expiry}")
            )
        )
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"credbroker_{without_expiry}"))
        )
        conn.execute(
            sql.SQL("COMMENT ON ROLE {} IS 'credbroker:{{not json'").format(
                sql.Identifier(f"credbroker_{without_expiry}")
            )
        )
        create_role(conn, "credbroker_admin", "LOGIN")

    found = {c.credential_id: c for c in await target.list_credentials()}

    assert found[with_expiry].binding_namespace == ""
    assert found[with_expiry].binding_name == ""
    assert found[with_expiry].secret_name == ""
    assert found[with_expiry].created_at is None
    assert found[with_expiry].expires_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert found[without_expiry].expires_at == NO_EXPIRY_REPORTED_AS
    assert "admin" not in found
    assert all(c.username != "credbroker_admin" for c in found.values())
    assert await target.revoke(with_expiry) is True
    assert await target.revoke(without_expiry) is True
    assert role_exists(postgres_server, "credbroker_admin")


@pytest.mark.postgres
async def test_sweep_skips_other_targets(
    target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    other_target = make_target(postgres_server, target_name="other-target")
    other = await other_target.issue(make_request())

    mine = {c.credential_id for c in await target.list_credentials()}
    theirs = {c.credential_id for c in await other_target.list_credentials()}

    assert other.credential_id not in mine
    assert other.credential_id in theirs
    assert await other_target.revoke(other.credential_id) is True


# Hostile names.


@pytest.mark.postgres
@pytest.mark.parametrize("role", HOSTILE_ROLES)
async def test_hostile_role_name_quoted(
    role: str, target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    credential = await target.issue(make_request(role=role))

    with admin_connect(postgres_server) as conn:
        member = conn.execute(
            "SELECT pg_has_role(%s, %s, 'MEMBER')", (credential.username, role)
        ).fetchone()
    assert member == (True,)
    assert role_exists(postgres_server, CANARY_ROLE)
    with login_connect(credential) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (credential.username,)
    assert await target.revoke(credential.credential_id) is True
    assert role_exists(postgres_server, role)


@pytest.mark.postgres
async def test_hostile_binding_names_stored_intact(
    target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    binding_name = f"web'\"; DROP ROLE {CANARY_ROLE}; -- $$ \\"
    secret_name = "it's \"db\"\n{}/ünïcode\\'"
    credential = await target.issue(
        make_request(binding_namespace="team-a", binding_name=binding_name, secret_name=secret_name)
    )

    found = {c.credential_id: c for c in await target.list_credentials()}
    with admin_connect(postgres_server) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
            (credential.username,),
        ).fetchone()

    assert found[credential.credential_id].binding_namespace == "team-a"
    assert found[credential.credential_id].binding_name == binding_name
    assert found[credential.credential_id].secret_name == secret_name
    assert row is not None
    assert row[0].startswith(COMMENT_MARKER)
    record = json.loads(row[0][len(COMMENT_MARKER) :])
    assert record["binding"] == f"team-a/{binding_name}"
    assert record["secret"] == secret_name
    assert record["id"] == credential.credential_id
    assert record["target"] == TARGET_NAME
    assert role_exists(postgres_server, CANARY_ROLE)


# Roles the target must not grant.


@pytest.mark.postgres
async def test_role_not_allowed_creates_nothing(
    target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    before = credbroker_role_names(postgres_server)
    request = make_request(role="billing_rw")

    with pytest.raises(TargetError) as caught:
        await target.issue(request)

    assert caught.value.reason == Reason.ROLE_NOT_ALLOWED
    assert "'billing_rw'" in caught.value.message
    assert credbroker_role_names(postgres_server) == before


@pytest.mark.postgres
@pytest.mark.parametrize("role", POWERFUL_ROLES)
async def test_role_with_server_powers_rejected(
    role: str, target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    request = make_request(role=role)

    with pytest.raises(TargetError) as caught:
        await target.issue(request)

    assert caught.value.reason == Reason.ROLE_NOT_ALLOWED
    assert repr(role) in caught.value.message
    assert not role_exists(postgres_server, f"credbroker_{request.credential_id}")


@pytest.mark.postgres
async def test_missing_role_fails_without_leftovers(
    target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    request = make_request(role=MISSING_ROLE)

    with pytest.raises(TargetError) as caught:
        await target.issue(request)

    assert caught.value.reason == Reason.ISSUE_FAILED
    assert "does not exist" in caught.value.message
    assert not role_exists(postgres_server, f"credbroker_{request.credential_id}")


# Connection failures.


async def test_unreachable_server_is_target_unavailable(
    unreachable_target: PostgresTarget,
) -> None:
    with pytest.raises(TargetError) as issue_error:
        await unreachable_target.issue(make_request())
    with pytest.raises(TargetError) as revoke_error:
        await unreachable_target.revoke(new_credential_id())
    with pytest.raises(TargetError) as list_error:
        await unreachable_target.list_credentials()

    for caught in (issue_error, revoke_error, list_error):
        assert caught.value.reason == Reason.TARGET_UNAVAILABLE
        assert f"127.0.0.1:{unreachable_target.port}" in str(caught.value)
        assert "OperationalError" in str(caught.value)
        assert "unreachable-admin-password-7f3a" not in str(caught.value)


@pytest.mark.postgres
async def test_wrong_admin_password_is_target_unavailable(
    postgres_server: PostgresServer, app_database: str
) -> None:
    wrong_password = "wrong-admin-password-b41c"
    target = make_target(postgres_server, admin_password=wrong_password)

    with pytest.raises(TargetError) as caught:
        await target.list_credentials()

    assert caught.value.reason == Reason.TARGET_UNAVAILABLE
    assert "password authentication failed" in caught.value.message
    assert wrong_password not in str(caught.value)


# Secrets in logs, reprs and errors.


@pytest.mark.postgres
async def test_passwords_absent_from_logs_and_errors(
    target: PostgresTarget,
    postgres_server: PostgresServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    request = make_request()

    credential = await target.issue(request)
    with pytest.raises(TargetError) as duplicate:
        await target.issue(request)
    with pytest.raises(TargetError) as missing_role:
        await target.issue(make_request(role=MISSING_ROLE))
    await target.list_credentials()
    await target.revoke(credential.credential_id)

    password = credential.data["password"]
    admin_password = postgres_server.admin_password
    assert_secret_absent(password, caplog.text, "the captured logs")
    assert_secret_absent(password, repr(credential), "repr(IssuedCredential)")
    assert_secret_absent(admin_password, caplog.text, "the captured logs")
    assert_secret_absent(admin_password, repr(target), "repr(PostgresTarget)")
    assert_secret_absent(admin_password, repr(postgres_server), "repr(PostgresServer)")
    for caught in (duplicate, missing_role):
        assert_secret_absent(password, str(caught.value), "an error message")
        assert_secret_absent(admin_password, str(caught.value), "an error message")


@pytest.mark.postgres
async def test_server_statement_log_has_no_password(
    target: PostgresTarget, postgres_server: PostgresServer
) -> None:
    assert postgres_server.base_dir is not None
    server_log = postgres_server.base_dir / "postgres.log"
    with admin_connect(postgres_server) as conn:
        conn.execute("ALTER SYSTEM SET log_statement = 'ddl'")
        conn.execute("SELECT pg_reload_conf()")
    await asyncio.sleep(0.5)  # the postmaster applies the reload asynchronously
    try:
        credential = await target.issue(make_request())
    finally:
        with admin_connect(postgres_server) as conn:
            conn.execute("ALTER SYSTEM RESET log_statement")
            conn.execute("SELECT pg_reload_conf()")

    log_text = server_log.read_text(errors="replace")
    assert credential.username in log_text
    assert "SCRAM-SHA-256$" in log_text
    assert_secret_absent(credential.data["password"], log_text, "the server log")
    assert await target.revoke(credential.credential_id) is True


# Validation that needs no server.


@pytest.mark.parametrize(
    "credential_id",
    [
        "short",
        "A" * 20,
        "a" * 21,
        "",
        f'aaaaaaaaaa"; DROP ROLE {CANARY_ROLE}; --',
        "aaaaaaaaaaaaaaaaaaa-",
    ],
)
async def test_invalid_credential_id_rejected(
    credential_id: str, unreachable_target: PostgresTarget
) -> None:
    with pytest.raises(TargetError) as issue_error:
        await unreachable_target.issue(make_request(credential_id=credential_id))
    with pytest.raises(TargetError) as revoke_error:
        await unreachable_target.revoke(credential_id)

    assert issue_error.value.reason == Reason.ISSUE_FAILED
    assert revoke_error.value.reason == Reason.REVOKE_FAILED
    assert repr(credential_id) in revoke_error.value.message


async def test_past_expiry_rejected(unreachable_target: PostgresTarget) -> None:
    with pytest.raises(TargetError) as caught:
        await unreachable_target.issue(make_request(expires_in=timedelta(seconds=-1)))

    assert caught.value.reason == Reason.ISSUE_FAILED
    assert "not in the future" in caught.value.message


async def test_closed_target_rejects_operations(unreachable_target: PostgresTarget) -> None:
    await unreachable_target.close()

    with pytest.raises(TargetError) as caught:
        await unreachable_target.list_credentials()

    assert caught.value.reason == Reason.TARGET_UNAVAILABLE
    assert "closed" in caught.value.message


def spec_target(
    spec: dict[str, Any] | None = None, secret: dict[str, bytes | str] | None = None
) -> PostgresTarget:
    return PostgresTarget.from_spec(
        target_name=TARGET_NAME,
        spec=spec if spec is not None else {"host": "db.example", "database": "orders"},
        allowed_roles=["orders_rw"],
        admin_secret_data=(
            secret
            if secret is not None
            else {"username": b"admin\n", "password": b"s3cret-admin\n"}
        ),
        username_key="username",
        password_key="password",
    )


def test_from_spec_applies_defaults() -> None:
    target = spec_target()

    assert target.host == "db.example"
    assert target.port == 5432
    assert target.database == "orders"
    assert target.ssl_mode == "prefer"
    assert target.connect_timeout_seconds == 10.0
    assert target.admin_user == "admin"
    assert target.allowed_roles == ("orders_rw",)
    assert "s3cret-admin" not in repr(target)


def test_from_spec_reads_all_fields() -> None:
    target = spec_target(
        {
            "host": "10.0.0.5",
            "port": 6432,
            "database": "orders",
            "sslMode": "verify-full",
            "connectTimeout": "1m30s",
        },
        {"username": "admin", "password": "pw"},
    )

    assert target.port == 6432
    assert target.ssl_mode == "verify-full"
    assert target.connect_timeout_seconds == 90.0


@pytest.mark.parametrize("missing_key", ["username", "password"])
def test_from_spec_missing_secret_key(missing_key: str) -> None:
    secret: dict[str, bytes | str] = {"username": b"admin", "password": b"s3cret-admin"}
    del secret[missing_key]

    with pytest.raises(TargetError) as caught:
        spec_target(secret=secret)

    assert caught.value.reason == Reason.ADMIN_SECRET_INVALID
    assert repr(missing_key) in caught.value.message
    assert "s3cret-admin" not in str(caught.value)


def test_from_spec_empty_secret_value() -> None:
    with pytest.raises(TargetError) as caught:
        spec_target(secret={"username": b"admin", "password": b"\n"})

    assert caught.value.reason == Reason.ADMIN_SECRET_INVALID
    assert "'password' is empty" in caught.value.message


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"database": "orders"}, "host"),
        ({"host": "db"}, "database"),
        ({"host": "db", "database": "orders", "sslMode": "sometimes"}, "sslMode"),
        ({"host": "db", "database": "orders", "port": "5432"}, "port"),
        ({"host": "db", "database": "orders", "port": 70000}, "port"),
        ({"host": "db", "database": "orders", "connectTimeout": "soon"}, "connectTimeout"),
        ({"host": "db", "database": "orders", "connectTimeout": 0}, "connectTimeout"),
        ({"host": "db", "database": "orders", "connectTimeout": "0s"}, "connectTimeout"),
        ({"host": "db", "database": "orders", "connectTimeout": "500ms"}, "connectTimeout"),
    ],
)
def test_from_spec_invalid_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(TargetError) as caught:
        spec_target(spec)

    assert caught.value.reason == Reason.INVALID_SPEC
    assert f"spec.postgresql.{field}" in caught.value.message


def test_connection_uri_escapes_parts() -> None:
    uri = connection_uri(
        user="credbroker_abc",
        password="p@ss:w/rd?#%",
        host="::1",
        port=5432,
        database="orders db",
        ssl_mode="require",
    )

    parsed = conninfo_to_dict(uri)
    assert uri.startswith("postgresql://credbroker_abc:p%40ss%3Aw%2Frd%3F%23%25@[::1]:5432/")
    assert parsed["password"] == "p@ss:w/rd?#%"
    assert parsed["host"] == "::1"
    assert parsed["dbname"] == "orders db"
    assert parsed["sslmode"] == "require"
