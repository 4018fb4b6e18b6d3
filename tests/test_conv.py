"""Linear, Conv1d/2d and LocallyConnected1d/2d: torch.nn as the oracle (outputs and gradients, both
ways of load_state_dict), gradcheck, numpy.convolve for flip=True, translation equivariance of the
conv and not of the locally-connected layer, which equals the conv when its weights are tied."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import unrolled
from unrolled.layers.patches import pad1d, pad2d, patches1d, patches2d, position_rows

B, C, O = 2, 3, 4  # batch, in and out channels
L = 11  # 1-D length
H, W = 7, 8  # 2-D size

# torch warns that it copies the input for an even "same" kernel; our layers do not warn
TORCH_SAME_EVEN = "ignore:Using padding='same' with even kernel:UserWarning"

# (kernel_size, stride, padding, dilation, padding_mode, bias): odd and even kernels, strides 1-3,
# dilations 1-2, "valid"/"same"/int/tuple padding, every padding mode, with and without bias
CASES_1D = [
    (1, 1, 0, 1, "zeros", True),
    (3, 1, "same", 1, "zeros", True),
    (4, 1, "same", 1, "reflect", False),
    (4, 1, "same", 2, "zeros", True),
    (3, 2, 1, 2, "replicate", False),
    (5, 3, "valid", 1, "zeros", True),
    (2, 2, (2,), 1, "circular", True),
    (3, 1, "same", 2, "circular", False),
    (4, 3, 3, 2, "reflect", True),
]
CASES_2D = [
    ((1, 1), 1, 0, 1, "zeros", True),
    (3, 1, "same", 1, "zeros", True),
    ((2, 3), 1, "same", (2, 1), "reflect", True),
    ((3, 2), (2, 1), (1, 2), 1, "zeros", False),
    ((2, 4), (1, 3), "valid", (2, 1), "zeros", True),
    ((3, 3), 2, 1, 2, "replicate", True),
    ((4, 3), 1, "same", 1, "circular", False),
    ((2, 2), (3, 2), (2, 1), 1, "circular", True),
]


def _assert_same_function(
    ours: torch.nn.Module, theirs: torch.nn.Module, x: torch.Tensor, atol: float
) -> None:
    """Equal outputs, and equal gradients for the input and every parameter (same names). The weight
    gradient sums B*N products and reaches ~30 here, where float32's own spacing is ~4e-6: its
    tolerance is ``atol`` plus 1e-6 relative (nothing relative in float64)."""
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    assert y1.shape == y2.shape and y1.is_contiguous()
    torch.testing.assert_close(y1, y2, atol=atol, rtol=0)
    g = torch.randn_like(y2)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, atol=atol, rtol=0)
    rtol = 1e-6 if x.dtype == torch.float32 else 0.0
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        diff = (p.grad - theirs_params[name].grad).abs().max().item()
        assert torch.allclose(p.grad, theirs_params[name].grad, atol=atol, rtol=rtol), (name, diff)


@pytest.mark.filterwarnings(TORCH_SAME_EVEN)
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("k, stride, padding, dilation, mode, bias", CASES_1D)
def test_conv1d_equals_torch(k, stride, padding, dilation, mode, bias, dtype, atol) -> None:
    args = dict(stride=stride, padding=padding, dilation=dilation, bias=bias, padding_mode=mode, dtype=dtype)
    theirs = torch.nn.Conv1d(C, O, k, **args)
    ours = unrolled.Conv1d(C, O, k, **args)
    ours.load_state_dict(theirs.state_dict())
    _assert_same_function(ours, theirs, torch.randn(B, C, L, dtype=dtype), atol)


@pytest.mark.filterwarnings(TORCH_SAME_EVEN)
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("k, stride, padding, dilation, mode, bias", CASES_2D)
def test_conv2d_equals_torch(k, stride, padding, dilation, mode, bias, dtype, atol) -> None:
    args = dict(stride=stride, padding=padding, dilation=dilation, bias=bias, padding_mode=mode, dtype=dtype)
    theirs = torch.nn.Conv2d(C, O, k, **args)
    ours = unrolled.Conv2d(C, O, k, **args)
    ours.load_state_dict(theirs.state_dict())
    _assert_same_function(ours, theirs, torch.randn(B, C, H, W, dtype=dtype), atol)


def test_unbatched_input_as_torch() -> None:
    for ours, theirs, x in (
        (unrolled.Conv1d(C, O, 3, padding=1), torch.nn.Conv1d(C, O, 3, padding=1), torch.randn(C, L)),
        (unrolled.Conv2d(C, O, (2, 3)), torch.nn.Conv2d(C, O, (2, 3)), torch.randn(C, H, W)),
    ):
        ours.load_state_dict(theirs.state_dict())
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_torch(bias) -> None:
    theirs = torch.nn.Linear(5, 3, bias=bias)
    ours = unrolled.Linear(5, 3, bias=bias)
    ours.load_state_dict(theirs.state_dict())
    _assert_same_function(ours, theirs, torch.randn(2, 4, 5), atol=1e-6)
    _assert_same_function(ours, theirs, torch.randn(5), atol=1e-6)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: unrolled.Linear(5, 3), lambda: torch.nn.Linear(5, 3)),
        (lambda: unrolled.Conv1d(C, O, 3, bias=False), lambda: torch.nn.Conv1d(C, O, 3, bias=False)),
        (lambda: unrolled.Conv2d(C, O, (2, 3)), lambda: torch.nn.Conv2d(C, O, (2, 3))),
    ],
)
def test_state_dict_and_default_init_are_torchs(ours, theirs) -> None:
    torch.manual_seed(1)
    a = ours()
    torch.manual_seed(1)
    b = theirs()
    sa, sb = a.state_dict(), b.state_dict()
    assert {k: v.shape for k, v in sa.items()} == {k: v.shape for k, v in sb.items()}
    for key in sa:  # the same seed draws the same initial values
        assert torch.equal(sa[key], sb[key]), key
    c, d = ours(), theirs()
    c.load_state_dict(d.state_dict())  # torch -> ours
    assert all(torch.equal(c.state_dict()[k], v) for k, v in d.state_dict().items())
    d2 = theirs()
    d2.load_state_dict(a.state_dict())  # ours -> torch
    assert all(torch.equal(a.state_dict()[k], v) for k, v in d2.state_dict().items())


# ---- flip=True: a true convolution -----------------------------------------------------------


@pytest.mark.parametrize("dims", [1, 2])
def test_flip_is_torch_with_the_flipped_kernel(dims) -> None:
    Ours, Theirs = (unrolled.Conv1d, torch.nn.Conv1d) if dims == 1 else (unrolled.Conv2d, torch.nn.Conv2d)
    k = 4 if dims == 1 else (2, 3)
    ours = Ours(C, O, k, stride=2, padding=1, dilation=2, flip=True)
    theirs = Theirs(C, O, k, stride=2, padding=1, dilation=2)
    with torch.no_grad():
        theirs.weight.copy_(ours.weight.flip(tuple(range(2, 2 + dims))))
        theirs.bias.copy_(ours.bias)
    x = torch.randn(B, C, L) if dims == 1 else torch.randn(B, C, H, W)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("k", [3, 4])
def test_flip_is_numpy_convolve(k) -> None:
    x, w = np.random.default_rng(0).normal(size=(2, 10))
    w = w[:k]
    for mode, padding in (("valid", 0), ("full", k - 1)):
        conv = unrolled.Conv1d(1, 1, k, padding=padding, bias=False, flip=True, dtype=torch.float64)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w).reshape(1, 1, k))
        y = conv(torch.from_numpy(x).reshape(1, 10))[0].detach().numpy()
        np.testing.assert_allclose(y, np.convolve(x, w, mode=mode), atol=1e-12, rtol=0)
        unflipped = unrolled.Conv1d(1, 1, k, padding=padding, bias=False, dtype=torch.float64)
        unflipped.load_state_dict(conv.state_dict())  # cross-correlation: numpy.correlate
        y = unflipped(torch.from_numpy(x).reshape(1, 10))[0].detach().numpy()
        np.testing.assert_allclose(y, np.correlate(x, w, mode=mode), atol=1e-12, rtol=0)


# ---- patches -------------------------------------------------------------------------------


def test_patches_are_torchs_unfold_in_the_weight_order() -> None:
    x = torch.randn(B, C, L)
    cols = patches1d(x, 3, stride=2, dilation=2)  # (B, C*k, L_out)
    torch.testing.assert_close(cols, F.unfold(x.unsqueeze(2), (1, 3), dilation=(1, 2), stride=(1, 2)))
    assert cols[1, 2 * 3 + 1, 3] == x[1, 2, 3 * 2 + 1 * 2]  # row c*k + j, column i: tap j of channel c
    x2 = torch.randn(B, C, H, W)
    torch.testing.assert_close(
        patches2d(x2, (2, 3), stride=(2, 1), dilation=(1, 2)),
        F.unfold(x2, (2, 3), dilation=(1, 2), stride=(2, 1)),
    )
    # the layers' layout: the same patches grouped by position, (N, B, C*K)
    rows = position_rows(x2, (2, 3), (2, 1), (1, 2))
    assert torch.equal(rows, patches2d(x2, (2, 3), stride=(2, 1), dilation=(1, 2)).permute(2, 0, 1))
    w = torch.randn(O, C, 3)
    torch.testing.assert_close(
        w.reshape(O, -1) @ cols, F.conv1d(x, w, stride=2, dilation=2), atol=1e-5, rtol=0
    )


@pytest.mark.filterwarnings(TORCH_SAME_EVEN)
def test_pad_same_matches_torch_for_even_kernels() -> None:
    x = torch.arange(5.0).reshape(1, 1, 5)
    assert pad1d(x, "same", 4).tolist() == [[[0, 0, 1, 2, 3, 4, 0, 0]]]  # total 3: 1 left, 2 right
    assert pad1d(x, "same", 2, dilation=3, padding_mode="replicate").tolist() == [[[0, 0, 1, 2, 3, 4, 4, 4]]]
    x2 = torch.randn(1, 1, 4, 5)
    assert pad2d(x2, "same", (2, 3)).shape == (1, 1, 5, 7)
    assert pad2d(x2, (1, 2), 3, padding_mode="circular").shape == (1, 1, 6, 9)
    w = torch.randn(1, 1, 2, 4)
    same = F.conv2d(pad2d(x2, "same", (2, 4)), w)
    torch.testing.assert_close(same, F.conv2d(x2, w, padding="same"), atol=1e-6, rtol=0)


# ---- gradcheck -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: unrolled.Linear(4, 3), (2, 4)),
        (lambda: unrolled.Conv1d(2, 3, 3, stride=2, padding="valid", dilation=1), (2, 2, 7)),
        (lambda: unrolled.Conv1d(2, 3, 2, padding="same", padding_mode="reflect", flip=True), (2, 2, 5)),
        (
            lambda: unrolled.Conv2d(2, 3, (2, 3), stride=(1, 2), padding=1, padding_mode="circular"),
            (1, 2, 4, 5),
        ),
        (
            lambda: unrolled.LocallyConnected1d(2, 3, 6, 3, stride=2, padding=1, padding_mode="replicate"),
            (2, 2, 6),
        ),
        (
            lambda: unrolled.LocallyConnected2d(2, 3, (4, 5), (2, 3), padding="same", dilation=(2, 1)),
            (1, 2, 4, 5),
        ),
    ],
    ids=["linear", "conv1d", "conv1d-flip-reflect", "conv2d-circular", "local1d", "local2d"],
)
def test_gradcheck(make, shape) -> None:
    layer = make().double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    params = tuple(layer.parameters())

    def fn(x, *ps):
        return torch.func.functional_call(
            layer, dict(zip(dict(layer.named_parameters()), ps, strict=True)), (x,)
        )

    assert torch.autograd.gradcheck(fn, (x, *params))


# ---- locally-connected: reference loop, ties to the conv, equivariance --------------------


def test_locally_connected1d_is_one_matrix_per_position() -> None:
    k, stride, dilation, pad = 3, 2, 2, 1
    layer = unrolled.LocallyConnected1d(C, O, L, k, stride=stride, padding=pad, dilation=dilation)
    x = torch.randn(B, C, L)
    xp = F.pad(x, (pad, pad))
    L_out = (L + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    assert layer.weight.shape == (L_out, O, C * k) and layer.bias.shape == (L_out, O)
    expected = torch.stack(
        [
            xp[:, :, i * stride : i * stride + dilation * (k - 1) + 1 : dilation].reshape(B, -1)
            @ layer.weight[i].T
            + layer.bias[i]
            for i in range(L_out)
        ],
        dim=2,
    )  # H_i = W_i vect(P(i)) + b_i
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=0)


def test_locally_connected2d_is_one_matrix_per_pixel() -> None:
    layer = unrolled.LocallyConnected2d(C, O, (H, W), (2, 3), padding="valid")
    x = torch.randn(B, C, H, W)
    H_out, W_out = H - 1, W - 2
    assert layer.weight.shape == (H_out, W_out, O, C * 2 * 3) and layer.bias.shape == (H_out, W_out, O)
    y = layer(x)
    for i, j in ((0, 0), (2, 5), (H_out - 1, W_out - 1)):  # H_ij = W_ij vect(P(i, j)) + b_ij
        patch = x[:, :, i : i + 2, j : j + 3].reshape(B, -1)
        torch.testing.assert_close(
            y[:, :, i, j], patch @ layer.weight[i, j].T + layer.bias[i, j], atol=1e-5, rtol=0
        )


@pytest.mark.filterwarnings(TORCH_SAME_EVEN)
@pytest.mark.parametrize("torch_conv", [False, True])
@pytest.mark.parametrize(
    "padding, stride, mode", [("same", 1, "zeros"), ("valid", 1, "zeros"), (1, 2, "reflect")]
)
def test_tied_locally_connected_is_the_conv(padding, stride, mode, torch_conv) -> None:
    nn = torch.nn if torch_conv else unrolled
    conv1 = nn.Conv1d(C, O, 3, stride=stride, padding=padding, padding_mode=mode)
    conv2 = nn.Conv2d(C, O, (3, 2), stride=stride, padding=padding, padding_mode=mode)
    x1, x2 = torch.randn(B, C, L), torch.randn(B, C, H, W)
    local1 = unrolled.LocallyConnected1d.from_conv(conv1, L)
    local2 = unrolled.LocallyConnected2d.from_conv(conv2, (H, W))
    torch.testing.assert_close(local1(x1), conv1(x1), atol=1e-5, rtol=0)
    torch.testing.assert_close(local2(x2), conv2(x2), atol=1e-5, rtol=0)
    # the same, tied by hand: every W_ij and b_ij set to the conv's W and b
    by_hand = unrolled.LocallyConnected2d(
        C, O, (H, W), (3, 2), stride=stride, padding=padding, padding_mode=mode
    )
    with torch.no_grad():
        by_hand.weight.copy_(conv2.weight.reshape(O, -1).expand_as(by_hand.weight))
        by_hand.bias.copy_(conv2.bias.expand_as(by_hand.bias))
    torch.testing.assert_close(by_hand(x2), conv2(x2), atol=1e-5, rtol=0)


def test_tied_locally_connected_is_the_flipped_conv() -> None:
    conv = unrolled.Conv2d(C, O, (2, 3), padding="same", flip=True)
    x = torch.randn(B, C, H, W)
    torch.testing.assert_close(
        unrolled.LocallyConnected2d.from_conv(conv, (H, W))(x), conv(x), atol=1e-5, rtol=0
    )


def _shift_interiors(layer: torch.nn.Module, x: torch.Tensor, s: int, stride: int, margin: int):
    """Outputs for x and for x shifted by s*stride along every spatial axis, cut to the positions
    where one is the other shifted by s if the layer is translation equivariant."""
    dims = tuple(range(2, x.dim()))
    y = layer(x)
    y_shifted = layer(torch.roll(x, shifts=(s * stride,) * len(dims), dims=dims))
    n = y.shape[2]
    a = y[(..., *(slice(margin, n - s - margin),) * len(dims))]
    b = y_shifted[(..., *(slice(margin + s, n - margin),) * len(dims))]
    return a, b


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("padding, stride", [("valid", 1), ("same", 1), (1, 2)])
def test_conv_is_translation_equivariant_and_locally_connected_is_not(dims, padding, stride) -> None:
    n, s = 12, 2
    if dims == 1:
        conv = unrolled.Conv1d(C, O, 3, stride=stride, padding=padding)
        local = unrolled.LocallyConnected1d(C, O, n, 3, stride=stride, padding=padding)
        x = torch.randn(B, C, n)
    else:
        conv = unrolled.Conv2d(C, O, 3, stride=stride, padding=padding)
        local = unrolled.LocallyConnected2d(C, O, (n, n), 3, stride=stride, padding=padding)
        x = torch.randn(B, C, n, n)
    margin = 1  # away from the zero padding, and from the rolled-around border
    a, b = _shift_interiors(conv, x, s, stride, margin)
    assert a.numel() > 0
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)  # shifted input -> shifted output
    a, b = _shift_interiors(local, x, s, stride, margin)
    assert (a - b).abs().max() > 0.1  # the same content, other weights: other outputs


# ---- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: unrolled.Conv1d(C, O, 3)(torch.randn(B, C, 4, 5)), r"expects 2-D \(C, L\) unbatched or 3-D"),
        (lambda: unrolled.Conv2d(C, O, 3)(torch.randn(C, 5)), r"expects 3-D .* got 2-D"),
        (lambda: unrolled.Conv1d(C, O, 3)(torch.randn(B, 5, L)), r"in_channels. Expected 3, got 5"),
        (lambda: unrolled.Conv2d(C, O, 3)(torch.randn(B, 1, H, W)), r"in_channels. Expected 3, got 1"),
        (lambda: unrolled.Conv1d(C, O, 5)(torch.randn(B, C, 3)), r"kernel spans 5 positions .* has 3"),
        (lambda: unrolled.Conv2d(C, O, (2, 5), dilation=2)(torch.randn(B, C, 9, 8)), r"spans 9 .* width"),
        (
            lambda: unrolled.LocallyConnected1d(C, O, L, 3)(torch.randn(B, C, L - 1)),
            r"built for input length 11, got 10",
        ),
        (
            lambda: unrolled.LocallyConnected2d(C, O, (H, W), 3)(torch.randn(C, W, H)),
            r"size \(7, 8\), got \(8, 7\)",
        ),
        (lambda: unrolled.LocallyConnected1d(C, O, L, 3)(torch.randn(B, 2, L)), r"Expected 3, got 2"),
        (lambda: unrolled.LocallyConnected1d(C, O, 4, 7), r"kernel does not fit"),
        (
            lambda: unrolled.Conv1d(C, O, 3, stride=2, padding="same"),
            r"padding='same' is not supported for strided",
        ),
        (
            lambda: unrolled.LocallyConnected2d(C, O, 8, 3, stride=(1, 2), padding="same"),
            r"not supported for strided",
        ),
        (lambda: unrolled.Conv1d(C, O, 3, padding="full"), r"padding must be 'same', 'valid'.*got 'full'"),
        (lambda: unrolled.Conv2d(C, O, 3, padding=(1, 2, 3)), r"padding must be an int >= 0 or a tuple of 2"),
        (lambda: unrolled.Conv1d(C, O, 3, padding=-1), r"padding must be an int >= 0"),
        (
            lambda: unrolled.Conv1d(C, O, 3, padding_mode="mirror"),
            r"padding_mode must be one of .*got 'mirror'",
        ),
        (lambda: unrolled.Conv1d(C, O, 0), r"kernel_size must be a positive int .* got 0"),
        (
            lambda: unrolled.Conv2d(C, O, (3, 3, 3)),
            r"kernel_size must be .* tuple of 2 such ints, got \(3, 3, 3\)",
        ),
        (lambda: unrolled.Conv2d(C, O, 2.5), r"kernel_size must be a positive int"),
        (lambda: unrolled.Conv1d(C, O, 3, stride=0), r"stride must be a positive int"),
        (lambda: unrolled.Conv1d(C, O, 3, dilation=(1, 1)), r"dilation must be .* tuple of 1"),
        (lambda: unrolled.Conv1d(0, O, 3), r"in_channels must be a positive integer, got 0"),
        (lambda: unrolled.Conv2d(4, 4, 3, groups=2), r"groups must be 1"),
        (lambda: unrolled.Linear(5, 3)(torch.randn(2, 4)), r"in_features. Expected 5, got 4"),
        (
            lambda: unrolled.LocallyConnected1d.from_conv(unrolled.Conv2d(C, O, 3), L),
            r"expects an unrolled.Conv1d",
        ),
        (lambda: pad1d(torch.randn(B, C, L), "bad", 3), r"padding must be 'same', 'valid'"),
        (lambda: pad2d(torch.randn(B, C, H, W), 1, 3, padding_mode="wrap"), r"padding_mode must be one of"),
    ],
)
def test_errors_say_expected_and_got(call, message) -> None:
    with pytest.raises(ValueError, match=message) as err:
        call()
    assert "\n" not in str(err.value)  # one line
