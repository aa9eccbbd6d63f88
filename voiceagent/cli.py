"""The ``voiceagent`` command."""

from __future__ import annotations

import argparse
import asyncio
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


def demo(args: argparse.Namespace) -> int:
    """A whole call on this machine: the service, the fake model and a simulated caller."""
    try:
        from voiceagent.demo import run_demo
        from voiceagent.testing import FakeRealtimeServer  # noqa: F401  (the test kit's extra dependencies)
    except ImportError as exc:
        from voiceagent.simulated_call import missing_testing_extra

        print(f"voiceagent demo: {missing_testing_extra(exc)}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(run_demo(out=args.out, log_file=args.log, speed=args.speed))
    except TimeoutError:
        print("voiceagent demo: the call did not finish within a minute; see the log for why", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 1 if result.problems else 0


def fake_model(args: argparse.Namespace) -> int:
    """The fake Realtime model on its own, for a service (or anything else) to talk to."""
    try:
        from voiceagent.demo import serve_fake_model
    except ImportError as exc:
        from voiceagent.simulated_call import missing_testing_extra

        print(f"voiceagent fake-model: {missing_testing_extra(exc)}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_fake_model(host=args.host, port=args.port, api_key=args.api_key, speed=args.speed))
    except OSError as exc:
        print(
            f"voiceagent fake-model: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if not (0 < value <= 64):
        raise argparse.ArgumentTypeError("must be between 0 and 64")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voiceagent", description="A phone agent on the OpenAI Realtime API.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the service (HOST/PORT from the environment)")
    commands.add_parser("check-config", help="validate the environment and exit")
    demo_cmd = commands.add_parser(
        "demo",
        help="hear a whole call on this machine: no account, no configuration",
        description="Runs the service, the bundled fake model and a simulated caller on loopback, plays a "
        "short scripted call, prints the transcript as it happens and writes what it sounded like to a WAV.",
    )
    demo_cmd.add_argument("--out", default="demo-heard.wav", help="the WAV to write (default: %(default)s)")
    demo_cmd.add_argument(
        "--log", default="demo-service.log", help="where the service's JSON log goes (default: %(default)s)"
    )
    demo_cmd.add_argument(
        "--speed", type=_positive, default=1.0, help="how much faster than real time the call runs (default: 1)"
    )
    fake = commands.add_parser(
        "fake-model",
        help="run the bundled fake Realtime model on its own (point AZURE_OPENAI_ENDPOINT at it)",
        description="Serves the test kit's fake Realtime model (both protocols) until Ctrl-C or SIGTERM.",
    )
    fake.add_argument("--port", type=int, default=0, help="the port to listen on (default: a free one)")
    fake.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    fake.add_argument("--api-key", default="test-key", help="the key it accepts (default: %(default)s)")
    fake.add_argument(
        "--speed", type=_positive, default=4.0, help="how much faster than real time it speaks (default: 4)"
    )
    return parser


# commands that need no service configuration from the environment
_STANDALONE = {"demo": demo, "fake-model": fake_model}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in _STANDALONE:
        return _STANDALONE[args.command](args)
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
