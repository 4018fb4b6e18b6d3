"""Initialisation schemes for the stacked gate matrices of any cell, one gate block at a time.

A cell stacks the matrices of its G gates in the rows of ``weight_ih`` (G*H, I) and
``weight_hh`` (G*H, R). Initialising the stacked matrix as one would mix the gates' scales
(xavier's fan-out would count all G gates, an orthogonal (4H, H) matrix is not orthogonal per
gate), so every scheme here treats each (H, ·) block as the matrix it really is:

- ``"uniform"``: torch.nn's default, every parameter ~ U(-1/sqrt(H), 1/sqrt(H));
- ``"xavier"``: each block of ``weight_ih`` and ``weight_hh`` Glorot-uniform, biases 0;
- ``"orthogonal"``: each block of ``weight_ih`` Glorot-uniform, each (H, H) block of
  ``weight_hh`` orthogonal (Saxe et al. 2014), biases 0.

Other parameters (peepholes, layer-norm gains, projections) keep their values except under
``"uniform"``, which re-draws every parameter as torch.nn does.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import uniform_init_

SCHEMES = ("uniform", "xavier", "orthogonal")


def _blocks(weight: torch.Tensor, hidden_size: int) -> list[torch.Tensor]:
    return list(weight.split(hidden_size, dim=0))  # views: writing into them writes the matrix


@torch.no_grad()
def init_cell_(cell: nn.Module, scheme: str = "uniform") -> nn.Module:
    """Re-initialise one cell in place with ``scheme`` (see the module docstring); returns it."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    H = cell.hidden_size
    if scheme == "uniform":
        skip = tuple(n for n, _ in cell.named_parameters() if n.startswith("ln_"))
        uniform_init_(cell, H, skip=skip)
        return cell
    for block in _blocks(cell.weight_ih, H):
        nn.init.xavier_uniform_(block)
    for block in _blocks(cell.weight_hh, H):
        if scheme == "orthogonal" and block.size(0) == block.size(1):
            nn.init.orthogonal_(block)
        else:
            nn.init.xavier_uniform_(block)
    for name in ("bias_ih", "bias_hh"):
        bias = getattr(cell, name, None)
        if bias is not None:
            bias.zero_()
    return cell


def init_recurrent_(
    module: nn.Module, scheme: str = "uniform", forget_bias: float | None = None
) -> nn.Module:
    """Re-initialise every cell inside ``module`` (a cell, a layer or a whole model).

    ``forget_bias`` is applied afterwards to the cells that have a forget gate of their own.
    """
    for m in module.modules():
        if hasattr(m, "weight_ih") and hasattr(m, "weight_hh") and hasattr(m, "hidden_size"):
            init_cell_(m, scheme)
            if (
                forget_bias is not None
                and hasattr(m, "init_forget_bias_")
                and "f" in getattr(m, "gate_names", ())
            ):
                m.init_forget_bias_(forget_bias)
    return module
