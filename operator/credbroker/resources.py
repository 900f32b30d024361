"""The CredentialTarget and CredentialBinding specs as typed, validated models.

The models enforce the same rules as the CRD schemas in ``crds/``, including
the rules the API server checks with CEL, so a spec that reaches the operator
past an older CRD is still rejected with a clear message. Python fields are
snake_case and the manifests use camelCase. ``parse_target`` and
``parse_binding`` accept only the camelCase spelling, as the API server does.
Durations are Go-style strings in manifests and ``timedelta`` here.
"""

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError

from credbroker.durations import (
    DURATION_MAX_LENGTH,
    DURATION_PATTERN,
    format_duration,
    parse_duration,
)
from credbroker.errors import IdentityRejected, PolicyRejected
from credbroker.reasons import Reason
from credbroker.spiffe.ids import SpiffeId, SpiffeIdPattern, TrustDomain

logger = logging.getLogger(__name__)

# Lifetimes and timeouts. The CRDs repeat each of these as a default or a CEL
# rule, and tests/test_crd_schema.py checks that both spell the same value.
MIN_TTL: Final = timedelta(minutes=1)
MIN_RENEW_AFTER: Final = timedelta(seconds=5)
DEFAULT_MAX_TTL: Final = timedelta(hours=1)
DEFAULT_TTL: Final = timedelta(minutes=15)
DEFAULT_GRACE_PERIOD: Final = timedelta(minutes=2)
DEFAULT_CONNECT_TIMEOUT: Final = timedelta(seconds=10)
MIN_CONNECT_TIMEOUT: Final = timedelta(seconds=1)
MAX_CONNECT_TIMEOUT: Final = timedelta(minutes=5)
DEFAULT_POSTGRES_PORT: Final = 5432

# Maximum number of entries in each list and map. They keep specs readable and
# let the API server bound the cost of its CEL rules.
MAX_ALLOWED_NAMESPACES: Final = 128
MAX_ALLOWED_ROLES: Final = 64
MAX_SERVICE_ACCOUNTS: Final = 32
MAX_MATCH_LABELS: Final = 32
MAX_MATCH_EXPRESSIONS: Final = 16
MAX_SELECTOR_VALUES: Final = 64
MAX_ALLOWED_SPIFFE_IDS: Final = 32

# Patterns use only syntax that Python ``re``, the Rust regex engine behind
# pydantic and Go RE2 in the API server read the same way.
DNS1123_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_LABEL_MAX_LENGTH: Final = 63
DNS1123_SUBDOMAIN_PATTERN: Final = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
DNS1123_SUBDOMAIN_MAX_LENGTH: Final = 253
NAMESPACE_OR_ALL_PATTERN: Final = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"
ALL_NAMESPACES: Final = "*"
POSTGRES_ROLE_PATTERN: Final = r"^[a-z_][a-z0-9_]{0,62}$"
SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 (a pattern, not a secret)
HOST_PATTERN: Final = r"^[A-Za-z0-9.:-]+$"
HOST_MAX_LENGTH: Final = 253
DATABASE_MAX_LENGTH: Final = 63
# A label key is an optional DNS subdomain prefix and "/", then a name of at
# most 63 characters. NOTE: neither this module nor the CRD checks the prefix's
# own limit of 253 characters, so the overall maximum of 317 lets it reach 315.
LABEL_KEY_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_KEY_MAX_LENGTH: Final = 317
LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
LABEL_VALUE_MAX_LENGTH: Final = 63
# SPIFFE IDs by the SPIFFE ID specification: a lower-case trust domain of at
# most 255 characters, path segments of letters, digits, '.', '-' and '_'.
# The patterns admit "." and ".." segments, which the model rejects by parsing.
SPIFFE_TRUST_DOMAIN_PATTERN: Final = r"^[a-z0-9._-]+$"
SPIFFE_TRUST_DOMAIN_MAX_LENGTH: Final = 255
SPIFFE_ID_PATTERN: Final = r"^spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)+$"
SPIFFE_ID_MAX_LENGTH: Final = 2048
SPIFFE_PATH_PREFIX_PATTERN: Final = r"^/([A-Za-z0-9._-]+/)*$"
SPIFFE_PATH_PREFIX_MAX_LENGTH: Final = 1024
DEFAULT_BUNDLE_KEY: Final = "bundle.spiffe"

# Descriptions of the patterns, in the words that error messages use.
PATTERN_DESCRIPTIONS: Final[Mapping[str, str]] = {
    DURATION_PATTERN: "a duration such as 90s, 15m or 1h30m (units h, m, s in that order)",
    DNS1123_LABEL_PATTERN: "a DNS-1123 label: lower-case letters, digits and '-'",
    DNS1123_SUBDOMAIN_PATTERN: "a DNS-1123 subdomain: lower-case letters, digits, '-' and '.'",
    NAMESPACE_OR_ALL_PATTERN: "a namespace name, or '*' for all namespaces",
    POSTGRES_ROLE_PATTERN: (
        "a PostgreSQL role name: a lower-case letter or '_', then lower-case letters,"
        " digits or '_', at most 63 characters"
    ),
    SECRET_KEY_PATTERN: "a Secret data key: letters, digits, '-', '_' and '.'",
    HOST_PATTERN: "a host name, IPv4 or IPv6 address",
    LABEL_KEY_PATTERN: "a label key such as app or example.com/tier",
    LABEL_VALUE_PATTERN: (
        "a label value: letters, digits, '-', '_' and '.', starting and ending"
        " with a letter or digit"
    ),
    SPIFFE_TRUST_DOMAIN_PATTERN: (
        "a SPIFFE trust domain: lower-case letters, digits, '.', '-' and '_'"
    ),
    SPIFFE_ID_PATTERN: "a SPIFFE ID such as spiffe://example.org/ns/shop/sa/orders",
    SPIFFE_PATH_PREFIX_PATTERN: "a path that starts and ends with '/', such as /ns/shop/",
}

TargetType = Literal["postgresql"]
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
BundleSourceKind = Literal["ConfigMap", "Secret"]

# The spec field that contains the settings of each target type. A target sets
# only the field that its ``type`` names.
TARGET_SETTINGS_FIELDS: Final[Mapping[str, str]] = {"postgresql": "postgresql"}


def _validate_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"invalid duration {value}: a duration must not be negative")
        return value
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(
        f"invalid duration of type {type(value).__name__}: expected a string such as 15m"
    )


Duration = Annotated[
    timedelta,
    PlainValidator(_validate_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "minLength": 1,
            "maxLength": DURATION_MAX_LENGTH,
        }
    ),
]
"""A Go-style duration string in manifests and JSON dumps, a ``timedelta`` in Python."""


def _duration_range(minimum: timedelta, maximum: timedelta | None = None) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if value < minimum:
            raise ValueError(
                f"must be at least {format_duration(minimum)}, got {format_duration(value)}"
            )
        if maximum is not None and value > maximum:
            raise ValueError(
                f"must be at most {format_duration(maximum)}, got {format_duration(value)}"
            )
        return value

    return AfterValidator(check)


TtlDuration = Annotated[Duration, _duration_range(MIN_TTL)]
RenewAfterDuration = Annotated[Duration, _duration_range(MIN_RENEW_AFTER)]
ConnectTimeout = Annotated[Duration, _duration_range(MIN_CONNECT_TIMEOUT, MAX_CONNECT_TIMEOUT)]

DnsLabel = Annotated[
    str, StringConstraints(pattern=DNS1123_LABEL_PATTERN, max_length=DNS1123_LABEL_MAX_LENGTH)
]
DnsSubdomain = Annotated[
    str,
    StringConstraints(pattern=DNS1123_SUBDOMAIN_PATTERN, max_length=DNS1123_SUBDOMAIN_MAX_LENGTH),
]
NamespaceOrAll = Annotated[
    str, StringConstraints(pattern=NAMESPACE_OR_ALL_PATTERN, max_length=DNS1123_LABEL_MAX_LENGTH)
]
PostgresRole = Annotated[str, StringConstraints(pattern=POSTGRES_ROLE_PATTERN)]
SecretDataKey = Annotated[
    str, StringConstraints(pattern=SECRET_KEY_PATTERN, max_length=DNS1123_SUBDOMAIN_MAX_LENGTH)
]
HostName = Annotated[str, StringConstraints(pattern=HOST_PATTERN, max_length=HOST_MAX_LENGTH)]
DatabaseName = Annotated[str, StringConstraints(min_length=1, max_length=DATABASE_MAX_LENGTH)]
LabelKey = Annotated[
    str, StringConstraints(pattern=LABEL_KEY_PATTERN, max_length=LABEL_KEY_MAX_LENGTH)
]
LabelValue = Annotated[
    str, StringConstraints(pattern=LABEL_VALUE_PATTERN, max_length=LABEL_VALUE_MAX_LENGTH)
]
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]


def _reject_duplicates(items: list[str]) -> list[str]:
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item in seen:
            raise _field_error(index, f"repeats {item!r}; list each entry once")
        seen.add(item)
    return items


def _field_error(field: str | int, message: str) -> PydanticCustomError:
    """Build a validator error about ``field``: a camelCase name or a list index."""
    return PydanticCustomError("invalid_field", message, {"field": field})


class _CamelModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class LabelSelectorRequirement(_CamelModel):
    """One ``matchExpressions`` entry of a Kubernetes label selector."""

    key: LabelKey
    operator: SelectorOperator
    values: Annotated[list[LabelValue], Field(max_length=MAX_SELECTOR_VALUES)] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _check_values(self) -> "LabelSelectorRequirement":
        if self.operator in ("In", "NotIn") and not self.values:
            raise _field_error(
                "values", f"must list at least one value for operator {self.operator}"
            )
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise _field_error("values", f"must be empty for operator {self.operator}")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return whether ``labels`` satisfy this requirement.

        ``NotIn`` also matches when the label is absent, as in Kubernetes.
        """
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values

    def to_query(self) -> str:
        """Return this requirement in the ``labelSelector`` query syntax."""
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        word = "in" if self.operator == "In" else "notin"
        return f"{self.key} {word} ({','.join(sorted(self.values))})"


class LabelSelector(_CamelModel):
    """A Kubernetes label selector. The empty selector matches every object."""

    match_labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_MATCH_LABELS)] = Field(
        default_factory=dict
    )
    match_expressions: Annotated[
        list[LabelSelectorRequirement], Field(max_length=MAX_MATCH_EXPRESSIONS)
    ] = Field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return whether ``labels`` satisfy every label and every expression."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)

    def to_query(self) -> str:
        """Return the selector as the API server's ``labelSelector`` query string.

        The empty selector returns an empty string, which selects everything.
        Label keys and values are validated, so they need no escaping.
        """
        terms = [f"{key}={self.match_labels[key]}" for key in sorted(self.match_labels)]
        terms.extend(requirement.to_query() for requirement in self.match_expressions)
        return ",".join(terms)


class SecretKeySelector(_CamelModel):
    """A Secret in the operator's own namespace and the keys of its admin login."""

    name: DnsSubdomain
    username_key: SecretDataKey = "username"
    password_key: SecretDataKey = "password"  # noqa: S105 (a key name, not a secret)

    @model_validator(mode="after")
    def _check_keys_differ(self) -> "SecretKeySelector":
        if self.username_key == self.password_key:
            raise _field_error(
                "passwordKey", "must differ from usernameKey; name the Secret key of the password"
            )
        return self


class PostgresTarget(_CamelModel):
    """Connection settings of a PostgreSQL server and the Secret with its admin login."""

    host: HostName
    port: Port = DEFAULT_POSTGRES_PORT
    database: DatabaseName
    ssl_mode: SslMode = "prefer"
    admin_secret_ref: SecretKeySelector
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT


AllowedNamespaces = Annotated[
    list[NamespaceOrAll],
    Field(min_length=1, max_length=MAX_ALLOWED_NAMESPACES),
    AfterValidator(_reject_duplicates),
]
AllowedRoles = Annotated[
    list[PostgresRole],
    Field(min_length=1, max_length=MAX_ALLOWED_ROLES),
    AfterValidator(_reject_duplicates),
]
ServiceAccountNames = Annotated[
    list[DnsSubdomain],
    Field(min_length=1, max_length=MAX_SERVICE_ACCOUNTS),
    AfterValidator(_reject_duplicates),
]


class CredentialTargetSpec(_CamelModel):
    """A system that credbroker mints credentials on, and who may request them.

    ``type`` selects the settings block. Each new target type adds its own
    optional block and an entry in ``TARGET_SETTINGS_FIELDS``.
    """

    type: TargetType
    postgresql: PostgresTarget | None = None
    allowed_namespaces: AllowedNamespaces
    allowed_roles: AllowedRoles
    max_ttl: TtlDuration = Field(default=DEFAULT_MAX_TTL, alias="maxTTL")
    default_ttl: TtlDuration = Field(default=DEFAULT_TTL, alias="defaultTTL")

    @model_validator(mode="after")
    def _check_settings_block(self) -> "CredentialTargetSpec":
        for target_type, field in TARGET_SETTINGS_FIELDS.items():
            is_set = getattr(self, field) is not None
            if target_type == self.type and not is_set:
                raise _field_error(field, f"is required when type is {self.type}")
            if target_type != self.type and is_set:
                raise _field_error(field, f"must be unset when type is {self.type}")
        return self

    @model_validator(mode="after")
    def _check_namespaces(self) -> "CredentialTargetSpec":
        if ALL_NAMESPACES in self.allowed_namespaces and len(self.allowed_namespaces) > 1:
            raise _field_error(
                "allowedNamespaces", "must contain '*' alone or list namespaces without '*'"
            )
        return self

    @model_validator(mode="after")
    def _check_default_ttl(self) -> "CredentialTargetSpec":
        if self.default_ttl > self.max_ttl:
            raise _field_error(
                "defaultTTL",
                f"must not exceed maxTTL ({format_duration(self.max_ttl)}),"
                f" got {format_duration(self.default_ttl)}; lower defaultTTL or raise maxTTL",
            )
        return self


class TargetRef(_CamelModel):
    """The name of a cluster-scoped CredentialTarget."""

    name: DnsSubdomain


def _check_spiffe_id(value: str) -> str:
    try:
        SpiffeId.parse(value)
    except IdentityRejected as rejection:
        raise ValueError(rejection.message) from None
    return value


def _check_trust_domain(value: str) -> str:
    try:
        TrustDomain(value)
    except IdentityRejected as rejection:
        raise ValueError(rejection.message) from None
    return value


def _check_path_prefix(value: str) -> str:
    if value != "/":
        # A prefix of segments is valid when the same path without the trailing slash is.
        _check_spiffe_id(f"spiffe://example.org{value[:-1]}")
    return value


SpiffeTrustDomainName = Annotated[
    str,
    StringConstraints(
        pattern=SPIFFE_TRUST_DOMAIN_PATTERN, max_length=SPIFFE_TRUST_DOMAIN_MAX_LENGTH
    ),
    AfterValidator(_check_trust_domain),
]
SpiffeIdText = Annotated[
    str,
    StringConstraints(pattern=SPIFFE_ID_PATTERN, max_length=SPIFFE_ID_MAX_LENGTH),
    AfterValidator(_check_spiffe_id),
]
SpiffePathPrefix = Annotated[
    str,
    StringConstraints(pattern=SPIFFE_PATH_PREFIX_PATTERN, max_length=SPIFFE_PATH_PREFIX_MAX_LENGTH),
    AfterValidator(_check_path_prefix),
]


class SpiffeAllowedId(_CamelModel):
    """One ``allowedIDs`` entry: an exact SPIFFE ID, or every ID below a path prefix."""

    exact: SpiffeIdText | None = None
    path_prefix: SpiffePathPrefix | None = None

    @model_validator(mode="after")
    def _check_one_form(self) -> "SpiffeAllowedId":
        if (self.exact is None) == (self.path_prefix is None):
            raise _field_error("exact", "set exactly one of exact and pathPrefix")
        return self

    def pattern(self, trust_domain: str) -> SpiffeIdPattern:
        """Return the entry as a pattern; ``pathPrefix`` is a path in ``trust_domain``."""
        if self.exact is not None:
            return SpiffeIdPattern.parse(self.exact)
        return SpiffeIdPattern.parse(f"spiffe://{trust_domain}{self.path_prefix}")


class SpiffeBundleRef(_CamelModel):
    """A ConfigMap or Secret in the operator's namespace that holds a SPIFFE bundle."""

    kind: BundleSourceKind
    name: DnsSubdomain
    key: SecretDataKey = DEFAULT_BUNDLE_KEY


AllowedSpiffeIds = Annotated[
    list[SpiffeAllowedId], Field(min_length=1, max_length=MAX_ALLOWED_SPIFFE_IDS)
]


class SpiffeSettings(_CamelModel):
    """The binding in SPIFFE terms: the trust domain, the accepted IDs and the bundle.

    A pod verified through its service account counts as
    ``spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>``, so
    ``allowed_ids`` serve both service-account tokens and SVIDs.
    """

    trust_domain: SpiffeTrustDomainName
    allowed_ids: AllowedSpiffeIds | None = Field(default=None, alias="allowedIDs")
    bundle_ref: SpiffeBundleRef | None = None

    @model_validator(mode="after")
    def _check_exact_ids_in_trust_domain(self) -> "SpiffeSettings":
        prefix = f"spiffe://{self.trust_domain}/"
        for index, allowed in enumerate(self.allowed_ids or []):
            if allowed.exact is not None and not allowed.exact.startswith(prefix):
                raise _field_error(
                    "allowedIDs",
                    f"entry {index} ({allowed.exact!r}) is not in trust domain "
                    f"{self.trust_domain}; use an ID that starts with {prefix}",
                )
        return self

    def patterns(self) -> list[SpiffeIdPattern]:
        """Return ``allowedIDs`` as patterns, empty when unset."""
        return [allowed.pattern(self.trust_domain) for allowed in self.allowed_ids or []]


class ExchangeDelivery(_CamelModel):
    """The actions of an accepted exchange: return a credential, refresh the Secret, or both."""

    return_credential: StrictBool = False
    refresh_secret: StrictBool = True


class BindingDelivery(_CamelModel):
    """The ways credentials reach workloads besides the binding's Secret."""

    exchange: ExchangeDelivery | None = None


class CredentialBindingSpec(_CamelModel):
    """A request for credentials: the target and role, the pods, the lifetime and the Secret.

    ``ttl`` of ``None`` means the target's ``default_ttl``, and ``renew_after``
    of ``None`` means two thirds of the TTL. When ``ttl`` is ``None`` this
    model cannot check ``renew_after`` against it, so the caller must.
    ``service_accounts`` is empty when unset, and then ``spiffe.allowed_ids``
    must be set.
    """

    target_ref: TargetRef
    role: PostgresRole
    pod_selector: LabelSelector
    # The default skips the min_length check, so only an explicit [] is rejected, as in the CRD.
    service_accounts: ServiceAccountNames = Field(default_factory=list)
    spiffe: SpiffeSettings | None = None
    ttl: TtlDuration | None = None
    renew_after: RenewAfterDuration | None = None
    secret_name: DnsSubdomain
    grace_period: Duration = DEFAULT_GRACE_PERIOD
    delivery: BindingDelivery | None = None

    @model_validator(mode="after")
    def _check_identities(self) -> "CredentialBindingSpec":
        if not self.service_accounts and (self.spiffe is None or not self.spiffe.allowed_ids):
            raise _field_error(
                "serviceAccounts",
                "is required unless spiffe.allowedIDs is set; list the service accounts or "
                "the SPIFFE IDs that may receive the credential",
            )
        return self

    @property
    def exchange_delivery(self) -> ExchangeDelivery:
        """The exchange settings, with their defaults when ``delivery.exchange`` is unset."""
        if self.delivery is None or self.delivery.exchange is None:
            return ExchangeDelivery()
        return self.delivery.exchange

    @model_validator(mode="after")
    def _check_renew_after(self) -> "CredentialBindingSpec":
        if self.ttl is not None and self.renew_after is not None and self.renew_after >= self.ttl:
            raise _field_error(
                "renewAfter",
                f"must be shorter than ttl ({format_duration(self.ttl)}),"
                f" got {format_duration(self.renew_after)}; lower renewAfter or leave it unset",
            )
        return self


_Spec = TypeVar("_Spec", CredentialTargetSpec, CredentialBindingSpec)

_MAX_QUOTED_INPUT_CHARS = 40


def parse_target(spec: Mapping[str, Any]) -> CredentialTargetSpec:
    """Validate the ``spec`` of a CredentialTarget.

    Raises ``PolicyRejected`` with ``Reason.INVALID_SPEC`` whose message lists
    every invalid field.
    """
    return _parse(CredentialTargetSpec, spec, kind="CredentialTarget")


def parse_binding(spec: Mapping[str, Any]) -> CredentialBindingSpec:
    """Validate the ``spec`` of a CredentialBinding.

    Raises ``PolicyRejected`` with ``Reason.INVALID_SPEC`` whose message lists
    every invalid field.
    """
    return _parse(CredentialBindingSpec, spec, kind="CredentialBinding")


def _parse(model: type[_Spec], spec: Mapping[str, Any], *, kind: str) -> _Spec:
    try:
        return model.model_validate(_to_plain(spec), by_alias=True, by_name=False)
    except ValidationError as error:
        problems = "; ".join(_describe_error(details) for details in error.errors())
        raise PolicyRejected(Reason.INVALID_SPEC, f"invalid {kind} spec: {problems}") from None


def _to_plain(value: Any) -> Any:
    """Copy nested mappings (kopf hands out read-only views) into plain dicts."""
    if isinstance(value, Mapping):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_plain(item) for item in value]
    return value


def _describe_error(details: ErrorDetails) -> str:
    """Describe one validation error as ``spec.path: what is expected``."""
    context = details.get("ctx") or {}
    location = list(details["loc"])
    if "field" in context:
        location.append(context["field"])
    path = _format_path(location)
    error_type = details["type"]

    if error_type == "missing":
        return f"{path}: is required"
    if error_type == "extra_forbidden":
        return f"{path}: is not a known field; check the spelling (fields are camelCase)"
    if error_type == "invalid_field":
        return f"{path}: {details['msg']}"
    if error_type == "value_error":
        return f"{path}: {context.get('error', details['msg'])}"

    expected = details["msg"]
    if error_type == "string_pattern_mismatch":
        pattern = str(context.get("pattern", ""))
        expected = f"expected {PATTERN_DESCRIPTIONS.get(pattern, f'a match of {pattern}')}"
    return f"{path}: {expected}{_describe_input(details['input'])}"


def _describe_input(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    text = repr(value)
    if len(text) > _MAX_QUOTED_INPUT_CHARS:
        text = text[: _MAX_QUOTED_INPUT_CHARS - 3] + "..."
    return f", got {text}"


def _format_path(location: list[int | str]) -> str:
    """Format a pydantic location as ``spec.podSelector.matchExpressions[0].key``."""
    path = "spec"
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        elif part.isidentifier():
            path += f".{part}"
        else:
            path += f"[{part!r}]"
    return path
