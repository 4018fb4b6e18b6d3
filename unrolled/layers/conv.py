"""``Conv1d`` and ``Conv2d``: one weight matrix shared by every patch of the input.

With P(i) the patch of the (padded) input that output position i sees (:mod:`.patches`), a
convolutional layer is

    H_i = W · vect(P(i)) + b        (2-D: H_ij = W · vect(P_k(i, j)) + b)

W (C_out, C_in*k) does not depend on the position: the layer is translation equivariant (shift
the input by s*stride and the output shifts by s) and has C_in*k*C_out + C_out parameters whatever
the input's size, against one W per position for :class:`LocallyConnected1d`. It is computed by
"im2col": the patches of the batch gathered as the rows of one matrix (a copy of the input k
times over), then one matrix product with W^T for all of them.

Parameter names, shapes and initialisation are torch.nn.Conv1d/Conv2d's: ``weight`` (C_out, C_in, k)
or (C_out, C_in, kh, kw), ``bias`` (C_out,), so that ``load_state_dict`` works both ways.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .linear import torch_default_init_
from .patches import Padding, PatchLayer, Size


class _ConvNd(PatchLayer):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size,
        stride: Size = 1,
        padding: Padding = 0,
        dilation: Size = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        flip: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if groups != 1:
            raise ValueError(
                f"groups must be 1 (grouped convolutions are not implemented), got {groups!r}: "
                f"use torch.nn.Conv{self.dims}d for grouped or depthwise convolutions"
            )
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, padding_mode)
        self.groups = 1
        self.flip = flip
        shape = (out_channels, in_channels, *self.kernel_size)
        self.weight = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(
                torch.empty(out_channels, device=device, dtype=dtype)
            )
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch_default_init_(self.weight, self.bias)

    def kernel(self) -> Tensor:
        """The weight as applied to the patches: (C_out, C_in*k), flipped along every spatial axis
        when ``flip`` is set."""
        w = self.weight.flip(tuple(range(2, 2 + self.dims))) if self.flip else self.weight
        return w.reshape(self.out_channels, -1)

    def forward(self, input: Tensor) -> Tensor:
        rows, shape = self.patches(input)  # (N, B, C_in*k): the patches by output position
        N, B, K = rows.shape
        flat, w = rows.reshape(N * B, K), self.kernel()  # (N*B, C_in*k), (C_out, C_in*k)
        # H_i = W vect(P(i)) + b: the same W at every position of every example, so one GEMM for all
        y = flat @ w.T if self.bias is None else torch.addmm(self.bias, flat, w.T)  # (N*B, C_out)
        y = y.reshape(N, B, self.out_channels).permute(1, 2, 0).contiguous()  # (B, C_out, N)
        return self.unflatten(y, shape, input)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.bias is None:
            s += ", bias=False"
        if self.flip:
            s += ", flip=True"
        return s


class Conv1d(_ConvNd):
    """A 1-D convolution over (B, C_in, L), equal to torch.nn.Conv1d (without groups).

        out[b, o, i] = bias[o] + sum_{c, j} weight[o, c, j] * x_pad[b, c, i*stride + j*dilation]

    This is a cross-correlation, as in every deep-learning library. With ``flip=True`` the kernel is
    reversed, ``weight[o, c, k-1-j]`` in place of ``weight[o, c, j]``, which makes it the convolution of
    signal processing (for one channel, ``flip=True`` and no padding is ``numpy.convolve(x, w, "valid")``,
    padding k - 1 is mode ``"full"``). Both are learned equally well; the flag only matters when the
    weights come from, or go to, a signal-processing filter.

    Args:
        in_channels: C_in, channels of the input.
        out_channels: C_out, channels of the output (the number of filters).
        kernel_size: k, taps of each filter.
        stride: step between two output positions.
        padding: ``"valid"`` (none), ``"same"`` (output length = input length; stride 1 only; for an
            even span the extra zero goes on the right, as in torch), or an int for both sides.
        dilation: spacing between the taps of the kernel.
        groups: must be 1; grouped convolutions are not implemented.
        bias: whether to learn ``bias``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        flip: compute a true convolution instead of a cross-correlation (see above).

    Shapes: ``input`` (B, C_in, L) or unbatched (C_in, L) -> (B, C_out, L_out) or (C_out, L_out), with
    ``L_out = floor((L + pad_l + pad_r - dilation*(k - 1) - 1) / stride) + 1``.
    Parameters: ``weight`` (C_out, C_in, k), ``bias`` (C_out,), uniform in +-1/sqrt(C_in*k).

    Example:
        >>> conv = Conv1d(128, 100, kernel_size=3, padding="same")
        >>> conv(torch.randn(64, 128, 50)).shape
        torch.Size([64, 100, 50])
    """

    dims = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int],
        stride: int | tuple[int] = 1,
        padding: str | int | tuple[int] = 0,
        dilation: int | tuple[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        flip: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            flip=flip,
            device=device,
            dtype=dtype,
        )


class Conv2d(_ConvNd):
    """A 2-D convolution over (B, C_in, H, W), equal to torch.nn.Conv2d (without groups).

        H_ij = W · vect(P_k(i, j)) + b
        out[b, o, i, j] = bias[o] + sum_{c,p,q} weight[o, c, p, q] * x_pad[b, c, i*s_h + p*d_h, j*s_w + q*d_w]

    a cross-correlation; ``flip=True`` uses ``weight[o, c, kh-1-p, kw-1-q]``, the convolution of signal
    processing (the kernel rotated by 180 degrees).

    Args:
        in_channels, out_channels, groups, bias, padding_mode, flip: as :class:`Conv1d`.
        kernel_size: (kh, kw), or an int for a square kernel.
        stride, dilation: (along H, along W), or one int for both.
        padding: ``"valid"``, ``"same"`` (stride 1 only; the extra row/column of an even span goes to
            the bottom/right, as in torch), an int, or (pad_h, pad_w), each on both sides.

    Shapes: ``input`` (B, C_in, H, W) or (C_in, H, W) -> (B, C_out, H_out, W_out) or (C_out, H_out, W_out),
    H_out and W_out by the formula of :class:`Conv1d` along each axis.
    Parameters: ``weight`` (C_out, C_in, kh, kw), ``bias`` (C_out,), uniform in +-1/sqrt(C_in*kh*kw):
    C_in*kh*kw*C_out + C_out numbers (s*s*c*c' + c' in the lecture's notation), whatever H and W.

    Example:
        >>> conv = Conv2d(3, 6, (3, 3), padding="same")
        >>> conv(torch.randn(20, 3, 50, 100)).shape
        torch.Size([20, 6, 50, 100])
    """

    dims = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        flip: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            flip=flip,
            device=device,
            dtype=dtype,
        )
