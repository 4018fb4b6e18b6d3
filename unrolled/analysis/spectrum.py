"""The spectrum of a cell's recurrent matrix, and the lecture's power iteration for its top eigenvalue.

Through T steps the gradient of a recurrent layer is multiplied by T step Jacobians, each a
recurrent matrix W_hh (times the activations' slopes, at most 1 for tanh and 1/4 for the
sigmoid). If the spectral radius rho(W_hh) = max |lambda_i| is below 1 the product shrinks like
rho^T and the gradient vanishes; well above 1 it can explode (seed 003). A gated cell stacks one
H x H block per gate in ``weight_hh`` (G*H, H): each block is its own recurrence and is analysed
on its own.

Power iteration (seed 003) finds the dominant eigenvalue of W by repeating

    v_{k+1} = W v_k / ||W v_k||,      lambda_k = v_k^T W v_k   (v_k of unit length)

It converges, at the rate |lambda_2 / lambda_1| per step, when one real eigenvalue has the
largest modulus. A random real matrix often has a complex-conjugate pair on top instead: then
v_k rotates in the pair's plane and lambda_k never settles; :func:`power_iteration` says so
(``converged`` False) rather than return a wrong number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

# the order of the gate blocks in weight_hh, for the cells that do not name them themselves
_BLOCKS = {"RNNCell": ("h",), "GRUCell": ("r", "z", "n")}


def recurrent_blocks(cell: nn.Module) -> dict[str, Tensor]:
    """A cell's square recurrent blocks (H, H) by gate name, in float64; ``ValueError`` if it has none."""
    W = getattr(cell, "weight_hh", None)
    name = type(cell).__name__
    if W is None:
        raise ValueError(
            f"{name} has no recurrent weight W_hh: its gates read x_t alone and h_t is a running "
            "mix of them (Feng et al. 2024), so there is no recurrent matrix to take a spectrum of"
        )
    H = cell.hidden_size
    if W.size(1) != H:
        raise ValueError(
            f"{name}'s recurrent weight is ({W.size(0)}, {W.size(1)}): it reads a projected state of "
            f"{W.size(1)} features, not the {H} of its cell, so its blocks are not square"
        )
    names = getattr(cell, "gate_names", None) or getattr(cell, "h_terms", None) or _BLOCKS.get(name)
    count = W.size(0) // H
    if names is None or len(names) != count:
        names = tuple(f"block{k}" for k in range(count))
    W = W.detach().double().cpu()
    return {g: W[k * H : (k + 1) * H] for k, g in enumerate(names)}


@dataclass
class PowerIteration:
    """What power iteration found: the estimate after each step and whether it settled."""

    estimates: list[float]  # lambda_k, k = 1..iterations
    vector: Tensor  # the last v_k (unit length)
    converged: bool  # ||W v_k - lambda_k v_k|| <= tol * max(1, |lambda_k|): (lambda_k, v_k) is an eigenpair

    @property
    def value(self) -> float:
        return self.estimates[-1]


def power_iteration(W: Tensor, iterations: int = 1000, tol: float = 1e-9, seed: int = 0) -> PowerIteration:
    """The lecture's power iteration on a square matrix (see the module docstring).

    Example:
        >>> W = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)  # eigenvalues 3 and 1
        >>> round(power_iteration(W).value, 8)
        3.0
    """
    if W.dim() != 2 or W.size(0) != W.size(1):
        raise ValueError(f"power iteration needs a square matrix, got shape {tuple(W.shape)}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    W = W.double()
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(W.size(0), generator=g, dtype=torch.float64)
    v = v / v.norm()
    estimates: list[float] = []
    converged = False
    for _ in range(iterations):
        w = W @ v
        lam = float(v @ w)
        estimates.append(lam)
        if float((w - lam * v).norm()) <= tol * max(1.0, abs(lam)):  # W v = lambda v: an eigenpair
            converged = True
            break
        norm = w.norm()
        if norm == 0:  # W v = 0 exactly: caught above (lambda = 0, residual 0)
            break
        v = w / norm
    return PowerIteration(estimates, v, converged)


def spectrum(W: Tensor, iterations: int = 1000) -> dict[str, Any]:
    """Eigenvalues, spectral radius, largest singular value and power iteration of one block.

    ``power.errors`` is |lambda_k - lambda_1| after each step, against the dominant eigenvalue of
    ``torch.linalg.eigvals`` when it is real (None when the top of the spectrum is a complex pair);
    ``ratio`` = |lambda_2| / |lambda_1| says how fast it can converge.
    """
    eig = torch.linalg.eigvals(W.double())
    order = torch.argsort(eig.abs(), descending=True)
    eig = eig[order]
    top = complex(eig[0])
    radius = abs(top)
    real_top = abs(top.imag) <= 1e-9 * max(1.0, radius)  # else the top is a complex-conjugate pair
    ratio = float(eig[1].abs()) / radius if len(eig) > 1 and radius > 0 else 0.0
    p = power_iteration(W, iterations)
    errors = [abs(e - top.real) for e in p.estimates] if real_top else None
    return {
        "eigenvalues": [[float(z.real), float(z.imag)] for z in eig],
        "spectral_radius": radius,
        "max_singular_value": float(torch.linalg.matrix_norm(W.double(), ord=2)),
        "dominant": {"real": top.real, "imag": top.imag, "is_real": real_top},
        "ratio": ratio,  # |lambda_2| / |lambda_1|: power iteration's error shrinks by this per step
        "power": {
            "estimate": p.value,
            "iterations": len(p.estimates),
            "converged": p.converged,
            "error": None if errors is None else errors[-1],
            "errors": errors,
            "estimates": p.estimates,
        },
    }
