"""The ``voiceagent`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping

from voiceagent.config import ConfigError, Settings, configuration_warnings, load_settings, sign_in
from voiceagent.eval.arguments import add_parser as add_eval_parser
from voiceagent.logs import CallLog, configure_logging
from voiceagent.records_cli import add_calls_command, run_calls_command
from voiceagent.store.settings import RecordsSettings
from voiceagent.tools import ToolConfigError
from voiceagent.variables import env_default, flag, read_environment


def _secrets(settings: Settings) -> list[str]:
    return [s for s in (settings.model.api_key, settings.twilio_auth_token) if s]


def serve(settings: Settings, records: RecordsSettings) -> int:
    from voiceagent.app import create_app
    from voiceagent.server import run_server

    configure_logging(_secrets(settings) + records.secrets())
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
    try:
        app = create_app(settings, records=records)
    except ToolConfigError as exc:
        print(f"voiceagent: tools configuration error: {exc}", file=sys.stderr)
        return 2
    # the tools' secrets are known once they are loaded: the log scrubber gets them too
    tools = app.state.service.tools
    configure_logging(_secrets(settings) + records.secrets() + sorted(tools.secrets()))
    for event, detail in tools.warnings():
        log.warning(event, detail=detail)
    run_server(app, settings)
    return 0


def check_config(settings: Settings) -> int:
    """The environment and the tools, without connecting anywhere."""
    from voiceagent.checkup import session_with_tools, tool_warnings

    print(f"configuration OK: {settings.model.provider} {settings.model.dialect} {settings.model.deployment}")
    print(f"model sign-in: {sign_in(settings)}")
    for _event, detail in configuration_warnings(settings):
        print(f"warning: {detail}")
    try:
        session = asyncio.run(session_with_tools(settings))
    except ToolConfigError as exc:
        print(f"voiceagent: tools configuration error: {exc}", file=sys.stderr)
        return 2
    print(f"tools OK: {', '.join(tool.name for tool in session.tools) or 'none'}")
    for _event, detail in tool_warnings(settings):
        print(f"warning: {detail}")
    return 0


def check(settings: Settings, args: argparse.Namespace) -> int:
    """Everything check-config does, then a real round trip to the model."""
    from voiceagent.checkup import run_check, session_with_tools

    code = check_config(settings)
    if code:
        return code
    session = asyncio.run(session_with_tools(settings))
    report = asyncio.run(run_check(settings, session, speak=not args.no_speech))
    if report.ok:
        print("All good: the model answers the way a call needs it to.")
        return 0
    print(f"{len(report.problems)} problem(s) with the model; each PROBLEM line above says what to change.")
    return 1


def _without_testing_extra(command: str, exc: ImportError) -> int:
    """Say that ``command`` needs the test kit's extra dependencies (exit status 2)."""
    from voiceagent.simulated_call import missing_testing_extra

    print(f"voiceagent {command}: {missing_testing_extra(exc)}", file=sys.stderr)
    return 2


def demo(args: argparse.Namespace) -> int:
    """A whole call on this machine: the service, the fake model and a simulated caller."""
    try:
        from voiceagent.demo import run_demo
        from voiceagent.testing import FakeRealtimeServer  # noqa: F401  (the test kit's extra dependencies)
    except ImportError as exc:
        return _without_testing_extra("demo", exc)
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
        return _without_testing_extra("fake-model", exc)
    try:
        asyncio.run(serve_fake_model(host=args.host, port=args.port, api_key=args.api_key, speed=args.speed))
    except OSError as exc:
        print(
            f"voiceagent fake-model: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    return 0


def _caller_pace(env: Mapping[str, str]) -> float:
    """How much faster than real time the service takes caller audio, as the same environment says."""
    field = Settings.model_fields["caller_audio_pace"]
    try:
        return float(env.get("VOICEAGENT_CALLER_AUDIO_PACE") or field.default)
    except ValueError:
        return float(field.default)


def call(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """A simulated Twilio caller against a running instance: says a WAV, records the answer."""
    try:
        from voiceagent.simulated_call import WavError, place_call, read_wav_as_ulaw
        from voiceagent.testing import FakeTwilioCaller  # noqa: F401  (the test kit's extra dependencies)
    except ImportError as exc:
        return _without_testing_extra("call", exc)
    token = (env.get("TWILIO_AUTH_TOKEN") or "").strip() or None
    if token is None and not flag(env.get("VOICEAGENT_INSECURE_SKIP_TWILIO_VALIDATION")):
        print(
            "voiceagent call: TWILIO_AUTH_TOKEN is not set: the simulated caller signs its requests with it, "
            "as Twilio does; set it to the service's",
            file=sys.stderr,
        )
        return 2
    url = args.url or (env.get("PUBLIC_BASE_URL") or "").strip()
    url = url or f"http://127.0.0.1:{(env.get('PORT') or '').strip() or 8080}"
    pace = _caller_pace(env)
    if args.speed > pace:
        print(
            f"voiceagent call: --speed {args.speed:g} sends audio faster than the service accepts "
            f"(VOICEAGENT_CALLER_AUDIO_PACE={pace:g} x real time): it would drop what the caller says. Use "
            f"--speed {pace:g} or less, or start the service with VOICEAGENT_CALLER_AUDIO_PACE={args.speed:g}",
            file=sys.stderr,
        )
        return 2
    try:
        question = read_wav_as_ulaw(args.wav)
    except WavError as exc:
        print(f"voiceagent call: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(
            place_call(
                url,
                auth_token=token,
                question=question,
                question_name=args.wav,
                out=args.out,
                speed=args.speed,
                timeout=args.timeout,
            )
        )
    except KeyboardInterrupt:
        return 130
    if not report.ok:
        print(f"voiceagent call: {report.problem}", file=sys.stderr)
        return 1
    return 0


def twilio(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``twilio setup`` and ``twilio dial``: the Twilio console chores through the REST API."""
    from voiceagent.twilio_setup import SetupError, dial_command, setup_command

    try:
        if args.twilio_command == "setup":
            lines = setup_command(env, args.number, args.url, detach=args.detach)
        else:
            lines = dial_command(env, args.to, args.from_number, args.url)
    except SetupError as exc:
        print(f"voiceagent twilio {args.twilio_command}: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if not (0 < value <= 64):
        raise argparse.ArgumentTypeError("must be between 0 and 64")
    return value


ENV_FILE_HELP = (
    "read variables from this file (dotenv syntax: quotes and spaces as in a shell, # comments); "
    "a variable also set in the process environment keeps the environment's value"
)
VARIABLES_EPILOG = "The variables, their defaults and meaning: `voiceagent config --list` (and README.md)."


def _env_file_option() -> argparse.ArgumentParser:
    """``--env-file PATH`` for every command that reads variables (SUPPRESS: no default to overwrite the
    one given before the command)."""
    option = argparse.ArgumentParser(add_help=False)
    option.add_argument("--env-file", metavar="PATH", default=argparse.SUPPRESS, help=ENV_FILE_HELP)
    return option


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voiceagent", description="A phone agent on the OpenAI Realtime API.")
    parser.add_argument("--env-file", metavar="PATH", help=ENV_FILE_HELP)
    parser.add_argument("--version", action="version", version=f"voiceagent {_version()}")
    reads_env = [_env_file_option()]
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "serve", parents=reads_env, help="run the service (HOST/PORT from the environment)", epilog=VARIABLES_EPILOG
    )
    add_calls_command(commands)
    commands.choices["calls"].add_argument("--env-file", metavar="PATH", default=argparse.SUPPRESS, help=ENV_FILE_HELP)
    commands.add_parser(
        "check-config",
        parents=reads_env,
        help="validate the environment (and the tools) and exit",
        epilog=VARIABLES_EPILOG,
    )
    config_cmd = commands.add_parser("config", help="the variables: name, default and meaning (--list)")
    config_cmd.add_argument("--list", action="store_true", required=True, help="print every variable")
    check_cmd = commands.add_parser(
        "check",
        parents=reads_env,
        epilog=VARIABLES_EPILOG,
        help="check-config, then a real round trip to the model, explaining whatever is wrong",
        description="Validates the environment, then connects to the model as a call would, sends the session "
        "configuration, waits for session.updated (μ-law both ways), says a short test phrase and waits for the "
        "model to hear, transcribe and start answering it (the answer is cancelled at once).",
    )
    check_cmd.add_argument(
        "--no-speech", action="store_true", help="stop after the session configuration (no test phrase)"
    )
    demo_cmd = commands.add_parser(
        "demo",
        help="hear a whole call on this machine: no account, no configuration",
        description="Runs the service, the bundled fake model and a simulated caller on loopback, plays a "
        "short scripted call, prints the transcript as it happens and writes what it sounded like to a WAV.",
    )
    demo_cmd.add_argument("--out", default="demo-heard.wav", help="the WAV to write (default: %(default)s)")
    demo_cmd.add_argument("--log", help="keep the service's JSON log of the call in this file (default: discard it)")
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
    caller = commands.add_parser(
        "call",
        parents=reads_env,
        help="call a running instance as Twilio would, say a WAV file and record the answer",
        description="A simulated caller over the real signed webhook and Media Stream: waits for the greeting, "
        "streams the WAV at real time, listens to the answer and writes what it heard to a WAV file. "
        "Signs with TWILIO_AUTH_TOKEN, like Twilio.",
    )
    caller.add_argument("--wav", required=True, help="what the caller says: any WAV (PCM, μ-law or A-law; any rate)")
    caller.add_argument(
        "--url", help="the service's base URL (default: PUBLIC_BASE_URL, else http://127.0.0.1:$PORT, PORT 8080)"
    )
    caller.add_argument(
        "--out", default="heard.wav", help="where to write what the caller heard (default: %(default)s)"
    )
    caller.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole call (default: 120)")
    caller.add_argument(
        "--speed", type=_positive, default=1.0, help="media clock speed: 1 is a real call (faster only against fakes)"
    )
    add_eval_parser(commands)
    twilio_cmd = commands.add_parser(
        "twilio",
        help="point a Twilio number at this service, or place a call (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)",
    )
    twilio_commands = twilio_cmd.add_subparsers(dest="twilio_command", required=True, metavar="COMMAND")
    setup = twilio_commands.add_parser(
        "setup",
        parents=reads_env,
        help="point the number's 'A call comes in' webhook at PUBLIC_BASE_URL/twilio/voice (POST)",
        description="Finds the account's IncomingPhoneNumber and sets its voice URL to PUBLIC_BASE_URL/twilio/voice, "
        "HTTP POST; prints what it changed.",
    )
    setup.add_argument("--number", required=True, help="the Twilio number, E.164 (+15551234567)")
    setup.add_argument("--url", help="the service's public https:// base URL (default: PUBLIC_BASE_URL)")
    setup.add_argument(
        "--detach",
        action="store_true",
        help="detach the number from a TwiML App or SIP trunk first (Twilio ignores the voice URL while one is set)",
    )
    dial_cmd = twilio_commands.add_parser(
        "dial",
        parents=reads_env,
        help="call a phone: when it is answered, the agent talks (TwiML from PUBLIC_BASE_URL/twilio/voice)",
    )
    dial_cmd.add_argument("to", help="the number to call, E.164 (+15551234567)")
    dial_cmd.add_argument("--from", dest="from_number", required=True, help="one of the account's numbers")
    dial_cmd.add_argument("--url", help="the service's public https:// base URL (default: PUBLIC_BASE_URL)")
    return parser


def run_eval(args: argparse.Namespace, env: dict[str, str]) -> int:
    """``voiceagent eval``: only the model's variables are taken from ``env`` (voiceagent.eval)."""
    from voiceagent.eval.command import main as eval_main

    return eval_main(args, env)


# commands that need no configuration at all
_STANDALONE = {"demo": demo, "fake-model": fake_model}
# commands that read a few variables themselves
_WITH_ENVIRONMENT = {"call": call, "twilio": twilio, "eval": run_eval}


def list_variables() -> int:
    """``voiceagent config --list``: every variable with its default and meaning, from the declarations."""
    try:
        for name, info in Settings.variables().items():
            shown = env_default(info)
            print(f"{name}={'' if shown is None else shown}\t{info.description or ''}", flush=True)
    except BrokenPipeError:  # `voiceagent config --list | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("voiceagent")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `voiceagent`: what it can do, not a usage error
        parser.print_help()
        return 0
    try:
        return _run(args)
    except BrokenPipeError:  # `voiceagent calls export | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's own flush at exit stays quiet too
        return 0


def _run(args: argparse.Namespace) -> int:
    if args.command in _STANDALONE:
        return _STANDALONE[args.command](args)
    if args.command == "config":
        return list_variables()
    try:
        env = read_environment(os.environ, args.env_file)  # the one read of the process environment
    except ConfigError as exc:
        print(f"voiceagent: {exc}", file=sys.stderr)
        return 2
    if args.command in _WITH_ENVIRONMENT:
        return _WITH_ENVIRONMENT[args.command](args, env)
    if args.command == "calls":
        return run_calls_command(args, env)  # needs only the store, not the model or Twilio
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        print(f"voiceagent: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        return check_config(settings)
    if args.command == "check":
        return check(settings, args)
    return serve(settings, settings.records)


if __name__ == "__main__":
    sys.exit(main())
