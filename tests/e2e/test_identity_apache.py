"""An internal tool behind Apache with mod_auth_openidc (Debian's ``libapache2-mod-auth-openidc``,
a certified relying party), signing people in through this service, driven by real Chromium
with the pages' own Content-Security-Policy in force: sign in, the second factor, consent, the
protected page (which shows the claims Apache got), and sign-out through the provider's
``end_session_endpoint`` back to the tool."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright, expect

from shared.db import SessionMaker
from shared.services import two_factor
from shared.settings import Settings
from tests.e2e.identity_peers import PASSWORD, account
from tests.e2e.test_identity_provider import registered
from tests.support import CHROMIUM, Stack, committing_context, free_port, wait_for

APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("clean_db"),
    pytest.mark.skipif(
        not (MODULES / "mod_auth_openidc.so").exists() and not os.environ.get("CI"),
        reason="apache2 and libapache2-mod-auth-openidc are not installed (.ci/run installs them)",
    ),
]

CONFIG = """
ServerRoot {root}
PidFile {root}/httpd.pid
Listen 127.0.0.1:{port}
ServerName localhost:{port}
ErrorLog {root}/error.log
LogLevel warn auth_openidc:info
{user}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authn_core_module {modules}/mod_authn_core.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule authz_user_module {modules}/mod_authz_user.so
LoadModule mime_module {modules}/mod_mime.so
LoadModule include_module {modules}/mod_include.so
LoadModule auth_openidc_module {modules}/mod_auth_openidc.so
TypesConfig /etc/mime.types
DocumentRoot {root}/www
<Directory {root}/www>
  Options +Includes
  AddOutputFilter INCLUDES .shtml
  Require all granted
</Directory>

OIDCProviderMetadataURL {issuer}/.well-known/openid-configuration
OIDCClientID {client_id}
OIDCClientSecret {client_secret}
OIDCRedirectURI http://localhost:{port}/tool/redirect_uri
OIDCCryptoPassphrase {passphrase}
OIDCScope "openid email profile"
OIDCPKCEMethod S256
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCRemoteUserClaim email
OIDCDefaultLoggedOutURL http://localhost:{port}/signed-out.html
<Location /tool>
  AuthType openid-connect
  Require valid-user
</Location>
"""

TOOL_PAGE = """<!doctype html><title>Internal tool</title>
<h1>Internal tool</h1>
<p id="user"><!--#echo var="REMOTE_USER" --></p>
<p id="amr"><!--#echo var="OIDC_CLAIM_amr" --></p>
<p id="acr"><!--#echo var="OIDC_CLAIM_acr" --></p>
"""


@dataclass
class Apache:
    port: int
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/signed-out.html", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"apache2 exited: {self.log()}")
        return self.answers()

    def log(self) -> str:
        return "\n".join(
            path.read_text() for name in ("stdout.log", "error.log")
            if (path := self.root / name).exists()
        )  # fmt: skip


def start_apache(root: Path, port: int, **values: str) -> Apache:
    """Apache on ``port`` with its configuration, pages and logs under ``root``."""
    (root / "www" / "tool").mkdir(parents=True)
    (root / "www" / "tool" / "index.shtml").write_text(TOOL_PAGE)
    (root / "www" / "signed-out.html").write_text("<!doctype html><title>Bye</title><h1>Bye</h1>")
    # As root, Apache's workers run as www-data: they must be able to read the pages.
    user = "User www-data\nGroup www-data" if os.geteuid() == 0 else ""
    for path in (root, *root.parents):
        if path == Path("/") or os.geteuid() != 0:
            break
        path.chmod(path.stat().st_mode | 0o055)
    for path in (root / "www").rglob("*"):
        path.chmod(path.stat().st_mode | 0o044 | (0o011 if path.is_dir() else 0))
    (root / "www").chmod(0o755)
    config = root / "httpd.conf"
    config.write_text(CONFIG.format(root=root, port=port, modules=MODULES, user=user, **values))
    process = subprocess.Popen(
        [APACHE, "-f", str(config), "-DFOREGROUND"],
        stdout=(root / "stdout.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    return Apache(port, root, process)


async def test_an_apache_protected_tool_signs_in_through_this_service(
    settings: Settings,
    engine: Any,
    sessionmaker: SessionMaker,
    queue: Any,
    tmp_path: Path,
) -> None:
    ctx = committing_context(settings, engine, sessionmaker, queue)
    user_id = await account(sessionmaker)
    enrolment = await two_factor.begin_enrolment(ctx, user_id)
    assert enrolment is not None
    import pyotp

    turned_on = await two_factor.confirm_enrolment(
        ctx, user_id, pyotp.TOTP(enrolment.secret).now(), PASSWORD
    )
    recovery_code = turned_on.recovery_codes[0]

    apache_port = free_port()
    tool = f"http://localhost:{apache_port}"
    stack = Stack(settings, tmp_path)  # at 127.0.0.1: its cookies are not the tool's
    client_id, secret = registered(
        settings, "--name", "Internal tool", "--redirect-uri", f"{tool}/tool/redirect_uri",
        "--post-logout-redirect-uri", f"{tool}/signed-out.html",
    )  # fmt: skip
    assert secret is not None
    apache = None
    try:
        await wait_for(stack.up, timeout=60, every=0.2)
        apache = start_apache(
            tmp_path / "apache", apache_port, issuer=stack.base_url, client_id=client_id,
            client_secret=secret, passphrase="tests-only-passphrase-0123456789",
        )  # fmt: skip
        await wait_for(apache.up, timeout=30, every=0.2)
        async for page in chromium_page():
            await page.goto(f"{tool}/tool/index.shtml")
            # The provider's sign-in page, then its second step.
            await page.get_by_label("Email").fill("alice@example.com")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in", exact=True).click()
            await expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()
            await page.get_by_label("Code").fill(recovery_code)
            await page.get_by_role("button", name="Verify").click()
            # Consent, then the tool.
            await expect(
                page.get_by_role("heading", name="Sign in to Internal tool")
            ).to_be_visible()
            await page.get_by_role("button", name="Allow").click()
            await expect(page.get_by_role("heading", name="Internal tool")).to_be_visible()
            assert await page.locator("#user").inner_text() == "alice@example.com"
            assert "mfa" in await page.locator("#amr").inner_text()
            assert (await page.locator("#acr").inner_text()).endswith("multi-factor")
            # Sign out through the provider, back to the tool's signed-out page.
            await page.goto(f"{tool}/tool/redirect_uri?logout={tool}/signed-out.html")
            await expect(page.get_by_role("heading", name="Bye")).to_be_visible()
            await page.goto(f"{stack.base_url}/account")
            await expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
            # Again: the consent is remembered, so the second step's form ends, through
            # redirects, at the tool (the sign-in pages' form-action must allow that).
            await page.goto(f"{tool}/tool/index.shtml")
            await page.get_by_label("Email").fill("alice@example.com")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in", exact=True).click()
            await page.get_by_label("Code").fill(turned_on.recovery_codes[1])
            await page.get_by_role("button", name="Verify").click()
            await expect(page.get_by_role("heading", name="Internal tool")).to_be_visible()
    except BaseException:
        if apache is not None:
            print(apache.log())
        raise
    finally:
        if apache is not None:
            apache.process.terminate()
            apache.process.wait(10)
        stack.stop()


async def chromium_page() -> AsyncIterator[Any]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            context = await browser.new_context()  # the pages' CSP applies
            yield await context.new_page()
        finally:
            await browser.close()
