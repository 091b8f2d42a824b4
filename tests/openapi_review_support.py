"""Helpers for the OpenAPI contract review (no tests here): check a response of /localapi against
what /localapi/openapi.json says of its operation, as a client generated from it would read it."""

import re

from jsonschema import Draft202012Validator, FormatChecker


def operation(document: dict, method: str, path: str) -> tuple[str, dict]:
    """The documented operation (its path template and object) a concrete request path falls under."""
    for template, item in document["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method.upper()} {path} is not in the document")


# JSON Schema 2020-12, section 7.3.2: "email" is RFC 5321's Mailbox (ASCII, as ajv-formats and the
# generators that map it to a mail type check it); "idn-email" is RFC 6531's, which admits Unicode
STRICT_FORMATS = FormatChecker()


@STRICT_FORMATS.checks("email")
def _rfc5321_mailbox(value) -> bool:
    return not isinstance(value, str) or (value.isascii() and "@" in value)


def schema_errors(document: dict, schema: dict, instance) -> list[str]:
    """Messages of `instance` against `schema` (its $refs into the document's components)."""
    root = {**schema, "components": document["components"]}
    validator = Draft202012Validator(root, format_checker=STRICT_FORMATS)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def check_response(document: dict, method: str, path: str, response) -> None:
    """Assert that the response's status, media type, body and documented headers are as the document says."""
    template, op = operation(document, method, path)
    status = str(response.status_code)
    body = response.get_data() if hasattr(response, "get_data") else response.content  # Flask's or requests'
    parsed = (lambda: response.get_json(force=True)) if hasattr(response, "get_json") else response.json
    assert status in op["responses"], f"{method.upper()} {template} answered {status}, not in {sorted(op['responses'])}"
    documented = op["responses"][status]
    content = documented.get("content")
    media = response.headers.get("Content-Type", "").split(";")[0].strip() or None
    if not content:
        assert media is None and body == b"", f"{status} of {template}: no body documented, got {media}"
    else:
        assert media in content, f"{status} of {template}: {media} not in {sorted(content)}"
        errors = schema_errors(document, content[media]["schema"], parsed())
        assert not errors, f"{status} of {template}: {errors}"
    for name, header in documented.get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"{status} of {template}: no {name}"


def undocumented_headers(document: dict, method: str, path: str, response, names: tuple[str, ...]) -> list[str]:
    """Those of the headers `names` that the response carries but its documented response does not list."""
    _, op = operation(document, method, path)
    documented = {name.lower() for name in op["responses"].get(str(response.status_code), {}).get("headers", {})}
    return [name for name in names if name in response.headers and name.lower() not in documented]
