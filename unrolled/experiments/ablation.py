"""Which parts of the LSTM matter? Greff et al.'s ablation ("LSTM: A Search Space Odyssey", 2017)
on a char-LM.

Each variant of :data:`unrolled.cells.lstm.VARIANTS` (vanilla: the LSTM with peepholes; NIG, NFG,
NOG: no input, forget or output gate; NIAF, NOAF: no input or output activation; NP: no
peepholes; CIFG: coupled input and forget gates; FGR: full gate recurrence) is trained as the
recurrent layer of ``unrolled train charlm`` with several seeds and the same budget, one run
directory per (variant, seed) under ``DIR/runs``. Each finished run's best validation loss goes
into ``DIR/ablation.json`` at once: a killed study, started again with the same settings, trains
only the runs it lacks (an unfinished run directory is trained again from the start).

The table gives per variant the mean and the sample standard deviation of the validation loss
over the seeds, and Welch's t-test (scipy) of each variant against vanilla: unequal variances,
two-sided, as Greff et al. compared their variants (they used it on the best runs of a random
hyper-parameter search, we on seeds of one setting).
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..cells.lstm import VARIANTS
from .study import Study

BASELINE = "vanilla"


@dataclass
class AblationConfig:
    """The settings of one ablation study; every field is in the results file."""

    task: str = "charlm"
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    seeds: int = 3  # seeds 0 .. seeds-1 (the run's --seed)
    max_minutes: float | None = 2.0  # per run
    max_steps: int | None = None  # per run; with both, whichever comes first
    hidden: int = 256
    layers: int = 1  # Greff et al. used one hidden layer
    text: str | None = None  # default: the char-LM's Shakespeare
    batch_size: int = 64  # the char-LM's defaults
    seq_len: int = 100

    def validate(self) -> None:
        if self.task != "charlm":
            raise ValueError(f"--task {self.task!r}: the ablation trains char-LMs; expected charlm")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(
                f"unknown variant {', '.join(map(repr, unknown)) or '(none)'}: expected {', '.join(VARIANTS)}"
            )
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"--variants names a variant twice: {','.join(self.variants)}")
        for name in ("seeds", "hidden", "layers", "batch_size", "seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.max_minutes is None and self.max_steps is None:
            raise ValueError("give --max-minutes or --max-steps: each run needs a budget")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"--max-minutes must be positive, got {self.max_minutes}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"--max-steps must be positive, got {self.max_steps}")


def run_config(config: AblationConfig, variant: str, seed: int) -> Any:
    """The char-LM config of one run: an LSTM of ``variant``, seeded with ``seed``."""
    from ..tasks.lm import CharLMConfig

    cfg = CharLMConfig()
    cfg.model.cell, cfg.model.variant = "lstm", variant
    cfg.model.hidden, cfg.model.layers = config.hidden, config.layers
    cfg.data.text, cfg.data.batch_size, cfg.data.seq_len = config.text, config.batch_size, config.seq_len
    cfg.loop.seed = seed
    return cfg


def run_ablation(
    config: AblationConfig,
    folder: str | Path,
    *,
    device: Any = None,
    on_start: Callable[[str, int, int, int], None] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> Study:
    """Train every (variant, seed) that ``folder``'s study lacks, then summarise."""
    from ..tasks import registry

    config.validate()
    task = registry()[config.task]
    study = Study(folder, "ablation", asdict(config))
    todo = [(v, s) for v in config.variants for s in range(config.seeds)]
    for k, (variant, seed) in enumerate(todo, 1):
        key = f"{variant}/seed{seed}"
        if study.done(key):
            continue
        if on_start is not None:
            on_start(variant, seed, k, len(todo))
        out = Path(folder) / "runs" / f"{variant}-seed{seed}"
        if out.exists():  # killed before it finished: its result was never recorded
            shutil.rmtree(out)
        started = time.perf_counter()
        limits = {"max_minutes": config.max_minutes, "max_steps": config.max_steps, "max_epochs": None}
        _, state, _ = task.train(run_config(config, variant, seed), out, loop_overrides=limits, device=device)
        result = {
            "variant": variant,
            "seed": seed,
            "val_loss": state.best_val,
            "best_step": state.best_step,
            "steps": state.step,
            "minutes": round((time.perf_counter() - started) / 60, 2),
            "run": str(out),
        }
        study.add(key, result, summarise(config, study.runs | {key: result}))
        if on_result is not None:
            on_result(result)
    study.save(summarise(config, study.runs))
    return study


def welch(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test of ``a`` against ``b`` (None with fewer than 2 in each)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    if statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0  # scipy's t is undefined without variance
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def summarise(config: AblationConfig, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per variant with runs: mean and sd of the validation loss, steps, and Welch's p vs vanilla."""
    losses: dict[str, list[float]] = {}
    steps: dict[str, list[int]] = {}
    for r in runs.values():
        losses.setdefault(r["variant"], []).append(r["val_loss"])
        steps.setdefault(r["variant"], []).append(r["steps"])
    base = losses.get(BASELINE, [])
    out = {}
    for v in config.variants:
        if v not in losses:
            continue
        x = losses[v]
        out[v] = {
            "seeds": len(x),
            "mean": statistics.fmean(x),
            "sd": statistics.stdev(x) if len(x) > 1 else None,
            "mean_steps": statistics.fmean(steps[v]),
            "vs_vanilla": None if v == BASELINE or not base else statistics.fmean(x) - statistics.fmean(base),
            "p_welch": None if v == BASELINE else welch(x, base),
        }
    return out


def table(summary: dict[str, Any]) -> str:
    """The summary as text, variants sorted by mean validation loss."""
    head = f"{'variant':<8} {'seeds':>5} {'val loss (nats/char)':>22} {'vs vanilla':>11} {'Welch p':>8}"
    lines = [f"{head} {'steps':>7}"]
    for v, s in sorted(summary.items(), key=lambda kv: kv[1]["mean"]):
        sd = f" ± {s['sd']:.4f}" if s["sd"] is not None else " ± -     "
        diff = "" if s["vs_vanilla"] is None else f"{s['vs_vanilla']:+.4f}"
        p = "" if s["p_welch"] is None else f"{s['p_welch']:.3f}"
        lines.append(
            f"{v:<8} {s['seeds']:>5} {s['mean']:>13.4f}{sd} {diff:>11} {p:>8} {s['mean_steps']:>7.0f}"
        )
    return "\n".join(lines)


def plot(summary: dict[str, Any], runs: dict[str, dict[str, Any]]) -> Any:
    """Bars of the mean validation loss (± sd) per variant, each seed as a dot, vanilla grey.

    A variant far worse than the rest (mean above 1.5 times the median of the means: a run
    that diverged) would flatten every other bar: it is drawn to the top of the axis, with its
    value written on it.
    """
    from ..plotting import pyplot

    plt = pyplot()
    names = list(summary)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(names), 3.8))
    means = [summary[v]["mean"] for v in names]
    sds = [summary[v]["sd"] or 0.0 for v in names]
    median = statistics.median(means)
    normal = [i for i, m in enumerate(means) if m <= 1.5 * median]
    seeds = {v: [r["val_loss"] for r in runs.values() if r["variant"] == v] for v in names}
    low = min(min(seeds[names[i]]) for i in normal) if normal else min(means)
    high = max(max(means[i] + sds[i], *seeds[names[i]]) for i in normal) if normal else max(means)
    pad = 0.1 * (high - low) or 0.05
    top = high + 2 * pad
    colours = ["grey" if v == BASELINE else "C0" for v in names]
    shown = [min(m, top) for m in means]
    ax.bar(range(len(names)), shown, color=colours, alpha=0.6)
    for i, v in enumerate(names):
        if i in normal:
            ax.errorbar(i, means[i], yerr=sds[i], color="black", capsize=3, lw=1)
            ax.scatter([i] * len(seeds[v]), seeds[v], color="black", s=8, zorder=3)
        else:
            ax.text(
                i,
                top - pad,
                f"{means[i]:.2f}\n± {sds[i]:.2f}\n(off scale)",
                ha="center",
                va="top",
                fontsize=7,
            )
        p = summary[v]["p_welch"]
        if p is not None and p < 0.05:
            ax.text(i, min(means[i] + sds[i], top - pad), "*", ha="center", va="bottom")
    ax.set_ylim(low - pad, top)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("best validation loss (nats/char)")
    ax.set_title("LSTM variants (mean ± sd over seeds; * Welch p < 0.05 vs vanilla)", fontsize=9)
    fig.tight_layout()
    return fig
