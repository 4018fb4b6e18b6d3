"""``LocallyConnected1d`` and ``LocallyConnected2d``: one weight matrix per output position.

The layer between the fully-connected and the convolutional one. Each output position still sees
only its patch P(i) of the (padded) input (:mod:`.patches`), but with its own weights:

    H_i = W_i · vect(P(i)) + b_i        (2-D: H_ij = W_ij · vect(P_k(i, j)) + b_ij)

with W_i (C_out, C_in*k). Local, like a convolution, but not translation equivariant: the same
content at two positions is processed by two different matrices. On an (h, w, c) image with "same"
padding it has h*w*(s*s*c*c') weights (plus h*w*c' biases), against (h*w)^2*c*c' for the
fully-connected layer and s*s*c*c' + c' for the convolution. Its size depends on the input's, so
the layer is built for one input length (size) and accepts only that one.

Setting every W_i (and b_i) to one conv's W (and b) gives that conv back: :meth:`from_conv`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .conv import Conv1d, Conv2d
from .patches import Padding, PatchLayer, Size, as_tuple


class _LocalNd(PatchLayer):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_shape: Size,
        kernel_size: Size,
        stride: Size,
        padding: Padding,
        dilation: Size,
        bias: bool,
        padding_mode: str,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, padding_mode)
        name = "input_length" if self.dims == 1 else "input_size"
        self._input_shape = as_tuple(input_shape, self.dims, name)
        self.positions = self.output_shape(self._input_shape)  # (L_out,) or (H_out, W_out)
        if min(self.positions) < 1:
            raise ValueError(
                f"the kernel does not fit in the padded input: {name}={input_shape!r} gives an output of "
                f"shape {self.positions}; use a larger input, more padding or a smaller kernel"
            )
        self.weight = nn.Parameter(
            torch.empty(*self.positions, out_channels, self.fan_in, device=device, dtype=dtype)
        )
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(
                torch.empty(*self.positions, out_channels, device=device, dtype=dtype)
            )
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in +-1/sqrt(C_in*k), as a convolution with the same patches."""
        bound = 1 / math.sqrt(self.fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def check_input(self, input: Tensor) -> None:
        super().check_input(input)
        got = tuple(input.shape[-self.dims :])
        if got != self._input_shape:
            if self.dims == 1:
                name, want, got_ = "length", self._input_shape[0], got[0]
            else:
                name, want, got_ = "size", self._input_shape, got
            raise ValueError(
                f"{type(self).__name__} was built for input {name} {want}, got {got_} (input shape "
                f"{tuple(input.shape)}): it has one weight per position, so build one for this {name}"
            )

    def forward(self, input: Tensor) -> Tensor:
        rows, shape = self.patches(input)  # (N, B, C_in*k): the patches by output position
        N, O, K = rows.size(0), self.out_channels, self.fan_in
        w = self.weight.reshape(N, O, K).transpose(1, 2)  # (N, C_in*k, C_out): W_i^T
        # H_i = W_i vect(P(i)) + b_i: one (B, C_in*k) @ (C_in*k, C_out) product per position, batched
        if self.bias is None:
            y = torch.bmm(rows, w)  # (N, B, C_out)
        else:
            y = torch.baddbmm(self.bias.reshape(N, 1, O), rows, w)
        if y.requires_grad:
            # the gradient arrives as a permuted view of (B, C_out, N); made contiguous once here, or
            # the batched products of the backward copy it matrix by matrix (7x slower bmm, measured
            # at B=64, 128->100 channels, L=400, k=5)
            y.register_hook(lambda grad: None if grad is None else grad.contiguous())
        y = y.permute(1, 2, 0).contiguous()  # (B, C_out, N)
        return self.unflatten(y, shape, input)  # (B, C_out, *out)

    @classmethod
    def _from_conv(cls, conv: nn.Module, input_shape: Size) -> _LocalNd:
        torch_conv = nn.Conv1d if cls.dims == 1 else nn.Conv2d
        ours = Conv1d if cls.dims == 1 else Conv2d
        if not isinstance(conv, (ours, torch_conv)) or getattr(conv, "groups", 1) != 1:
            raise ValueError(
                f"{cls.__name__}.from_conv expects an unrolled.{ours.__name__} or a torch.nn.{ours.__name__} "
                f"without groups, got {conv!r}"
            )
        weight = (
            conv.weight.flip(tuple(range(2, 2 + cls.dims))) if getattr(conv, "flip", False) else conv.weight
        )
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            input_shape,
            conv.kernel_size,  # type: ignore[call-arg]
            conv.stride,
            conv.padding,
            conv.dilation,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device=weight.device,
            dtype=weight.dtype,
        )
        with torch.no_grad():
            layer.weight.copy_(weight.reshape(conv.out_channels, -1).expand_as(layer.weight))
            if layer.bias is not None:
                layer.bias.copy_(conv.bias.expand_as(layer.bias))
        return layer

    def extra_repr(self) -> str:
        name = "input_length" if self.dims == 1 else "input_size"
        shape = self._input_shape[0] if self.dims == 1 else self._input_shape
        s = super().extra_repr().replace(", kernel_size", f", {name}={shape}, kernel_size", 1)
        return s + ("" if self.bias is not None else ", bias=False")


class LocallyConnected1d(_LocalNd):
    """A locally-connected layer over (B, C_in, L): a Conv1d whose weights differ at every position.

        out[b, o, i] = bias[i, o] + sum_{c, j} weight[i, o, c*k + j] * x_pad[b, c, i*stride + j*dilation]

    Args:
        in_channels: C_in, channels of the input.
        out_channels: C_out, channels of the output.
        input_length: L, the only input length the layer accepts (its weights are per position).
        kernel_size, stride, padding, dilation, padding_mode: as :class:`Conv1d`.
        bias: whether to learn ``bias``, one per position and output channel.

    Shapes: ``input`` (B, C_in, L) or (C_in, L) -> (B, C_out, L_out) or (C_out, L_out), with
    ``L_out = floor((L + pad_l + pad_r - dilation*(k - 1) - 1) / stride) + 1``.
    Parameters: ``weight`` (L_out, C_out, C_in*k), row ``i`` the W_i of output position i with its
    columns in the order of a Conv1d weight (C_in, k) flattened; ``bias`` (L_out, C_out). Both uniform
    in +-1/sqrt(C_in*k), as a Conv1d.

    Example:
        >>> layer = LocallyConnected1d(4, 6, input_length=10, kernel_size=3, padding="same")
        >>> layer(torch.randn(2, 4, 10)).shape, layer.weight.shape
        (torch.Size([2, 6, 10]), torch.Size([10, 6, 12]))
    """

    dims = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_length: int,
        kernel_size: int | tuple[int],
        stride: int | tuple[int] = 1,
        padding: str | int | tuple[int] = 0,
        dilation: int | tuple[int] = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            input_length,
            kernel_size,
            stride,
            padding,
            dilation,
            bias,
            padding_mode,
            device,
            dtype,
        )
        self.input_length = self._input_shape[0]

    @classmethod
    def from_conv(cls, conv: Conv1d | nn.Conv1d, input_length: int) -> LocallyConnected1d:
        """The locally-connected layer equal to ``conv`` on inputs of length ``input_length``: the
        conv's weight (and bias) copied to every position (a ``flip`` conv's kernel flipped)."""
        return cls._from_conv(conv, input_length)  # type: ignore[return-value]


class LocallyConnected2d(_LocalNd):
    """A locally-connected layer over (B, C_in, H, W): a Conv2d whose weights differ at every pixel.

        H_ij = W_ij · vect(P_k(i, j)) + b_ij

    Args:
        in_channels, out_channels, bias: as :class:`LocallyConnected1d`.
        input_size: (H, W) (or one int for a square input), the only size the layer accepts.
        kernel_size, stride, padding, dilation, padding_mode: as :class:`Conv2d`.

    Shapes: ``input`` (B, C_in, H, W) or (C_in, H, W) -> (B, C_out, H_out, W_out) or (C_out, H_out, W_out).
    Parameters: ``weight`` (H_out, W_out, C_out, C_in*kh*kw), ``weight[i, j]`` the W_ij of output pixel
    (i, j) with its columns in the order of a Conv2d weight (C_in, kh, kw) flattened; ``bias``
    (H_out, W_out, C_out). Both uniform in +-1/sqrt(C_in*kh*kw), as a Conv2d.

    Example:
        >>> layer = LocallyConnected2d(3, 5, input_size=(8, 8), kernel_size=3, padding="same")
        >>> layer(torch.randn(2, 3, 8, 8)).shape, layer.weight.shape
        (torch.Size([2, 5, 8, 8]), torch.Size([8, 8, 5, 27]))
    """

    dims = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: int | tuple[int, int],
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            input_size,
            kernel_size,
            stride,
            padding,
            dilation,
            bias,
            padding_mode,
            device,
            dtype,
        )
        self.input_size: tuple[int, int] = self._input_shape  # type: ignore[assignment]

    @classmethod
    def from_conv(cls, conv: Conv2d | nn.Conv2d, input_size: int | tuple[int, int]) -> LocallyConnected2d:
        """The locally-connected layer equal to ``conv`` on inputs of size ``input_size``: the conv's
        weight (and bias) copied to every pixel (a ``flip`` conv's kernel flipped)."""
        return cls._from_conv(conv, input_size)  # type: ignore[return-value]
