#!/usr/bin/env python3
"""TensorBoard's own reader as the oracle of triadapt's event files (tests/train.rs).

Prints, as JSON, every scalar of each run folder given: {folder: {tag: [[step, value], ...]}},
in file order. `purge_orphaned_data=False`: TensorBoard would otherwise hide points written
twice (it drops older points when a step goes backwards), which is what the test looks for.
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator


def scalars(folder: str) -> dict[str, list[list[float]]]:
    acc = EventAccumulator(folder, size_guidance={SCALARS: 0}, purge_orphaned_data=False)
    acc.Reload()
    return {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()[SCALARS]}


def main() -> int:
    json.dump({folder: scalars(folder) for folder in sys.argv[1:]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
