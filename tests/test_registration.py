"""Self-registration: off by default (404, no link), the form's checks, no enumeration (the same
answer for a taken user name or address, whose owner gets a mail instead), the rate limit, and
the way back to the pending authorization request."""

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import csrf_token
from identity.extensions import db
from identity.models import AuditEvent, User

PASSWORD = "juniper-falcon-ribbon-735"
ON = {"REGISTRATION_ENABLED": True}
MOBILE_REDIRECT = "com.example.app:/callback"


def register(client, return_url=None, **fields):
    url = "/account/register" + (f"?{urlencode({'returnUrl': return_url})}" if return_url else "")
    page = client.get(url)
    assert page.status_code == 200
    data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "username": "carol", "email": "carol@example.com",
            "name": "Carol Example", "password": PASSWORD, "confirm_password": PASSWORD}
    data.update(fields)
    return client.post(url, data=data)


def users(app) -> dict[str, User]:
    with app.app_context():
        found = {u.username: u for u in db.session.scalars(select(User))}
        for u in found.values():
            db.session.expunge(u)
        return found


def visible_text(response) -> str:
    """The page without its CSRF token and request-specific values, to compare two answers."""
    html = response.get_data(as_text=True)
    return re.sub(r'value="[^"]*"', "", html)


# --- off by default ---------------------------------------------------------------------------------


def test_registration_is_off_by_default(client, seeded):
    assert client.get("/account/register").status_code == 404
    assert client.post("/account/register", data={"username": "x"}).status_code == 404
    login = client.get("/account/login").get_data(as_text=True)
    assert "/account/register" not in login


@pytest.mark.parametrize("app_config", [ON])
def test_the_sign_in_page_links_to_registration_with_the_pending_request(client, seeded):
    return_url = "/connect/authorize?client_id=spa&response_type=code"
    login = client.get("/account/login?" + urlencode({"returnUrl": return_url})).get_data(as_text=True)
    href = re.search(r'href="([^"]+)" id="register-link"', login).group(1).replace("&amp;", "&")
    assert urlsplit(href).path == "/account/register"
    assert parse_qs(urlsplit(href).query)["returnUrl"] == [return_url]


# --- a new user -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [ON])
def test_registration_creates_an_unverified_user_and_mails_a_link(app, client, seeded, mail):
    response = register(client)
    assert response.status_code == 200
    assert "Check your email" in response.get_data(as_text=True)
    carol = users(app)["carol"]
    assert (carol.email, carol.name, carol.email_verified) == ("carol@example.com", "Carol Example", False)
    assert PASSWORD not in carol.password_hash
    message = mail.wait_for(to="carol@example.com")
    assert message.get_body(("html",)) is not None
    link = mail.link(message)
    assert link.startswith("https://localhost/account/verify-email?token=")

    page = client.get(urlsplit(link).path + "?" + urlsplit(link).query)
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert users(app)["carol"].email_verified is True
    assert AuthActions(client).login("carol", PASSWORD).status_code == 302


@pytest.mark.parametrize("app_config", [ON])
@pytest.mark.parametrize("fields, field, message", [
    ({"confirm_password": "something-else-entirely-9"}, "confirm_password", "does not match"),
    ({"password": "short", "confirm_password": "short"}, "password", "at least"),
    ({"email": "not-an-address"}, "email", "email address"),
    ({"email": ""}, "email", "Enter an email address"),
    ({"username": "has space"}, "username", "without spaces"),
    # an @ or a space once normalized (NFKC): the key would be an address's, alice's
    ({"username": "alice\uff20example.com"}, "username", "without spaces or @"),
    ({"username": "carol\ufe6bexample.com"}, "username", "without spaces or @"),
    ({"username": ""}, "username", "Choose a user name"),
    # what mails to any address would carry: a look-alike user name, a name that turns text around
    ({"username": "car\u200bol"}, "username", "invisible"),
    ({"username": "carol\u202e"}, "username", "invisible"),
    # invisible, though not of category C (default-ignorable): "carol" with a filler or a variation selector
    ({"username": "carol\u3164"}, "username", "invisible"),
    ({"username": "car\u034fol"}, "username", "invisible"),
    ({"username": "carol\ufe0f"}, "username", "invisible"),
    ({"username": "carol\U000e0100"}, "username", "invisible"),
    ({"name": "Carol \u202egnp.exe"}, "name", "control"),
    ({"name": "Carol\x01"}, "name", "control"),
    # longer than their columns once casefolded ("ﬃ" is "ffi", "ß" is "ss"): PostgreSQL refused them, a 503
    ({"username": "\ufb03" * 100}, "username", "at most 150"),
    ({"email": "\u00df" * 300 + "@example.org"}, "email", "at most 320"),
])
def test_the_form_shows_problems_that_depend_on_the_input_alone(app, client, seeded, mail, fields, field, message):
    response = register(client, **fields)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert "carol" not in users(app)
    assert mail.messages == []


@pytest.mark.parametrize("app_config", [ON])
@pytest.mark.parametrize("address", [
    "x@attacker.example(carol@example.com)",  # a comment: mailed to x@attacker.example
    "carol(x)@example.com",  # mailed to carol@example.com, yet not "taken" by an account that has it
    "carol@example.com:x@attacker.example",  # a group's name: mailed to x@attacker.example
    "carol@example.com'@attacker.example",  # read as no address at all
])
def test_an_address_must_be_the_mailbox_its_link_goes_to(app, client, seeded, mail, address):
    """The mail library reads the address (comments, group syntax) before it sends: the link went
    to another mailbox than the address stored, and the ID token then called the stored one
    verified."""
    response = register(client, email=address)
    assert response.status_code == 400
    assert "email address" in response.get_data(as_text=True)
    assert "carol" not in users(app)
    assert mail.messages == []


@pytest.mark.parametrize("app_config", [ON])
def test_a_post_without_csrf_is_refused(app, client, seeded):
    response = client.post("/account/register", data={"username": "carol", "email": "carol@example.com",
                                                      "password": PASSWORD, "confirm_password": PASSWORD})
    assert response.status_code == 400
    assert "carol" not in users(app)


# --- no enumeration -------------------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [ON])
def test_a_taken_address_or_user_name_gets_the_same_answer_and_its_owner_a_mail(app, client, seeded, mail):
    fresh = register(client, username="carol", email="carol@example.com")
    mail.wait_for(to="carol@example.com")
    mail.clear()
    taken_email = register(client, username="carol2", email="ALICE@example.com")
    taken_name = register(client, username="Alice", email="dave@example.com")

    assert fresh.status_code == taken_email.status_code == taken_name.status_code == 200
    # the pages differ only in the address they repeat back to the person
    assert visible_text(fresh).replace("carol@example.com", "X") == visible_text(taken_email).replace("ALICE@example.com", "X")
    assert visible_text(fresh).replace("carol@example.com", "X") == visible_text(taken_name).replace("dave@example.com", "X")
    assert set(users(app)) == {"alice", "carol"}

    to_alice = mail.wait_for(to="alice@example.com")
    assert "already" in to_alice["Subject"]
    assert "alice" in mail.text(to_alice)
    assert "verify-email" not in mail.text(to_alice)  # no link that proves anything
    to_dave = mail.wait_for(to="dave@example.com")
    assert "not created" in to_dave["Subject"]
    assert "Alice" in mail.text(to_dave)
    with app.app_context():
        reasons = [e.detail["reason"] for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "registration_refused").order_by(AuditEvent.id))]
    assert reasons == ["email_taken", "username_taken"]



@pytest.mark.parametrize("app_config", [ON])
@pytest.mark.parametrize("first, second", [
    ("caf\u00e9", "cafe\u0301"),  # é as one character, and as e with a combining accent (NFC, NFD)
    ("cafe\u0301", "CAF\u00c9"),
    ("carol", "\uff43\uff41\uff52\uff4f\uff4c"),  # full-width letters, an input method's wide mode
    ("carol", "\u1d9c\u1d43\u02b3\u1d52\u02e1"),  # superscript look-alikes NFKC maps to ASCII
])
def test_a_user_name_spelled_another_unicode_way_is_taken(app, client, seeded, mail, first, second):
    """Two spellings Unicode counts as one (canonically, or but for width) are one user name: two
    accounts that look the same on every page and in every mail could be made, and the owner of
    the first could not sign in from a keyboard that spells the name the other way."""
    assert register(client, username=first, email="carol@example.com").status_code == 200
    mail.wait_for(to="carol@example.com")
    assert register(client, username=second, email="dave@example.com").status_code == 200
    assert "not created" in mail.wait_for(to="dave@example.com")["Subject"]
    assert set(users(app)) == {"alice", first}
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == first))
        user.email_verified = True
        db.session.commit()
    assert AuthActions(client).login(second, PASSWORD).status_code == 302


# --- rate limit -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{**ON, "RATELIMIT_ENABLED": True, "RATELIMIT_REGISTRATION": "2 per hour"}])
def test_registrations_are_rate_limited_per_client_address(app, client, seeded, mail):
    assert register(client, username="u1", email="u1@example.com").status_code == 200
    assert register(client, username="u2", email="u2@example.com").status_code == 200
    third = register(client, username="u3", email="u3@example.com")
    assert third.status_code == 429
    assert "u3" not in users(app)
    assert client.get("/account/register").status_code == 200  # reading the form is not counted


@pytest.mark.parametrize("app_config", [{**ON, "RATELIMIT_ENABLED": True, "RATELIMIT_REGISTRATION_ADDRESS": "2 per hour"}])
def test_an_address_gets_no_more_registration_mails_than_its_budget_from_any_number_of_ips(app, client, seeded, mail):
    """Each registration naming a taken address mailed its owner, limited only per client IP:
    from many addresses, anyone could mail-bomb anyone (a free address too: the first
    registration takes it). The budget per address named answers the same for a free address
    as for a taken one."""
    from identity.services import mail as mail_service

    def answers(address):
        statuses = []
        for i in range(4):
            client.environ_base["REMOTE_ADDR"] = f"198.51.100.{len(statuses) + 10 * len(address)}"
            statuses.append(register(client, username=f"u{i}{len(address)}", email=address).status_code)
        return statuses

    assert answers("ALICE@example.com") == answers("nobody-yet@example.org") == [200, 200, 429, 429]
    with app.app_context():
        assert mail_service.wait_until_sent()
    assert len(mail.to("alice@example.com")) == len(mail.to("nobody-yet@example.org")) == 2
    # a form sent back for its own problems mails nothing and spends nothing
    client.environ_base["REMOTE_ADDR"] = "203.0.113.1"
    assert register(client, username="x1", email="third@example.org", password="short").status_code == 400
    assert register(client, username="x1", email="third@example.org").status_code == 200


# --- back to the pending authorization request -------------------------------------------------------------


@pytest.mark.parametrize("app_config", [ON])
def test_registration_returns_to_the_pending_authorization_request(app, client, seeded, mail):
    oauth = OAuthActions(client)
    verifier, challenge = pkce_pair()
    start = oauth.authorize(client_id="mobile-pkce", scope="openid email", code_challenge=challenge,
                            code_challenge_method="S256", redirect_uri=MOBILE_REDIRECT)
    return_url = parse_qs(urlsplit(start.headers["Location"]).query)["returnUrl"][0]

    done = register(client, return_url=return_url)
    assert done.status_code == 200
    html = done.get_data(as_text=True)
    sign_in = re.search(r'href="(/account/login\?returnUrl=[^"]+)"', html).group(1).replace("&amp;", "&")
    link = mail.link(mail.wait_for(to="carol@example.com"))
    assert client.get(urlsplit(link).path + "?" + urlsplit(link).query).status_code == 200

    page = client.get(sign_in)
    response = client.post(sign_in, data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                          "username": "carol", "password": PASSWORD})
    assert response.status_code == 303
    params = redirect_params(response.headers["Location"])
    token = oauth.token("mobile-pkce", grant_type="authorization_code", code=params["code"],
                        redirect_uri=MOBILE_REDIRECT,
                        code_verifier=verifier)
    assert token.status_code == 200, token.get_data(as_text=True)
    userinfo = client.get("/connect/userinfo", headers={"Authorization": "Bearer " + token.get_json()["access_token"]})
    assert userinfo.get_json()["email_verified"] is True
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 2


@pytest.mark.parametrize("app_config", [ON])
def test_a_nul_in_the_pending_client_id_is_no_client_to_the_registration(app, client, seeded, mail):
    """PostgreSQL refuses a NUL in a text: the page and the audited registration take it as no client."""
    done = register(client, return_url="/connect/authorize?client_id=mob%00ile&response_type=code")
    assert done.status_code == 200
    assert users(app)["carol"].email == "carol@example.com"
