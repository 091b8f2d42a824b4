"""Review from outside: OWASP ASVS 4.0.3, level 2, requirement by requirement.

Each test is a requirement the server failed: its number in the test's docstring."""

import json
import re

import pytest

from actions import AuthActions
from conftest import DEMO_SEED
from identity.services import mail as mail_service


def _seed_with(tmp_path, **alice):
    data = json.loads(DEMO_SEED.read_text())
    for user in data["users"]:
        if user["username"] == "alice":
            user.update(alice)
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_an_address_changed_by_a_seed_is_told_to_the_old_address(app, seeded, runner, mail, tmp_path):
    """ASVS 2.2.3 / 2.5.5: a change of the address of record (where reset links go) is notified, as
    the page's and the local API's changes and an operator's password (`users set-password`) are."""
    result = runner.invoke(args=["seed", _seed_with(tmp_path, email="alice@new.example")])
    assert result.exit_code == 0, result.output
    with app.app_context():
        mail_service.wait_until_sent()
    old = mail.to("alice@example.com")
    assert len(old) == 1, "the old address was not told that the operator's seed changed the account's address"
    text = mail.text(old[0])
    assert "a***@new.example" in text and "administrator" in text, text
    assert not mail.links(old[0])
    assert len(mail.to("alice@new.example")) == 1
    # the same seed again changes nothing and tells no one again
    mail.clear()
    again = runner.invoke(args=["seed", _seed_with(tmp_path, email="alice@new.example")])
    assert again.exit_code == 0, again.output
    with app.app_context():
        mail_service.wait_until_sent()
    assert mail.messages == []


@pytest.mark.database_independent
@pytest.mark.parametrize("path", ["/favicon.ico", "/static/favicon.svg", "/static/site.css"])
def test_a_revalidated_file_keeps_the_policy_of_its_full_answer(client, path):
    """ASVS 14.4.3: a 304's header fields replace the stored response's (RFC 9111 section 4.3.4), so
    the revalidation of an icon must not swap its image policy for the pages' one."""
    full = client.get(path)
    assert full.status_code == 200 and full.headers.get("ETag")
    again = client.get(path, headers={"If-None-Match": full.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers.get("Content-Security-Policy") == full.headers["Content-Security-Policy"], (
        f"the 304 of {path} carried another Content-Security-Policy than its 200")


PASSWORD_INPUT_RE = re.compile(r'<input[^>]*type="password"[^>]*>')
ID_RE = re.compile(r'\bid="([^"]+)"')


def _password_fields_without_reveal(html: str) -> list[str]:
    ids = [ID_RE.search(tag).group(1) for tag in PASSWORD_INPUT_RE.findall(html)]
    assert ids, "no password field on the page"
    return [i for i in ids if f'data-reveal-for="{i}"' not in html]


@pytest.mark.database_independent
def test_every_password_field_can_be_shown_while_typed(client, seeded):
    """ASVS 2.1.12: the person can choose to see the whole masked password (desktop Chrome, Firefox
    and Safari have no built-in way), on the sign-in page and on every page that asks for one."""
    pages = {"/account/login": client.get("/account/login")}
    AuthActions(client).login()
    for path in ("/account/password", "/account/email", "/account/mfa"):
        pages[path] = client.get(path)
    for path, page in pages.items():
        html = page.get_data(as_text=True)
        assert page.status_code == 200, path
        if path == "/account/mfa" and 'type="password"' not in html:
            continue  # no app to remove: no password asked
        missing = _password_fields_without_reveal(html)
        assert not missing, f"{path}: no way to show the password typed in {missing}"
        assert "js/reveal.js" in html, path
    script = client.get("/static/js/reveal.js")
    assert script.status_code == 200 and b"data-reveal-for" in script.data
