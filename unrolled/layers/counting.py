"""Parameter counts of the fully-connected, locally-connected and convolutional layers.

For an input with C channels at each of N = prod(size) positions (an (h, w, c) image: N = h*w)
mapped to C' channels at each of N' output positions, with kernels of s = prod(kernel_size) taps
(s*s for a square 2-D kernel):

    fully-connected      N*C * N'*C'     (+ N'*C' biases)       the lecture's (h*w)^2 * c*c'
    locally-connected    N' * s*C*C'     (+ N'*C' biases)       the lecture's h*w * (s*s*c*c')
    convolutional        s*C*C'          (+ C' biases)          the lecture's s*s*c*c' + c'

N' = N with "same" padding, fewer with "valid" padding or a stride (:func:`conv_output_size`). The
lecture counts the fully-connected and the locally-connected layers without biases and the
convolution with; each function here takes ``bias`` and defaults to the layers' own default,
``bias=True``, so that it equals ``sum(p.numel() for p in layer.parameters())`` of
:class:`Linear` on the flattened input, :class:`LocallyConnected2d` and :class:`Conv2d`.

Example, the lecture's dense layer on a 1024x1024 RGB image, same shape in output:

    >>> fully_connected_params((1024, 1024), 3, 3, bias=False)
    9895604649984
"""

from __future__ import annotations

import math

from .patches import Padding, Size, as_tuple, output_length, resolve_padding


def _positive(*pairs: tuple[str, int]) -> None:
    for name, value in pairs:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _shape(size: Size, name: str = "size") -> tuple[int, ...]:
    """A spatial size, L or (h, w, ...), as a non-empty tuple of positive ints."""
    if isinstance(size, (tuple, list)) and len(size) > 0:
        return as_tuple(size, len(size), name)
    return as_tuple(size, 1, name)


def conv_output_size(
    size: Size, kernel_size: Size, stride: Size = 1, padding: Padding = "same", dilation: Size = 1
) -> tuple[int, ...]:
    """Output positions along each dimension of a conv (or locally-connected) layer on an input of
    spatial ``size`` (an int L, or (h, w)):
    ``L_out = floor((L + pad_l + pad_r - dilation*(k - 1) - 1) / stride) + 1``.
    Arguments as :class:`Conv2d`'s; an int is repeated over the dimensions of ``size``."""
    shape = _shape(size)
    n = len(shape)
    k, s, d = (
        as_tuple(kernel_size, n, "kernel_size"),
        as_tuple(stride, n, "stride"),
        as_tuple(dilation, n, "dilation"),
    )
    pads = resolve_padding(padding, k, s, d)
    out = tuple(output_length(*args, sum(p)) for *args, p in zip(shape, k, s, d, pads, strict=True))
    if min(out) < 1:
        raise ValueError(
            f"the kernel {k} does not fit in an input of size {shape} padded by {pads}: got {out}"
        )
    return out


def fully_connected_params(
    size: Size, in_channels: int, out_channels: int, *, out_size: Size | None = None, bias: bool = True
) -> int:
    """Parameters of a dense layer from a (``size``, C) input, flattened, to a (``out_size``, C')
    output (``out_size`` defaults to ``size``): N*C*N'*C' (+ N'*C')."""
    _positive(("in_channels", in_channels), ("out_channels", out_channels))
    n_in = math.prod(_shape(size))
    n_out = n_in if out_size is None else math.prod(_shape(out_size, "out_size"))
    weights = n_in * in_channels * n_out * out_channels
    return weights + (n_out * out_channels if bias else 0)


def locally_connected_params(
    size: Size,
    in_channels: int,
    out_channels: int,
    kernel_size: Size,
    *,
    stride: Size = 1,
    padding: Padding = "same",
    dilation: Size = 1,
    bias: bool = True,
) -> int:
    """Parameters of a locally-connected layer on a (``size``, C) input: one (C', s*C) matrix per
    output position, N' * s*C*C' (+ N'*C'); with "same" padding N' = N, the lecture's h*w*(s*s*c*c')."""
    _positive(("in_channels", in_channels), ("out_channels", out_channels))
    positions = math.prod(conv_output_size(size, kernel_size, stride, padding, dilation))
    taps = math.prod(as_tuple(kernel_size, len(_shape(size)), "kernel_size"))
    return positions * (taps * in_channels * out_channels + (out_channels if bias else 0))


def conv_params(
    in_channels: int, out_channels: int, kernel_size: Size, *, dims: int = 2, bias: bool = True
) -> int:
    """Parameters of a ``dims``-D convolution: s*C*C' (+ C'), s = prod(kernel_size), ``kernel_size``
    an int (repeated ``dims`` times: s*s*c*c' + c' for the lecture's 2-D layer) or a tuple of ``dims``
    ints. Independent of the input's size."""
    _positive(("in_channels", in_channels), ("out_channels", out_channels), ("dims", dims))
    taps = math.prod(as_tuple(kernel_size, dims, "kernel_size"))
    return taps * in_channels * out_channels + (out_channels if bias else 0)
