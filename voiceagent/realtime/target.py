"""Where the Realtime model lives and how to reach it: the one fact both settings and connections need.

It lives here, not in ``config``, so that ``realtime`` never imports ``config`` (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ModelTarget"]


@dataclass(frozen=True)
class ModelTarget:
    """Where the Realtime model lives and how to authenticate. ``api_key`` is a secret: never log it."""

    provider: str  # "azure" | "openai"
    endpoint: str  # scheme://host[:port], no trailing slash
    deployment: str  # Azure deployment or OpenAI model name
    api_key: str | None = field(default=None, repr=False)
    api_version: str | None = None  # None → GA protocol; a preview version → preview protocol

    @property
    def dialect(self) -> str:
        return "preview" if self.api_version else "ga"
