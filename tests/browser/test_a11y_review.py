"""The pages as a keyboard, screen-reader or phone user meets them in real Chromium: after a refused
form the focus is on the first field in error, whose accessible description carries the error; at
320 px nothing scrolls sideways; a text field's edge is visible enough to find it."""

import re

import pytest

# what a page does in Chromium, which no database changes: .ci/run checks it on SQLite only
pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

NEW_PASSWORD = "orchid-lantern-basalt-7312"

# the focused element once the page's autofocus has run (it runs after load, in a rendering step)
_FOCUSED = """async () => {
  for (let i = 0; i < 20 && document.activeElement === document.body; i++) await new Promise(r => setTimeout(r, 50));
  const el = document.activeElement;
  const described = (el.getAttribute('aria-describedby') || '').split(/\\s+/).filter(Boolean)
    .map(id => (document.getElementById(id) || {}).textContent || '').join(' ');
  return {id: el.id || el.tagName, invalid: el.getAttribute('aria-invalid'), described: described.replace(/\\s+/g, ' ')};
}"""


def focused(ui) -> dict:
    return ui.page.evaluate(_FOCUSED)


def assert_focus_on_error(ui, field_id: str, words: str) -> None:
    now = focused(ui)
    assert now["id"] == field_id, f"after the refused form the focus is on {now['id']}, not the field in error {field_id}"
    assert now["invalid"] == "true" and words in now["described"], now


def sign_in_alice(ui, seeded):
    user = seeded["users"][0]
    assert ui.sign_in(user["username"], user["password"]).status == 302


@pytest.mark.parametrize("app_config", [{"REGISTRATION_ENABLED": True}])
def test_register_focuses_the_field_in_error_not_the_user_name(ui, seeded):
    ui.goto("/account/register")
    ui.page.get_by_label("User name").fill("carol")
    ui.page.get_by_label("Email address").fill("not-an-address")
    ui.page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    ui.page.get_by_label("Confirm password").fill(NEW_PASSWORD)
    assert ui.submit_and_catch_post().status == 400

    assert_focus_on_error(ui, "email", "Error:")
    assert ui.page.get_by_label("User name").input_value() == "carol"


def test_reset_focuses_the_confirmation_in_error(ui, seeded, mail):
    user = seeded["users"][0]
    ui.goto("/account/forgot-password")
    ui.page.get_by_label("User name or email").fill(user["username"])
    ui.submit_and_catch_post()
    ui.goto(mail.link(mail.wait_for(to=user["email"])))
    ui.page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    ui.page.get_by_label("Confirm new password").fill(NEW_PASSWORD + "x")
    assert ui.submit_and_catch_post().status == 400

    assert_focus_on_error(ui, "confirm_password", "does not match")


def test_password_page_focuses_the_wrong_current_password(ui, seeded):
    sign_in_alice(ui, seeded)
    ui.goto("/account/password")
    ui.page.get_by_label("Current password").fill("not-my-password-at-all")
    ui.page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    ui.page.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    assert ui.submit_and_catch_post().status == 400

    assert_focus_on_error(ui, "current_password", "Error:")


def test_email_page_focuses_the_wrong_current_password_and_keeps_the_address(ui, seeded):
    sign_in_alice(ui, seeded)
    ui.goto("/account/email")
    ui.page.get_by_label("New email address").fill("alice.new@example.com")
    ui.page.get_by_label("Current password").fill("not-my-password-at-all")
    assert ui.submit_and_catch_post("main form:has(input[name=change-email]) button").status == 400

    assert_focus_on_error(ui, "change-current_password", "Error:")
    assert ui.page.get_by_label("New email address").input_value() == "alice.new@example.com"


# --- at 320 px (WCAG 1.4.10) a long client or scope name wraps, the page does not scroll sideways ---

LONG_NAMES = {
    "api_scopes": [{"name": "https://api.example.com/scopes/orders.read-write-all",
                    "display_name": "Lesen-und-Schreiben-aller-Bestellungen"}],
    "clients": [{"client_id": "kundenportal", "client_name": "Kundenbeziehungsmanagementportal",
                 "client_secrets": ["kundenportal-secret-0123456789"], "allowed_grant_types": ["authorization_code"],
                 "redirect_uris": ["http://127.0.0.1:8080/callback"], "require_consent": True, "require_pkce": False,
                 "allowed_scopes": ["openid", "profile", "https://api.example.com/scopes/orders.read-write-all"]}],
    "users": [],
}
LONG_AUTHORIZE = ("/connect/authorize?client_id=kundenportal&response_type=code&state=s1"
                  "&scope=openid%20profile%20https%3A%2F%2Fapi.example.com%2Fscopes%2Forders.read-write-all"
                  "&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback")


def test_a_long_client_and_scope_name_fit_320_px(ui, seeded, app):
    import json

    from identity.services.seed import apply_seed, load_seed

    with app.app_context():
        apply_seed(load_seed(json.dumps(LONG_NAMES)))
    ui.page.set_viewport_size({"width": 320, "height": 640})
    user = seeded["users"][0]

    ui.goto(LONG_AUTHORIZE)
    assert ui.page.get_by_text("Kundenbeziehungsmanagementportal").is_visible()
    ui.assert_fits_width()
    ui.fill_sign_in(user["username"], user["password"])
    ui.submit()
    assert ui.page.get_by_role("heading", name="Kundenbeziehungsmanagementportal wants to access your account").is_visible()
    ui.assert_fits_width()


# --- a text field's edge, the only thing that shows it is a field, has 3:1 contrast (WCAG 1.4.11) ---

_EDGE = """() => {
  const input = document.querySelector('#password');  // not the autofocused one: focus colours the border
  let el = input.parentElement, bg = 'rgba(0, 0, 0, 0)';
  while (el && (bg = getComputedStyle(el).backgroundColor) === 'rgba(0, 0, 0, 0)') el = el.parentElement;
  return {border: getComputedStyle(input).borderTopColor, fill: getComputedStyle(input).backgroundColor, around: bg};
}"""


def _luminance(css: str) -> float:
    red, green, blue = (int(part) / 255 for part in re.findall(r"\d+", css)[:3])
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (red, green, blue)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_text_fields_border_stands_out_from_the_card(ui, seeded, scheme):
    ui.page.emulate_media(color_scheme=scheme)
    ui.goto("/account/login")

    colours = ui.page.evaluate(_EDGE)

    assert colours["fill"] == colours["around"], colours  # the border alone marks the field out
    ratio = contrast(colours["border"], colours["around"])
    assert ratio >= 3, f"{scheme}: the field's border has {ratio:.2f}:1 against the card {colours}"


# --- on a phone the nav shows short labels: each is a part of the link's name (WCAG 2.5.3) ---------

_NAV_LABELS = """() => [...document.querySelectorAll('.nav a')].map(a => {
  const short = a.querySelector('.nav__short');
  const shown = short && getComputedStyle(short).display !== 'none' ? short.innerText : a.innerText;
  const name = [...a.childNodes].filter(n => !(n.nodeType === 1 && n.getAttribute('aria-hidden') === 'true'))
    .map(n => n.textContent).join('');
  return {shown: shown.trim(), name: name.trim()};
})"""


def test_the_phones_short_nav_labels_are_in_the_links_names(ui, seeded):
    ui.page.set_viewport_size({"width": 375, "height": 740})
    sign_in_alice(ui, seeded)
    ui.goto("/diagnostics")

    labels = ui.page.evaluate(_NAV_LABELS)

    assert any(label["shown"] != label["name"] for label in labels), labels  # the short labels are on
    for label in labels:
        assert label["shown"].lower() in label["name"].lower(), \
            f"a voice user saying {label['shown']!r} does not reach the link named {label['name']!r}"
    ui.page.get_by_role("link", name="Access").click()  # as speech input finds it
    ui.page.wait_for_url(ui.url("/account/grants"))


# --- the claims table, wider than a phone, scrolls from the keyboard too (WCAG 2.1.1) -------------


def test_the_claims_tables_scroller_takes_the_keyboard_focus_at_320_px(ui, seeded):
    ui.page.set_viewport_size({"width": 320, "height": 640})
    sign_in_alice(ui, seeded)
    ui.goto("/diagnostics")
    wrap = ui.page.locator(".table-wrap")

    assert wrap.evaluate("el => el.scrollWidth > el.clientWidth"), "the table fits: nothing to scroll"
    assert wrap.get_attribute("tabindex") == "0", "a scroller only a mouse or a finger can move (Safari gives it no focus)"
    assert ui.page.get_by_role("region", name="Claims about you").count() == 1
    wrap.focus()
    for _ in range(3):
        ui.page.keyboard.press("ArrowRight")
    ui.page.wait_for_timeout(300)  # smooth scrolling
    assert wrap.evaluate("el => el.scrollLeft") > 0
