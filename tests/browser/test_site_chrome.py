"""The top bar on a phone, the icon, the diagnostics time and the password form's hidden user
name, as real Chromium renders them."""

import re
from datetime import datetime, timezone

import pytest

# what a page does in Chromium, which no database changes: .ci/run checks it on SQLite only
pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 860}
SIGNED_IN_PAGES = ("/", "/account/password", "/account/grants", "/diagnostics")
NEW_PASSWORD = "copper-lantern-orchard-731"

# the header's parts with their boxes, as the browser laid them out
_HEADER_BOXES = """() => [...document.querySelectorAll('.topbar .brand, .topbar .nav__user, .topbar .nav__links > li')]
  .map(el => { const r = el.getBoundingClientRect();
               return {text: el.innerText.trim(), top: r.top, bottom: r.bottom, left: r.left, right: r.right}; })"""


def header_rows(page) -> list[list[str]]:
    """The header's parts grouped into rows: a part starts a new row when it lies wholly below the last one."""
    rows: list[list[dict]] = []
    for box in sorted(page.evaluate(_HEADER_BOXES), key=lambda b: (b["top"], b["left"])):
        if rows and box["top"] < max(b["bottom"] for b in rows[-1]):
            rows[-1].append(box)
        else:
            rows.append([box])
    return [[b["text"] for b in row] for row in rows]


def sign_in_alice(ui, seeded):
    user = seeded["users"][0]
    assert ui.sign_in(user["username"], user["password"]).status == 302


def test_the_header_fits_two_rows_at_375_px(ui, seeded, tmp_path):
    ui.page.set_viewport_size(PHONE)
    ui.goto("/")
    assert len(header_rows(ui.page)) == 1, header_rows(ui.page)  # signed out: the brand and "Sign in"

    sign_in_alice(ui, seeded)
    for path in SIGNED_IN_PAGES:
        ui.goto(path)
        rows = header_rows(ui.page)
        assert len(rows) <= 2, f"{path}: the header takes {len(rows)} rows: {rows}"
        ui.assert_fits_width()
    shot = tmp_path / "header-375.png"
    ui.page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": PHONE["width"], "height": 160})
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    name = ui.page.locator(".nav__user")
    assert name.is_visible() and "Alice Example" in name.inner_text()
    assert name.evaluate("el => el.scrollWidth <= el.clientWidth"), "the name is cut short at 375 px"
    assert ui.page.locator(".topbar").bounding_box()["height"] < 120


def test_the_short_labels_keep_the_links_names(ui, seeded):
    ui.page.set_viewport_size(PHONE)
    sign_in_alice(ui, seeded)
    ui.goto("/diagnostics")

    for name in ("Change password", "App access", "Diagnostics"):
        assert ui.page.get_by_role("link", name=name, exact=True).is_visible(), name
    assert ui.page.get_by_role("button", name="Sign out").is_visible()
    ui.page.get_by_role("link", name="Change password").click()
    ui.page.wait_for_url(ui.url("/account/password"))


def test_the_header_is_one_row_on_a_desktop(ui, seeded):
    ui.page.set_viewport_size(DESKTOP)
    sign_in_alice(ui, seeded)
    ui.goto("/diagnostics")

    rows = header_rows(ui.page)
    assert len(rows) == 1, rows
    assert "Change password" in rows[0] and "App access" in rows[0]


def test_the_browser_finds_the_icon(ui, seeded):
    ui.goto("/")

    loaded = ui.page.evaluate("""async () => {
      const out = {};
      for (const link of document.querySelectorAll('link[rel=icon]')) {
        const img = new Image();
        img.src = link.href;
        await img.decode();
        out[new URL(link.href).pathname] = img.naturalWidth;
      }
      return out;
    }""")

    assert loaded.get("/favicon.ico", 0) >= 16, loaded
    assert any(path.endswith("favicon.svg") and width > 0 for path, width in loaded.items()), loaded


def test_diagnostics_reads_auth_time_as_a_utc_time(ui, seeded):
    sign_in_alice(ui, seeded)
    ui.goto("/diagnostics")

    cell = ui.page.locator("tr", has=ui.page.locator("th code", has_text="auth_time")).locator("time")
    text, epoch = cell.inner_text(), int(cell.get_attribute("data-epoch"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text), text
    assert text == datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert abs(datetime.now(timezone.utc).timestamp() - epoch) < 3600


def test_password_form_carries_the_user_name_unseen_and_still_works(ui, app, seeded):
    sign_in_alice(ui, seeded)
    ui.goto("/account/password")

    username = ui.page.locator('input[autocomplete="username"]')
    assert username.input_value() == "alice"
    box = username.bounding_box()
    assert box is None or (box["width"] <= 1 and box["height"] <= 1), box
    ui.page.keyboard.press("Tab")  # from the page start: the skip link, never the hidden field
    assert ui.page.evaluate("document.activeElement.id") != "account-username"

    ui.page.get_by_label("Current password").fill(seeded["users"][0]["password"])
    ui.page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    ui.page.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    posted = ui.submit_and_catch_post()

    assert posted.status == 200
    assert "username" not in (posted.request.post_data or "")
    assert "Your password was changed" in ui.alert_text()
