"""Abuse at scale: many client addresses, lists of user names and mailboxes, against the
documented rate limits, lockout and mail budgets (docs/passwords.md, docs/email.md,
docs/recovery.md)."""

import pytest
from sqlalchemy import update

from actions import AuthActions
from conftest import csrf_token
from identity.extensions import db
from identity.models import User
from identity.services import mail as mail_service
from mfa_actions import code_at, enrol_user, step_clock  # noqa: F401  (the fixture)
from test_registration import ON, PASSWORD, register

LIMITED = {"RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://"}


@pytest.mark.parametrize("app_config", [{**ON, **LIMITED, "RATELIMIT_REGISTRATION_ADDRESS": "2 per hour"}])
def test_an_international_domain_spelled_both_ways_is_one_address_to_the_registration_budget(app, client, seeded, mail):
    """RATELIMIT_REGISTRATION_ADDRESS counts the registrations that mail one address, from any
    client address. Its key was the address as typed (normalized), so an international domain
    written as Unicode and as its IDNA form (`bücher` and `xn--bcher-kva`) were two addresses to
    it, while every mail went to the same mailbox: twice the budget (2^n for n such labels)."""
    spellings = ["v@bücher.example", "v@xn--bcher-kva.example", "v@BÜCHER.example", "v@XN--BCHER-KVA.example"]
    statuses = []
    for i, address in enumerate(spellings):
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{i + 1}"
        statuses.append(register(client, username=f"spam{i}", email=address).status_code)
    with app.app_context():
        assert mail_service.wait_until_sent()
    assert statuses == [200, 200, 429, 429], statuses
    assert len(mail.to("v@xn--bcher-kva.example")) == 2


@pytest.mark.parametrize("app_config", [{**ON, **LIMITED, "RATELIMIT_REGISTRATION_ADDRESS": "2 per hour"}])
def test_subaddresses_of_one_mailbox_share_the_registration_budget(app, client, seeded, mail):
    """The same budget, against `+tag` subaddresses (RFC 5233), which Gmail, Outlook, Fastmail,
    iCloud and Postfix's default recipient_delimiter all deliver to the one mailbox: each tag was
    an address of its own, so from many client addresses anyone could still mail-bomb anyone, one
    new tag a registration."""
    statuses = []
    for i in range(4):
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{i + 1}"
        statuses.append(register(client, username=f"tag{i}", email=f"victim+{i}@example.org").status_code)
    with app.app_context():
        assert mail_service.wait_until_sent()
    assert statuses == [200, 200, 429, 429], statuses
    assert len(mail.to("@example.org")) == 2


NEW_PASSWORD = "saffron-glacier-meadow-581"


def change_password(client, current: str, new: str, otp: str = ""):
    page = client.get("/account/password")
    return client.post("/account/password", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                                  "current_password": current, "new_password": new,
                                                  "confirm_password": new, "otp": otp})


@pytest.mark.parametrize("app_config", [{**ON, **LIMITED}])
def test_an_account_registered_with_someone_elses_address_cannot_mail_bomb_it_with_notices(app, client, seeded, mail,
                                                                                          step_clock):
    """One registration with a victim's address (allowed: nobody has proved it yet) gave an
    account whose every password change mailed the victim a notice, as fast as the sign-in's
    per-IP limit let it change (100 a minute, from each client address): the per-address and
    per-account mail budgets (docs/email.md) bounded the links, not the notices. A notice to an
    address nobody has verified now takes a share of an hourly budget per account and kind of
    notice; the changes themselves still go through, another kind (an authenticator app set up)
    is still told, and a verified address gets every notice."""
    assert register(client, username="evil", email="victim@example.org").status_code == 200
    assert AuthActions(client).login("evil", PASSWORD).status_code == 302
    budget = app.config["EMAIL_VERIFICATION_MAILS_PER_HOUR"]
    passwords = [PASSWORD, NEW_PASSWORD]
    statuses = [change_password(client, passwords[i % 2], passwords[(i + 1) % 2]).status_code
                for i in range(budget + 3)]
    with app.app_context():
        assert mail_service.wait_until_sent()
    assert statuses == [200] * (budget + 3)
    notices = [m for m in mail.to("victim@example.org") if "password was changed" in m["Subject"]]
    assert len(notices) == budget, len(notices)

    # the share of one kind spent does not silence another: an authenticator app set up is told
    secret, _ = enrol_user(app, "evil")
    with app.app_context():
        assert mail_service.wait_until_sent()
    assert [m for m in mail.to("victim@example.org") if "authenticator app was set up" in mail.text(m)]

    with app.app_context():  # once the address is proved the owner's, every change is told
        db.session.execute(update(User).where(User.username == "evil").values(email_verified=True))
        db.session.commit()
    current = passwords[(budget + 3) % 2]
    assert change_password(client, current, passwords[(budget + 4) % 2], code_at(secret)).status_code == 200
    with app.app_context():
        assert mail_service.wait_until_sent()
    assert len([m for m in mail.to("victim@example.org") if "password was changed" in m["Subject"]]) == budget + 1
