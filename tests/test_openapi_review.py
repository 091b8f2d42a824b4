"""The OpenAPI review: each test pins a difference between /localapi/openapi.json and what the
local API does that a client generated from the document would trip on."""

import pytest

from openapi_review_support import check_response
from test_localapi_support import LocalApi, bearer


@pytest.fixture
def api(app, client, seeded):
    return LocalApi(app, client)


def document_of(api) -> dict:
    response = api.client.get("/localapi/openapi.json", headers=bearer(api.token()))
    assert response.status_code == 200
    return response.get_json()


# --- DELETE /localapi/sessions/{id}: any id is a string the document allows ---------------------


@pytest.mark.parametrize("entry", ["app_%00", "browser_a%00b"])
def test_a_session_id_with_a_nul_is_a_404_as_documented(api, entry):
    """The path parameter is any string; an id holding NUL is no live session's: 404, not the 503
    PostgreSQL's refusal of a NUL in a text parameter became."""
    document = document_of(api)
    response = api.client.delete(f"/localapi/sessions/{entry}", headers=bearer(api.token()))
    assert response.status_code == 404, response.get_data(as_text=True)
    check_response(document, "delete", f"/localapi/sessions/{entry}", response)
