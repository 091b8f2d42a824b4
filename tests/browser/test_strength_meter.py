"""The change-password page's strength meter agrees with the server, in real Chromium: for each
candidate it says accepted exactly when the policy accepts it, shows the policy's own messages,
and a password it refuses is refused by the form with the same words."""

import pytest

from identity.services.password_policy import password_problems

# what a page does in Chromium, which no database changes: .ci/run checks it on SQLite only
pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

CANDIDATES = [
    "passwordpassword", "password1234567", "123456789012345", "aaaaaaaaaaaaaaaa", "alicealicealice1",
    " " * 20, "short", "alice@example.com", "qwertyuiopasdfgh",
    "lantern-orchid-meadow-5531", "seven lemons climb a staircase", "violet-anchor-meadow-482",
]


def wait_for_answer(ui) -> None:
    """The script marks the meter pending on every input (synchronously) and done once it shows
    the server's answer (a selector wait: the page's CSP allows no evaluated strings)."""
    ui.page.locator("#strength-wrap[data-state=done]").wait_for(state="attached")


def meter_says(ui, password: str) -> dict:
    ui.page.get_by_label("New password", exact=True).fill(password)
    wait_for_answer(ui)
    wrap = ui.page.locator("#strength-wrap")
    return {
        "acceptable": wrap.get_attribute("data-acceptable") == "true",
        "label": ui.page.locator("#strength-label").inner_text(),
        "problems": ui.page.locator("#strength-problems li").all_inner_texts(),
        "visible": wrap.is_visible(),
    }


def server_says(app, password: str, current: str | None = None) -> list[str]:
    with app.app_context():
        return password_problems(password, username="alice", email="alice@example.com", name="Alice Example",
                                 current=current)


def test_the_meter_says_what_the_server_says(ui, app, seeded):
    ui.sign_in("alice", "tulip-quartz-harbor-917")
    ui.goto("/account/password")

    for password in CANDIDATES:
        shown = meter_says(ui, password)
        expected = server_says(app, password)
        assert shown["visible"], password
        assert shown["acceptable"] is (not expected), (password, shown, expected)
        assert shown["problems"] == expected, password
        assert shown["label"] in (("Good", "Strong") if not expected else ("Too short", "Not accepted")), shown

    ui.page.get_by_label("New password", exact=True).fill("")
    wait_for_answer(ui)
    assert not ui.page.locator("#strength-wrap").is_visible(), "an empty field shows no meter"


def test_the_meter_counts_the_current_password(ui, app, seeded):
    ui.sign_in("alice", "tulip-quartz-harbor-917")
    ui.goto("/account/password")
    ui.page.get_by_label("Current password").fill("tulip-quartz-harbor-917")

    shown = meter_says(ui, "tulip-quartz-harbor-917")

    assert shown["acceptable"] is False
    assert shown["problems"] == server_says(app, "tulip-quartz-harbor-917", current="tulip-quartz-harbor-917")


def test_a_password_the_meter_refuses_the_form_refuses_with_the_same_words(ui, app, seeded):
    ui.sign_in("alice", "tulip-quartz-harbor-917")
    ui.goto("/account/password")
    ui.page.get_by_label("Current password").fill("tulip-quartz-harbor-917")
    shown = meter_says(ui, "passwordpassword")
    assert shown["acceptable"] is False and shown["problems"]
    ui.page.get_by_label("Confirm new password").fill("passwordpassword")

    posted = ui.submit_and_catch_post()

    assert posted.status == 400
    errors = ui.page.locator(".field-errors").first.inner_text()
    for problem in shown["problems"]:
        assert problem in errors
    ui.assert_looks_finished()
