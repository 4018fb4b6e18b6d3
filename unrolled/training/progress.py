"""The progress bar of ``unrolled train``: a listener of the training loop's events, on stderr.

Counts steps (or seconds, under a time limit only) and shows the training loss, the last
validation and tokens per second; each validation is also printed above the bar, in the words
of the task (``Task.describe_val``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

DescribeVal = Callable[[dict[str, Any]], tuple[str, str]]


class Progress:
    """``progress(kind, record)`` for the loop's events; ``close()`` when training ends early."""

    def __init__(self, enabled: bool, unit: str, describe_val: DescribeVal) -> None:
        self.enabled = enabled
        self.unit = unit  # what the loss is counted over: "chars", "tokens"
        self.describe_val = describe_val
        self.bar: Any = None
        self.val: str = "-"
        self.by_time = False
        self.origin = 0.0

    def __call__(self, kind: str, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if kind == "start":
            self._open(record)
        elif kind == "train" and self.bar is not None:
            self._move_to(record)
            self.bar.set_postfix_str(
                f"step {record['step']} loss {record['loss']:.3f} val {self.val} "
                f"{record['tokens_per_s']:,.0f} {self.unit}/s",
                refresh=True,
            )
        elif kind == "val":
            self.val, line = self.describe_val(record)
            if self.bar is not None:
                self.bar.write(f"step {record['step']}: {line}{' *best*' if record['best'] else ''}")
        elif kind == "average" and self.bar is not None:
            self.bar.write(f"step {record['step']}: validation stalled: averaging the weights from here")
        elif kind == "nonfinite" and self.bar is not None:
            self.bar.write(f"step {record['step']}: non-finite loss or gradient norm, skipped")
        elif kind == "end" and self.bar is not None:
            self._move_to(record)
            self.close()

    def _open(self, record: dict[str, Any]) -> None:
        from tqdm import tqdm

        steps, seconds = record["plan_steps"], record["plan_seconds"]
        self.by_time = steps is None and seconds is not None
        if self.by_time:
            self.origin = record["elapsed"]
            total, unit = round(seconds - self.origin), "s"
        else:
            self.origin = record["step"]
            total, unit = (None if steps is None else steps - self.origin), "step"
        self.bar = tqdm(
            total=total,
            unit=unit,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}{postfix}]",
        )

    def _move_to(self, record: dict[str, Any]) -> None:
        done = round((record["elapsed"] if self.by_time else record["step"]) - self.origin)
        self.bar.n = min(done, self.bar.total) if self.bar.total else done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.refresh()
            self.bar.close()
            self.bar = None
