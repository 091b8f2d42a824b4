"""Abuse at scale: many client addresses, lists of user names and mailboxes, against the
documented rate limits, lockout and mail budgets (docs/passwords.md, docs/email.md,
docs/recovery.md)."""

import pytest

from identity.services import mail as mail_service
from test_registration import ON, register

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
