"""Patches ("im2col"): padding and the extraction of every kernel-sized window of an input.

A layer that is *local* computes output position i from the patch P(i) of the input around it
only. Laid out as a matrix, the patches turn the layer into matrix products: for an input x of
shape (B, C, L) and a kernel of size k, :func:`patches1d` returns the columns

    P: (B, C*k, L_out),   P[b, c*k + j, i] = x_pad[b, c, i*stride + j*dilation]

so that with a weight W of torch's layout (C_out, C, k), ``W.reshape(C_out, -1) @ P`` is the
convolution (a cross-correlation, as in torch.nn.Conv1d), and a different matrix per column is a
locally-connected layer. :func:`patches2d` is the same for (B, C, H, W) inputs, with the (C, kh, kw)
patch flattened in that order and the output positions in row-major order (i, j) -> i*W_out + j
(what ``torch.nn.functional.unfold`` returns).

Both come from :func:`windows`, every window as a strided view of the input (no copy), and
:func:`columns`, the one copy into that matrix. The layers take the same patches grouped by output
position, :func:`position_rows`: (N, B, C*K) for N output positions and K = prod(kernel_size). The
convolution multiplies all N*B rows by its one W^T in a single matrix product; the locally-connected
layer multiplies the B rows of position i by its own W_i^T, a batched product over the positions.

The number of output positions along a dimension of length L, padded by (pad_l, pad_r) is

    L_out = floor((L + pad_l + pad_r - dilation*(k - 1) - 1) / stride) + 1

Padding is resolved as torch.nn.Conv*d does: ``"valid"`` (none), ``"same"`` (stride 1 only; the
total dilation*(k - 1) split as left = total // 2 and the rest on the right/bottom, so that even
kernels match torch exactly), an int (both sides of every dimension) or a tuple of one int per
spatial dimension (both sides of that dimension). ``padding_mode`` is ``"zeros"``, ``"reflect"``,
``"replicate"`` or ``"circular"``.

:class:`PatchLayer` is what the convolutional and the locally-connected layers share: their
arguments, checked and resolved, and the path from an input to its patches.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("same", "valid")

Size = int | tuple[int, ...]
Padding = str | int | tuple[int, ...]


def as_tuple(value: Size, n: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """``value`` as a tuple of ``n`` ints >= ``minimum`` (an int is repeated); ValueError otherwise."""
    values = (value,) * n if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(values, (tuple, list))
        or len(values) != n
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values)
    ):
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {kind} or a tuple of {n} such ints, got {value!r}")
    return tuple(values)


def resolve_padding(
    padding: Padding, kernel_size: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """(left, right) padding per spatial dimension, as torch.nn.Conv*d resolves ``padding``."""
    n = len(kernel_size)
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(
                f"padding must be 'same', 'valid', an int or a tuple of {n} ints, got {padding!r}"
            )
        if padding == "valid":
            return ((0, 0),) * n
        if any(s != 1 for s in stride):
            raise ValueError(
                f"padding='same' is not supported for strided convolutions (stride={stride}): "
                "use stride=1 or give the padding as ints"
            )
        totals = [d * (k - 1) for k, d in zip(kernel_size, dilation, strict=True)]
        return tuple((t // 2, t - t // 2) for t in totals)  # torch: the odd pixel goes right/bottom
    return tuple((p, p) for p in as_tuple(padding, n, "padding", minimum=0))


def check_padding_mode(padding_mode: str) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}; got {padding_mode!r}")
    return padding_mode


def pad(x: Tensor, pads: tuple[tuple[int, int], ...], padding_mode: str = "zeros") -> Tensor:
    """Pad the last ``len(pads)`` dimensions of ``x`` by ``pads[d] = (left, right)``."""
    flat = [p for pair in reversed(pads) for p in pair]  # F.pad wants the last dimension first
    if not any(flat):
        return x
    if padding_mode == "zeros":
        return F.pad(x, flat)
    return F.pad(x, flat, mode=check_padding_mode(padding_mode))


def _sizes(n: int, kernel_size: Size, stride: Size, dilation: Size) -> tuple[tuple[int, ...], ...]:
    return tuple(
        as_tuple(v, n, name)
        for v, name in ((kernel_size, "kernel_size"), (stride, "stride"), (dilation, "dilation"))
    )


def pad1d(
    x: Tensor,
    padding: Padding,
    kernel_size: int,
    stride: int = 1,
    dilation: int = 1,
    padding_mode: str = "zeros",
) -> Tensor:
    """Pad x (B, C, L) along L as a Conv1d with these arguments would: (B, C, L + pad_l + pad_r)."""
    k, s, d = _sizes(1, kernel_size, stride, dilation)
    return pad(x, resolve_padding(padding, k, s, d), check_padding_mode(padding_mode))


def pad2d(
    x: Tensor,
    padding: Padding,
    kernel_size: Size,
    stride: Size = 1,
    dilation: Size = 1,
    padding_mode: str = "zeros",
) -> Tensor:
    """Pad x (B, C, H, W) along H and W as a Conv2d with these arguments would."""
    k, s, d = _sizes(2, kernel_size, stride, dilation)
    return pad(x, resolve_padding(padding, k, s, d), check_padding_mode(padding_mode))


def output_length(length: int, kernel_size: int, stride: int = 1, dilation: int = 1, pads: int = 0) -> int:
    """floor((length + pads - dilation*(kernel_size - 1) - 1) / stride) + 1, where ``pads`` is
    pad_l + pad_r; 0 or less means the kernel does not fit."""
    return (length + pads - dilation * (kernel_size - 1) - 1) // stride + 1


def windows(
    x: Tensor, kernel_size: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]
) -> Tensor:
    """Every window of the (already padded) x (B, C, *spatial) as a view, no copy:
    (B, C, *out_shape, *kernel_size), ``[b, c, i, j] = x[b, c, i*stride + j*dilation]`` in 1-D."""
    n = len(kernel_size)
    for axis, (size, k, d) in enumerate(zip(x.shape[2:], kernel_size, dilation, strict=True)):
        span = d * (k - 1) + 1  # input positions one window covers
        if span > size:
            where = "" if n == 1 else (" along the height", " along the width")[axis]
            raise ValueError(
                f"the kernel spans {span} positions{where} (dilation*(kernel_size - 1) + 1) but the padded "
                f"input has {size}: use a larger input, more padding or a smaller kernel"
            )
    for axis, (k, s, d) in enumerate(zip(kernel_size, stride, dilation, strict=True)):
        # unfold appends the window as the last dimension: (..., out, span), every d-th tap kept
        x = x.unfold(2 + axis, d * (k - 1) + 1, s)[..., ::d]
    return x  # (B, C, *out_shape, *kernel_size)


def columns(
    x: Tensor, kernel_size: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]
) -> Tensor:
    """The patches of the (already padded) x (B, C, *spatial) as columns, one copy: (B, C*K, N), rows in
    torch's weight order (C, *kernel_size), N output positions in row-major order."""
    B, C = x.shape[:2]
    n = len(kernel_size)
    w = windows(x, kernel_size, stride, dilation)  # (B, C, *out, *k)
    w = w.permute(0, 1, *range(2 + n, 2 + 2 * n), *range(2, 2 + n))  # (B, C, *k, *out)
    return w.reshape(B, C * math.prod(kernel_size), -1)  # (B, C*K, N): the copy


def position_rows(
    x: Tensor, kernel_size: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]
) -> Tensor:
    """The patches of the (already padded) x (B, C, *spatial) grouped by output position, one copy:
    (N, B, C*K), each row in torch's weight order (C, *kernel_size)."""
    B, C = x.shape[:2]
    n = len(kernel_size)
    w = windows(x, kernel_size, stride, dilation)  # (B, C, *out, *k)
    w = w.permute(*range(2, 2 + n), 0, 1, *range(2 + n, 2 + 2 * n))  # (*out, B, C, *k)
    return w.reshape(-1, B, C * math.prod(kernel_size))  # (N, B, C*K): the copy


def patches1d(x: Tensor, kernel_size: int, stride: int = 1, dilation: int = 1) -> Tensor:
    """Every window of x (B, C, L) (already padded) as a column: (B, C*k, L_out), channel-major
    (row c*k + j holds tap j of channel c), which is torch's weight layout (C_out, C, k) flattened."""
    return columns(x, *_sizes(1, kernel_size, stride, dilation))  # (B, C*k, L_out)


def patches2d(x: Tensor, kernel_size: Size, stride: Size = 1, dilation: Size = 1) -> Tensor:
    """Every window of x (B, C, H, W) (already padded) as a column: (B, C*kh*kw, H_out*W_out), rows in
    torch's weight order (C, kh, kw), columns row-major over the output positions; the same as
    ``torch.nn.functional.unfold(x, kernel_size, dilation=dilation, stride=stride)``."""
    return columns(x, *_sizes(2, kernel_size, stride, dilation))  # (B, C*kh*kw, H_out*W_out)


class PatchLayer(nn.Module):
    """Base of :class:`Conv1d`/:class:`Conv2d` and :class:`LocallyConnected1d`/``2d``: the arguments
    (torch.nn.Conv*d's names and types: ``kernel_size``, ``stride``, ``dilation`` as tuples, ``padding``
    as given, a string or a tuple) and the path from an input to its patches."""

    dims: int  # spatial dimensions: 1 or 2, set by the subclass

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size,
        stride: Size,
        padding: Padding,
        dilation: Size,
        padding_mode: str,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size, self.stride, self.dilation = _sizes(self.dims, kernel_size, stride, dilation)
        self._pads = resolve_padding(padding, self.kernel_size, self.stride, self.dilation)
        self.padding: str | tuple[int, ...] = (
            padding if isinstance(padding, str) else as_tuple(padding, self.dims, "padding", minimum=0)
        )
        self.padding_mode = check_padding_mode(padding_mode)

    @property
    def fan_in(self) -> int:
        """Inputs to one output value: in_channels * prod(kernel_size), the C*k of a patch."""
        return self.in_channels * math.prod(self.kernel_size)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial shape of the output for a spatial input shape, (L,) or (H, W); a size < 1 means the
        kernel does not fit."""
        return tuple(
            output_length(n, k, s, d, sum(p))
            for n, k, s, d, p in zip(
                input_shape, self.kernel_size, self.stride, self.dilation, self._pads, strict=True
            )
        )

    def check_input(self, input: Tensor) -> None:
        """ValueError unless ``input`` is (B, C_in, *spatial) or unbatched (C_in, *spatial)."""
        n = self.dims
        if input.dim() not in (n + 1, n + 2):
            layout = "C, L" if n == 1 else "C, H, W"
            raise ValueError(
                f"{type(self).__name__} expects {n + 1}-D ({layout}) unbatched or {n + 2}-D (B, {layout}) "
                f"input; got {input.dim()}-D with shape {tuple(input.shape)}"
            )
        if input.size(-n - 1) != self.in_channels:
            raise ValueError(
                f"input.size({-n - 1}) must be equal to in_channels. Expected {self.in_channels}, "
                f"got {input.size(-n - 1)} (input shape {tuple(input.shape)})"
            )

    def padded(self, input: Tensor) -> Tensor:
        """Check, batch and pad ``input``: (B, C_in, *spatial + padding)."""
        self.check_input(input)
        x = input if input.dim() == self.dims + 2 else input.unsqueeze(0)  # (B, C, *spatial)
        return pad(x, self._pads, self.padding_mode)

    def patches(self, input: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Check, batch and pad ``input``, then group its patches by output position: (N, B, C_in*K)
        (:func:`position_rows`), and the output's spatial shape."""
        rows = position_rows(self.padded(input), self.kernel_size, self.stride, self.dilation)
        return rows, self.output_shape(tuple(input.shape[-self.dims :]))

    def unflatten(self, y: Tensor, shape: tuple[int, ...], input: Tensor) -> Tensor:
        """(B, C_out, N) -> (B, C_out, *shape), or (C_out, *shape) for an unbatched ``input``."""
        y = y.reshape(*y.shape[:2], *shape)
        return y if input.dim() == self.dims + 2 else y.squeeze(0)

    def extra_repr(self) -> str:
        n = self.dims
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != "valid" and self.padding != (0,) * n:
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s
