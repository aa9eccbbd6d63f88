"""The ``eval`` subcommand's arguments (kept apart so the CLI does not import the test kit to list them)."""

from __future__ import annotations

from typing import Any


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("eval", help="run scenario files as simulated calls and score them")
    parser.add_argument("scenarios", nargs="+", help="scenario files (.toml) or folders of them")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario, at once (default: 1)")
    parser.add_argument("--min-pass-rate", type=float, default=1.0, help="each scenario's, to exit 0 (default: 1)")
    parser.add_argument("--out", default="eval-results", help="where the reports go (default: %(default)s)")
    parser.add_argument("--url", help="call a running service instead of starting one here")
    parser.add_argument("--auth-token", help="with --url: the service's TWILIO_AUTH_TOKEN")
    parser.add_argument("--speed", type=float, help="caller speed (default: 4 against the fake model, else 1)")
    parser.add_argument("--fake", action="store_true", help="use the bundled fake model even if one is configured")
    parser.add_argument(
        "--caller-voice",
        choices=("espeak", "model"),
        default="espeak",
        help="who speaks the caller's text turns: espeak-ng here, or the Realtime model reading them verbatim "
        "(far more natural; with no account, the bundled fake model reads them) (default: %(default)s)",
    )
