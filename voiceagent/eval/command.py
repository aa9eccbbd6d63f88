"""``voiceagent eval SCENARIO…``: run each scenario as whole calls, score them, write the reports; the exit
code says whether every scenario's pass rate reached ``--min-pass-rate``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voiceagent.eval.agent import FAKE_MODEL_LEAD, model_variables, serve_scenario
from voiceagent.eval.caller_model import CallerModel
from voiceagent.eval.report import markdown_report, summary_rows, summary_table, write_junit
from voiceagent.eval.run import RunResult, run_once
from voiceagent.eval.scenario import Scenario, ScenarioError, load_scenario, scenario_files
from voiceagent.eval.score import score
from voiceagent.eval.voices import CallerVoice, caller_voice, model_target
from voiceagent.simulated_call import Printer
from voiceagent.testing.speech import INSTALL_HINT, Speech


def main(args: argparse.Namespace, env: Mapping[str, str], stream: Any = None) -> int:
    """``env``: the variables the CLI read; only the model's are used (the agent's come from the scenario)."""
    printer = Printer(stream)
    model = {} if args.fake else model_variables(env)
    try:
        scenarios = [load_scenario(path) for path in scenario_files(args.scenarios)]
    except ScenarioError as exc:
        printer.line(f"voiceagent eval: {exc}")
        return 2
    if not scenarios:
        printer.line("voiceagent eval: no scenario files found")
        return 2
    speed = args.speed or (4.0 if not model and not args.url else 1.0)
    where = f"the service at {args.url}" if args.url else "the service started here"
    model_said = (
        "against the bundled fake model (no AZURE_OPENAI_* or OPENAI_API_KEY set), which follows each scenario's rules"
        if not model
        else f"against the model at {model.get('AZURE_OPENAI_ENDPOINT') or model.get('OPENAI_BASE_URL') or 'OpenAI'}"
    )
    first_line = (
        f"voiceagent eval: {len(scenarios)} scenario(s) x {args.repeat} on {where}, {model_said}, at {speed:g}x"
    )
    printer.line(
        first_line if not args.url else f"voiceagent eval: {len(scenarios)} scenario(s) x {args.repeat} on {where}"
    )
    speech = Speech()
    if not speech.available():
        printer.line(f"voiceagent eval: the caller's lines cannot be spoken: {INSTALL_HINT}")
        return 2
    if args.caller_voice == "model":
        printer.line(
            "voiceagent eval: --caller-voice model: "
            + (
                "no account is configured, so the caller's lines are read by the bundled FAKE model (espeak-ng "
                "behind the same Realtime client a real model is reached with), not by a real voice"
                if model_target(model) is None
                else "the caller's lines are read aloud by a second session on the configured model"
            )
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from voiceagent.logs import configure_logging

    log = open(out / "service.log", "a", encoding="utf-8")
    configure_logging(secrets=[], stream=log)
    results = asyncio.run(_run_all_with_voice(scenarios, args, model, speed, speech, out, printer))
    printer.line("")
    printer.line(summary_table(results))
    (out / "report.md").write_text(markdown_report(results, first_line), encoding="utf-8")
    write_junit(out / "junit.xml", results)
    printer.line(
        f"\nReports: {out / 'report.md'}, {out / 'junit.xml'}; per run a transcript (.txt) and the call (.wav)"
    )
    rates = [int(row[2]) / int(row[1]) for row in summary_rows(results)]
    return 0 if all(rate >= args.min_pass_rate for rate in rates) else 1


async def _run_all_with_voice(
    scenarios: list[Scenario],
    args: argparse.Namespace,
    model: Mapping[str, str],
    speed: float,
    speech: Speech,
    out: Path,
    printer: Printer,
) -> list[RunResult]:
    """``_run_all`` with the caller's voice (``--caller-voice``) open; every line is read before the calls."""
    async with caller_voice(args.caller_voice, model, speech, speed=FAKE_MODEL_LEAD * speed) as voice:
        for scenario in scenarios:
            for turn in scenario.caller.turns:
                if turn.say is not None:
                    await voice.ulaw(turn.say)
        return await _run_all(scenarios, args, model, speed, speech, out, printer, voice)


async def _run_all(
    scenarios: list[Scenario],
    args: argparse.Namespace,
    model: Mapping[str, str],
    speed: float,
    speech: Speech,
    out: Path,
    printer: Printer,
    voice: CallerVoice,
) -> list[RunResult]:
    results: list[RunResult] = []
    total = len(scenarios) * args.repeat
    for scenario in scenarios:
        persona = CallerModel(scenario, model, speed, speech) if scenario.caller.persona else _Nothing()
        if args.url:
            async with persona as target:
                runs = [
                    run_once(
                        scenario,
                        i + 1,
                        out=out,
                        speech=speech,
                        url=args.url,
                        auth_token=args.auth_token,
                        persona_target=target,
                        speed=speed,
                        voice=voice,
                    )
                    for i in range(args.repeat)
                ]
                results += await _gather(runs, results, total, printer)
            continue
        async with serve_scenario(scenario, model, out, speed=speed, speech=speech) as agent, persona as target:
            runs = [
                run_once(
                    scenario,
                    i + 1,
                    out=out,
                    speech=speech,
                    agent=agent,
                    persona_target=target,
                    speed=speed,
                    voice=voice,
                )
                for i in range(args.repeat)
            ]
            results += await _gather(runs, results, total, printer)
            if agent.director is not None and agent.director.fell_back:
                printer.line("  (espeak-ng failed: the fake model spoke bundled recordings, not the configured words)")
    return results


async def _gather(runs: list[Any], done: list[RunResult], total: int, printer: Printer) -> list[RunResult]:
    finished: list[RunResult] = []
    for future in asyncio.as_completed(runs):
        result = score(await future)
        finished.append(result)
        verdict = "pass" if result.passed else "FAIL"
        printer.line(
            f"[{len(done) + len(finished)}/{total}] {verdict}  {result.name}: ended {result.ending} after "
            f"{result.call_seconds:.1f} s of call ({result.wall_seconds:.1f} s here)"
        )
        for failure in result.failures:
            printer.line(f"        {failure}")
    return sorted(finished, key=lambda result: result.index)


class _Nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
