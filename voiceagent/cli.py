"""The ``voiceagent`` command."""

from __future__ import annotations

import argparse
import sys

from voiceagent.config import ConfigError, Settings, configuration_warnings, load_settings
from voiceagent.logs import CallLog, configure_logging


def _secrets(settings: Settings) -> list[str]:
    return [s for s in (settings.model.api_key, settings.twilio_auth_token) if s]


def serve(settings: Settings) -> int:
    from voiceagent.app import create_app
    from voiceagent.server import run_server

    configure_logging(_secrets(settings))
    log = CallLog()
    for event, detail in configuration_warnings(settings):
        log.warning(event, detail=detail)
    log.info(
        "starting",
        host=settings.host,
        port=settings.port,
        provider=settings.model.provider,
        dialect=settings.model.dialect,
        deployment=settings.model.deployment,
        auth="api-key" if settings.model.api_key else "entra-id",
        public_base_url=settings.public_base_url,
    )
    run_server(create_app(settings), settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voiceagent", description="A phone agent on the OpenAI Realtime API.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the service (HOST/PORT from the environment)")
    commands.add_parser("check-config", help="validate the environment and exit")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"voiceagent: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"configuration OK: {settings.model.provider} {settings.model.dialect} {settings.model.deployment}")
        for _event, detail in configuration_warnings(settings):
            print(f"warning: {detail}")
        return 0
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
