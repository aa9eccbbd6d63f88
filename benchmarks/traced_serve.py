"""`voiceagent serve` under tracemalloc, for the soak's ``--trace``: a snapshot is dumped every interval.

    python benchmarks/traced_serve.py DIR SECONDS

Snapshots go to DIR/snapshot-NNNN.pickle (``tracemalloc.Snapshot.dump``); the soak diffs the one taken
after its warm-up against the last, so what grows is named by file and line, not guessed.
"""

from __future__ import annotations

import sys
import threading
import tracemalloc
from pathlib import Path

FRAMES = 12


def dump_every(folder: Path, seconds: float, stop: threading.Event) -> None:
    number = 0
    while not stop.wait(seconds):
        snapshot = tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            )
        )
        snapshot.dump(str(folder / f"snapshot-{number:04d}.pickle"))
        number += 1


def main() -> int:
    folder, seconds = Path(sys.argv[1]), float(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(FRAMES)
    stop = threading.Event()
    threading.Thread(target=dump_every, args=(folder, seconds, stop), daemon=True, name="tracemalloc").start()
    from voiceagent.cli import main as voiceagent_main

    try:
        return voiceagent_main(["serve"])
    finally:
        stop.set()


if __name__ == "__main__":
    sys.exit(main())
