"""RFC 9457 problem details, the one error shape of /localapi.

`type` points at the RFC section of the status, as ASP.NET Core's ProblemDetails does, so
apps written against an IdentityServer4 host read the same shape; validation problems add
`errors`, field -> [messages].
"""

from flask import Response, current_app, json
from werkzeug.http import HTTP_STATUS_CODES

from identity.config.issuer import issuer
from identity.constants import MFA_REQUIRED_PROBLEM

PROBLEM_JSON = "application/problem+json"
VALIDATION_TITLE = "One or more validation errors occurred."

_RFC9110 = "https://www.rfc-editor.org/rfc/rfc9110#section-"
PROBLEM_TYPES = {
    400: _RFC9110 + "15.5.1",
    401: _RFC9110 + "15.5.2",
    403: _RFC9110 + "15.5.4",
    404: _RFC9110 + "15.5.5",
    405: _RFC9110 + "15.5.6",
    409: _RFC9110 + "15.5.10",
    413: _RFC9110 + "15.5.14",
    415: _RFC9110 + "15.5.16",
    429: "https://www.rfc-editor.org/rfc/rfc6585#section-4",
    500: _RFC9110 + "15.6.1",
    503: _RFC9110 + "15.6.4",
}


# a problem of this API's own, told apart by the end of its type (the issuer's URL before it);
# the type's URL serves its documentation (identity/web/home.py)
MFA_REQUIRED = MFA_REQUIRED_PROBLEM


def problem(status: int, title: str | None = None, detail: str | None = None, *,
            errors: dict[str, list[str]] | None = None, headers: dict | None = None,
            type_: str | None = None) -> Response:
    """Build a problem+json response (`type_` for a problem type of this API's own)."""
    body = {
        "type": type_ or PROBLEM_TYPES.get(status, "about:blank"),
        "title": title or HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail or title or HTTP_STATUS_CODES.get(status, "Error"),
    }
    if errors is not None:
        body["errors"] = errors
    return Response(json.dumps(body), status=status, headers=headers, mimetype=PROBLEM_JSON)


def validation_problem(errors: dict[str, list[str]], detail: str = "The request body is not acceptable; see errors.") -> Response:
    return problem(400, VALIDATION_TITLE, detail, errors=errors)


def mfa_required(detail: str) -> Response:
    """403: the user has a second factor, and the request neither carried a code nor came from a
    recent sign-in with it; the app asks for a code (`otp`) or signs in again with prompt=login.

    Its challenge is RFC 9470's: the token is good, its sign-in is not enough, and a new one with
    `acr_values=mfa` no older than `max_age` seconds would be (RFC 6750 section 3 asks a refused
    bearer request for a WWW-Authenticate header)."""
    challenge = ('Bearer error="insufficient_user_authentication", error_description="A second factor is required", '
                 f'acr_values="mfa", max_age={int(current_app.config["MFA_RECENT_SECONDS"])}')
    return problem(403, "A second factor is required", detail, type_=issuer() + MFA_REQUIRED,
                   headers={"WWW-Authenticate": challenge})


def render(status: int, title: str, detail: str) -> Response:
    """The renderer for every error under /localapi (registered in identity.plumbing.error_renderers)."""
    return problem(status, title, detail, errors={} if status == 400 else None)
