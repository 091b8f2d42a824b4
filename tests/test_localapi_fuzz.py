"""The local API under generated input: arbitrary JSON at /localapi/password (hypothesis), and the
whole API against its own OpenAPI document (openapi-spec-validator, schemathesis in-process)."""

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from identity.services.password_policy import password_problems
from test_localapi_support import ALICE_PASSWORD, CHEAP_ARGON2, api, bearer, problem_of  # noqa: F401  (fixtures)

FIELDS = ("current_password", "new_password", "confirm_password")
INCORRECT = ["The current password is incorrect."]


@pytest.fixture
def app_config():
    # A fixed issuer: schemathesis' WSGI client calls http://localhost, the tokens name https://localhost.
    # No lockout, so every example meets the same account.
    return {**CHEAP_ARGON2, "ISSUER": "https://localhost", "LOCKOUT_MAX_FAILURES": 10**6}


FUZZ = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=12,
)
passwordish = st.sampled_from([ALICE_PASSWORD, "", "qwertyuiop12345", "alice", "alice@example.com"]) | st.text(max_size=40)


@st.composite
def right_shape(draw):
    """The three fields (some may be missing), each a string or any JSON value, maybe one extra field."""
    body = {}
    for field in FIELDS:
        if draw(st.integers(0, 9)):
            body[field] = draw(passwordish if draw(st.integers(0, 3)) else json_values)
    if not draw(st.integers(0, 5)):
        body[draw(st.text(min_size=1, max_size=20))] = draw(json_values)
    return body


@st.composite
def reaching_the_hash(draw):
    """Valid bodies with the right current password (the test skips those that would succeed)."""
    new = draw(passwordish)
    confirm = draw(st.just(new) | passwordish)
    return {"current_password": ALICE_PASSWORD, "new_password": new, "confirm_password": confirm}


bodies = st.one_of(json_values, right_shape(), reaching_the_hash())


def would_change(app, body) -> bool:
    """A body that is a correct password change (the policy itself decides)."""
    if not (isinstance(body, dict) and body.keys() == set(FIELDS) and body["current_password"] == ALICE_PASSWORD
            and isinstance(body["new_password"], str) and body["new_password"] == body["confirm_password"]):
        return False
    with app.app_context():
        return not password_problems(body["new_password"], username="alice", email="alice@example.com",
                                     current=ALICE_PASSWORD)


def test_arbitrary_json_never_breaks_or_changes_anything(app, api):
    token = api.token()

    @FUZZ
    @given(body=bodies)
    def attempt(body):
        assume(not would_change(app, body))
        before = api.user_row()
        response = api.post_password(token, data=json.dumps(body), content_type="application/json")
        assert response.status_code == 400, (body, response.get_data(as_text=True))
        errors = problem_of(response)["errors"]
        assert errors and all(isinstance(m, str) for messages in errors.values() for m in messages)
        after = api.user_row()
        wrong_current = errors.get("current_password") == INCORRECT
        assert after.pop("failed_attempts") == before.pop("failed_attempts") + wrong_current
        assert after == before

    attempt()


def test_arbitrary_bytes_never_break_anything(api):
    token = api.token()
    content_types = st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain",
                                     "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""])

    @FUZZ
    @given(data=st.binary(max_size=200), content_type=content_types)
    def attempt(data, content_type):
        before = api.user_row()
        response = api.post_password(token, data=data, content_type=content_type)
        assert response.status_code == 400
        problem_of(response)
        assert api.user_row() == before

    attempt()


# --- the OpenAPI document ---------------------------------------------------------------


def test_openapi_document_is_valid(api):
    response = api.client.get("/localapi/openapi.json", headers=bearer(api.token()))
    assert response.status_code == 200
    document = response.get_json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["bearer"]["description"]}
    assert document["security"] == [{"bearer": []}]
    password = document["paths"]["/localapi/password"]["post"]
    assert set(password["responses"]) == {"204", "400", "401", "403", "413", "429", "503"}
    assert password["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PasswordChange"}
    change = document["components"]["schemas"]["PasswordChange"]
    assert set(change["required"]) == set(FIELDS) and change["additionalProperties"] is False
    assert "otp" in change["properties"] and "otp" not in change["required"]  # for users with a second factor
    account = document["components"]["schemas"]["Account"]
    assert set(account["properties"]) == {"sub", "username", "email", "email_verified", "pending_email", "name",
                                          "password_changed_at", "mfa_enabled"}
    email_change = document["paths"]["/localapi/email"]["put"]
    assert set(email_change["responses"]) == {"202", "400", "401", "403", "413", "429", "503"}
    assert set(document["components"]["schemas"]["EmailChange"]["required"]) == {"email", "current_password"}
    verification = document["paths"]["/localapi/email/verification"]["post"]
    assert set(verification["responses"]) == {"202", "401", "403", "409", "429", "503"}


def test_openapi_document_needs_a_token(api):
    assert api.client.get("/localapi/openapi.json").status_code == 401


OPERATIONS = [("/localapi/password", "POST"), ("/localapi/account", "GET"), ("/localapi/openapi.json", "GET"),
              ("/localapi/email", "PUT"), ("/localapi/email/verification", "POST")]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.mark.parametrize("mode", list(GenerationMode))
@pytest.mark.parametrize("path, method", OPERATIONS)
def test_api_conforms_to_its_document(app, api, path, method, mode):
    """Schemathesis, in-process over WSGI: no 5xx, and every status, header and body as documented."""
    headers = bearer(api.token())
    operation = schemathesis.openapi.from_wsgi("/localapi/openapi.json", app, headers=headers)[path][method]

    @settings(FUZZ, max_examples=25)
    @given(case=operation.as_strategy(generation_mode=mode))
    def attempt(case):
        case.call_and_validate(headers=headers, checks=CHECKS)

    attempt()
