"""Where the window's engine runs: this computer, or a diffusiondesk-server (a single
machine or the front of a Ray cluster) with its access token. No Qt, no torch: the
settings, the Engine dialog and the command line all describe a location with this."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from engine.remote import TOKEN_ENV, stream_url


@dataclass(frozen=True)
class EngineLocation:
    """server "" means this computer; otherwise "http(s)://host:port" or "host:port"."""

    server: str = ""
    token: str = ""

    @property
    def local(self) -> bool:
        return not self.server.strip()

    def problem(self) -> str:
        """One sentence saying what to change, or "" when the location can be used."""
        if self.local:
            return ""
        try:
            stream_url(self.server)
        except ValueError as exc:
            text = str(exc)
            return text[0].upper() + text[1:] + "."
        return ""

    def effective_token(self) -> str | None:
        """The token to send: the one given, else $DIFFUSIONDESK_TOKEN, else none."""
        return self.token.strip() or os.environ.get(TOKEN_ENV) or None

    def describe(self) -> str:
        """A few words for the status bar: "this computer" or the server's host:port."""
        if self.local:
            return "this computer"
        text = self.server.strip()
        parts = urlsplit(text if "://" in text else "http://" + text)
        return parts.netloc or text
