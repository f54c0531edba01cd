"""How long the PNG parameters reader takes on long and hostile texts.

Prints one JSON object: for each kind of line and each length, the median seconds of
engine.metadata.parse_a1111_checked over a few runs. A linear reader takes about five
times as long for five times the text; a pathological regex would take 25 times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import metadata


def lines(length: int) -> dict[str, str]:
    return {
        "long quoted value": "Steps: 20, Seed: 1, CFG scale: 7, Notes: "
        + json.dumps("x, " * (length // 3)),
        "unclosed quotes": 'Steps: 20, a: "' + "\\x" * (length // 2),
        "many pairs": "Steps: 20, " + "key: value, " * (length // 12),
        "no colons": "Steps: 20, Seed: 1, CFG scale: 7, " + "x" * length,
        "colons and commas": ",:" * (length // 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for length in (20_000, 100_000):
        for name, line in lines(length).items():
            text = "a prompt\n" + line
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                metadata.parse_a1111_checked(text)
                times.append(time.perf_counter() - start)
            results.setdefault(name, {})[f"{length}_chars_s"] = round(statistics.median(times), 5)
    for timings in results.values():
        timings["ratio_100k_to_20k"] = round(
            timings["100000_chars_s"] / max(timings["20000_chars_s"], 1e-9), 2
        )
    worst = max(t["100000_chars_s"] for t in results.values())
    print(json.dumps({"lines": results, "worst_100k_s": worst}))


if __name__ == "__main__":
    main()
