"""Parameter counts: the lecture's formulas, and the parameters the layers actually have."""

from __future__ import annotations

import pytest
import torch

import unrolled
from unrolled import conv_output_size, conv_params, fully_connected_params, locally_connected_params

h, w, c, c_out, s = 5, 6, 3, 4, 3  # an (h, w, c) image to (h, w, c'), kernel s x s


def _numel(layer: torch.nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters())


def test_lecture_dense_layer_on_a_megapixel_rgb_image() -> None:
    # (1024 * 1024 * 3)^2: a dense layer keeping the image's shape, no bias (the lecture's count)
    assert fully_connected_params((1024, 1024), 3, 3, bias=False) == 9_895_604_649_984
    assert fully_connected_params((1024, 1024), 3, 3) == 9_895_604_649_984 + 1024 * 1024 * 3


def test_lecture_formulas() -> None:
    assert fully_connected_params((h, w), c, c_out, bias=False) == (h * w) ** 2 * c * c_out
    assert locally_connected_params((h, w), c, c_out, s, bias=False) == h * w * (s * s * c * c_out)
    assert locally_connected_params((h, w), c, c_out, s) == h * w * (s * s * c * c_out) + h * w * c_out
    assert conv_params(c, c_out, s) == s * s * c * c_out + c_out
    assert conv_params(c, c_out, s, bias=False) == s * s * c * c_out
    # the same image at 1024x1024: the conv does not grow, the locally-connected layer grows as h*w
    assert conv_params(3, 3, 3) == 84
    assert locally_connected_params((1024, 1024), 3, 3, 3, bias=False) == 1024 * 1024 * 81


@pytest.mark.parametrize("bias", [True, False])
def test_counts_are_the_layers_parameters(bias) -> None:
    dense = unrolled.Linear(h * w * c, h * w * c_out, bias=bias)  # on the flattened image
    local = unrolled.LocallyConnected2d(c, c_out, (h, w), s, padding="same", bias=bias)
    conv = unrolled.Conv2d(c, c_out, s, padding="same", bias=bias)
    assert _numel(dense) == fully_connected_params((h, w), c, c_out, bias=bias)
    assert _numel(local) == locally_connected_params((h, w), c, c_out, s, bias=bias)
    assert (
        _numel(conv) == conv_params(c, c_out, s, bias=bias) == _numel(torch.nn.Conv2d(c, c_out, s, bias=bias))
    )
    assert _numel(dense) > _numel(local) > _numel(conv)


@pytest.mark.parametrize("bias", [True, False])
def test_general_counts_valid_padding_stride_and_1d(bias) -> None:
    k, stride = (2, 3), (2, 1)
    local = unrolled.LocallyConnected2d(c, c_out, (h, w), k, stride=stride, padding="valid", bias=bias)
    out = conv_output_size((h, w), k, stride, padding="valid")
    assert out == local.positions == (2, 4)  # floor((5 - 2) / 2) + 1, floor((6 - 3) / 1) + 1
    assert _numel(local) == locally_connected_params(
        (h, w), c, c_out, k, stride=stride, padding="valid", bias=bias
    )
    dense = unrolled.Linear(h * w * c, 2 * 4 * c_out, bias=bias)  # to the same (2, 4, c') output
    assert _numel(dense) == fully_connected_params((h, w), c, c_out, out_size=out, bias=bias)
    conv = unrolled.Conv2d(c, c_out, k, stride=stride, bias=bias)
    assert _numel(conv) == conv_params(c, c_out, k, bias=bias)

    L = 9  # 1-D: a sequence of L steps with c features
    local1 = unrolled.LocallyConnected1d(c, c_out, L, 4, stride=2, padding=1, dilation=2, bias=bias)
    assert conv_output_size(L, 4, 2, padding=1, dilation=2) == local1.positions == (3,)
    assert _numel(local1) == locally_connected_params(
        L, c, c_out, 4, stride=2, padding=1, dilation=2, bias=bias
    )
    assert _numel(unrolled.Conv1d(c, c_out, 4, bias=bias)) == conv_params(c, c_out, 4, dims=1, bias=bias)
    assert _numel(unrolled.Linear(L * c, L * c_out, bias=bias)) == fully_connected_params(
        L, c, c_out, bias=bias
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: conv_params(0, 4, 3), r"in_channels must be a positive integer, got 0"),
        (lambda: conv_params(3, 4, (3, 3), dims=1), r"kernel_size must be .* tuple of 1 such ints"),
        (lambda: fully_connected_params((5, -1), 3, 4), r"size must be a positive int"),
        (
            lambda: locally_connected_params((5, 6), 3, 4, 3, stride=2),
            r"padding='same' is not supported for strided",
        ),
        (
            lambda: conv_output_size(4, 7, padding="valid"),
            r"kernel \(7,\) does not fit in an input of size \(4,\)",
        ),
    ],
)
def test_count_errors(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()
