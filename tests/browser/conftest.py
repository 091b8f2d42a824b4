"""Real-browser fixtures: one headless Chromium per test session, a fresh context (no cookies)
per test, the console watched for CSP violations, and a screenshot of every open page when a
test fails (saved under the test's tmp_path and named in the failure message).

Chromium is Debian's (`apt-get install chromium chromium-driver`, as `.ci/run` does), driven
by Python playwright; `playwright install` is never needed. Without /usr/bin/chromium the
tests skip, except under CI (`CI` set), where a missing browser is a failure.

This file stands alone (it imports nothing from the tests), so test_screenshots.py can copy it
into a scratch project to prove the screenshot hook works.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PRODUCT_NAME = "Portcullis Identity"
TIMEOUT_MS = 10_000
CSP_MARK = "Content Security Policy"
#: the demo spa client's authorization request (code + PKCE): `ui.sign_in(..., path=SPA_AUTHORIZE)`
#: signs in on the page it leads to
SPA_AUTHORIZE = ("/connect/authorize?client_id=spa&response_type=code&scope=openid&state=s1"
                 "&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback"
                 "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")

# Computed styles of bare elements in a page without any stylesheet: a styled page differs.
_DEFAULT_STYLE_PROBE = """() => {
  const pick = (el, props) => Object.fromEntries(props.map(p => [p, getComputedStyle(el)[p]]));
  const input = document.querySelector('input'), button = document.querySelector('button');
  return {
    body: pick(document.body, ['marginTop', 'fontFamily', 'backgroundColor']),
    input: input && pick(input, ['paddingTop', 'borderTopLeftRadius', 'minHeight']),
    button: button && pick(button, ['backgroundColor', 'paddingTop', 'borderTopLeftRadius']),
  };
}"""


# --- the browser ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Console:
    """What the pages printed: console messages and uncaught script errors."""

    def __init__(self):
        self.messages: list[str] = []
        self.page_errors: list[str] = []
        self.csp_violations_expected = False

    def csp_violations(self) -> list[str]:
        return [m for m in self.messages if CSP_MARK in m]

    def expect_csp_violations(self) -> None:
        """For a test that provokes them on purpose (framing the login page)."""
        self.csp_violations_expected = True


@pytest.fixture
def console():
    return Console()


@pytest.fixture
def context(browser, console):
    """A fresh browser profile: no cookies, desktop viewport, short timeouts."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, ignore_https_errors=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.set_default_navigation_timeout(TIMEOUT_MS)
    ctx.on("page", lambda new_page: _watch(new_page, console))
    yield ctx
    ctx.close()


def _watch(page, console: Console) -> None:
    page.on("console", lambda message: console.messages.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.page_errors.append(str(error)))


@pytest.fixture
def page(context, console, tmp_path):
    """A page whose console is watched; unexpected CSP violations fail the test at teardown."""
    tab = context.new_page()
    yield tab
    if not console.csp_violations_expected:
        violations = console.csp_violations()
        assert not violations, "Content Security Policy violations in the console:\n" + "\n".join(violations)
    assert not console.page_errors, "uncaught script errors:\n" + "\n".join(console.page_errors)


# --- a screenshot of every open page when a test fails ----------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or report.when not in ("setup", "call"):
        return
    context, tmp_path = item.funcargs.get("context"), item.funcargs.get("tmp_path")
    if context is None or tmp_path is None:
        return
    lines, shots = [], []
    for index, tab in enumerate(context.pages):
        if tab.is_closed():
            continue
        path = Path(tmp_path) / f"failure-{report.when}-page{index}.png"
        try:
            tab.screenshot(path=str(path), full_page=True, timeout=5_000)
            (path.with_suffix(".html")).write_text(tab.content(), encoding="utf-8")
            lines.append(f"{path}  (at {tab.url}; HTML beside it)")
            shots.append(str(path))
        except Exception as err:  # a crashed page must not hide the test's own failure
            lines.append(f"(no screenshot of {tab.url}: {type(err).__name__}: {err})")
    if not lines:
        return
    text = "\n".join(lines)
    crash = getattr(report.longrepr, "reprcrash", None)
    if shots and crash is not None:
        try:  # the one-line summary (-ra) names it too
            crash.message = f"{crash.message} [screenshot: {shots[-1]}]"
        except AttributeError:
            pass
    if hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection("Screenshot of the browser at the failure", text)
    else:
        report.longrepr = f"{report.longrepr}\n\nScreenshot of the browser at the failure:\n{text}"


# --- page actions -------------------------------------------------------------------------


def _form_post(response) -> bool:
    """A form's POST (a navigation), not a script's fetch."""
    return response.request.method == "POST" and response.request.is_navigation_request()


class PageActions:
    """Drive the server's pages the way a person does: fill the fields, press the buttons."""

    def __init__(self, page, base_url: str, console: Console):
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.console = console

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def goto(self, path: str):
        """Open a page; return the response of the main document."""
        return self.page.goto(self.url(path))

    def submit(self, button: str = "main button[type=submit]"):
        """Press a submit button; return the response of the document it leads to (after redirects)."""
        with self.page.expect_navigation() as navigation:
            self.page.locator(button).first.click()
        return navigation.value

    def submit_and_catch_post(self, button: str = "main button[type=submit]", wait_for_page: bool = True):
        """Press a submit button; return the response to the form's POST itself (before any redirect;
        not a script's fetch, such as the strength meter's), once the page it leads to has loaded. Pass wait_for_page=False when the post ends at a
        client's address, and wait for that URL instead (see test_authorize.py)."""
        if not wait_for_page:
            with self.page.expect_response(_form_post) as posted:
                self.page.locator(button).first.click()
            return posted.value
        with self.page.expect_navigation(), \
                self.page.expect_response(_form_post) as posted:
            self.page.locator(button).first.click()
        return posted.value

    def fill_sign_in(self, username: str, password: str, remember: bool = False) -> None:
        self.page.get_by_label("User name or email").fill(username)
        self.page.get_by_label("Password", exact=True).fill(password)
        if remember:
            self.page.get_by_label("Keep me signed in").check()

    def sign_in(self, username: str, password: str, remember: bool = False, path: str | None = "/account/login"):
        """Sign in on the login page (open it first unless `path` is None); return the POST's response."""
        if path is not None:
            self.goto(path)
        self.fill_sign_in(username, password, remember)
        return self.submit_and_catch_post()

    def sign_out(self):
        """Press "Sign out" in the top bar; return the POST's response."""
        return self.submit_and_catch_post("form.nav__signout button")

    def signed_in_as(self) -> str | None:
        """The name in the top bar, or None when nobody is signed in."""
        name = self.page.locator(".nav__user")
        return name.inner_text().replace("Signed in as", "").strip() if name.count() else None

    def alert_text(self) -> str:
        return " ".join(self.page.locator(".alert").all_inner_texts())

    # -- does the page look finished? --------------------------------------------------------
    def assert_looks_finished(self) -> None:
        """The stylesheet applied (computed styles differ from an unstyled page), the product
        name visible, no CSP violation so far, and nothing wider than a phone's screen."""
        page = self.page
        assert page.evaluate("() => [...document.styleSheets].some(s => (s.href || '').endsWith('/site.css') && s.cssRules.length > 0)"), \
            f"site.css is not loaded on {page.url}"
        styled = page.evaluate(_DEFAULT_STYLE_PROBE)
        bare = _bare_styles(page)
        assert styled["body"] != bare["body"], f"the page body looks unstyled on {page.url}: {styled['body']}"
        if styled["input"]:
            assert styled["input"] != bare["input"], f"form fields look unstyled on {page.url}: {styled['input']}"
        if styled["button"]:
            assert styled["button"] != bare["button"], f"buttons look unstyled on {page.url}: {styled['button']}"
        brand = page.get_by_text(PRODUCT_NAME).first
        assert brand.is_visible(), f"the product name is not visible on {page.url}"
        assert PRODUCT_NAME in page.title(), f"the title {page.title()!r} lacks the product name"
        assert not self.console.csp_violations(), "\n".join(self.console.csp_violations())

    def assert_fits_width(self) -> None:
        """No horizontal scrolling: every part of the page fits the viewport."""
        overflow = self.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{self.page.url} is {overflow}px wider than the viewport"


def _bare_styles(page) -> dict:
    """Computed styles of the same elements in an unstyled document (cached per browser context)."""
    cache = page.context.__dict__.setdefault("_bare_styles", {})
    if not cache:
        scratch = page.context.new_page()
        try:
            scratch.set_content("<!doctype html><html><body><form><input><button>x</button></form></body></html>")
            cache.update(scratch.evaluate(_DEFAULT_STYLE_PROBE))
        finally:
            scratch.close()
    return cache


@pytest.fixture
def ui(page, live_server, console):
    """Page actions against the live server (fresh database per test)."""
    return PageActions(page, live_server.url, console)
