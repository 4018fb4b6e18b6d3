"""What several tasks share (not a task itself): the ``--cell`` flags, and ``--init-from LM_RUN``.

:class:`RecurrentConfig` is a config section's base: a task's model config subclasses it (and
may redeclare a field to change its default), so that ``--cell``, ``--hidden``, ``--layers`` and
the cell options read the same in ``unrolled train charlm`` and ``unrolled train translate``.
:func:`load_pretrained` reads what a classifier or a tagger takes from a language-model run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from torch import Tensor, nn

from ..cells import GRUCell, LSTMCell, MinGRUCell, MinLSTMCell, MogrifierLSTMCell, MUTCell, RNNCell
from ..cells.init import SCHEMES, init_recurrent_
from ..cells.lstm import VARIANTS, resolve_variant
from ..layers import Recurrent
from ..training import checkpoint as ckpt
from ..training import flag
from ..training.config import positive

# --cell NAME -> the cell class (and fixed arguments) that every layer of the model is built from
CELLS: dict[str, Callable[..., nn.Module]] = {
    "rnn": RNNCell,
    "lstm": LSTMCell,
    "gru": GRUCell,
    "mut1": functools.partial(MUTCell, arch=1),
    "mut2": functools.partial(MUTCell, arch=2),
    "mut3": functools.partial(MUTCell, arch=3),
    "mingru": MinGRUCell,  # Feng et al. 2024: no recurrent weight, trained with a parallel scan
    "minlstm": MinLSTMCell,
    "mogrifier": MogrifierLSTMCell,  # Melis et al. 2020: input and state gate each other, then an LSTM step
}


@dataclass
class RecurrentConfig:
    """Which cell every recurrent layer is built from, how wide and deep, and its options."""

    # recurrent cell; GRU (3 gates, not 4) trains ~1.3x the chars/s of our LSTM on a CPU
    cell: str = flag("gru", choices=tuple(CELLS))
    hidden: int = 256  # units per layer
    layers: int = 2  # stacked recurrent layers
    variant: str | None = flag(None, choices=tuple(VARIANTS))  # LSTM variant of Greff et al. (--cell lstm)
    forget_bias: float | None = None  # initial forget-gate bias, 1 per Jozefowicz et al. (--cell lstm)
    layer_norm: bool = False  # layer-normalised gate products, Ba et al. 2016 (--cell lstm or gru)
    recurrent_dropout: float = 0.0  # variational dropout on h, Gal 2016 (--cell lstm or gru)
    zoneout: float = 0.0  # probability of a unit keeping its value, Krueger et al. 2017 (lstm or gru)
    # weight initialisation per gate block: uniform (torch's), xavier, orthogonal (recurrent blocks)
    init: str = flag("uniform", choices=tuple(SCHEMES))
    # GRU of Cho et al./d2l: the reset gate on h before the recurrent product (--cell gru)
    reset_after: bool = flag(True, name="reset-before")
    # the dropout between layers (and a language model's on its input and output) draws one mask
    # per sequence, the same at every step (variational dropout, Gal & Ghahramani 2016; AWD-LSTM)
    locked_dropout: bool = False
    # DropConnect on every layer's recurrent weights W_hh, one mask per batch (AWD-LSTM's weight drop)
    weight_drop: float = 0.0
    mogrify_rounds: int = 5  # --cell mogrifier: rounds of mutual gating of x and h (0: a plain LSTM)
    mogrify_rank: int = 0  # --cell mogrifier: rank of the rounds' matrices (0: full matrices)

    def validate(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown --cell {self.cell!r}: expected one of {', '.join(CELLS)}")
        if self.init not in SCHEMES:
            raise ValueError(f"unknown --init {self.init!r}: expected one of {', '.join(SCHEMES)}")
        if self.init != "uniform" and self.cell in ("mingru", "minlstm"):
            raise ValueError(
                f"--init {self.init} sets the recurrent weight blocks; --cell {self.cell} has no recurrent "
                "weight: use --init uniform"
            )
        for name in ("layer_norm", "recurrent_dropout", "zoneout"):
            if getattr(self, name) and self.cell not in ("lstm", "gru"):
                option = "--" + name.replace("_", "-")
                raise ValueError(f"{option} applies to --cell lstm or gru, got --cell {self.cell}")
        if self.weight_drop and self.cell in ("mingru", "minlstm"):
            raise ValueError(f"--weight-drop drops recurrent weights; --cell {self.cell} has none")
        for name, default in (("mogrify_rounds", 5), ("mogrify_rank", 0)):
            value, option = getattr(self, name), "--" + name.replace("_", "-")
            if value < 0:
                raise ValueError(f"{option} must be >= 0, got {value}")
            if value != default and self.cell != "mogrifier":
                raise ValueError(f"{option} applies to --cell mogrifier only, got --cell {self.cell}")
        for name in ("recurrent_dropout", "zoneout", "weight_drop"):
            value = getattr(self, name)  # None: a task's default, set later
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
        if not self.reset_after and self.cell != "gru":
            raise ValueError(f"--reset-before applies to --cell gru only, got --cell {self.cell}")
        for name in ("variant", "forget_bias"):
            if getattr(self, name) is not None and self.cell != "lstm":
                option = "--" + name.replace("_", "-")
                raise ValueError(f"{option} applies to --cell lstm only, got --cell {self.cell}")
        if self.cell == "lstm":
            resolve_variant(self.variant)
        positive(self, ("hidden", "layers"))

    def cell_factory(self, hidden: int | None = None) -> Callable[[int], nn.Module]:
        """``input_size -> cell`` with this section's options (``hidden``: other than ``--hidden``)."""
        options: dict[str, Any] = {}
        if self.cell in ("lstm", "gru"):
            options = {
                "layer_norm": self.layer_norm,
                "recurrent_dropout": self.recurrent_dropout,
                "zoneout": self.zoneout,
            }
        if self.cell == "lstm":
            options |= {"variant": self.variant, "forget_bias": self.forget_bias}
        if self.cell == "gru":
            options["reset_after"] = self.reset_after
        if self.cell == "mogrifier":
            options = {"rounds": self.mogrify_rounds, "rank": self.mogrify_rank or None}
        return functools.partial(CELLS[self.cell], hidden_size=hidden or self.hidden, **options)

    def build_recurrent(
        self, input_size: int, *, dropout: float = 0.0, bidirectional: bool = False, hidden: int | None = None
    ) -> Recurrent:
        """A batch-first :class:`Recurrent` of ``--layers`` layers of this cell, initialised by ``--init``;
        ``dropout`` between the layers."""
        rnn = Recurrent(
            self.cell_factory(hidden),
            input_size,
            num_layers=self.layers,
            bidirectional=bidirectional,
            dropout=dropout if self.layers > 1 else 0.0,
            batch_first=True,
            locked_dropout=self.locked_dropout,
            weight_drop=self.weight_drop,
        )
        if self.init != "uniform":  # uniform is what the cells start with; keep seeds reproducible
            init_recurrent_(rnn, self.init, forget_bias=self.forget_bias)
        return rnn


# ---- --init-from LM_RUN: transfer from a language model (ULMFiT) -----------------------------
@dataclass
class Pretrained:
    """What a task takes from a language-model run: its vocabulary and tokeniser, the config of its
    recurrent encoder, and the weights to start from (``embed.weight`` and ``rnn.*``, on the CPU)."""

    vocab: Any  # the LM's WordVocab (words or pieces)
    subwords: Any  # its sentencepiece model (unrolled.data.subwords.Subwords), or None for words
    tokens: str  # "word", "bpe" or "unigram"
    lower: bool  # the LM read its text lower-cased
    encoder: dict[str, Any]  # the LM's RecurrentConfig fields: RecurrentConfig(**encoder) rebuilds it
    embedding_dim: int
    weights: dict[str, Tensor]


def load_pretrained(path: str, units: tuple[str, ...], who: str) -> Pretrained:
    """Read the language-model run at ``path`` (its best weights) for ``who`` (``"the classifier"``);
    ``ValueError`` unless it is an LM over one of ``units`` with a learned embedding."""
    from ..api import load  # the registry: a task never imports another task module

    lm = load(path, which=ckpt.BEST)
    if lm.task != "lm" or getattr(lm, "unit", None) not in units:
        what = f"a {lm.task} run" if lm.task != "lm" else f"a language model over {lm.unit}s"
        need = " or ".join(f"{unit}s" for unit in units)
        raise ValueError(
            f"--init-from {path!r} is {what}: it must be a language model over {need} (unrolled train lm "
            f"--unit {'|'.join(units)}) whose vocabulary and tokeniser {who} adopts"
        )
    model, config = lm.model, lm.config
    if model.embed is None:
        raise ValueError(f"--init-from {path!r} reads one-hot tokens: {who} needs its embedding")
    weights = {"embed.weight": model.embed.weight.detach().cpu().clone()}
    weights |= {f"rnn.{k}": v.detach().cpu().clone() for k, v in model.rnn.state_dict().items()}
    return Pretrained(
        vocab=lm.vocab,
        subwords=lm.run.subwords,
        tokens="word" if lm.unit == "word" else config.data.tokens,
        lower=bool(config.data.lower),
        encoder={f.name: getattr(config.model, f.name) for f in fields(RecurrentConfig)},
        embedding_dim=config.model.embedding_dim,
        weights=weights,
    )


def follow(
    section: Any, defaults: Any, lm_values: Mapping[str, Any], shown: Mapping[str, Any] | None = None
) -> None:
    """Set ``section``'s fields to the language model's ``lm_values``; ``ValueError`` for a field
    the user set (other than its default) to something else: the architecture follows the LM.
    ``shown``: how to name an LM value in the message (default: the value itself)."""
    for name, lm_value in lm_values.items():
        given = getattr(section, name)
        if given != getattr(defaults, name) and given != lm_value:
            option, theirs = "--" + name.replace("_", "-"), (shown or {}).get(name, lm_value)
            raise ValueError(
                f"{option} {given} differs from the language model's ({theirs}): drop {option}, the "
                "architecture follows the LM"
            )
        setattr(section, name, lm_value)


def start_from(model: nn.Module, weights: Mapping[str, Tensor]) -> None:
    """Copy a language model's embedding and encoder (:attr:`Pretrained.weights`) into ``model``'s
    ``embed`` and ``rnn``, exactly."""
    import torch

    with torch.no_grad():
        model.embed.weight.copy_(weights["embed.weight"])
        model.rnn.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("rnn.")})
