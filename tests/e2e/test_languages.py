"""The journey in every shipped language, and in the pseudo-locale, in real Chromium.

Each language's browser (its Accept-Language, its time zone) signs up through the form, gets
the confirmation email in its language, confirms, signs in and opens every page at desktop
width (1280 px) and phone width (390 px). On every page: ``<html lang dir>`` say the
language, nothing is wider than the window, a screenshot lands in
artifacts/screens/languages/. In Arabic, axe-core checks every page (right to left). In the
pseudo-locale (scripts/messages.py: every catalog letter an accented look-alike) no plain
English word may be left: a string that skipped the catalogs fails the test.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright, expect

from devstack.mailsink import MailSink
from scripts.messages import PSEUDO, with_pseudo
from shared import i18n
from shared.settings import Settings
from tests.support import CHROMIUM, ROOT, Stack, needs_chromium, wait_for

SCREENS = ROOT / "artifacts" / "screens" / "languages"
PASSWORD = "correct horse battery"
LANGUAGES = [*i18n.SHIPPED, PSEUDO]
ZONES = {"de": "Europe/Berlin", "fr": "Europe/Paris", "es": "Europe/Madrid",
         "pl": "Europe/Warsaw", "ar": "Asia/Riyadh"}  # fmt: skip
PAGES = [
    "/", "/login", "/register", "/reset-password", "/login/code",
    "/account", "/account/preferences", "/account/sessions", "/account/apps",
    "/account/connected", "/account/activity", "/account/passkeys", "/account/two-factor",
    "/account/email", "/account/password", "/account/delete",
]  # fmt: skip
# Names, not words: the site's own (in the title), and the zone the pseudo-locale's browser is
# in, which a sentence names ("Times are shown in UTC").
DATA = ("Accounts", "UTC")
SIGNED_OUT = {"/login", "/register", "/reset-password", "/login/code"}
# What the pseudo-locale check reads: the visible text (data marked translate="no", dates
# and other CLDR values taken out) and the words only assistive technology or a hover shows.
WORDS_ON_PAGE = """() => {
  const body = document.body.cloneNode(true);
  body.querySelectorAll('[translate="no"], time, [data-cldr], script, style')
      .forEach((node) => node.remove());
  const attributes = [...document.querySelectorAll(
      'input[type=submit], [aria-label], [title], img[alt], [placeholder]')]
    .filter((node) => !node.closest('[translate="no"], time, [data-cldr]'))
    .map((node) => [node.value, node.getAttribute('aria-label'), node.title, node.alt,
                    node.getAttribute('placeholder')].filter(Boolean).join(' '));
  return [document.title, body.innerText, ...attributes].join('\\n');
}"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("clean_db"),
    needs_chromium,
]


@pytest.fixture(scope="module")
def locales(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped catalogs and the pseudo-locale's, for the stack's LOCALES_DIR."""
    return with_pseudo(tmp_path_factory.mktemp("locales"))


@pytest.fixture
async def stack(
    settings: Settings, queue: Any, smtp: MailSink, tmp_path: Path, locales: Path
) -> AsyncIterator[Stack]:
    running = Stack(settings, tmp_path, LANGUAGES=LANGUAGES, LOCALES_DIR=str(locales))
    try:
        await wait_for(running.up, timeout=60, every=0.2)
        yield running
    finally:
        running.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
        )  # fmt: skip
        yield chromium
        await chromium.close()


async def submit(page: Page) -> None:
    """The main form's submit button, whatever its words."""
    await page.locator("main form[method=post] [type=submit]").first.click()


async def confirmation_link(smtp: MailSink, to: str) -> tuple[str, str | None]:
    def arrived() -> bool:
        return any(message.envelope_to == [to] for message in smtp.messages)

    await wait_for(arrived, timeout=30, every=0.1)
    (message,) = [message for message in smtp.messages if message.envelope_to == [to]]
    (link,) = [link for link in message.links if "/confirm/" in link and "resend" not in link]
    return link, message.message["Content-Language"]


def english_left(text: str, *values: str) -> list[str]:
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, " ")
    return re.findall(r"(?<![\w/@.:-])[A-Za-z]{2,}(?![\w@])", text)


async def test_every_language_every_page_every_width(
    browser: Browser, stack: Stack, smtp: MailSink
) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    findings = Findings()
    for language in LANGUAGES:
        username = f"user{language.replace('-', '')}"
        email = f"{username}@example.com"
        context = await browser.new_context(
            base_url=stack.base_url,
            locale=language,
            timezone_id=ZONES.get(language, "UTC"),
            viewport={"width": 1280, "height": 900},
        )
        page = await context.new_page()

        # Sign up in this language (Accept-Language), confirm from the email, sign in.
        await page.goto("/")  # site.js stores the browser's time zone
        await page.goto("/register")
        await expect(page.locator("html")).to_have_attribute("lang", language)
        await page.fill("input[name=username]", username)
        await page.fill("input[name=email]", email)
        await page.fill("input[name=password]", PASSWORD)
        await page.fill("input[name=confirm_password]", PASSWORD)
        await submit(page)
        await expect(page).to_have_url(re.compile(r"/login$"))
        link, said = await confirmation_link(smtp, email)
        assert said == language, f"the confirmation email is in {said}, not {language}"
        await page.goto(link)
        await submit(page)
        await page.goto("/login")
        await page.fill("input[name=email]", email)
        await page.fill("input[name=password]", PASSWORD)
        await submit(page)
        await expect(page.locator("html")).to_have_attribute("lang", language)
        await expect(page).to_have_url(re.compile(r"/$"))

        # Signed in, the signed-out pages send one on: they are seen from a fresh browser.
        await findings.visit(page, language, [p for p in PAGES if p not in SIGNED_OUT],
                             username, email)  # fmt: skip
        if language not in (i18n.DEFAULT, PSEUDO):
            await page.goto("/account")
            zone = await page.locator("[data-cldr]").inner_text()
            assert zone.strip() != "UTC", f"{language}: the browser's zone was not kept"
        await context.close()
        signed_out = await browser.new_context(base_url=stack.base_url, locale=language)
        await findings.visit(await signed_out.new_page(), language, sorted(SIGNED_OUT))
        await signed_out.close()
    assert findings.too_wide == []
    assert findings.inaccessible == []
    assert findings.untranslated == {}, f"English left in the pseudo-locale: {findings}"


class Findings:
    """What the pages showed: too wide, axe's serious violations (Arabic), English left
    (the pseudo-locale)."""

    def __init__(self) -> None:
        self.axe = Axe()
        self.too_wide: list[str] = []
        self.inaccessible: list[str] = []
        self.untranslated: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return repr(self.untranslated)

    async def visit(self, page: Page, language: str, paths: list[str], *data: str) -> None:
        """Each of ``paths`` at desktop and phone width; ``data``: the values the pages may
        show as they are (the person's name and address)."""
        direction = i18n.direction(language)
        for width, height in ((1280, 900), (390, 844)):
            await page.set_viewport_size({"width": width, "height": height})
            for path in paths:
                await check_page(page, path, language, direction, width)
                if await page.evaluate("document.documentElement.scrollWidth") > width:
                    self.too_wide.append(f"{language} {path} at {width} px")
                if width == 1280 and language == "ar":
                    violations = await serious_violations(self.axe, page)
                    self.inaccessible += [f"{path}: {violation}" for violation in violations]
                if width == 1280 and language == PSEUDO:
                    words = await page.evaluate(WORDS_ON_PAGE)
                    if left := english_left(words, *data, *DATA):
                        self.untranslated[path] = left


async def check_page(page: Page, path: str, language: str, direction: str, width: int) -> None:
    response = await page.goto(path)
    assert response is not None and response.ok, f"{language} {path}: {response}"
    html = page.locator("html")
    await expect(html).to_have_attribute("lang", language)
    await expect(html).to_have_attribute("dir", direction)
    assert response.headers.get("content-language") == language
    name = path.strip("/").replace("/", "-") or "home"
    await page.screenshot(path=str(SCREENS / f"{language}-{name}-{width}.png"), full_page=True)


async def serious_violations(axe: Axe, page: Page) -> list[str]:
    results = await axe.run(page)
    return [
        f"{violation['id']}: {violation['help']}"
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


async def test_the_language_menu_changes_pages_and_emails(
    browser: Browser, stack: Stack, smtp: MailSink
) -> None:
    """A signed-out visitor picks German at the foot of the page: the pages follow (a
    cookie), and the account made next speaks German in its emails too."""
    context = await browser.new_context(base_url=stack.base_url, locale="en-US")
    page = await context.new_page()
    await page.goto("/register")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.select_option("#language-menu", "de")
    await page.locator("form.language-form [type=submit]").click()
    await expect(page).to_have_url(re.compile(r"/register$"))
    await expect(page.locator("html")).to_have_attribute("lang", "de")
    await page.fill("input[name=username]", "menu")
    await page.fill("input[name=email]", "menu@example.com")
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=confirm_password]", PASSWORD)
    await submit(page)
    _, said = await confirmation_link(smtp, "menu@example.com")
    assert said == "de"
    await context.close()
