"""A daemon work folder with the HTTP intake on (a bearer token, kie's webhook key), and the
requests a vendor or a user sends it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
from daemons import Site, free_port

from archiver.sandbox import Sandbox

TOKEN = "intake-token-0123456789abcdef"
KIE_KEY = "kie-hmac-key"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class IntakeSite(Site):
    def __init__(self, root: Path, sandbox: Sandbox) -> None:
        super().__init__(root, sandbox)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (root / "intake-token").write_text(TOKEN + "\n", encoding="utf-8")
        (root / "kie-key").write_text(KIE_KEY, encoding="utf-8")

    def configure_intake(self, *, signed: bool = False) -> None:
        self.configure()
        with (self.root / "archive.toml").open("a", encoding="utf-8") as f:
            f.write(f'\n[intake]\nlisten = "127.0.0.1:{self.port}"\ntoken_file = "intake-token"\n')
            if signed:
                f.write('kie_webhook_key_file = "kie-key"\n')

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | str | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if isinstance(body, dict):
            kwargs["json"] = body
        elif body is not None:
            kwargs["data"] = body
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, **kwargs) as resp,
        ):
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def callback(self, body: Any, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("POST", f"/callback/{TOKEN}", body=body, **kwargs)

    async def task(self, task_id: str) -> tuple[int, Any]:
        return await self.call("GET", f"/tasks/{task_id}", headers=AUTH)
