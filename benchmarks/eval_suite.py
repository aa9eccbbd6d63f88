"""How long ``voiceagent eval`` takes against the bundled fake model: a 10-scenario suite (the restaurant's
scenarios, repeated to make ten), once, and with ``--repeat 5`` (five concurrent calls on one service per
scenario); and the persona scenario alone (two fake models on one phone line), with the call time it
reports. Prints the figures; run from the repository root: ``python benchmarks/eval_suite.py``."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "examples" / "restaurant" / "scenarios"
PERSONA = SCENARIOS / "persona_books_a_table.toml"


def suite_of_ten(folder: Path) -> None:
    """Ten scenario files in ``folder``: the restaurant's, copied with new names until there are ten."""
    sources = sorted(SCENARIOS.glob("*.toml"))
    for number, source in zip(range(10), itertools.cycle(sources), strict=False):
        text = source.read_text().replace('"../prompt.txt"', f'"{SCENARIOS.parent / "prompt.txt"}"')
        text = text.replace('python_path = [".."]', f'python_path = ["{SCENARIOS.parent}"]')
        text = text.replace('name = "', f'name = "{number:02d} ', 1)
        (folder / f"{number:02d}-{source.name}").write_text(text)


def timed(folder: Path, *extra: str, out: Path | None = None) -> tuple[float, str]:
    """Wall seconds of one ``voiceagent eval`` of ``folder`` (a folder or a file), and what it printed."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "voiceagent", "eval", str(folder), "--out", str(out or folder / "out"), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:])
        raise SystemExit("the suite did not pass")
    return seconds, done.stdout


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    try:
        suite_of_ten(folder)
        persona, printed = timed(PERSONA, out=folder / "persona")
        call = re.search(r"after ([0-9.]+) s of call \(([0-9.]+) s here\)", printed)
        detail = f"{call.group(1)} s of call in {call.group(2)} s" if call else "no call line"
        print(f"the persona scenario alone:             {persona:6.1f} s wall ({detail}, at 4x)")
        once, _ = timed(folder)
        print(f"10 scenarios, 1 run each:              {once:6.1f} s wall ({once / 10:.1f} s a call)")
        repeated, _ = timed(folder, "--repeat", "5")
        print(f"10 scenarios x --repeat 5 (concurrent): {repeated:6.1f} s wall ({repeated / 50:.2f} s a call)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
