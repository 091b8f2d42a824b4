"""Render what identity/oauth2 decided: redirects and pages, with this site's endpoints and templates."""

from urllib.parse import urlencode, urlsplit

from flask import Response, make_response, redirect, render_template, request, url_for
from werkzeug.utils import redirect as redirect_with

from ..plumbing.headers import allow_form_target, allow_frame_sources, origin_source
from ..oauth2.decisions import NeedsConsent, NeedsLogin, NeedsSecondFactor, NeedsVerifiedEmail, Respond, ShowError, SignedOut
from ..oauth2.response_modes import delivered, location


def render(decision):
    """The response for a decision of the authorization or end-session endpoint."""
    if isinstance(decision, Respond):
        return respond(decision)
    if isinstance(decision, NeedsLogin):
        return redirect(url_for("account.login", returnUrl=authorize_url(decision.params)))
    if isinstance(decision, NeedsSecondFactor):
        return render_template("account/mfa_required.html", client_name=decision.client_name,
                               continue_url=authorize_url(decision.params)), 403
    if isinstance(decision, NeedsVerifiedEmail):
        return redirect(url_for("email.required", returnUrl=authorize_url(decision.params)))
    if isinstance(decision, NeedsConsent):
        return redirect(url_for("consent.consent") + "?" + urlencode(decision.params))
    if isinstance(decision, ShowError):
        return render_template("error.html", status=decision.status, title=decision.title,
                               detail=decision.description), decision.status
    if isinstance(decision, SignedOut):
        return render_template("account/logged_out.html", redirect_uri=None, client_name=decision.client_name)
    raise TypeError(f"not a decision: {decision!r}")


def render_signed_out(decision, frontchannel_uris: list[str], client_name: str | None = None):
    """After a sign-out: the end-session decision, unless clients must be told in the browser
    (Front-Channel Logout): then the signed-out page with their iframes (the CSP frames exactly
    their origins) and, if the client asked to be returned to, a link back there, named by
    `client_name`."""
    if not frontchannel_uris:
        return render(decision) if decision is not None else render_template(
            "account/logged_out.html", redirect_uri=None, client_name=client_name)
    allow_frame_sources(frontchannel_uris)
    redirect_uri = None
    if isinstance(decision, Respond):
        redirect_uri = location(decision.reply.redirect_uri, delivered(decision.params), fragment=False)
    elif isinstance(decision, SignedOut):
        client_name = decision.client_name
    return render_template("account/logged_out.html", redirect_uri=redirect_uri, client_name=client_name,
                           frontchannel_uris=frontchannel_uris)


def render_signed_in_over(next_step: "Respond | str", frontchannel_uris: list[str], username: str):
    """After a sign-in that ended another user's session in this browser: the page that frames
    that session's front-channel logout URIs (as the signed-out page does), then goes on to
    `next_step`, the answer to the pending request (a link, or for form_post a form, to the
    client) or a local URL, by the person's click, so the iframes get to load first."""
    allow_frame_sources(frontchannel_uris)
    continue_url, form = next_step, None
    if isinstance(next_step, Respond):
        reply, params = next_step.reply, delivered(next_step.params)
        if reply.response_mode == "form_post":
            allow_form_target(reply.redirect_uri)
            continue_url, form = None, {"action": reply.redirect_uri, "params": dict(params)}
        else:
            continue_url = location(reply.redirect_uri, params, fragment=reply.response_mode == "fragment")
    response = make_response(render_template("account/signed_in_over.html", continue_url=continue_url, form=form,
                                             username=username, frontchannel_uris=frontchannel_uris))
    response.headers["Cache-Control"] = "no-store"  # the link may carry a code
    return response


def authorize_url(params: dict) -> str:
    """The local URL that resumes an authorization request (the sign-in page's returnUrl)."""
    return url_for("connect.authorize") + "?" + urlencode(params)


def respond(decision: Respond):
    """Send the parameters to the client's validated redirect URI: a redirect, or for form_post an
    auto-submitting page whose form may reach only the client's origin."""
    reply, params = decision.reply, delivered(decision.params)
    if reply.response_mode != "form_post":
        # a 303 after a POST (RFC 9700 section 4.12): the sign-in's, second step's or consent's POST
        # is answered here, and a user agent may repeat a POST at a 302 (or 307) target, which
        # would hand the client the password or code in the body
        code = 303 if request.method == "POST" else 302
        return redirect_with(location(reply.redirect_uri, params, fragment=reply.response_mode == "fragment"),
                             code=code, Response=ClientRedirect)
    response = make_response(render_template("form_post.html", action=reply.redirect_uri, params=dict(params)))
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; form-action " + _origin(reply.redirect_uri)
        + "; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


#: the characters of a URI (RFC 3986): a Location made of them alone is sent as it is
_URI_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%")


class ClientRedirect(Response):
    """A redirect to a client's redirect URI, sent as the URI was registered. werkzeug rebuilds a
    Location header from urlsplit's parts (iri_to_uri), which drops an empty authority and
    lowercases the scheme and host: a native app's `myapp://`, `com.example.app:///cb` or
    `msauth.com.Contoso.MyApp://auth` (RFC 8252 section 7.1) got its answer at `myapp:?code=...`,
    `com.example.app:/cb?code=...` or `msauth.com.contoso.myapp://auth?code=...`, URIs it never
    registered. Only a Location with characters a URI cannot hold (an IRI) is converted."""

    def get_wsgi_headers(self, environ):
        headers = super().get_wsgi_headers(environ)
        written = self.headers.get("Location")
        if written is not None:
            headers["Location"] = written if set(written) <= _URI_CHARACTERS else _with_empty_authority(
                written, headers["Location"])
        return headers


def _with_empty_authority(written: str, converted: str) -> str:
    """`converted` (werkzeug's form of `written`) with the `//` of an empty authority put back."""
    scheme = written.partition(":")[0]
    head, rest = converted[:len(scheme) + 1], converted[len(scheme) + 1:]
    if written[len(scheme) + 1:].startswith("//") and not rest.startswith("//"):
        return f"{head}//{rest}"
    return converted


def _origin(uri: str) -> str:
    """The redirect URI's origin as a CSP source (an international host in its IDNA form), or
    'none' for a host that has none: no form can reach it."""
    return origin_source(urlsplit(uri)) or "'none'"
