import pytest, schemathesis
from hypothesis import given, settings, HealthCheck
from schemathesis.generation import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance, negative_data_rejection, positive_data_acceptance)
from test_localapi_support import LocalApi, bearer
@pytest.fixture
def app_config():
    return {"ISSUER": "https://localhost", "LOCKOUT_MAX_FAILURES": 10**6, "EMAIL_VERIFICATION_MAILS_PER_HOUR": 10**6, "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST_KIB": 8, "ARGON2_PARALLELISM": 1}

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance, negative_data_rejection, positive_data_acceptance]

@pytest.mark.parametrize("mode", list(GenerationMode))
@pytest.mark.parametrize("path, method", [("/localapi/sessions", "GET"), ("/localapi/sessions", "DELETE"), ("/localapi/sessions/{id}", "DELETE"), ("/localapi/password", "POST"), ("/localapi/email", "PUT"), ("/localapi/email/verification", "POST"), ("/localapi/account", "GET")])
def test_st(app, client, seeded, path, method, mode):
    api = LocalApi(app, client)
    headers = bearer(api.token())
    operation = schemathesis.openapi.from_wsgi("/localapi/openapi.json", app, headers=headers)[path][method]
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(case=operation.as_strategy(generation_mode=mode))
    def attempt(case):
        case.call_and_validate(headers=bearer(api.token()), checks=CHECKS)
    attempt()
