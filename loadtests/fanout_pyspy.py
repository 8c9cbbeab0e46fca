"""Summarise a `py-spy record -f raw` profile (as bench_fanout.py --profile writes it).

    python loadtests/fanout_pyspy.py /tmp/fanout.pyspy.txt [--top 30] [--match app/realtime]

Prints the share of samples per leaf function (self time) and per function anywhere on
the stack (inclusive time), optionally only frames whose text contains --match.
"""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", default="")
    args = parser.parse_args()
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(args.path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            leaf[frames[-1]] += n
            for frame in set(frames):
                if args.match in frame:
                    inclusive[frame] += n
    print(f"{total} samples")
    print("\nself (leaf frames):")
    for frame, n in leaf.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print("\ninclusive:")
    for frame, n in inclusive.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
