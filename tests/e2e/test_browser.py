"""The whole journey in a real browser (Debian's Chromium driven by Playwright) against the
running web service, worker and SMTP server, with an accessibility check (axe-core) and a
screenshot of every page under artifacts/screens/."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright, expect

from devstack.mailsink import MailSink
from shared.settings import Settings
from shared.tokens import Purpose, Tokens
from shared.validation import RESET_LINK_DEAD
from tests.support import CHROMIUM, ROOT, Stack, age_authentications, needs_chromium, wait_for

SCREENS = ROOT / "artifacts" / "screens"
PASSWORD = "correct horse battery"
NEW_PASSWORD = "new staple battery horse"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("clean_db"),
    needs_chromium,
]


@pytest.fixture
async def stack(
    settings: Settings, queue: Any, smtp: MailSink, tmp_path: Path
) -> AsyncIterator[Stack]:
    running = Stack(settings, tmp_path)
    try:
        await wait_for(running.up, timeout=60, every=0.2)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def screens() -> Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    return SCREENS


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=stack.base_url, bypass_csp=True)
    tab = await context.new_page()
    yield tab
    await context.close()


class Checker:
    """Screenshot + axe-core accessibility check of each page a step lands on."""

    def __init__(self, prefix: str, screens: Path) -> None:
        self.prefix, self.screens, self.count = prefix, screens, 0
        self.axe = Axe()

    async def __call__(self, page: Page, name: str) -> None:
        self.count += 1
        await page.screenshot(
            path=str(self.screens / f"{self.prefix}-{self.count:02d}-{name}.png"), full_page=True
        )
        results = await self.axe.run(page)
        serious = [
            f"{violation['id']}: {violation['help']} at "
            + ", ".join(str(node["target"]) for node in violation["nodes"])
            for violation in results.response["violations"]
            if violation["impact"] in ("serious", "critical")
        ]
        assert serious == [], f"{name}: {serious}"


def link_in(smtp: MailSink, to: str, subject: str, path: str) -> str:
    for message in reversed(smtp.messages):
        if message.envelope_to == [to] and message.message["Subject"] == subject:
            (link,) = [
                link for link in message.links if path in link and not link.endswith("/resend")
            ]
            return link
    raise AssertionError(f"no {subject!r} email to {to}")


async def flash(page: Page, category: str) -> str:
    alert = page.locator(f".alert-{category}")
    await expect(alert).to_be_visible()
    return (await alert.locator("span").inner_text()).strip()


async def test_the_whole_journey(page: Page, stack: Stack, smtp: MailSink, screens: Path) -> None:
    check = Checker("journey", screens)
    await page.goto("/")
    await check(page, "home")

    # Register.
    await page.get_by_role("link", name="Sign up", exact=True).click()
    await check(page, "register")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Email").fill("alice@example.com")
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Repeat the password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/login$"))
    assert (await flash(page, "success")).startswith("Your account has been created!")
    await check(page, "registered")

    # Open the confirmation email from the SMTP server and follow its link.
    await wait_for(
        lambda: any(m.message["Subject"] == "Confirm your email address" for m in smtp.messages),
        timeout=30,
    )
    confirmation = next(
        m for m in smtp.messages if m.message["Subject"] == "Confirm your email address"
    )
    await page.set_content(confirmation.part("text/html"))  # the email, as a client shows it
    await expect(page.get_by_role("link", name="Confirm my address")).to_be_visible()
    await check(page, "email-confirm")
    await page.goto(link_in(smtp, "alice@example.com", "Confirm your email address", "/confirm/"))
    await check(page, "confirm")
    await page.get_by_role("button", name="Confirm my address").click()
    assert await flash(page, "success") == "Thank you! Your email address is confirmed."

    # Log in.
    await page.get_by_label("Email").fill("alice@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    await check(page, "logged-in")

    # Write a Text and see it on the home page.
    await page.get_by_role("link", name="New text").click()
    await check(page, "new-text")
    await page.get_by_label("Title").fill("Hello from a browser")
    await page.get_by_label("Content").fill("Written with <real> keys & clicks.")
    await page.get_by_role("button", name="Post").click()
    await expect(page.get_by_role("heading", name="Hello from a browser")).to_be_visible()
    await expect(page.get_by_text("Written with <real> keys & clicks.")).to_be_visible()
    await check(page, "text-published")

    await page.get_by_role("link", name="Account", exact=True).click()
    await expect(page.get_by_text("Confirmed", exact=True)).to_be_visible()
    await check(page, "account")

    # Where this account is signed in: this browser, in words.
    await page.get_by_role("link", name="Where you are signed in").click()
    await expect(page.get_by_text("this device")).to_be_visible()
    await expect(page.get_by_text("Chrome on Linux")).to_be_visible()
    await check(page, "sessions")
    await page.get_by_role("link", name="Back to your account").click()
    await page.get_by_role("link", name="Account activity").click()
    await expect(page.get_by_text("Signed in from HeadlessChrome on Linux")).to_be_visible()
    await check(page, "activity")
    await page.get_by_role("link", name="Back to your account").click()
    await page.get_by_role("link", name="Change your email address").click()
    await expect(page.get_by_label("New email address")).to_be_visible()
    await check(page, "change-email")
    await page.get_by_role("link", name="Account", exact=True).click()
    await page.get_by_role("link", name="Two-factor sign-in").click()
    await expect(page.get_by_alt_text("QR code of the key below")).to_be_visible()
    await check(page, "two-factor")
    await page.get_by_role("link", name="Account", exact=True).click()
    await page.get_by_role("link", name="Delete your account").click()
    await expect(page.get_by_text("every text you wrote")).to_be_visible()
    await check(page, "delete-account")

    # Log out.
    await page.get_by_role("button", name="Sign out", exact=True).click()
    assert await flash(page, "info") == "You are signed out."
    await expect(page.get_by_role("link", name="Sign in", exact=True)).to_be_visible()

    # Forgot password: request, follow the emailed link, set a new password.
    await page.get_by_role("link", name="Sign in", exact=True).click()
    await page.get_by_role("link", name="Forgot your password?").click()
    await check(page, "reset-request")
    await page.get_by_label("Email").fill("alice@example.com")
    await page.get_by_role("button", name="Send me a reset link").click()
    assert (await flash(page, "info")).startswith("If an account exists for that email")
    await wait_for(
        lambda: any(m.message["Subject"] == "Reset your password" for m in smtp.messages),
        timeout=30,
    )
    await page.goto(link_in(smtp, "alice@example.com", "Reset your password", "/reset-password/"))
    await check(page, "reset-form")
    await page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Set my new password").click()
    assert await flash(page, "success") == ("Your password has been updated! You can now sign in.")

    # The old password fails, the new one works.
    await page.get_by_label("Email").fill("alice@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    assert await flash(page, "danger") == (
        "Sign-in failed. Please check your email address and password. Signed up recently? Confirm "
        "your address first with the link we emailed you."
    )
    await check(page, "login-failed")
    await page.get_by_label("Password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()


async def test_error_paths(page: Page, stack: Stack, smtp: MailSink, screens: Path) -> None:
    check = Checker("errors", screens)

    async def register(username: str, email: str, password: str, confirm: str) -> None:
        await page.goto("/register")
        await page.get_by_label("Username").fill(username)
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password", exact=True).fill(password)
        await page.get_by_label("Repeat the password").fill(confirm)
        await page.get_by_role("button", name="Sign up", exact=True).click()

    await register("alice", "alice@example.com", PASSWORD, PASSWORD)
    # The flash can be dismissed.
    await page.get_by_role("button", name="Dismiss this message").click()
    await expect(page.locator(".alert")).to_have_count(0)

    # A taken username (in another case): the message sits under the field, tied to it.
    await register("ALICE", "other@example.com", PASSWORD, PASSWORD)
    username = page.get_by_label("Username")
    await expect(username).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#username-error")).to_have_text("That username is taken.")
    await expect(username).to_have_value("ALICE")  # input kept
    await check(page, "username-taken")

    # Mismatched passwords.
    await register("bob", "bob@example.com", PASSWORD, "something else entirely")
    await expect(page.locator("#confirm_password-error")).to_have_text(
        "The two passwords are not the same."
    )
    await expect(page.get_by_label("Password", exact=True)).to_have_value("")  # never echoed
    await check(page, "passwords-differ")

    # An expired reset link.
    secret = stack.settings.SECRET_KEY.get_secret_value()
    old = Tokens(secret, clock=lambda: time.time() - 3600)
    await page.goto(f"/reset-password/{old.dumps(Purpose.RESET_PASSWORD, {'uid': 1, 'gen': 1})}")
    await expect(page).to_have_url(re.compile(r"/reset-password$"))
    assert await flash(page, "warning") == RESET_LINK_DEAD
    await check(page, "expired-link")

    # An unknown page.
    response = await page.goto("/no/such/page")
    assert response is not None and response.status == 404
    await check(page, "not-found")


async def test_signing_in_with_a_code_from_the_email(
    browser: Browser, stack: Stack, smtp: MailSink, screens: Path
) -> None:
    """Sign up without a password, finish with the emailed code; later, sign in with the
    email's link in the browser that asked (at once) and in another one (it asks for the
    code): in Chromium, as a person would."""
    check = Checker("code", screens)
    context = await browser.new_context(base_url=stack.base_url, bypass_csp=True)
    page = await context.new_page()
    await page.goto("/register")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Email").fill("alice@example.com")
    await page.get_by_role("button", name="Sign up", exact=True).click()
    await expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    await check(page, "enter-code")
    await wait_for(lambda: len(smtp.messages) == 1, timeout=30)
    code = re.search(r"(\d{4} \d{4})", smtp.messages[-1].message["Subject"])
    assert code, smtp.messages[-1].message["Subject"]
    await page.get_by_label("Code from the email").fill(code.group(1))
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Sign out", exact=True).click()

    # Later: "email me a sign-in code" from the sign-in page, then the link, here.
    await page.goto("/login")
    await page.get_by_role("link", name="Email me a sign-in code instead").click()
    await check(page, "ask-for-code")
    await page.get_by_label("Email").fill("alice@example.com")
    await page.get_by_role("button", name="Email me a code").click()
    await expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    await wait_for(lambda: len(smtp.messages) == 2, timeout=30)
    subject = smtp.messages[-1].message["Subject"]
    link = link_in(smtp, "alice@example.com", subject, "/login/code/")
    # Opened in another browser (a phone's mail app, a forwarded email): it asks for the code.
    other = await browser.new_context(base_url=stack.base_url, bypass_csp=True)
    phone = await other.new_page()
    await phone.goto(link)
    await expect(phone.get_by_text("signs in at once only in the browser")).to_be_visible()
    await expect(phone.get_by_role("button", name="Sign out", exact=True)).to_have_count(0)
    await check(phone, "link-elsewhere")
    await other.close()
    # In the browser that asked, the link signs in.
    await page.goto(link)
    await expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    await page.goto("/account/sessions")
    await expect(page.get_by_text("with code by email").first).to_be_visible()
    await context.close()


async def test_form_attributes_mirror_the_server_rules(page: Page, stack: Stack) -> None:
    await page.goto("/register")
    username = page.get_by_label("Username")
    await expect(username).to_have_attribute("autocomplete", "username")
    await expect(username).to_have_attribute("maxlength", "25")
    await expect(username).to_have_attribute("required", "")
    await expect(page.get_by_label("Email")).to_have_attribute("autocomplete", "email")
    password = page.get_by_label("Password", exact=True)
    await expect(password).to_have_attribute("autocomplete", "new-password")
    await expect(password).to_have_attribute("maxlength", "128")
    await page.goto("/login")
    await expect(page.get_by_label("Password")).to_have_attribute(
        "autocomplete", "current-password"
    )


async def test_pages_fit_a_phone(browser: Browser, stack: Stack, screens: Path) -> None:
    context = await browser.new_context(
        base_url=stack.base_url, viewport={"width": 375, "height": 740}, is_mobile=True
    )
    page = await context.new_page()
    try:
        for path, name in (("/", "home"), ("/register", "register"), ("/login", "login")):
            await page.goto(path)
            await page.screenshot(path=str(screens / f"phone-{name}.png"), full_page=True)
            overflow = await page.evaluate(
                "document.scrollingElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"
    finally:
        await context.close()


async def age_sign_ins(settings: Settings) -> None:
    """Every sign-in of the running stack authenticated an hour ago (time travel)."""
    from shared.db import create_engine, create_sessionmaker

    engine = create_engine(settings.DATABASE_URL, application_name="tests", pool_size=1)
    try:
        await age_authentications(create_sessionmaker(engine))
    finally:
        await engine.dispose()


async def test_passkeys_with_a_virtual_authenticator(
    browser: Browser,
    settings: Settings,
    queue: Any,
    smtp: MailSink,
    tmp_path: Path,
    screens: Path,
) -> None:
    """Register a passkey, sign out, sign in with it (no username typed), remove it: in
    Chromium with the DevTools protocol's virtual authenticator. A WebAuthn relying party
    must be a domain, so this stack is served as localhost."""
    from shared.db import create_engine, create_sessionmaker

    running = Stack(settings, tmp_path, host="localhost")
    try:
        await wait_for(running.up, timeout=60, every=0.2)
        context = await browser.new_context(base_url=running.base_url, bypass_csp=True)
        page = await context.new_page()
        cdp = await context.new_cdp_session(page)
        await cdp.send("WebAuthn.enable")
        authenticator = await cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {"options": {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                         "hasUserVerification": True, "isUserVerified": True}},
        )  # fmt: skip
        check = Checker("passkeys", screens)

        await page.goto("/register")
        await page.get_by_label("Username").fill("alice")
        await page.get_by_label("Email").fill("alice@example.com")
        await page.get_by_label("Password", exact=True).fill(PASSWORD)
        await page.get_by_label("Repeat the password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign up", exact=True).click()
        await wait_for(lambda: len(smtp.messages) == 1, timeout=30)
        await page.goto(
            link_in(smtp, "alice@example.com", "Confirm your email address", "/confirm/")
        )
        await page.get_by_role("button", name="Confirm my address").click()
        await page.get_by_label("Email").fill("alice@example.com")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()

        await page.goto("/account/passkeys")
        # Adding a way in needs a recent authentication: hours later (a stolen session, say)
        # the page sends the person to confirm it is them, before the authenticator is asked.
        await age_sign_ins(settings)
        await page.get_by_role("button", name="Add a passkey").click()
        await expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
        await check(page, "reauthenticate")
        stored = await cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]}
        )
        assert stored["credentials"] == []
        await page.get_by_label("Your password").fill("not my password")
        await page.get_by_role("button", name="Confirm").first.click()
        await expect(page.get_by_text("Your password is not correct.")).to_be_visible()
        await page.get_by_label("Your password").fill(PASSWORD)
        await page.get_by_role("button", name="Confirm").first.click()
        await expect(page.get_by_role("heading", name="Passkeys")).to_be_visible()
        await page.get_by_label("Name for a new passkey").fill("Laptop")
        await page.get_by_role("button", name="Add a passkey").click()
        await expect(page.get_by_role("cell", name="Laptop", exact=True)).to_be_visible()
        await check(page, "registered")
        stored = await cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]}
        )
        assert len(stored["credentials"]) == 1 and stored["credentials"][0]["isResidentCredential"]

        await page.get_by_role("button", name="Sign out", exact=True).click()
        await page.goto("/login")
        await page.get_by_role("button", name="Sign in with a passkey").click()
        await expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
        await check(page, "signed-in")

        # With two-factor sign-in on, the passkey also serves as the second step.
        await page.goto("/account/two-factor")
        secret = await page.locator("#secret").input_value()
        await page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
        await page.get_by_role("button", name="Turn on").click()
        await expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
        await check(page, "recovery-codes")
        recovery = await page.locator("li code").all_inner_texts()
        await page.get_by_role("button", name="Sign out", exact=True).click()
        await page.goto("/login")
        await page.get_by_label("Email").fill("alice@example.com")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()
        await check(page, "second-step")
        await page.get_by_role("button", name="Use a passkey instead").click()
        await expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()

        # A passkey assertion without user verification (flags: present, not verified) is
        # one factor: on this two-factor account the second step follows it. Chromium's
        # virtual authenticator answers with the UV bit cleared (isBadUV), signed as such.
        other = await browser.new_context(base_url=running.base_url, bypass_csp=True)
        tab = await other.new_page()
        other_cdp = await other.new_cdp_session(tab)
        await other_cdp.send("WebAuthn.enable")
        key = await other_cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {"options": {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                         "hasUserVerification": True, "isUserVerified": True}},
        )  # fmt: skip
        await tab.goto("/login")
        await tab.get_by_label("Email").fill("alice@example.com")
        await tab.get_by_label("Password").fill(PASSWORD)
        await tab.get_by_role("button", name="Sign in", exact=True).click()
        await tab.get_by_label("Code").fill(recovery[0])
        await tab.get_by_role("button", name="Verify").click()
        await tab.goto("/account/passkeys")
        await tab.get_by_label("Name for a new passkey").fill("Phone")
        await tab.get_by_role("button", name="Add a passkey").click()
        await expect(tab.get_by_role("cell", name="Phone", exact=True)).to_be_visible()
        await tab.get_by_role("button", name="Sign out", exact=True).click()
        await other_cdp.send(
            "WebAuthn.setResponseOverrideBits",
            {"authenticatorId": key["authenticatorId"], "isBadUV": True},
        )
        await tab.goto("/login")
        await tab.get_by_role("button", name="Sign in with a passkey").click()
        await expect(tab.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()
        await expect(tab.get_by_role("button", name="Sign out", exact=True)).to_have_count(0)
        await tab.get_by_label("Code").fill(recovery[1])
        await tab.get_by_label("Remember this browser").check()
        await tab.get_by_role("button", name="Verify").click()
        await expect(tab.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
        # Remembered: the same one-factor passkey now signs in here without the second step.
        await tab.get_by_role("button", name="Sign out", exact=True).click()
        await tab.goto("/login")
        await tab.get_by_role("button", name="Sign in with a passkey").click()
        await expect(tab.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
        await tab.goto("/account/sessions")
        await expect(tab.get_by_text("Browsers that skip the second step")).to_be_visible()
        await other.close()

        # Later again: the passkey itself confirms it is you, and the page comes back.
        await age_sign_ins(settings)
        await page.goto("/account/two-factor")
        await expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
        await page.get_by_role("button", name="Use a passkey").click()
        await expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()

        await page.goto("/account/passkeys")
        await expect(page.get_by_role("cell", name="never")).to_have_count(0)  # used just now
        for name in ("Laptop", "Phone"):
            await page.get_by_role("button", name=f"Remove {name}").click()
            assert await flash(page, "info") == "The passkey has been removed."
        await expect(page.get_by_text("No passkeys yet.")).to_be_visible()
        await context.close()
    finally:
        running.stop()
    engine = create_engine(settings.DATABASE_URL, application_name="tests", pool_size=1)
    try:
        from sqlalchemy import func, select

        from shared.models import Passkey

        async with create_sessionmaker(engine)() as session:
            assert await session.scalar(select(func.count()).select_from(Passkey)) == 0
    finally:
        await engine.dispose()
