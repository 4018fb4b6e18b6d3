"""A sequence tagger (many-to-many): one tag per word of a sentence.

    w_t = [E[word_t] ; charenc(characters of word_t)]     (B, T, D + C)
    h_t = Recurrent(w_t)                                   (B, T, N), bidirectional by default
    emissions_t = W h_t + b                                (B, T, K)
    softmax: tag_t = argmax_k emissions_t[k], trained with cross-entropy per word
    crf:     the best sequence under a linear-chain CRF on the emissions (Lample et al. 2016)

The character encoder (Plank et al. 2016; Lample et al. 2016) reads each word's characters
(``lstm``: a small BiLSTM, its two final states; ``cnn``: a width-3 convolution, max-pooled),
so a word never seen in training still gets a vector from its spelling (suffixes, capitals,
digits, hyphens). It reads the real words only; while the model is exported (``unrolled export``)
it reads every position, pads included, and zeroes the pads' vectors: the same function, with
shapes that follow the inputs' rather than the number of real words.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells import LSTMCell
from ..layers import Recurrent
from ..layers.crf import LinearChainCRF

CHAR_ENCODERS = ("none", "lstm", "cnn")
DECODERS = ("softmax", "crf")


class CharEncoder(nn.Module):
    """Each word's characters (N, W) with their counts (N,) -> one vector per word (N, out)."""

    def __init__(self, num_chars: int, kind: str, char_dim: int = 25, size: int = 25) -> None:
        super().__init__()
        if kind not in ("lstm", "cnn"):
            raise ValueError(f"unknown character encoder {kind!r}: expected lstm or cnn")
        self.kind = kind
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        if kind == "lstm":
            self.rnn = Recurrent(lambda i: LSTMCell(i, size), char_dim, bidirectional=True, batch_first=True)
            self.out_size = 2 * size
        else:
            self.conv = nn.Conv1d(char_dim, 2 * size, kernel_size=3, padding=1)
            self.out_size = 2 * size

    def forward(self, chars: Tensor, lengths: Tensor) -> Tensor:
        x = self.embed(chars)  # (N, W, c)
        if self.kind == "lstm":
            _, (h, _) = self.rnn(x, lengths=lengths)  # h: (2, N, size): each direction's final state
            return torch.cat([h[0], h[1]], dim=1)
        y = self.conv(x.transpose(1, 2))  # (N, out, W)
        pad = torch.arange(chars.size(1), device=chars.device)[None] >= lengths[:, None]
        return y.masked_fill(pad[:, None], float("-inf")).amax(dim=2)


class Tagger(nn.Module):
    """Word (and character) features -> recurrent layer -> per-word tag scores (see the module
    docstring). ``forward(words (B, T), chars (B, T, W), lengths (B,))`` -> emissions (B, T, K)."""

    def __init__(
        self,
        num_words: int,
        num_chars: int,
        num_tags: int,
        rnn: Recurrent,
        embedding_dim: int,
        char_encoder: str = "lstm",
        decoder: str = "softmax",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if char_encoder not in CHAR_ENCODERS:
            raise ValueError(f"unknown --char-encoder {char_encoder!r}: expected {', '.join(CHAR_ENCODERS)}")
        if decoder not in DECODERS:
            raise ValueError(f"unknown --decoder {decoder!r}: expected {', '.join(DECODERS)}")
        self.embed = nn.Embedding(num_words, embedding_dim, padding_idx=0)
        self.chars = None if char_encoder == "none" else CharEncoder(num_chars, char_encoder)
        width = embedding_dim + (0 if self.chars is None else self.chars.out_size)
        if rnn.input_size != width:
            raise ValueError(f"the recurrent layer's input_size must be {width}, got {rnn.input_size}")
        self.rnn = rnn
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(rnn.output_size, num_tags)  # both directions' widths
        self.crf = LinearChainCRF(num_tags) if decoder == "crf" else None

    def forward(self, words: Tensor, chars: Tensor, lengths: Tensor) -> Tensor:
        x = self.embed(words)  # (B, T, D)
        if self.chars is not None:
            x = torch.cat([x, self.char_features(words, chars).to(x.dtype)], dim=2)
        h, _ = self.rnn(self.drop(x), lengths=lengths)
        return self.out(self.drop(h))

    def char_features(self, words: Tensor, chars: Tensor) -> Tensor:
        """The character encoder's vector of each word, zeros at the pads (word id 0): (B, T, C)."""
        assert self.chars is not None
        mask = words != 0  # (B, T)
        char_lengths = (chars != 0).sum(2)  # (B, T)
        if torch.compiler.is_exporting():
            # every position, pads included, so that the graph's shapes follow its inputs' (the
            # real words alone are a data-dependent count); a pad's vector is replaced by zeros
            B, T, W = chars.shape
            every = self.chars(chars.reshape(B * T, W), char_lengths.reshape(B * T))  # (B*T, C)
            return torch.where(mask.unsqueeze(2), every.reshape(B, T, -1), 0.0)
        flat = self.chars(chars[mask], char_lengths[mask])  # real words only: (N, C)
        per_word = flat.new_zeros(*words.shape, flat.size(1))
        per_word[mask] = flat
        return per_word

    @staticmethod
    def mask(lengths: Tensor, T: int) -> Tensor:
        return torch.arange(T, device=lengths.device)[None] < lengths[:, None]

    def loss(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """Mean per word: cross-entropy (softmax) or the CRF's -log p(tags) over the words."""
        mask = self.mask(lengths, emissions.size(1))
        if self.crf is None:
            return F.cross_entropy(emissions[mask], tags[mask])
        return self.crf.nll(emissions, tags, mask).sum() / mask.sum()

    def decode(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        """Tag ids (B, T); positions past a sentence's end hold 0."""
        mask = self.mask(lengths, emissions.size(1))
        if self.crf is None:
            return emissions.argmax(2) * mask
        return self.crf.decode(emissions, mask)
