"""``Linear``: the fully-connected layer, the starting point of the convolutional layer.

    y = x W^T + b,   W: (out_features, in_features),   b: (out_features,)

Every output is connected to every input. On an image (h, w, c) flattened to one vector, keeping
the same shape in output, W has (h*w*c)^2 entries (see :mod:`unrolled.layers.counting`); the
locally-connected and convolutional layers (:mod:`~unrolled.layers.local`, :mod:`~unrolled.layers.conv`)
are this layer applied to small patches, with one W per position and one W shared by all positions.

Parameter names, shapes and initialisation are torch.nn.Linear's, so weights load both ways.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def torch_default_init_(weight: Tensor, bias: Tensor | None) -> None:
    """torch.nn.Linear/Conv*d's default: W and b uniform in +-1/sqrt(fan_in), drawn as torch draws
    them (kaiming_uniform_ with a = sqrt(5), then the bias), so that the same seed gives the same
    values as torch.nn."""
    with torch.no_grad():
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        if bias is not None:
            fan_in = weight[0].numel()  # (out, in, *kernel): everything but the first dimension
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(bias, -bound, bound)


class Linear(nn.Module):
    """A fully-connected layer, ``y = x W^T + b``, equal to torch.nn.Linear.

    Args:
        in_features: I, size of each input vector.
        out_features: O, size of each output vector.
        bias: whether to learn the additive bias ``b``.

    Shapes: ``input`` (*, I) -> (*, O), any number of leading dimensions.
    Parameters: ``weight`` (O, I) and ``bias`` (O,), uniform in +-1/sqrt(I) at initialisation.

    Example:
        >>> layer = Linear(5, 3)
        >>> layer(torch.randn(4, 5)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(
                torch.empty(out_features, device=device, dtype=dtype)
            )
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch_default_init_(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() == 0 or input.size(-1) != self.in_features:
            got = "a 0-D tensor" if input.dim() == 0 else input.size(-1)
            raise ValueError(
                f"input.size(-1) must be equal to in_features. Expected {self.in_features}, got {got}"
            )
        y = input @ self.weight.T  # (*, O)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )
