"""An RNN encoder-decoder (seq2seq) with no attention, Bahdanau's or Luong's.

Encoder (any :class:`unrolled.Recurrent`, optionally bidirectional, run on the true lengths)::

    h_s, state = Encoder(E_src[x_s])         outputs (B, S, C), C = D * hidden per direction

The decoder starts from the encoder's final state (a bidirectional encoder's two directions are
concatenated per layer, so each direction has half the decoder's width, as in OpenNMT's brnn)
and, with y_0 = <bos>, for t = 1..T:

- ``none`` (d2l's form, Cho et al. 2014): a fixed context c, the top layer's final encoder
  state, is concatenated to every input: s_t = RNN([E_tgt[y_{t-1}]; c], s_{t-1}),
  logits_t = W s_t;
- ``bahdanau`` (d2l's attention decoder; Bahdanau et al. 2015): the previous top-layer state
  attends over the encoder outputs: c_t = Attn_add(s_{t-1}, h), s_t = RNN([E_tgt[y_{t-1}]; c_t],
  s_{t-1}), logits_t = W s_t;
- ``luong`` (Luong et al. 2015, general score, without input feeding): s_t = RNN(E_tgt[y_{t-1}],
  s_{t-1}), c_t = Attn_gen(s_t, h), s~_t = tanh(W_c [c_t; s_t]), logits_t = W s~_t.

Every attention masks the source pads. With teacher forcing (the gold y_{t-1} as input) ``none``
and ``luong`` run the decoder over all T steps at once; ``bahdanau``, and any run that feeds back
the model's own predictions, step through time with :meth:`Seq2Seq.step`, which is also what
greedy and beam search call (:mod:`unrolled.models.decoding`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..cells.base import map_state, state_tensors
from ..layers import Recurrent
from ..layers.attention import AdditiveAttention, GeneralAttention

ATTENTIONS = ("none", "bahdanau", "luong")


@dataclass
class Memory:
    """What the decoder reads of one batch of source sentences (every tensor batch-first)."""

    outputs: Tensor  # (B, S, C) encoder outputs, zero past each sentence's end
    mask: Tensor  # (B, S) bool, True on the real positions
    keys: Tensor | None  # (B, S, ·) the attention's prepared keys (None without attention)
    context: Tensor | None  # (B, C) the fixed context of attention "none"

    def select(self, rows: Tensor) -> Memory:
        """The memory of batch rows ``rows`` (in that order, repeats allowed)."""
        keys = None if self.keys is None else self.keys.index_select(0, rows)
        context = None if self.context is None else self.context.index_select(0, rows)
        return Memory(self.outputs.index_select(0, rows), self.mask.index_select(0, rows), keys, context)


class Seq2Seq(nn.Module):
    """Encoder-decoder over a source and a target vocabulary (see the module docstring).

    Args:
        src_vocab, tgt_vocab: vocabulary sizes (id 0 is the pad of both).
        encoder: batch-first :class:`Recurrent` with ``input_size == embedding_dim``; may be
            bidirectional.
        decoder: batch-first, unidirectional :class:`Recurrent` with as many layers, a cell state
            as wide as the encoder's two directions together, and ``input_size`` embedding_dim
            + C (``none``, ``bahdanau``) or embedding_dim (``luong``).
        embedding_dim: E, of both embeddings.
        attention: ``"none"``, ``"bahdanau"`` or ``"luong"``.
        dropout: on the embeddings and before the output layer (training only).

    Shapes: ``forward(src (B, S), src_lengths (B,), tgt_in (B, T))`` -> logits (B, T, V_tgt).
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        encoder: Recurrent,
        decoder: Recurrent,
        embedding_dim: int,
        attention: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r}: expected one of {', '.join(ATTENTIONS)}")
        if not (encoder.batch_first and decoder.batch_first) or decoder.bidirectional:
            raise ValueError("the encoder and decoder must be batch_first, the decoder unidirectional")
        if encoder.num_layers != decoder.num_layers:
            raise ValueError(
                f"the decoder starts from the encoder's state: both need as many layers, "
                f"got {encoder.num_layers} and {decoder.num_layers}"
            )
        C = encoder.output_size
        H = decoder.hidden_size
        if encoder.num_directions * encoder.hidden_size != H:
            raise ValueError(
                f"the decoder's hidden size ({H}) must equal the encoder's over its directions "
                f"({encoder.num_directions} x {encoder.hidden_size})"
            )
        expected = embedding_dim + (0 if attention == "luong" else C)
        if decoder.input_size != expected:
            raise ValueError(f"the decoder's input_size must be {expected} for attention {attention!r}")
        self.attention_kind = attention
        self.src_embed = nn.Embedding(src_vocab, embedding_dim, padding_idx=0)
        self.tgt_embed = nn.Embedding(tgt_vocab, embedding_dim, padding_idx=0)
        self.encoder, self.decoder = encoder, decoder
        self.drop = nn.Dropout(dropout)
        O = decoder.output_size
        self.attention: AdditiveAttention | GeneralAttention | None = None
        self.combine: nn.Linear | None = None
        if attention == "bahdanau":
            self.attention = AdditiveAttention(O, C, H)
        elif attention == "luong":
            self.attention = GeneralAttention(O, C)
            self.combine = nn.Linear(C + O, O, bias=False)
        self.out = nn.Linear(O, tgt_vocab)

    # ---- encoder -----------------------------------------------------------------------------
    def encode(self, src: Tensor, lengths: Tensor) -> tuple[Memory, Any]:
        """Source ids (B, S) with their lengths -> the memory and the decoder's initial state."""
        outputs, final = self.encoder(self.drop(self.src_embed(src)), lengths=lengths)
        if self.encoder.bidirectional:  # (2L, B, X) -> (L, B, 2X): each layer's two directions side by side
            final = map_state(lambda t: torch.cat([t[0::2], t[1::2]], dim=-1), final)
        mask = torch.arange(src.size(1), device=src.device) < lengths.to(src.device).unsqueeze(1)
        keys = None if self.attention is None else self.attention.prepare(outputs)
        context = state_tensors(final)[0][-1] if self.attention_kind == "none" else None  # top layer's h
        return Memory(outputs, mask, keys, context), final

    # ---- decoder -----------------------------------------------------------------------------
    def decode(self, memory: Memory, state: Any, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits (B, T, V) for the inputs ``tgt_in`` (B, T), and the attention
        weights (B, T, S) (None for ``none``)."""
        if self.attention_kind == "bahdanau":
            logits, weights = [], []
            for t in range(tgt_in.size(1)):
                step_logits, state, w = self.step(memory, tgt_in[:, t], state)
                logits.append(step_logits)
                weights.append(w)
            return torch.stack(logits, dim=1), torch.stack(weights, dim=1)  # type: ignore[arg-type]
        emb = self.drop(self.tgt_embed(tgt_in))  # (B, T, E)
        if memory.context is not None:
            emb = torch.cat([emb, memory.context.unsqueeze(1).expand(-1, emb.size(1), -1)], dim=-1)
        out, _ = self.decoder(emb, state)  # (B, T, O)
        return self._output(memory, out)

    def _output(self, memory: Memory, out: Tensor) -> tuple[Tensor, Tensor | None]:
        weights = None
        if self.attention_kind == "luong":
            assert self.attention is not None and self.combine is not None and memory.keys is not None
            context, weights = self.attention(out, memory.keys, memory.outputs, memory.mask)
            out = torch.tanh(self.combine(torch.cat([context, out], dim=-1)))
        return self.out(self.drop(out)), weights

    def step(self, memory: Memory, tokens: Tensor, state: Any) -> tuple[Tensor, Any, Tensor | None]:
        """One decoder step: previous tokens (B,) -> logits (B, V), the new state, attention (B, S)."""
        emb = self.drop(self.tgt_embed(tokens))  # (B, E)
        weights = None
        if self.attention_kind == "bahdanau":
            assert self.attention is not None and memory.keys is not None
            query = state_tensors(state)[0][-1]  # the top layer's previous h (B, O)
            context, weights = self.attention(query, memory.keys, memory.outputs, memory.mask)
            emb = torch.cat([emb, context], dim=-1)
        elif memory.context is not None:
            emb = torch.cat([emb, memory.context], dim=-1)
        out, state = self.decoder(emb.unsqueeze(1), state)  # (B, 1, O)
        logits, luong = self._output(memory, out)
        if luong is not None:
            weights = luong[:, 0]
        return logits[:, 0], state, weights

    @staticmethod
    def select(memory: Memory, state: Any, rows: Tensor) -> tuple[Memory, Any]:
        """The memory and decoder state of batch rows ``rows`` (beam search reorders with it)."""
        return memory.select(rows), map_state(lambda t: t.index_select(1, rows), state)

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> Tensor:
        """Logits (B, T, V) for every target position.

        ``teacher_forcing`` is the probability of feeding the gold previous token at each step
        (per sentence and step); otherwise the model's own likeliest previous token is fed back
        (scheduled sampling, Bengio et al. 2015). Step 0 always reads ``<bos>``.
        """
        memory, state = self.encode(src, src_lengths)
        if teacher_forcing >= 1.0:
            return self.decode(memory, state, tgt_in)[0]
        logits, tokens = [], tgt_in[:, 0]
        for t in range(tgt_in.size(1)):
            step_logits, state, _ = self.step(memory, tokens, state)
            logits.append(step_logits)
            if t + 1 < tgt_in.size(1):
                gold = torch.rand(tgt_in.size(0), device=tgt_in.device) < teacher_forcing
                tokens = torch.where(gold, tgt_in[:, t + 1], step_logits.detach().argmax(-1))
        return torch.stack(logits, dim=1)
