"""What an eval found, for a person (the terminal table, a Markdown report) and for CI (JUnit XML)."""

from __future__ import annotations

import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

from voiceagent.eval.run import RunResult

__all__ = ["markdown_report", "summary_rows", "summary_table", "write_junit"]

HEADERS = ("scenario", "runs", "passed", "pass rate", "call s (median)", "worst turn latency ms", "ending")


def summary_rows(results: list[RunResult]) -> list[tuple[str, ...]]:
    by_name: dict[str, list[RunResult]] = {}
    for result in results:
        by_name.setdefault(result.scenario.name, []).append(result)
    rows: list[tuple[str, ...]] = []
    for name, runs in by_name.items():
        passed = sum(run.passed for run in runs)
        latencies = [ms for run in runs for ms in run.caller.latencies_ms]
        endings = sorted({run.ending for run in runs})
        rows.append(
            (
                name,
                str(len(runs)),
                str(passed),
                f"{passed / len(runs):.0%}",
                f"{statistics.median(run.call_seconds for run in runs):.1f}",
                str(max(latencies)) if latencies else "-",
                "/".join(endings),
            )
        )
    return rows


def summary_table(results: list[RunResult]) -> str:
    """A Markdown table (reads well in a terminal too)."""
    rows = [HEADERS, *summary_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def markdown_report(results: list[RunResult], first_line: str) -> str:
    parts = ["# voiceagent eval", "", first_line, "", summary_table(results), ""]
    for result in results:
        verdict = "passed" if result.passed else "FAILED"
        parts.append(f"## {result.name}: {verdict}")
        parts.append("")
        parts.append(
            f"Ended `{result.ending}` after {result.call_seconds:.1f} s of call ({result.wall_seconds:.1f} s here); "
            f"transcript `{result.transcript.name if result.transcript else '-'}`, "
            f"the call as heard `{result.wav.name if result.wav else '-'}` (agent left, caller right)."
        )
        parts.extend(["", *(f"- {failure}" for failure in result.failures), ""] if result.failures else [""])
    return "\n".join(parts)


def write_junit(path: Path, results: list[RunResult]) -> Path:
    failures = sum(not result.passed for result in results)
    total_time = sum(result.wall_seconds for result in results)
    suites = ET.Element("testsuites", tests=str(len(results)), failures=str(failures), time=f"{total_time:.2f}")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="voiceagent eval",
        tests=str(len(results)),
        failures=str(failures),
        time=f"{total_time:.2f}",
    )
    for result in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"eval.{result.scenario.path.stem}",
            name=result.name,
            time=f"{result.wall_seconds:.2f}",
        )
        if result.failures:
            failure = ET.SubElement(case, "failure", message=result.failures[0])
            failure.text = "\n".join(result.failures)
        if result.transcript is not None:
            ET.SubElement(case, "system-out").text = result.transcript.read_text(encoding="utf-8")
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    return path
