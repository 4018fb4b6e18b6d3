"""The ``unrolled analyze`` commands: look inside a run's recurrent layers, or a fresh cell's."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..layers import Recurrent
from ..plotting import pyplot, save_png
from ..training import checkpoint as ckpt
from .spectrum import recurrent_blocks, spectrum


def add_commands(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """``unrolled analyze spectrum|gradients|jacobian|neurons``."""
    analyze = commands.add_parser(
        "analyze", help="look inside recurrent layers", description="Plots and numbers of recurrent layers."
    )
    kinds = analyze.add_subparsers(
        dest="analysis", required=True, metavar="ANALYSIS", parser_class=parser_class
    )
    s = kinds.add_parser(
        "spectrum",
        help="eigenvalues of W_hh per gate block, and the lecture's power iteration",
        description=(
            "Plot the eigenvalues of a cell's recurrent matrix W_hh, one H x H block per gate, in the "
            "complex plane with the unit circle; give the spectral radius, the largest singular value, "
            "and the dominant eigenvalue found by power iteration, checked against torch.linalg.eigvals. "
            "Writes a PNG and a JSON of the numbers."
        ),
    )
    _target_arguments(s, "spectrum.png")
    s.add_argument("--layer", type=int, default=0, metavar="K", help="which recurrent cell of the run [0]")
    s.set_defaults(func=_cmd_spectrum)

    g = kinds.add_parser(
        "gradients",
        help="how far back the gradient reaches: dL/ds_t and the Jacobian product, per step",
        description=(
            "For a loss at the last step of a sequence (inputs x_t ~ N(0, 1)), plot against the distance "
            "from the loss the norm of dL/ds_t and the spectral norm of the product of step Jacobians "
            "ds_T/ds_t (s_t: the cell's whole state), averaged over a batch, per layer, on a log scale; "
            "fit the decay per step. Several fresh cells go on one figure with --compare. Writes a PNG "
            "and a JSON of the numbers."
        ),
    )
    _target_arguments(g, "gradients.png")
    g.add_argument("--module", type=int, default=0, metavar="K", help="which recurrent layer of the run [0]")
    g.add_argument("--compare", metavar="A,B,...", help="fresh cells side by side, e.g. rnn,lstm,gru")
    g.add_argument("--layers", type=int, default=1, metavar="N", help="fresh cells: stacked layers [1]")
    g.add_argument("--steps", type=int, default=100, metavar="T", help="sequence length [100]")
    g.add_argument("--batch", type=int, default=8, metavar="B", help="sequences averaged over [8]")
    g.set_defaults(func=_cmd_gradients)

    j = kinds.add_parser(
        "jacobian",
        help="the sequential Jacobian of a char-LM over a text: how far back the model looks",
        description=(
            "For a char-LM run and a text, the norm of d y_T / d x_t, the Jacobian of the last position's "
            "logits with respect to each input character's vector (Graves 2012), drawn as a heat map "
            "over the text and against the distance. Writes a PNG and a JSON of the numbers."
        ),
    )
    j.add_argument("run", metavar="DIR", help="a char-LM run directory")
    j.add_argument("--text", required=True, help="the text to read (at most 1000 characters)")
    j.add_argument("--latest", action="store_true", help="the run's latest weights, not the best")
    j.add_argument("--out", default="jacobian.png", metavar="PNG", help="the plot; the JSON goes beside it")
    j.set_defaults(func=_cmd_jacobian)

    n = kinds.add_parser(
        "neurons",
        help="a web page that colours a text by any unit or gate of a char-LM",
        description=(
            "Run a char-LM over a text and write one self-contained HTML page (no network) that colours "
            "each character by the value of a chosen unit: a layer's output h, the LSTM's memory cell c, "
            "or a gate. It lists the units that correlate best with simple features of the text (inside "
            "quotes, position in the line, after a newline, ...). Also writes a PNG of the first unit "
            "shown and a JSON of the ranking."
        ),
    )
    n.add_argument("run", metavar="DIR", help="a char-LM run directory")
    n.add_argument("--text", required=True, metavar="FILE", help="the UTF-8 text to read")
    n.add_argument("--latest", action="store_true", help="the run's latest weights, not the best")
    n.add_argument("--layer", type=int, metavar="K", help="first view: layer K's output h [best unit's]")
    n.add_argument("--unit", type=int, metavar="U", help="first view: unit U of that layer [best unit]")
    n.add_argument("--out", default="neurons.html", metavar="HTML", help="the page [neurons.html]")
    n.set_defaults(func=_cmd_neurons)


def _target_arguments(p: argparse.ArgumentParser, out: str) -> None:
    """What to analyse (a run, or a fresh cell and how to build it) and where the plot goes."""
    from ..cells.init import SCHEMES
    from ..tasks.base import CELLS

    p.add_argument("run", nargs="?", metavar="DIR", help="a run directory of any recurrent task")
    p.add_argument("--latest", action="store_true", help="the run's latest weights, not the best")
    p.add_argument("--cell", choices=tuple(CELLS), help="analyse a fresh cell instead of a run")
    p.add_argument("--hidden", type=int, default=64, metavar="N", help="fresh cell: units [64]")
    p.add_argument("--init", choices=SCHEMES, default="uniform", help="fresh cell: initialisation [uniform]")
    p.add_argument("--forget-bias", type=float, metavar="X", help="fresh LSTM: initial forget-gate bias")
    p.add_argument("--seed", type=int, default=0, help="seed of fresh weights (and of random inputs) [0]")
    p.add_argument("--out", default=out, metavar="PNG", help=f"the plot; the JSON goes beside it [{out}]")


def _png_path(out: str) -> Path:
    if not out.lower().endswith(".png"):
        raise ValueError(f"--out writes a PNG file: give a name ending in .png, got {out!r}")
    return Path(out)


def _cell(args: argparse.Namespace) -> tuple[nn.Module, str]:
    """The cell to analyse, from a run (``--layer``) or built fresh (``--cell``), and its description."""
    if (args.run is None) == (args.cell is None):
        raise ValueError("give a run directory or --cell NAME (a fresh cell), not both")
    if args.cell is not None:
        from ..tasks.base import RecurrentConfig

        cfg = RecurrentConfig(cell=args.cell, hidden=args.hidden, layers=1, init=args.init)
        cfg.forget_bias = args.forget_bias
        cfg.validate()
        torch.manual_seed(args.seed)
        layer = cfg.build_recurrent(args.hidden)
        return layer.cells[0], f"fresh {args.cell} (H={args.hidden}, init {args.init}, seed {args.seed})"
    model = open_model(args.run, ckpt.LATEST if args.latest else ckpt.BEST)
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, Recurrent)]
    cells = [(f"{name}.cells.{k}", c) for name, m in layers for k, c in enumerate(m.cells)]
    if not cells:
        raise ValueError(f"the run {args.run!r} has no recurrent layer to analyse")
    if not 0 <= args.layer < len(cells):
        raise ValueError(
            f"--layer {args.layer} is out of range: the run has {len(cells)} recurrent cells "
            f"(0..{len(cells) - 1})"
        )
    name, cell = cells[args.layer]
    return cell, f"{args.run}: {name} ({type(cell).__name__})"


def open_any_run(path: str, weights: str) -> Any:
    """A run directory of any registered task, opened by its own task (a :class:`Run`)."""
    from ..tasks import registry

    kind = ckpt.read_json(ckpt.check_run_dir(path) / ckpt.CONFIG, "config.json").get("task")
    tasks = registry()
    if kind not in tasks:
        known = ", ".join(tasks)
        raise ValueError(f"config.json of {path!r} names an unknown task {kind!r}: expected {known}")
    return tasks[kind].open_run(path, weights=weights)


def open_model(path: str, weights: str) -> nn.Module:
    """The model of a run directory of any registered task."""
    return open_any_run(path, weights).model


def _cmd_spectrum(args: argparse.Namespace) -> int:
    out = _png_path(args.out)
    cell, what = _cell(args)
    blocks = {g: spectrum(W) for g, W in recurrent_blocks(cell).items()}
    save_png(_plot_spectrum(blocks, what), out)
    ckpt.atomic_write_json(out.with_suffix(".json"), {"cell": what, "blocks": blocks})
    print(what)
    for g, s in blocks.items():
        p = s["power"]
        if not s["dominant"]["is_real"]:
            found = "the top eigenvalues are a complex pair: power iteration does not settle"
        elif p["converged"]:
            found = f"power iteration {p['estimate']:.6f} in {p['iterations']} steps (error {p['error']:.1e})"
        else:
            found = (
                f"power iteration did not settle in {p['iterations']} steps: |lambda_2/lambda_1| = "
                f"{s['ratio']:.6f} (error {p['error']:.1e})"
            )
        radius, sigma = s["spectral_radius"], s["max_singular_value"]
        print(f"  {g}: spectral radius {radius:.4f}, largest singular value {sigma:.4f}; {found}")
    print(f"written: {out} and {out.with_suffix('.json')}")
    return 0


def _plot_spectrum(blocks: dict[str, dict[str, Any]], title: str) -> Any:
    plt = pyplot()

    n = len(blocks)
    fig, axes = plt.subplots(1, n + 1, figsize=(3.2 * (n + 1), 3.4), squeeze=False)
    circle = torch.linspace(0, 2 * torch.pi, 200)
    for ax, (g, s) in zip(axes[0], blocks.items(), strict=False):
        z = torch.tensor(s["eigenvalues"])
        ax.plot(circle.cos(), circle.sin(), color="grey", lw=0.8)
        ax.scatter(z[:, 0], z[:, 1], s=10)
        ax.set_aspect("equal")
        ax.set_title(f"{g}: rho = {s['spectral_radius']:.3f}", fontsize=9)
        ax.set_xlabel("Re")
    axes[0][0].set_ylabel("Im")
    conv = axes[0][n]
    for g, s in blocks.items():
        errors = s["power"]["errors"]
        if errors:
            conv.semilogy(range(1, len(errors) + 1), [max(e, 1e-16) for e in errors], label=g)
    conv.set_title("power iteration |lambda_k - lambda_1|", fontsize=9)
    conv.set_xlabel("iteration")
    if conv.get_legend_handles_labels()[0]:
        conv.legend(fontsize=8, loc="upper right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _layers(args: argparse.Namespace) -> list[tuple[str, Recurrent]]:
    """(label, recurrent layer) to analyse: a run's ``--module``, or fresh ``--cell``/``--compare`` cells."""
    from ..tasks.base import CELLS, RecurrentConfig

    given = [x is not None for x in (args.run, args.cell, args.compare)]
    if sum(given) != 1:
        raise ValueError("give one of: a run directory, --cell NAME, --compare A,B,...")
    for name in ("hidden", "layers", "steps", "batch"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.run is not None:
        model = open_model(args.run, ckpt.LATEST if args.latest else ckpt.BEST)
        layers = [(name, m) for name, m in model.named_modules() if isinstance(m, Recurrent)]
        if not layers:
            raise ValueError(f"the run {args.run!r} has no recurrent layer to analyse")
        if not 0 <= args.module < len(layers):
            names = ", ".join(f"{k}: {n}" for k, (n, _) in enumerate(layers))
            raise ValueError(
                f"--module {args.module} is out of range: the run's recurrent layers are {names}"
            )
        name, layer = layers[args.module]
        return [(f"{args.run}: {name}", layer)]
    names = (
        [args.cell] if args.cell is not None else [c.strip() for c in args.compare.split(",") if c.strip()]
    )
    unknown = [n for n in names if n not in CELLS]
    if unknown or not names:
        raise ValueError(
            f"unknown cell {', '.join(map(repr, unknown)) or '(none)'}: expected {', '.join(CELLS)}"
        )
    out = []
    for name in names:
        fb = args.forget_bias if name == "lstm" else None
        cfg = RecurrentConfig(
            cell=name, hidden=args.hidden, layers=args.layers, init=args.init, forget_bias=fb
        )
        cfg.validate()
        torch.manual_seed(args.seed)
        label = name + (f" (forget bias {fb:g})" if fb is not None else "")
        out.append((label, cfg.build_recurrent(args.hidden)))
    return out


def _cmd_gradients(args: argparse.Namespace) -> int:
    from .gradients import gradient_flow

    out = _png_path(args.out)
    results = {}
    for label, layer in _layers(args):
        g = torch.Generator().manual_seed(args.seed)
        x = torch.randn(args.batch, args.steps, layer.input_size, generator=g)
        results[label] = gradient_flow(layer, x, seed=args.seed)
    save_png(_plot_gradients(results), out)
    ckpt.atomic_write_json(out.with_suffix(".json"), results)
    for label, r in results.items():
        for k, layer in enumerate(r["layers"]):
            far = layer["grad_norm"][0] / max(layer["grad_norm"][-1], 1e-300)
            print(
                f"{label}, layer {k}: the gradient falls by x{layer['grad_decay']:.3f} per step "
                f"(Jacobian product x{layer['jacobian_decay']:.3f}); {r['steps'] - 1} steps back it is "
                f"{far:.1e} of its value at the loss"
            )
    print(f"written: {out} and {out.with_suffix('.json')}")
    return 0


def _plot_gradients(results: dict[str, dict[str, Any]]) -> Any:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, r) in enumerate(results.items()):
        color = f"C{i}"
        for k, layer in enumerate(r["layers"]):
            back = list(range(r["steps"]))
            tag = label + (f", layer {k}" if len(r["layers"]) > 1 else "")
            ax.semilogy(back, [max(v, 1e-300) for v in reversed(layer["grad_norm"])], color=color,
                        alpha=1.0 - 0.25 * k, label=f"{tag}: |dL/ds_t|")  # fmt: skip
            if "jacobian_norm" in layer:
                ax.semilogy(back, [max(v, 1e-300) for v in reversed(layer["jacobian_norm"])], color=color,
                            ls="--", alpha=1.0 - 0.25 * k, label=f"{tag}: |ds_T/ds_t|")  # fmt: skip
    ax.set_xlabel("steps back from the loss (T - t)")
    ax.set_ylabel("norm (log scale)")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def _check_char_lm(run: Any, command: str, path: str) -> None:
    """``ValueError`` unless ``run`` is a language model over characters."""
    from ..models import LanguageModel

    if not isinstance(run.model, LanguageModel):
        raise ValueError(f"analyze {command} reads a char-LM run; {path!r} is a {run.config.TASK} run")
    if run.config.data.unit != "char":
        raise ValueError(
            f"analyze {command} reads a char-LM run; {path!r} models {run.config.data.unit}s, not characters"
        )


def _cmd_jacobian(args: argparse.Namespace) -> int:
    from .jacobian import MAX_CHARS, sequential_jacobian

    out = _png_path(args.out)
    if not args.text:
        raise ValueError("--text is empty: give the text to read")
    if len(args.text) > MAX_CHARS:
        raise ValueError(
            f"--text has {len(args.text)} characters; the limit is {MAX_CHARS}: give a shorter one"
        )
    run = open_any_run(args.run, ckpt.LATEST if args.latest else ckpt.BEST)
    _check_char_lm(run, "jacobian", args.run)
    norms = sequential_jacobian(run.model, run.vocab.encode(args.text))
    save_png(_plot_jacobian(args.text, norms), out)
    ckpt.atomic_write_json(out.with_suffix(".json"), {"run": args.run, "text": args.text, "norms": norms})
    top = max(norms)
    reach = next((len(norms) - 1 - t for t in range(len(norms)) if norms[t] >= 0.01 * top), 0)
    print(f"the last output depends on inputs up to {reach} characters back (1% of the largest norm)")
    print(f"written: {out} and {out.with_suffix('.json')}")
    return 0


def _plot_jacobian(text: str, norms: list[float]) -> Any:
    from matplotlib import colors

    plt = pyplot()

    rows = _text_rows(text)
    fig, (ax, curve) = plt.subplots(
        2, 1, figsize=(9, 1.2 + 0.3 * rows + 2.4), height_ratios=[0.3 * rows + 0.6, 2.4]
    )
    values = [max(v, 1e-12) for v in norms]
    scale = colors.LogNorm(vmin=max(min(values), max(values) * 1e-6), vmax=max(values))
    cmap = plt.get_cmap("viridis")
    _text_heatmap(ax, text, [cmap(scale(v)) for v in values], "white")
    ax.set_title("|d y_T / d x_t| over the text (log colour scale)", fontsize=9)
    curve.semilogy(range(len(norms)), list(reversed(values)))
    curve.set_xlabel("characters back from the last one")
    curve.set_ylabel("|d y_T / d x_t|")
    fig.tight_layout()
    return fig


WIDTH = 60  # characters per row of a text heat map


def _text_rows(text: str) -> int:
    return (len(text) + WIDTH - 1) // WIDTH


def _text_heatmap(ax: Any, text: str, colours: list[Any], ink: str | None = None) -> None:
    """Draw ``text`` WIDTH characters a row on ``ax``, character t on a square of ``colours[t]``
    (RGBA tuples), in ``ink``, or (None) in black or white, whichever reads better on its square."""
    plt = pyplot()

    for t, ch in enumerate(text):
        r, c = divmod(t, WIDTH)
        ax.add_patch(plt.Rectangle((c, -r - 1), 1, 1, color=colours[t]))
        shown = {"\n": "⏎", " ": "·"}.get(ch, ch)
        red, green, blue = colours[t][:3]
        colour = ink or ("black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white")
        ax.text(
            c + 0.5, -r - 0.5, shown, ha="center", va="center", fontsize=7, family="monospace", color=colour
        )
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(-_text_rows(text), 0)
    ax.axis("off")


def _cmd_neurons(args: argparse.Namespace) -> int:
    from ..data.text import read_text
    from . import neurons

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out writes an HTML page: give a name ending in .html, got {args.out!r}")
    text = read_text(args.text)
    if len(text) > neurons.MAX_CHARS:
        raise ValueError(
            f"{args.text!r} has {len(text)} characters; the limit is {neurons.MAX_CHARS} (the page holds "
            "every unit's value at every character): give a shorter text"
        )
    run = open_any_run(args.run, ckpt.LATEST if args.latest else ckpt.BEST)
    _check_char_lm(run, "neurons", args.run)
    layers = len(run.model.rnn.cells)
    if args.layer is not None and not 0 <= args.layer < layers:
        raise ValueError(
            f"--layer {args.layer} is out of range: the run has {layers} layers (0..{layers - 1})"
        )
    ids = run.vocab.encode(text)
    signals = neurons.activations(run.model, ids)
    ranking = neurons.correlations(signals, neurons.text_features(text))
    start = _first_view(args, signals, ranking)
    title = f"{args.run} ({type(run.model.rnn.cells[0]).__name__}, {layers} layers), {len(text)} characters"
    title += f" of {Path(args.text).name}"
    page = neurons.render_page(neurons.page_data(text, signals, ranking, title, start))
    ckpt.atomic_write_bytes(out, page.encode("utf-8"))
    shown = signals[start[0]]
    fig = _plot_unit(
        text, shown.values[:, start[1]].tolist(), f"{shown.name}, unit {start[1]}", shown.bounded01
    )
    save_png(fig, out.with_suffix(".png"))
    summary = {
        "run": args.run,
        "text": args.text,
        "characters": len(text),
        "signals": [{"name": s.name, "units": s.values.size(1)} for s in signals],
        "features": {
            name: {**f, "units": [{**u, "signal": signals[u["signal"]].name} for u in f["units"]]}
            for name, f in ranking.items()
        },
        "start": {"signal": shown.name, "unit": start[1]},
    }
    ckpt.atomic_write_json(out.with_suffix(".json"), summary)
    for name, f in summary["features"].items():
        if f["present"]:
            best = f["units"][0]
            print(f"{name}: {best['signal']} #{best['unit']} (r = {best['r']:+.2f})")
        else:
            print(f"{name}: not in this text")
    print(f"written: {out} (open it in a browser), {out.with_suffix('.png')} and {out.with_suffix('.json')}")
    return 0


def _first_view(args: argparse.Namespace, signals: list[Any], ranking: dict[str, Any]) -> tuple[int, int]:
    """(signal, unit) the page opens on: ``--layer``/``--unit`` of h, else the best-correlated unit."""
    if args.layer is None and args.unit is None:
        best = max(
            (u for f in ranking.values() for u in f["units"][:1]), key=lambda u: abs(u["r"]), default=None
        )
        return (0, 0) if best is None else (best["signal"], best["unit"])
    layer = args.layer or 0
    index = next(i for i, s in enumerate(signals) if s.layer == layer and s.kind == "h")
    units = signals[index].values.size(1)
    unit = args.unit or 0
    if not 0 <= unit < units:
        raise ValueError(f"--unit {unit} is out of range: layer {layer} has {units} units (0..{units - 1})")
    return index, unit


def _plot_unit(text: str, values: list[float], title: str, bounded01: bool) -> Any:
    """The text coloured by one unit (its first 1200 characters), as the page shows it."""
    from matplotlib import colors

    plt = pyplot()

    text, values = text[:1200], values[:1200]
    rows = _text_rows(text)
    fig, ax = plt.subplots(figsize=(9, 0.3 * rows + 0.8))
    top = max(1.0, max(abs(v) for v in values))
    if bounded01:
        cmap, scale = plt.get_cmap("Greens"), colors.Normalize(0, 1)
    else:
        cmap, scale = plt.get_cmap("RdBu_r"), colors.Normalize(-top, top)
    _text_heatmap(ax, text, [cmap(scale(v)) for v in values])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
