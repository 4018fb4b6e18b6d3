"""What single units of a char-LM respond to (Karpathy, Johnson & Fei-Fei 2015).

The model reads a text one character at a time; after character t every unit of every layer has
a value: the output h_t, the LSTM's memory cell c_t, and the gates the cell computed on the way
(LSTM i, f, o and candidate g; GRU r, z and candidate n; see :func:`unrolled.cells.probe_gates`).
:func:`activations` collects them all as *signals*, one (T, units) tensor each.

Some units track a property of the text. :func:`text_features` computes a few such properties per
character (inside quotes, position in the line, after a newline, ...) and :func:`correlations`
ranks the units of every signal by Pearson's r with each of them:

    r(a, f) = sum_t (a_t - mean a)(f_t - mean f) / (T sd(a) sd(f))

:func:`render_page` writes everything into one self-contained HTML page (inline CSS and
JavaScript, no network) that colours the text by the unit one picks.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells import probe_gates
from ..models import LanguageModel

MAX_CHARS = 20_000  # the page holds every signal of every character: ~1.4 bytes x T x units
SIGMOID_GATES = frozenset("ifozr")  # gates in [0, 1] (coloured white to green); the rest in R
TOP = 8  # units listed per feature


@dataclass
class Signal:
    """One kind of value of one layer over the text: ``values`` (T, units)."""

    layer: int
    kind: str  # "h", "c" or "gate i" ...
    values: Tensor

    @property
    def name(self) -> str:
        return f"layer {self.layer} {self.kind}"

    @property
    def bounded01(self) -> bool:
        return self.kind.startswith("gate ") and self.kind[5:] in SIGMOID_GATES


@torch.no_grad()
def cell_signals(cell: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Step ``cell`` over one sequence ``x`` (T, I) from a zero state, and return what it computed.

    ``{"h": (T, P), "c": (T, H) for the LSTM family, "gate i": (T, H), ...}``: the output, the
    memory cell and every gate the cell hands to :func:`unrolled.cells.probe_gates`.
    """
    x = x[None]  # (1, T, I)
    if hasattr(cell, "start_sequence"):
        cell.start_sequence(1, device=x.device, dtype=x.dtype)
    state = cell.init_state(1, device=x.device, dtype=x.dtype)
    outs, cells = [], []
    with probe_gates(cell) as gates:
        for t in range(x.size(1)):
            h, state = cell(x[:, t], state)
            outs.append(h[0])
            if hasattr(state, "c"):  # the LSTM family's memory cell
                cells.append(state.c[0])
    out = {"h": torch.stack(outs)}
    if cells:
        out["c"] = torch.stack(cells)
    for name in gates[0] if gates else ():
        out[f"gate {name}"] = torch.stack([g[name][0] for g in gates])
    return out


@torch.no_grad()
def activations(model: LanguageModel, ids: Tensor) -> list[Signal]:
    """Every signal of ``model`` reading the token ids ``ids`` (T,) from a zero state.

    Runs the cells step by step (the reference loop, in evaluation mode), so that each cell's
    gates pass through its probe; returns, layer by layer, h, then c (LSTM family), then the gates.
    """
    if model.rnn.bidirectional:
        raise ValueError("analyze neurons reads a left-to-right model; this one is bidirectional")
    was_training = model.training
    model.eval()
    try:
        ids = ids.to(model.device)
        if model.embed is not None:
            x = model.embed(ids)
        else:
            x = F.one_hot(ids, model.vocab_size).to(model.dtype)  # (T, I)
        signals: list[Signal] = []
        for k, cell in enumerate(model.rnn.cells):
            values = cell_signals(cell, x)
            signals += [Signal(k, kind, v) for kind, v in values.items()]
            x = values["h"]
        return signals
    finally:
        model.train(was_training)


def text_features(text: str) -> dict[str, Tensor]:
    """Per-character properties of ``text``, each a (T,) float tensor.

    - inside quotes: between an opening and a closing double quote (" or curly quotes);
    - inside brackets: between ( and ) or [ and ], nested or not;
    - position in the line: characters since the last newline (0 for the first of a line);
    - after a newline: 1 for the first character of a line;
    - in a line ending with ':': a speaker's name in a play, a heading;
    - upper-case letter; inside a word: a letter or an apostrophe between letters.
    """
    T = len(text)
    quotes, brackets, position, first, colon_line, upper, word = ([0.0] * T for _ in range(7))
    inside, depth, column = False, 0, 0
    line_start = 0
    for t, ch in enumerate(text):
        if ch in '\u201c\u201d"':
            if ch == "\u201c" or (ch == '"' and not inside):
                inside = True
            else:
                inside = False
            quotes[t] = 1.0  # the quote marks belong to the quotation
        else:
            quotes[t] = float(inside)
        if ch in "([":
            depth += 1
        brackets[t] = float(depth > 0)
        if ch in ")]":
            depth = max(depth - 1, 0)
        position[t] = float(column)
        first[t] = float(t > 0 and text[t - 1] == "\n")
        column = 0 if ch == "\n" else column + 1
        upper[t] = float(ch.isupper())
        before = text[t - 1] if t > 0 else " "
        after = text[t + 1] if t + 1 < T else " "
        word[t] = float(ch.isalpha() or (ch == "'" and before.isalpha() and after.isalpha()))
        if ch == "\n" or t == T - 1:
            end = t if ch == "\n" else t + 1
            if text[line_start:end].rstrip().endswith(":"):
                colon_line[line_start:end] = [1.0] * (end - line_start)
            line_start = t + 1
    return {
        "inside quotes": torch.tensor(quotes),
        "inside brackets": torch.tensor(brackets),
        "position in the line": torch.tensor(position),
        "after a newline": torch.tensor(first),
        "in a line ending with ':'": torch.tensor(colon_line),
        "upper-case letter": torch.tensor(upper),
        "inside a word": torch.tensor(word),
    }


def pearson(values: Tensor, feature: Tensor) -> Tensor:
    """Pearson's r of every column of ``values`` (T, U) with ``feature`` (T,); 0 for a constant column."""
    a = values.double() - values.double().mean(0)
    f = feature.double() - feature.double().mean()
    denom = a.norm(dim=0) * f.norm()
    return torch.where(denom > 0, (a * f[:, None]).sum(0) / denom.clamp_min(1e-300), 0.0)


def correlations(signals: list[Signal], features: dict[str, Tensor], top: int = TOP) -> dict[str, Any]:
    """For each feature, the ``top`` units of all signals with the largest |r|.

    Returns ``{feature: {"present": bool, "units": [{"signal": i, "unit": u, "r": r}, ...]}}``;
    a feature that is constant over the text (no quotes in it, say) is not present and has no units.
    """
    out: dict[str, Any] = {}
    for name, f in features.items():
        if bool((f == f[0]).all()):
            out[name] = {"present": False, "units": []}
            continue
        rows = [(i, u, r) for i, s in enumerate(signals) for u, r in enumerate(pearson(s.values, f).tolist())]
        rows.sort(key=lambda row: -abs(row[2]))
        out[name] = {
            "present": True,
            "units": [{"signal": i, "unit": u, "r": round(r, 4)} for i, u, r in rows[:top]],
        }
    return out


def quantize(values: Tensor) -> tuple[str, list[float]]:
    """``values`` (T, U) as base64 int8 codes, row-major, and one scale per unit.

    Unit u's scale is max(1, max_t |v_tu|), and its code round(127 v / scale): bounded values
    (tanh, sigmoid) keep their absolute size, an unbounded one (a memory cell) is shown relative
    to its largest value over the text. A value is read back as code * scale / 127.
    """
    scale = values.abs().amax(0).clamp_min(1.0)  # (U,)
    codes = torch.round(values / scale * 127).clamp(-127, 127).to(torch.int8)
    return base64.b64encode(codes.contiguous().numpy().tobytes()).decode("ascii"), scale.tolist()


def page_data(
    text: str, signals: list[Signal], ranking: dict[str, Any], title: str, start: tuple[int, int]
) -> dict[str, Any]:
    """What the page's script reads: the text, every signal (quantised), the ranking, the first view."""
    packed = []
    for s in signals:
        codes, scale = quantize(s.values.float().cpu())
        packed.append(
            {
                "name": s.name,
                "units": s.values.size(1),
                "bounded01": s.bounded01,
                "codes": codes,
                "scale": scale,
            }
        )
    return {"title": title, "text": text, "signals": packed, "features": ranking, "start": list(start)}


def render_page(data: dict[str, Any]) -> str:
    """The self-contained HTML page (the template ``neurons.html`` with ``data`` inlined)."""
    template = resources.files(__package__).joinpath("neurons.html").read_text(encoding="utf-8")
    payload = json.dumps(data, ensure_ascii=True, separators=(",", ":")).replace("</", "<\\/")
    return template.replace("/*DATA*/null", payload, 1)
