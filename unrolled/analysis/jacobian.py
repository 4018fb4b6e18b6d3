"""The sequential Jacobian (Graves 2012): how much the last output depends on each input.

For a language model reading x_1 .. x_T, the entry for position t is the Frobenius norm of
d y_T / d e_t, the Jacobian of the logits at the last position with respect to the input vector
at position t (the embedding of character t, or its one-hot vector). Where it has fallen to
nothing, the model no longer looks: it shows how far back the model's memory reaches in
practice, on real text, where :mod:`.gradients` shows it on random inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models import LanguageModel

MAX_CHARS = 1000  # the Jacobian has V x T x E entries: longer texts are refused, not cut


@torch.enable_grad()
def sequential_jacobian(model: LanguageModel, ids: Tensor) -> list[float]:
    """||d y_T / d x_t||_F for t = 0..T-1 of one token sequence ``ids`` (T,)."""
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"ids must be a non-empty 1-D sequence, got shape {tuple(ids.shape)}")
    was_training = model.training
    model.eval()
    ids = ids.to(model.device)
    if model.embed is not None:
        x = model.embed(ids[None]).detach()
    else:
        x = F.one_hot(ids[None], model.vocab_size).to(model.dtype)

    def last_logits(inputs: Tensor) -> Tensor:
        out, _ = model.rnn(inputs)
        return model.scores(out[:, -1])[0]  # (V,)

    J = torch.autograd.functional.jacobian(last_logits, x)  # (V, 1, T, E): one backward per output
    model.train(was_training)
    return J[:, 0].norm(dim=(0, 2)).tolist()
