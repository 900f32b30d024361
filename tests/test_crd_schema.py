"""The CRDs in crds/ are structural and agree with the pydantic models in credbroker.resources.

Each example in tests/crd_examples.py is validated offline with the CRD's
openAPIV3Schema (through ``jsonschema``) and parsed with the model, and both
must agree. The API server's CEL rules cannot run here, so an example that only
CEL rejects must be rejected by the model and have a CEL rule on its field.
e2e/test_crds.py runs the same examples against a real API server.
"""

from __future__ import annotations

import copy
import re
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, TypeAdapter

from crd_examples import (
    CRD_DIR,
    SPEC_EXAMPLES,
    STATUS_EXAMPLES,
    SpecExample,
    StatusExample,
    manifest,
)
from credbroker.durations import (
    DURATION_MAX_LENGTH,
    DURATION_PATTERN,
    format_duration,
    parse_duration,
)
from credbroker.errors import PolicyRejected
from credbroker.reasons import Reason
from credbroker.resources import (
    LABEL_KEY_PATTERN,
    MAX_CONNECT_TIMEOUT,
    MIN_CONNECT_TIMEOUT,
    MIN_RENEW_AFTER,
    MIN_TTL,
    CredentialBindingSpec,
    CredentialTargetSpec,
    parse_binding,
    parse_target,
)

GROUP = "credbroker.dev"
VERSION = "v1alpha1"

MODELS: dict[str, type[BaseModel]] = {
    "CredentialTarget": CredentialTargetSpec,
    "CredentialBinding": CredentialBindingSpec,
}
PARSERS = {"CredentialTarget": parse_target, "CredentialBinding": parse_binding}
CRD_FILES = {
    "CredentialTarget": CRD_DIR / "credentialtargets.yaml",
    "CredentialBinding": CRD_DIR / "credentialbindings.yaml",
}

# Paths of every duration field, from the version's openAPIV3Schema.
DURATION_FIELDS = {
    "CredentialTarget": ["spec.maxTTL", "spec.defaultTTL", "spec.postgresql.connectTimeout"],
    "CredentialBinding": ["spec.ttl", "spec.renewAfter", "spec.gracePeriod"],
}

# Keywords that the API server rejects in a CRD schema (apiextensions-apiserver
# v0.37, pkg/apis/apiextensions/validation). uniqueItems is rejected only when true.
FORBIDDEN_SCHEMA_KEYWORDS = {
    "$ref",
    "additionalItems",
    "definitions",
    "dependencies",
    "id",
    "patternProperties",
    "uniqueItems",
}


def load_crd(kind: str) -> dict[str, Any]:
    with CRD_FILES[kind].open() as stream:
        document: dict[str, Any] = yaml.safe_load(stream)
    return document


def version_of(crd: Mapping[str, Any]) -> dict[str, Any]:
    versions = [item for item in crd["spec"]["versions"] if item["name"] == VERSION]
    assert len(versions) == 1, f"expected one version {VERSION}"
    version: dict[str, Any] = versions[0]
    return version


def root_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = version_of(load_crd(kind))["schema"]["openAPIV3Schema"]
    return schema


# --- Offline validation: jsonschema plus what the API server adds. ---------


def _check_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """Match like Go RE2, where ``$`` matches only at the very end of the text."""
    if not validator.is_type(instance, "string"):
        return
    python_pattern = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
    if re.search(python_pattern, instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _check_list_type(validator: Any, list_type: str, instance: Any, schema: Any) -> Iterator[Any]:
    """Reject duplicates as the API server does for list types set and map."""
    if not validator.is_type(instance, "array"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: list[Any] = []
    for index, item in enumerate(instance):
        if list_type == "set":
            identity = item
        elif list_type == "map" and isinstance(item, dict):
            identity = tuple(item.get(key) for key in keys)
        else:
            continue
        if identity in seen:
            yield jsonschema.ValidationError(f"duplicate entry {identity!r}", path=deque([index]))
        seen.append(identity)


OfflineValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator,
    {"pattern": _check_pattern, "x-kubernetes-list-type": _check_list_type},
)


def offline_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a CRD schema and reject unknown fields, as kubectl's strict field validation does."""
    result = copy.deepcopy(dict(schema))
    for node in walk_schema(result):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
    return result


def walk_schema(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("properties", {}).values():
        yield from walk_schema(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from walk_schema(node[key])


def schema_errors(kind: str, document: Mapping[str, Any]) -> list[jsonschema.ValidationError]:
    validator = OfflineValidator(
        offline_schema(root_schema(kind)), format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )
    return list(validator.iter_errors(document))


def format_path(parts: deque[Any] | list[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def error_names(error: jsonschema.ValidationError, field: str) -> bool:
    """Return whether ``error`` names ``field`` directly, or as a missing or unknown key."""
    path = format_path(error.absolute_path)
    if path == field:
        return True
    parent, _, leaf = field.rpartition(".")
    return (
        error.validator in ("required", "additionalProperties")
        and path == parent
        and repr(leaf) in error.message
    )


def path_tokens(path: str) -> list[str]:
    """Split ``spec.a[0].b`` into ``["spec", "a", "[]", "b"]``."""
    return [token for token in re.split(r"\.|(\[\])", re.sub(r"\[\d+\]", ".[]", path)) if token]


def cel_rules_for(kind: str, field: str) -> list[dict[str, Any]]:
    """Return the CEL rules that report their failure at ``field``."""
    tokens = path_tokens(field)
    node = root_schema(kind)
    rules: list[dict[str, Any]] = []
    for depth in range(len(tokens) + 1):
        for rule in node.get("x-kubernetes-validations", []):
            if tokens[:depth] + path_tokens(rule.get("fieldPath", "")) == tokens:
                rules.append(rule)
        if depth == len(tokens):
            break
        token = tokens[depth]
        if token == "[]":
            node = node["items"]
        elif token in node.get("properties", {}):
            node = node["properties"][token]
        else:
            node = node["additionalProperties"]
    return rules


def schema_at(kind: str, field: str) -> dict[str, Any]:
    node = root_schema(kind)
    for token in path_tokens(field):
        node = node["items"] if token == "[]" else node["properties"][token]
    return node


# --- Structure and metadata. -----------------------------------------------


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_crd_structural(kind: str) -> None:
    for node in walk_schema(root_schema(kind)):
        assert "type" in node, f"{kind}: a schema node has no type: {sorted(node)}"
        assert not FORBIDDEN_SCHEMA_KEYWORDS & set(node), f"{kind}: forbidden keyword in {node}"
        if "properties" in node:
            assert "additionalProperties" not in node, f"{kind}: both in {sorted(node)}"
        if node["type"] == "array":
            assert "items" in node, f"{kind}: an array without items"
        if node.get("x-kubernetes-list-type") == "map":
            required = set(node["items"].get("required", []))
            assert set(node["x-kubernetes-list-map-keys"]) <= required


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_crd_names_and_version(kind: str) -> None:
    crd = load_crd(kind)
    names = crd["spec"]["names"]
    version = version_of(crd)

    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["spec"]["group"] == GROUP
    assert crd["metadata"]["name"] == f"{names['plural']}.{GROUP}"
    assert names["kind"] == kind
    assert names["categories"] == ["credbroker"]
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_crd_scopes_and_short_names() -> None:
    target = load_crd("CredentialTarget")["spec"]
    binding = load_crd("CredentialBinding")["spec"]

    assert target["scope"] == "Cluster"
    assert binding["scope"] == "Namespaced"
    assert target["names"]["shortNames"] == ["ct", "ctarget"]
    assert binding["names"]["shortNames"] == ["cb", "cbinding"]


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_printer_columns_resolve(kind: str) -> None:
    columns = version_of(load_crd(kind))["additionalPrinterColumns"]
    for column in columns:
        path = re.sub(r"\[\?\(@\.type==\"\w+\"\)\]", "[0]", column["jsonPath"]).lstrip(".")
        if path.startswith("metadata."):
            continue
        node = schema_at(kind, path)
        expected_type = "string" if column["type"] == "date" else column["type"]
        assert node["type"] == expected_type, f"{kind} column {column['name']}: {path}"


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_printer_columns_show_readiness(kind: str) -> None:
    columns = {
        column["name"]: column
        for column in version_of(load_crd(kind))["additionalPrinterColumns"]
        if column.get("priority", 0) == 0
    }

    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    if kind == "CredentialBinding":
        # A date column would print "<invalid>" for a time in the future.
        assert columns["Expires"] == {
            **columns["Expires"],
            "jsonPath": ".status.expiresAt",
            "type": "string",
        }


# --- Constants shared with the Python code. --------------------------------


@pytest.mark.parametrize(
    ("kind", "field"),
    [(kind, field) for kind, fields in DURATION_FIELDS.items() for field in fields],
)
def test_duration_fields_use_pattern(kind: str, field: str) -> None:
    node = schema_at(kind, field)

    assert node["type"] == "string"
    assert node["pattern"] == DURATION_PATTERN
    assert node["minLength"] == 1
    assert node["maxLength"] == DURATION_MAX_LENGTH


@pytest.mark.parametrize(
    ("kind", "field", "literals"),
    [
        ("CredentialTarget", "spec.maxTTL", [MIN_TTL]),
        ("CredentialTarget", "spec.defaultTTL", [MIN_TTL]),
        (
            "CredentialTarget",
            "spec.postgresql.connectTimeout",
            [MIN_CONNECT_TIMEOUT, MAX_CONNECT_TIMEOUT],
        ),
        ("CredentialBinding", "spec.ttl", [MIN_TTL]),
        ("CredentialBinding", "spec.renewAfter", [MIN_RENEW_AFTER]),
    ],
)
def test_cel_limits_match_constants(kind: str, field: str, literals: list[timedelta]) -> None:
    rules = " ".join(rule["rule"] for rule in cel_rules_for(kind, field))
    for limit in literals:
        assert f"duration('{format_duration(limit)}')" in rules, f"{kind} {field}: {rules}"


def test_cel_label_key_pattern_matches() -> None:
    (rule,) = cel_rules_for("CredentialBinding", "spec.podSelector.matchLabels")
    match = re.search(r"matches\(r'([^']*)'\)", rule["rule"])

    assert match is not None
    assert match.group(1) == LABEL_KEY_PATTERN


# --- The CRD schema and the model side by side. ----------------------------

_COMPARED_KEYWORDS = (
    "type",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "maxProperties",
    "minimum",
    "maximum",
    "enum",
)


def _resolve(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` and unwrap ``X | None`` in a pydantic JSON schema node."""
    result = dict(node)
    if "anyOf" in result:
        options = [option for option in result.pop("anyOf") if option != {"type": "null"}]
        assert len(options) == 1, f"unexpected union {options}"
        result = {**options[0], **result}
    if "$ref" in result:
        name = result.pop("$ref").rsplit("/", 1)[-1]
        result = {**definitions[name], **result}
    if "const" in result:
        result["enum"] = [result.pop("const")]
    if result.get("default") is None:
        result.pop("default", None)
    return result


def _compare(
    crd: Mapping[str, Any], model: Mapping[str, Any], path: str, definitions: Mapping[str, Any]
) -> list[str]:
    model = _resolve(model, definitions)
    problems = [
        f"{path}: {keyword} is {crd.get(keyword)!r} in the CRD, {model.get(keyword)!r} in the model"
        for keyword in _COMPARED_KEYWORDS
        if crd.get(keyword) != model.get(keyword)
    ]

    crd_default, model_default = crd.get("default"), model.get("default")
    if (
        crd.get("pattern") == DURATION_PATTERN
        and crd_default is not None
        and model_default is not None
    ):
        # pydantic writes timedelta defaults in ISO 8601 (PT1H) in JSON schemas.
        crd_default = parse_duration(crd_default)
        model_default = TypeAdapter(timedelta).validate_python(model_default)
    if crd_default != model_default:
        problems.append(
            f"{path}: default is {crd_default!r} in the CRD and {model_default!r} in the model"
        )

    if set(crd.get("required", [])) != set(model.get("required", [])):
        problems.append(
            f"{path}: required differs: {crd.get('required')} and {model.get('required')}"
        )

    crd_properties, model_properties = crd.get("properties", {}), model.get("properties", {})
    if set(crd_properties) != set(model_properties):
        problems.append(
            f"{path}: fields differ: {sorted(crd_properties)} and {sorted(model_properties)}"
        )
    for name in set(crd_properties) & set(model_properties):
        problems += _compare(
            crd_properties[name], model_properties[name], f"{path}.{name}", definitions
        )

    if "items" in crd:
        problems += _compare(crd["items"], model["items"], f"{path}[]", definitions)
    if isinstance(crd.get("additionalProperties"), dict):
        # pydantic puts the value schema of a dict with constrained keys under patternProperties.
        (value_schema,) = model["patternProperties"].values()
        problems += _compare(crd["additionalProperties"], value_schema, f"{path}.*", definitions)
    return problems


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_spec_schema_matches_model(kind: str) -> None:
    model_schema = MODELS[kind].model_json_schema(by_alias=True)
    crd_spec = root_schema(kind)["properties"]["spec"]

    problems = _compare(crd_spec, model_schema, "spec", model_schema.get("$defs", {}))

    assert problems == []


# --- Examples. -------------------------------------------------------------


def model_rejection(example: SpecExample) -> PolicyRejected | None:
    try:
        PARSERS[example.kind](example.spec)
    except PolicyRejected as rejection:
        return rejection
    return None


@pytest.mark.parametrize("example", SPEC_EXAMPLES, ids=lambda example: example.id)
def test_spec_example(example: SpecExample) -> None:
    document = manifest(example.kind, example.spec, name="example", namespace="shop")
    errors = schema_errors(example.kind, document)
    rejection = model_rejection(example)
    messages = [f"{format_path(error.absolute_path)}: {error.message}" for error in errors]

    if example.valid:
        assert messages == []
        assert rejection is None, rejection.message
        return

    assert example.field is not None
    assert rejection is not None, "the model accepted an invalid spec"
    assert rejection.reason is Reason.INVALID_SPEC
    assert example.field in rejection.message
    if example.cel_message is not None:
        assert messages == [], "the schema already rejects this; it is not a CEL-only example"
        rule_messages = [rule["message"] for rule in cel_rules_for(example.kind, example.field)]
        assert any(example.cel_message in message for message in rule_messages), rule_messages
    else:
        assert any(error_names(error, example.field) for error in errors), messages


@pytest.mark.parametrize("example", STATUS_EXAMPLES, ids=lambda example: example.id)
def test_status_example(example: StatusExample) -> None:
    document = manifest(example.kind, {}, name="example", namespace="shop")
    document["status"] = example.status
    errors = [
        error
        for error in schema_errors(example.kind, document)
        if error.absolute_path[0] == "status"
    ]
    messages = [f"{format_path(error.absolute_path)}: {error.message}" for error in errors]

    if example.valid:
        assert messages == []
    else:
        assert example.field is not None
        assert any(error_names(error, example.field) for error in errors), messages


def test_example_ids_unique() -> None:
    ids = [example.id for example in SPEC_EXAMPLES] + [example.id for example in STATUS_EXAMPLES]

    assert len(ids) == len(set(ids))


EXAMPLE_DIR = CRD_DIR.parent / "examples"


def example_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(EXAMPLE_DIR.glob("*.yaml")):
        documents += [document for document in yaml.safe_load_all(path.read_text()) if document]
    return documents


def test_example_files_valid() -> None:
    kinds = []
    for document in example_documents():
        if document["kind"] not in MODELS:
            continue
        kinds.append(document["kind"])
        messages = [error.message for error in schema_errors(document["kind"], document)]

        assert messages == [], document["metadata"]["name"]
        PARSERS[document["kind"]](document["spec"])

    assert sorted(kinds) == ["CredentialBinding", "CredentialTarget"]


def test_example_files_agree() -> None:
    by_kind = {document["kind"]: document for document in example_documents()}
    target = parse_target(by_kind["CredentialTarget"]["spec"])
    binding = parse_binding(by_kind["CredentialBinding"]["spec"])
    namespace = by_kind["CredentialBinding"]["metadata"]["namespace"]
    service_account = by_kind["ServiceAccount"]["metadata"]

    assert binding.target_ref.name == by_kind["CredentialTarget"]["metadata"]["name"]
    assert binding.role in target.allowed_roles
    assert namespace in target.allowed_namespaces
    assert namespace == by_kind["Namespace"]["metadata"]["name"]
    assert service_account["namespace"] == namespace
    assert service_account["name"] in binding.service_accounts
    assert target.postgresql is not None
    assert target.postgresql.admin_secret_ref.name == by_kind["Secret"]["metadata"]["name"]
    assert binding.ttl is not None
    assert binding.ttl <= target.max_ttl
    pod = by_kind["Pod"]
    assert binding.pod_selector.matches(pod["metadata"]["labels"])
    assert pod["spec"]["serviceAccountName"] in binding.service_accounts
