"""The operator's console: ``/console`` (``routes``), its sign-in (``session``), the line's health
(``health``) and the browser softphone (``softphone``); the page itself is in ``static/``."""

from voiceagent.console.routes import console_routes

__all__ = ["console_routes"]
