"""What Chromium itself reports about the server's responses, reviewed from its console: CSP
violations, script errors and the headers that cause them, on the documents no other browser
test opens."""

import pytest

pytestmark = pytest.mark.database_independent

ICONS = ("/favicon.ico", "/static/favicon.svg")


@pytest.mark.browser
def test_the_icon_opened_in_a_tab_logs_no_csp_violation(ui, console):
    path = "/favicon.ico"
    # Chromium shows an image in a document of its own, whose <img> and <body> carry inline style
    # attributes: the pages' style-src 'self' refused them, three errors in the console
    response = ui.goto(path)
    assert response.status == 200
    ui.page.wait_for_timeout(200)
    violations = console.csp_violations()
    assert not violations, f"{path}: {len(violations)} CSP violations, first: {violations[0][:120]}"


@pytest.mark.parametrize("path", ICONS)
def test_an_icon_is_sent_with_a_policy_for_an_image(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype.startswith("image/")
    policy = response.headers["Content-Security-Policy"]
    directives = dict((part.strip().split(" ", 1) + [""])[:2] for part in policy.split(";"))
    assert directives.get("default-src") == "'none'", policy  # nothing to load, no script to run
    assert "'unsafe-inline'" in directives.get("style-src", ""), policy  # the browser's own image view
    assert directives.get("frame-ancestors") == "'none'" and "sandbox" in directives, policy
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_policy_the_pages_send_is_the_one_the_security_page_states(client):
    import re
    from pathlib import Path

    text = " ".join((Path(__file__).parents[2] / "docs" / "security.md").read_text().split())
    stated = re.search(r"\(`(default-src 'self';[^`]*)`", text).group(1)
    sent = client.get("/account/login").headers["Content-Security-Policy"]
    assert sent == stated, f"docs/security.md states {stated!r}, the sign-in page sends {sent!r}"
