"""PostgreSQL target: each credential is a short-lived login role on the server.

Issuing a credential runs one transaction. It creates a role named
``credbroker_<credential id>`` with LOGIN, a generated password and the
expiry as ``VALID UNTIL``, and grants it one of the target's allowed roles.
A ``COMMENT ON ROLE`` marks it with ``credbroker:`` and a JSON record of the
credential. A crash therefore leaves either nothing or a complete, marked
role, and ``list_credentials`` finds such roles on the server itself.

Revoking disables the login, terminates its sessions, hands the objects it
owns to the admin user, drops its remaining privileges and drops the role.
docs/targets/postgresql.md describes the statements and the privileges the
admin account needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from credbroker.durations import DURATION_FORM, parse_duration
from credbroker.errors import TargetError
from credbroker.reasons import Reason
from credbroker.targets.base import (
    CredentialRequest,
    FoundCredential,
    IssuedCredential,
)
from credbroker.timestamps import format_timestamp, parse_timestamp

logger = logging.getLogger(__name__)

LOGIN_PREFIX = "credbroker_"
CREDENTIAL_ID_PATTERN = re.compile(r"[a-z0-9]{20}")
# Server-side regular expression for the logins this target creates. Roles
# that only share the prefix (say, a hand-made credbroker_admin) never match.
LOGIN_NAME_REGEX = r"^credbroker_[a-z0-9]{20}$"
COMMENT_MARKER = "credbroker:"
PASSWORD_ENTROPY_BYTES = 32  # secrets.token_urlsafe(32) returns 43 characters
PASSWORD_ALGORITHM = b"scram-sha-256"

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_PORT = 5432
DEFAULT_SSL_MODE = "prefer"  # libpq's own default
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0
LIBPQ_MIN_CONNECT_TIMEOUT_SECONDS = 2  # libpq treats smaller values as 2
STATEMENT_TIMEOUT_MS = 30_000
# Idle admin connections kept per target between operations; more run at
# once when needed, and the extra ones are closed after use.
ADMIN_IDLE_CONNECTIONS = 4
TERMINATE_WAIT_MS = 5_000
APPLICATION_NAME = "credbroker"
MAX_ERROR_DETAIL_CHARS = 500

# PostgreSQL versions as libpq reports them (major * 10000 + minor).
PG14_VERSION_NUM = 140_000  # pg_terminate_backend(pid, timeout) exists from 14 on
PG16_VERSION_NUM = 160_000  # GRANT ... WITH INHERIT TRUE exists from 16 on

# Reported as the expiry of a login whose role has no VALID UNTIL and no
# readable marker, so that a sweep treats it as long expired.
NO_EXPIRY_REPORTED_AS = datetime(1970, 1, 1, tzinfo=UTC)

# Predefined roles that reach the server's file system or run programs as the
# operating-system user of the server. A login that may SET ROLE to one of
# them could take over the server, so they are never granted.
SERVER_ACCESS_ROLES = frozenset(
    {"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files"}
)

# Every role the requested role can SET ROLE to, itself included, with the
# attributes that would let a login escape its grant.
REACHABLE_ROLES_QUERY = """
WITH RECURSIVE reachable(oid) AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s
    UNION
    SELECT m.roleid
    FROM pg_catalog.pg_auth_members AS m
    JOIN reachable AS r ON m.member = r.oid
)
SELECT candidate.rolname, candidate.rolsuper, candidate.rolcreaterole,
       candidate.rolreplication, candidate.rolbypassrls
FROM pg_catalog.pg_roles AS candidate
JOIN reachable USING (oid)
"""

# Terminates the sessions of one login and counts them. The CASE makes the
# user check run before pg_terminate_backend: in a plain
# "WHERE usename = ... AND pg_terminate_backend(pid)" the planner may call the
# function first, on every session of the server.
TERMINATE_SESSIONS_QUERY = """
SELECT count(*) FILTER (WHERE CASE
    WHEN usename = %(login)s AND pid <> pg_catalog.pg_backend_pid()
    THEN pg_catalog.pg_terminate_backend(pid, %(wait_ms)s)
    ELSE false END)
FROM pg_catalog.pg_stat_activity
"""
TERMINATE_SESSIONS_QUERY_BEFORE_PG14 = """
SELECT count(*) FILTER (WHERE CASE
    WHEN usename = %(login)s AND pid <> pg_catalog.pg_backend_pid()
    THEN pg_catalog.pg_terminate_backend(pid)
    ELSE false END)
FROM pg_catalog.pg_stat_activity
"""

LIST_LOGINS_QUERY = """
SELECT rolname,
       CASE WHEN isfinite(rolvaliduntil) THEN rolvaliduntil END,
       pg_catalog.shobj_description(oid, 'pg_authid')
FROM pg_catalog.pg_roles
WHERE rolname ~ %s
ORDER BY rolname
"""

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialMarker:
    """The JSON record in a login's ``COMMENT ON ROLE``, after ``credbroker:``."""

    credential_id: str
    binding_namespace: str
    binding_name: str
    secret_name: str
    expires_at: datetime
    created_at: datetime
    target_name: str

    def to_comment(self) -> str:
        """Encode the marker as the role comment."""
        record = {
            "id": self.credential_id,
            "binding": f"{self.binding_namespace}/{self.binding_name}",
            "secret": self.secret_name,
            "expires": format_timestamp(self.expires_at),
            "created": format_timestamp(self.created_at),
            "target": self.target_name,
        }
        return COMMENT_MARKER + json.dumps(record, separators=(",", ":"))

    @classmethod
    def from_comment(cls, comment: str | None) -> CredentialMarker | None:
        """Decode a role comment, or return None when it is not a complete marker.

        The binding is split at its first "/" because a Kubernetes namespace
        cannot contain one.
        """
        if comment is None or not comment.startswith(COMMENT_MARKER):
            return None
        try:
            record = json.loads(comment[len(COMMENT_MARKER) :])
        except ValueError:
            return None
        keys = ("id", "binding", "secret", "expires", "created", "target")
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in keys):
            return None
        namespace, separator, name = record["binding"].partition("/")
        if not separator:
            return None
        try:
            expires_at = parse_timestamp(record["expires"])
            created_at = parse_timestamp(record["created"])
        except ValueError:
            return None
        return cls(
            credential_id=record["id"],
            binding_namespace=namespace,
            binding_name=name,
            secret_name=record["secret"],
            expires_at=expires_at,
            created_at=created_at,
            target_name=record["target"],
        )


def login_name(credential_id: str) -> str:
    """Return the login role name for a credential id, without validating the id."""
    return LOGIN_PREFIX + credential_id


def connection_uri(
    *, user: str, password: str, host: str, port: int, database: str, ssl_mode: str
) -> str:
    """Build a libpq connection URI, percent-encoding every part."""
    uri_host = f"[{host}]" if ":" in host else quote(host, safe="")
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{uri_host}:{port}/{quote(database, safe='')}?sslmode={quote(ssl_mode, safe='')}"
    )


class PostgresTarget:
    """A PostgreSQL server on which credbroker mints login roles.

    Every operation opens one admin connection and closes it afterwards.
    """

    kind = "postgresql"

    def __init__(
        self,
        *,
        target_name: str,
        host: str,
        port: int,
        database: str,
        ssl_mode: str,
        admin_user: str,
        admin_password: str,
        allowed_roles: Sequence[str],
        connect_timeout_seconds: float,
    ) -> None:
        where = f"target {target_name!r}"
        if not host:
            raise TargetError(
                Reason.INVALID_SPEC,
                f"{where}: spec.postgresql.host is empty; "
                "set it to the server's host name or address",
            )

        if isinstance(port, bool) or not 1 <= port <= 65535:
            raise TargetError(
                Reason.INVALID_SPEC,
                f"{where}: spec.postgresql.port {port!r} is "
                "not a TCP port; use a number from 1 to 65535",
            )

        if not database:
            raise TargetError(
                Reason.INVALID_SPEC,
                f"{where}: spec.postgresql.database is empty; "
                "set it to the database the applications use",
            )

        if ssl_mode not in SSL_MODES:
            raise TargetError(
                Reason.INVALID_SPEC,
                f"{where}: spec.postgresql.sslMode "
                f"{ssl_mode!r} is invalid; use one of {', '.join(SSL_MODES)}",
            )

        if not connect_timeout_seconds > 0:
            raise TargetError(
                Reason.INVALID_SPEC,
                f"{where}: connect timeout "
                f"{connect_timeout_seconds!r} s is invalid; use a positive number",
            )

        if not admin_user or not admin_password:
            missing = "user name" if not admin_user else "password"
            raise TargetError(
                Reason.ADMIN_SECRET_INVALID,
                f"{where}: the admin {missing} is empty; put it into the admin Secret",
            )

        self.target_name = target_name
        self.host = host
        self.port = port
        self.database = database
        self.ssl_mode = ssl_mode
        self.admin_user = admin_user
        self._admin_password = admin_password
        self.allowed_roles: tuple[str, ...] = tuple(allowed_roles)
        self.connect_timeout_seconds = connect_timeout_seconds
        self._closed = False
        self._idle: list[Connection] = []

    @classmethod
    def from_spec(
        cls,
        *,
        target_name: str,
        spec: Mapping[str, Any],
        allowed_roles: Sequence[str],
        admin_secret_data: Mapping[str, bytes | str],
        username_key: str,
        password_key: str,
    ) -> PostgresTarget:
        """Build a target from the CRD's ``spec.postgresql`` block and the admin Secret's data.

        ``port`` defaults to 5432, ``sslMode`` to "prefer" and
        ``connectTimeout`` to 10 s. ``connectTimeout`` is a duration string as
        the CRD spells it ("10s", "1m30s") or a number of seconds. Trailing line breaks in the
        Secret's values are removed, since files written by editors end in one.
        """
        where = f"target {target_name!r}"
        host = spec.get("host")
        database = spec.get("database")
        port = spec.get("port", DEFAULT_PORT)
        ssl_mode = spec.get("sslMode", DEFAULT_SSL_MODE)
        if not isinstance(host, str):
            raise TargetError(
                Reason.INVALID_SPEC,
                f"{where}: spec.postgresql.host is missing or "
                "not a string; set it to the server's host name or address",
            )
        if not isinstance(database, str):
            raise TargetError(
                Reason.INVALID_SPEC,
                f"{where}: spec.postgresql.database is "
                "missing or not a string; set it to the applications' database",
            )
        if not isinstance(port, int):
            raise TargetError(
                Reason.INVALID_SPEC,
                f"{where}: spec.postgresql.port {port!r} is "
                "not an integer; use a number from 1 to 65535",
            )
        if not isinstance(ssl_mode, str):
            raise TargetError(
                Reason.INVALID_SPEC,
                f"{where}: spec.postgresql.sslMode "
                f"{ssl_mode!r} is invalid; use one of {', '.join(SSL_MODES)}",
            )
        timeout = parse_timeout_seconds(
            spec.get("connectTimeout", DEFAULT_CONNECT_TIMEOUT_SECONDS), where=where
        )
        return cls(
            target_name=target_name,
            host=host,
            port=port,
            database=database,
            ssl_mode=ssl_mode,
            admin_user=_secret_value(admin_secret_data, username_key, where=where),
            admin_password=_secret_value(admin_secret_data, password_key, where=where),
            allowed_roles=allowed_roles,
            connect_timeout_seconds=timeout,
        )

    def __repr__(self) -> str:
        return (
            f"PostgresTarget(target_name={self.target_name!r}, host={self.host!r}, "
            f"port={self.port}, database={self.database!r}, ssl_mode={self.ssl_mode!r}, "
            f"admin_user={self.admin_user!r}, allowed_roles={self.allowed_roles!r})"
        )

    @property
    def address(self) -> str:
        """The server as ``host:port``, for messages."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def issue(self, request: CredentialRequest) -> IssuedCredential:
        """Create a login role for the request and grant it the requested role.

        Raises TargetError with ROLE_NOT_ALLOWED when the role is not in
        ``allowed_roles`` or could give the login superuser-like powers,
        ISSUE_FAILED when the request is invalid or PostgreSQL rejects a
        statement, and TARGET_UNAVAILABLE when the server cannot be reached.
        If the connection breaks during COMMIT, the role may exist without the
        caller knowing; ``list_credentials`` finds it.
        """
        login = self._checked_login_name(request.credential_id, Reason.ISSUE_FAILED)
        self._check_role_allowed(request.role)
        expires_at = self._checked_expiry(request)
        created_at = datetime.now(UTC).replace(microsecond=0)
        marker = CredentialMarker(
            credential_id=request.credential_id,
            binding_namespace=request.binding_namespace,
            binding_name=request.binding_name,
            secret_name=request.secret_name,
            expires_at=expires_at,
            created_at=created_at,
            target_name=self.target_name,
        )
        password = secrets.token_urlsafe(PASSWORD_ENTROPY_BYTES)

        async with self._admin_connection() as conn:
            try:
                async with conn.transaction():
                    await self._check_role_grantable(conn, request.role)
                    await self._create_login(
                        conn, login=login, password=password, expires_at=expires_at
                    )
                    await conn.execute(
                        sql.SQL("GRANT {role} TO {login}").format(
                            role=sql.Identifier(request.role), login=sql.Identifier(login)
                        )
                    )
                    await conn.execute(
                        sql.SQL("COMMENT ON ROLE {login} IS {comment}").format(
                            login=sql.Identifier(login), comment=sql.Literal(marker.to_comment())
                        )
                    )
            except psycopg.Error as exc:
                raise self._operation_error(
                    exc,
                    reason=Reason.ISSUE_FAILED,
                    action=f"issuing login {login} with role {request.role!r}",
                    secrets_in_scope=(password,),
                ) from None

        logger.info(
            "issued PostgreSQL login %s with role %r for binding %s/%s on target %s, "
            "valid until %s",
            login,
            request.role,
            request.binding_namespace,
            request.binding_name,
            self.target_name,
            format_timestamp(expires_at),
        )
        data = {
            "username": login,
            "password": password,
            "host": self.host,
            "port": str(self.port),
            "database": self.database,
            "uri": connection_uri(
                user=login,
                password=password,
                host=self.host,
                port=self.port,
                database=self.database,
                ssl_mode=self.ssl_mode,
            ),
        }
        return IssuedCredential(
            credential_id=request.credential_id, username=login, expires_at=expires_at, data=data
        )

    async def revoke(self, credential_id: str) -> bool:
        """Drop the login of ``credential_id``; return False when it did not exist.

        Revocation runs in three parts, so that no new session can start
        while the old ones are terminated. First the login is disabled
        (NOLOGIN) and committed. Then its sessions are terminated. Last, a
        second transaction runs REASSIGN OWNED (objects go to the admin user),
        DROP OWNED (the remaining privileges) and DROP ROLE. After a crash
        between the parts, the disabled login is still marked, so the next
        sweep revokes it. Only objects in the target's database are
        reassigned. If the login owns objects in another database, DROP ROLE
        fails with REVOKE_FAILED and the login stays disabled.
        """
        login = self._checked_login_name(credential_id, Reason.REVOKE_FAILED)
        async with self._admin_connection() as conn:
            try:
                if not await self._disable_login(conn, login):
                    logger.info(
                        "PostgreSQL login %s on target %s was already gone", login, self.target_name
                    )
                    return False
                terminated = await self._terminate_sessions(conn, login)
                dropped = await self._drop_login(conn, login)
            except psycopg.Error as exc:
                raise self._operation_error(
                    exc, reason=Reason.REVOKE_FAILED, action=f"revoking login {login}"
                ) from None
        if dropped:
            logger.info(
                "revoked PostgreSQL login %s on target %s (%d sessions terminated)",
                login,
                self.target_name,
                terminated,
            )
        else:
            logger.info(
                "PostgreSQL login %s on target %s was dropped by another revocation",
                login,
                self.target_name,
            )
        return dropped

    async def list_credentials(self) -> Sequence[FoundCredential]:
        """List the logins that this target created and that exist on the server.

        A login counts when its name is ``credbroker_`` and a 20-character
        credential id. Logins whose marker names another target are left out,
        so that two targets on one server do not sweep each other's
        credentials. Logins without a readable marker are included with empty
        binding and Secret names, ``created_at`` None and ``expires_at`` from
        VALID UNTIL (the Unix epoch if there is none), so a sweep can still
        drop them.
        """
        async with self._admin_connection() as conn:
            try:
                cursor = await conn.execute(LIST_LOGINS_QUERY, (LOGIN_NAME_REGEX,))
                rows = await cursor.fetchall()
            except psycopg.Error as exc:
                raise self._operation_error(
                    exc, reason=Reason.TARGET_UNAVAILABLE, action="listing credbroker logins"
                ) from None

        found: list[FoundCredential] = []
        for role_name, valid_until, comment in rows:
            credential = self._found_credential(role_name, valid_until, comment)
            if credential is not None:
                found.append(credential)
        logger.debug("found %d credbroker logins on target %s", len(found), self.target_name)
        return found

    async def close(self) -> None:
        """Mark the target closed and close its idle admin connections."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    # Issuing

    def _checked_login_name(self, credential_id: str, reason: Reason) -> str:
        if not isinstance(credential_id, str) or not CREDENTIAL_ID_PATTERN.fullmatch(credential_id):
            raise TargetError(
                reason,
                f"credential id {credential_id!r} is invalid for target {self.target_name!r}; "
                "it must be 20 characters from a-z and 0-9",
            )
        return login_name(credential_id)

    def _check_role_allowed(self, role: str) -> None:
        if role not in self.allowed_roles:
            allowed = ", ".join(repr(r) for r in self.allowed_roles) or "none"
            raise TargetError(
                Reason.ROLE_NOT_ALLOWED,
                f"role {role!r} is not allowed on target {self.target_name!r} "
                f"(allowed: {allowed}); request an allowed role or add it to the target",
            )

    def _checked_expiry(self, request: CredentialRequest) -> datetime:
        """Return the expiry cut to whole seconds, the precision the marker stores."""
        expires_at = request.expires_at
        if expires_at.tzinfo is None:
            raise TargetError(
                Reason.ISSUE_FAILED,
                f"expiry {expires_at.isoformat()} of credential {request.credential_id} has "
                "no time zone; pass an aware datetime",
            )
        expires_at = expires_at.astimezone(UTC).replace(microsecond=0)
        if expires_at <= datetime.now(UTC):
            raise TargetError(
                Reason.ISSUE_FAILED,
                f"expiry {format_timestamp(expires_at)} of credential {request.credential_id} "
                "is not in the future; request a later expiry",
            )
        return expires_at

    async def _check_role_grantable(self, conn: Connection, role: str) -> None:
        """Raise unless ``role`` exists and no role it reaches has server-level powers.

        A member may SET ROLE to any role it reaches through memberships and
        then use that role's SUPERUSER, CREATEROLE, REPLICATION or BYPASSRLS
        attribute, which are not inherited as ordinary privileges are.
        """
        cursor = await conn.execute(REACHABLE_ROLES_QUERY, (role,))
        rows = await cursor.fetchall()
        if not any(row[0] == role for row in rows):
            raise TargetError(
                Reason.ISSUE_FAILED,
                f"role {role!r} does not exist in PostgreSQL at {self.address} "
                f"(target {self.target_name!r}); create it there or remove it from the "
                "allowed roles",
            )
        for name, is_super, can_create_role, can_replicate, bypasses_rls in rows:
            powers = [
                attribute
                for attribute, present in (
                    ("SUPERUSER", is_super),
                    ("CREATEROLE", can_create_role),
                    ("REPLICATION", can_replicate),
                    ("BYPASSRLS", bypasses_rls),
                )
                if present
            ]
            if name in SERVER_ACCESS_ROLES:
                powers.append("server file or program access")
            if powers:
                via = "" if name == role else f" through its membership in {name!r}"
                raise TargetError(
                    Reason.ROLE_NOT_ALLOWED,
                    f"role {role!r} on target {self.target_name!r} reaches "
                    f"{', '.join(powers)}{via}; a login granted it could SET ROLE to gain that, "
                    "so grant the applications a role without it",
                )

    async def _create_login(
        self, conn: Connection, *, login: str, password: str, expires_at: datetime
    ) -> None:
        """Run CREATE ROLE with a SCRAM verifier computed on this side.

        Sending the verifier instead of the password keeps the password out
        of the server's statement log. PASSWORD and VALID UNTIL only take
        string constants, so they are sent as client-side quoted literals.
        """
        verifier = conn.pgconn.encrypt_password(
            password.encode(), login.encode(), PASSWORD_ALGORITHM
        ).decode()
        statement = sql.SQL(
            "CREATE ROLE {login} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE "
            "NOREPLICATION NOBYPASSRLS PASSWORD {verifier} VALID UNTIL {expires}"
        ).format(
            login=sql.Identifier(login),
            verifier=sql.Literal(verifier),
            expires=sql.Literal(expires_at.isoformat()),
        )
        await conn.execute(statement)

    # Revoking

    async def _disable_login(self, conn: Connection, login: str) -> bool:
        """Set NOLOGIN and make sure the admin has the login's privileges.

        Return False when the login does not exist. REASSIGN OWNED, DROP
        OWNED and pg_terminate_backend need the privileges of the login, which
        a superuser always has. An admin with only CREATEROLE grants itself
        membership in the login first.
        """
        async with conn.transaction():
            cursor = await conn.execute(
                "SELECT pg_catalog.pg_has_role(current_user, oid, 'USAGE') "
                "FROM pg_catalog.pg_roles WHERE rolname = %s",
                (login,),
            )
            row = await cursor.fetchone()
            if row is None:
                return False
            await conn.execute(
                sql.SQL("ALTER ROLE {login} NOLOGIN").format(login=sql.Identifier(login))
            )
            has_privileges = bool(row[0])
            if not has_privileges:
                grant = "GRANT {login} TO CURRENT_USER"
                if conn.info.server_version >= PG16_VERSION_NUM:
                    # NOTE: the tests run on PostgreSQL 15 only, so this branch has never run.
                    grant += " WITH INHERIT TRUE"
                await conn.execute(sql.SQL(grant).format(login=sql.Identifier(login)))
        return True

    async def _terminate_sessions(self, conn: Connection, login: str) -> int:
        """Terminate the login's sessions and return how many were terminated."""
        if conn.info.server_version >= PG14_VERSION_NUM:
            query = TERMINATE_SESSIONS_QUERY
        else:
            query = TERMINATE_SESSIONS_QUERY_BEFORE_PG14
        cursor = await conn.execute(query, {"login": login, "wait_ms": TERMINATE_WAIT_MS})
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _drop_login(self, conn: Connection, login: str) -> bool:
        """Reassign and drop what the login owns, then drop it. Return False if it was gone."""
        identifier = sql.Identifier(login)
        try:
            async with conn.transaction():
                await conn.execute(
                    sql.SQL("REASSIGN OWNED BY {login} TO CURRENT_USER").format(login=identifier)
                )
                await conn.execute(sql.SQL("DROP OWNED BY {login}").format(login=identifier))
                await conn.execute(sql.SQL("DROP ROLE {login}").format(login=identifier))
        except psycopg.errors.UndefinedObject:
            return False
        return True

    # Listing

    def _found_credential(
        self, role_name: str, valid_until: datetime | None, comment: str | None
    ) -> FoundCredential | None:
        credential_id = role_name.removeprefix(LOGIN_PREFIX)
        marker = CredentialMarker.from_comment(comment)
        if marker is None:
            logger.debug(
                "login %s on target %s has no readable credbroker marker",
                role_name,
                self.target_name,
            )
            return FoundCredential(
                credential_id=credential_id,
                username=role_name,
                binding_namespace="",
                binding_name="",
                secret_name="",
                created_at=None,
                expires_at=valid_until if valid_until is not None else NO_EXPIRY_REPORTED_AS,
            )
        if marker.target_name != self.target_name:
            return None
        if marker.credential_id != credential_id:
            logger.warning(
                "login %s on target %s carries a marker for credential %r",
                role_name,
                self.target_name,
                marker.credential_id,
            )
        return FoundCredential(
            credential_id=credential_id,
            username=role_name,
            binding_namespace=marker.binding_namespace,
            binding_name=marker.binding_name,
            secret_name=marker.secret_name,
            created_at=marker.created_at,
            expires_at=marker.expires_at,
        )

    # Connections

    @contextlib.asynccontextmanager
    async def _admin_connection(self) -> AsyncIterator[Connection]:
        """Yield an autocommit admin connection, reusing an idle one when there is one.

        A connection goes back to the idle list only when the operation ended
        without an error and the connection is open and outside a transaction;
        otherwise it is closed. At most ``ADMIN_IDLE_CONNECTIONS`` stay idle.
        """
        if self._closed:
            raise TargetError(
                Reason.TARGET_UNAVAILABLE,
                f"target {self.target_name!r} is closed; build a new PostgresTarget",
            )
        conn = self._take_idle_connection() or await self._connect()
        reusable = False
        try:
            yield conn
            reusable = True
        finally:
            if reusable and self._can_reuse(conn):
                self._idle.append(conn)
            else:
                await conn.close()

    def _take_idle_connection(self) -> Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if self._can_reuse(conn, limit=False):
                return conn
        return None

    def _can_reuse(self, conn: Connection, *, limit: bool = True) -> bool:
        if self._closed or conn.closed:
            return False
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return False
        return not limit or len(self._idle) < ADMIN_IDLE_CONNECTIONS

    async def _connect(self) -> Connection:
        libpq_timeout = max(
            LIBPQ_MIN_CONNECT_TIMEOUT_SECONDS, math.ceil(self.connect_timeout_seconds)
        )
        try:
            async with asyncio.timeout(self.connect_timeout_seconds):
                return await psycopg.AsyncConnection.connect(
                    host=self.host,
                    port=self.port,
                    dbname=self.database,
                    user=self.admin_user,
                    password=self._admin_password,
                    sslmode=self.ssl_mode,
                    connect_timeout=libpq_timeout,
                    application_name=APPLICATION_NAME,
                    options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                    autocommit=True,
                    prepare_threshold=None,
                )
        except TimeoutError:
            detail = f"no answer within {self.connect_timeout_seconds} s"
            error_class = "TimeoutError"
        except (psycopg.Error, OSError) as exc:
            detail = _one_line(self._scrub(str(exc)))
            error_class = type(exc).__name__
        raise TargetError(
            Reason.TARGET_UNAVAILABLE,
            f"cannot connect to PostgreSQL at {self.address} as {self.admin_user!r} for target "
            f"{self.target_name!r} ({error_class}: {detail}); check that the server is "
            "running and reachable and that the admin Secret is correct",
        )

    def _operation_error(
        self,
        exc: psycopg.Error,
        *,
        reason: Reason,
        action: str,
        secrets_in_scope: Sequence[str] = (),
    ) -> TargetError:
        """Convert a psycopg error into a TargetError that names the SQLSTATE and the action.

        A lost connection (SQLSTATE class 08, or no SQLSTATE at all) becomes
        TARGET_UNAVAILABLE whatever the operation.
        """
        sqlstate = exc.sqlstate
        primary = exc.diag.message_primary or str(exc)
        detail = exc.diag.message_detail
        text = _one_line(
            self._scrub(primary + (f" ({detail})" if detail else ""), *secrets_in_scope)
        )
        if sqlstate is None or sqlstate.startswith("08"):
            reason = Reason.TARGET_UNAVAILABLE
        code = f"SQLSTATE {sqlstate}" if sqlstate else type(exc).__name__
        return TargetError(
            reason,
            f"{action} on PostgreSQL at {self.address} (target {self.target_name!r}) failed: "
            f"{code}: {text}",
        )

    def _scrub(self, text: str, *extra_secrets: str) -> str:
        """Replace the admin password and ``extra_secrets`` in ``text`` with ***."""
        for secret in (self._admin_password, *extra_secrets):
            if secret:
                text = text.replace(secret, "***")
        return text


def parse_timeout_seconds(value: object, *, where: str) -> float:
    """Parse ``connectTimeout``: a duration string such as "10s" or "1m30s", or seconds."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            seconds = parse_duration(value).total_seconds()
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise TargetError(
            Reason.INVALID_SPEC,
            f"{where}: spec.postgresql.connectTimeout {value!r} is invalid; use a positive "
            f"duration ({DURATION_FORM}) or a number of seconds",
        )
    return seconds


def _secret_value(data: Mapping[str, bytes | str], key: str, *, where: str) -> str:
    if key not in data:
        present = ", ".join(sorted(data)) or "none"
        raise TargetError(
            Reason.ADMIN_SECRET_INVALID,
            f"{where}: the admin Secret has no key {key!r} (keys present: {present}); "
            "add it or point the target at the right key",
        )
    raw = data[key]
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TargetError(
                Reason.ADMIN_SECRET_INVALID,
                f"{where}: the admin Secret's key {key!r} is not valid UTF-8; store the value "
                "as UTF-8 text",
            ) from None
    else:
        text = raw
    text = text.rstrip("\r\n")
    if not text:
        raise TargetError(
            Reason.ADMIN_SECRET_INVALID,
            f"{where}: the admin Secret's key {key!r} is empty; put the value into the Secret",
        )
    return text


def _one_line(text: str) -> str:
    collapsed = " ".join(text.split())
    return collapsed[:MAX_ERROR_DETAIL_CHARS]
