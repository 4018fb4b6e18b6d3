"""How far back a gradient reaches: dL/ds_t and the product of step Jacobians, step by step.

For a loss at the last step, L = w . y_T (w a fixed random unit vector, y_T the top layer's
output), backpropagation through time gives, for every layer l and step t,

    dL/ds_t = dL/ds_T  prod_{k=t+1}^{T} ds_k/ds_{k-1}     (plus the paths through the layers above)

where s_t is the cell's whole state (h_t, and c_t for the LSTM family). The step Jacobians
ds_k/ds_{k-1} are W_hh scaled by the activations' slopes: when they are contractions the product,
and the gradient, fall geometrically with the distance T - t (the vanishing gradient of seeds
000-003); the LSTM's cell state c_t = f_t * c_{t-1} + ... has the Jacobian diag(f_t) on its own
path, which a forget gate near 1 keeps near the identity. :func:`gradient_flow` measures both
curves, averaged over a batch, and fits the decay per step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import jacrev, vmap

from ..cells.base import state_like, state_tensors
from ..layers import Recurrent


def _flat(state: Any) -> Tensor:
    return torch.cat([s.reshape(s.size(0), -1) for s in state_tensors(state)], dim=1)


def _step_jacobians(cell: nn.Module, states: list[Any], inputs: Tensor) -> list[Tensor]:
    """ds_t/ds_{t-1} (B, S, S) for t = 1..T-1, at the states and inputs of the run."""
    proto = states[0]
    sizes = [s[0].numel() for s in state_tensors(proto)]
    shapes = [s.shape[1:] for s in state_tensors(proto)]

    def step(prev: Tensor, x: Tensor) -> Tensor:  # one sample: (S,), (I,) -> (S,)
        parts = [p.reshape(1, *shape) for p, shape in zip(prev.split(sizes), shapes, strict=True)]
        _, new = cell(x[None], state_like(proto, parts))
        return torch.cat([s.reshape(-1) for s in state_tensors(new)])

    jac = vmap(jacrev(step))
    return [jac(_flat(states[t - 1]).detach(), inputs[:, t].detach()) for t in range(1, len(states))]


def _decay(norms: list[float]) -> float | None:
    """exp of the least-squares slope of log(norm) against steps back: the factor per step."""
    points = [(k, math.log(v)) for k, v in enumerate(reversed(norms)) if v > 0 and math.isfinite(v)]
    if len(points) < 2:
        return None
    n = len(points)
    mk, ml = sum(k for k, _ in points) / n, sum(v for _, v in points) / n
    var = sum((k - mk) ** 2 for k, _ in points)
    return math.exp(sum((k - mk) * (v - ml) for k, v in points) / var)


@torch.enable_grad()
def gradient_flow(layer: Recurrent, x: Tensor, seed: int = 0, jacobians: bool = True) -> dict[str, Any]:
    """Per layer of ``layer`` (its forward cells; a bidirectional layer must have one layer), on the
    batch ``x`` (B, T, I):

    - ``grad_norm[t]``: the mean over the batch of ||dL/ds_t|| for the loss at the last step;
    - ``jacobian_norm[t]``: the mean of the spectral norm of ds_T/ds_t (this layer's own
      recurrence; with ``jacobians``);
    - ``grad_decay``, ``jacobian_decay``: the fitted factor per step back (below 1: vanishing).

    Lists are indexed by t = 0..T-1; the distance from the loss is T - 1 - t.
    """
    if x.dim() != 3 or x.size(-1) != layer.input_size:
        raise ValueError(f"x must be (batch, steps, {layer.input_size}), got {tuple(x.shape)}")
    if layer.bidirectional and layer.num_layers > 1:
        raise ValueError(
            "gradients follows the forward direction of a layer; a stacked bidirectional layer feeds "
            "both directions to the next layer, which this analysis does not run"
        )
    was_training = layer.training
    layer.eval()  # no dropout or zoneout: the model's function itself
    B, T = x.size(0), x.size(1)
    D = layer.num_directions
    inputs, per_layer = x, []
    for index in range(layer.num_layers):
        cell = layer.cells[index * D]
        state = cell.init_state(B, device=x.device, dtype=x.dtype)
        states, outs = [], []
        for t in range(T):
            out, state = cell(inputs[:, t], state)
            for s in state_tensors(state):
                s.retain_grad()
            states.append(state)
            outs.append(out)
        per_layer.append((cell, states, inputs))
        inputs = torch.stack(outs, dim=1)
    w = torch.randn(inputs.size(-1), generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    (inputs[:, -1] @ (w / w.norm()).to(x.device)).sum().backward()
    layers = []
    for cell, states, cell_inputs in per_layer:
        grads = [torch.cat([s.grad.reshape(B, -1) for s in state_tensors(st)], 1) for st in states]
        grad_norm = [float(g.norm(dim=1).mean()) for g in grads]
        record: dict[str, Any] = {"cell": type(cell).__name__, "grad_norm": grad_norm,
                                  "grad_decay": _decay(grad_norm)}  # fmt: skip
        if jacobians:
            J = [j.detach() for j in _step_jacobians(cell, states, cell_inputs)]
            norms = [1.0]  # ds_T/ds_T = I
            if J:
                product = torch.eye(J[0].size(1), dtype=J[0].dtype, device=J[0].device).expand(B, -1, -1)
                for Jt in reversed(J):  # ds_T/ds_{t-1} = ds_T/ds_t @ ds_t/ds_{t-1}
                    product = product @ Jt
                    norms.append(float(torch.linalg.matrix_norm(product, ord=2).mean()))
            record["jacobian_norm"] = norms[::-1]
            record["jacobian_decay"] = _decay(record["jacobian_norm"])
        layers.append(record)
    layer.train(was_training)
    return {"steps": T, "batch": B, "layers": layers}
