"""oidc-provider (npm, a certified OpenID Provider) on loopback as the outside identity
provider of the federation tests, and a person at its pages: its development interactions
(a login form that takes any password, then a consent form), driven over HTTP like a
browser (cookies, forms), until it sends the browser back to this service."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from devstack.servers import free_port
from tests.e2e.identity_peers import node_peers

SECRET = "op-client-secret-0123456789-abcdefghij"
FORM = re.compile(r"<form[^>]*action=\"([^\"]+)\"[^>]*>(.*?)</form>", re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"\s*/?>')


@dataclass
class OutsideProvider:
    issuer: str
    client_id: str
    client_secret: str

    def config(self, provider_id: str = "op", **extra: Any) -> dict[str, Any]:
        """Its FEDERATION_PROVIDERS entry."""
        return {
            "id": provider_id,
            "name": "Test IdP",
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            **extra,
        }


@asynccontextmanager
async def outside_provider(
    redirect_uris: list[str], client_id: str = "rp"
) -> AsyncIterator[OutsideProvider]:
    peers = node_peers()
    port = free_port()
    clients = [{"client_id": client_id, "client_secret": SECRET, "redirect_uris": redirect_uris}]
    process = await asyncio.create_subprocess_exec(
        "node", str(peers / "oidc_provider_op.mjs"), str(port), json.dumps(clients),
        cwd=peers, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        yield OutsideProvider(json.loads(line)["issuer"], client_id, SECRET)
    finally:
        process.kill()
        await process.wait()


async def sign_in_there(url: str, login: str, back_to: str, *, consent: bool = True) -> str:
    """Walk the provider's pages from ``url`` as ``login`` until it sends the browser to
    ``back_to``; that URL (with code, state and iss)."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as there:
        for _ in range(12):
            if url.startswith(back_to):
                return url
            answer = await there.get(url)
            if answer.status_code in (302, 303):
                url = urljoin(url, answer.headers["location"])
                continue
            assert answer.status_code == 200, (answer.status_code, answer.text[:300])
            found = FORM.search(answer.text)
            assert found is not None, answer.text[:300]
            action, body = found.groups()
            fields = {k: html.unescape(v) for k, v in HIDDEN.findall(body)}
            if 'name="login"' in body:
                fields.update(login=login, password="any password")
            elif not consent:  # the consent form: abort instead of continuing
                abort = re.search(r'href="([^"]*/abort)"', answer.text)
                assert abort is not None, answer.text[-800:]
                url = urljoin(url, html.unescape(abort.group(1)))
                continue
            posted = await there.post(urljoin(url, html.unescape(action)), data=fields)
            assert posted.status_code in (302, 303), (posted.status_code, posted.text[:300])
            url = urljoin(url, posted.headers["location"])
    raise AssertionError("the provider never sent the browser back")
