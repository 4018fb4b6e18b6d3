"""Greff et al.'s LSTM variants: each defining equation pinned, gradcheck, torch for NP."""

from __future__ import annotations

import pytest
import torch

import unrolled
from unrolled.cells.lstm import VARIANTS, resolve_variant

B, I, H = 3, 5, 6
DT = torch.float64


def _inputs():
    x = torch.randn(B, I, dtype=DT)
    h, c = torch.randn(B, H, dtype=DT), torch.randn(B, H, dtype=DT)
    return x, h, c


def _pre(cell, x, h):
    """The gate pre-activations, by gate name."""
    gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    return dict(zip(cell.gate_names, gates.chunk(len(cell.gate_names), 1), strict=True))


def _peep(cell):
    return dict(zip(cell.peephole_names, cell.weight_peephole, strict=True))


def _state(cell, h, c):
    """(h, c), plus random previous gate activations for an FGR cell."""
    if cell.weight_gate_hh is None:
        return unrolled.LSTMState(h, c)
    a = torch.rand(h.size(0), cell.weight_gate_hh.size(0), dtype=h.dtype, requires_grad=h.requires_grad)
    return unrolled.LSTMGateState(h, c, a)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_gradcheck(variant) -> None:
    cell = unrolled.LSTMCell(I, H, variant=variant).to(DT)
    x, h, c = (t.requires_grad_() for t in _inputs())
    state = _state(cell, h, c)

    def f(x, *state_and_params):
        out, new = cell(x, state_and_params[: len(state)])
        return (out, *new[1:])

    assert torch.autograd.gradcheck(f, (x, *state, *cell.parameters()), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "variant, gates, peepholes",
    [
        ("vanilla", "ifgo", "ifo"),
        ("NIG", "fgo", "fo"),
        ("NFG", "igo", "io"),
        ("NOG", "ifg", "if"),
        ("NIAF", "ifgo", "ifo"),
        ("NOAF", "ifgo", "ifo"),
        ("NP", "ifgo", ""),
        ("CIFG", "igo", "io"),
        ("FGR", "ifgo", "ifo"),
    ],
)
def test_variant_parameters(variant, gates, peepholes) -> None:
    cell = unrolled.LSTMCell(I, H, variant=variant)
    assert cell.gate_names == tuple(gates) and cell.peephole_names == tuple(peepholes)
    assert cell.weight_ih.shape == (len(gates) * H, I)
    assert (cell.weight_peephole is None) == (not peepholes)
    assert (cell.weight_gate_hh is None) == (variant != "FGR")


def test_np_is_torch_lstm_cell() -> None:
    ref = torch.nn.LSTMCell(I, H)
    ours = unrolled.LSTMCell(I, H, variant="NP")
    ours.load_state_dict(ref.state_dict())
    x, h, c = (t.float() for t in _inputs())
    out, (h1, c1) = ours(x, (h, c))
    h2, c2 = ref(x, (h, c))
    torch.testing.assert_close(h1, h2, atol=1e-6, rtol=0)
    torch.testing.assert_close(c1, c2, atol=1e-6, rtol=0)


def test_vanilla_with_zero_peepholes_is_np() -> None:
    vanilla = unrolled.LSTMCell(I, H, variant="vanilla").to(DT)
    np_cell = unrolled.LSTMCell(I, H, variant="NP").to(DT)
    np_cell.load_state_dict({k: v for k, v in vanilla.state_dict().items() if k != "weight_peephole"})
    x, h, c = _inputs()
    with torch.no_grad():
        vanilla.weight_peephole.zero_()
    # equal up to rounding (a strided and a contiguous tensor may take different SIMD paths)
    torch.testing.assert_close(vanilla(x, (h, c))[1], np_cell(x, (h, c))[1], atol=1e-15, rtol=0)
    with torch.no_grad():
        vanilla.weight_peephole.fill_(0.5)
    assert not torch.allclose(vanilla(x, (h, c))[1].c, np_cell(x, (h, c))[1].c)


def test_vanilla_equations() -> None:
    cell = unrolled.LSTMCell(I, H, variant="vanilla").to(DT)
    x, h, c = _inputs()
    pre, p = _pre(cell, x, h), _peep(cell)
    i = torch.sigmoid(pre["i"] + p["i"] * c)
    f = torch.sigmoid(pre["f"] + p["f"] * c)
    c_new = f * c + i * torch.tanh(pre["g"])
    o = torch.sigmoid(pre["o"] + p["o"] * c_new)  # the output gate peeks at the new cell
    out, (h1, c1) = cell(x, (h, c))
    torch.testing.assert_close(c1, c_new, atol=1e-12, rtol=0)
    torch.testing.assert_close(h1, o * torch.tanh(c_new), atol=1e-12, rtol=0)


def test_cifg_forget_gate_is_one_minus_input_gate() -> None:
    cell = unrolled.LSTMCell(I, H, variant="CIFG").to(DT)
    x, h, c = _inputs()
    pre, p = _pre(cell, x, h), _peep(cell)
    i = torch.sigmoid(pre["i"] + p["i"] * c)
    expected = (1 - i) * c + i * torch.tanh(pre["g"])
    torch.testing.assert_close(cell(x, (h, c))[1].c, expected, atol=1e-12, rtol=0)


def test_nfg_cell_is_previous_plus_input() -> None:
    cell = unrolled.LSTMCell(I, H, variant="NFG").to(DT)
    x, h, c = _inputs()
    pre, p = _pre(cell, x, h), _peep(cell)
    i = torch.sigmoid(pre["i"] + p["i"] * c)
    torch.testing.assert_close(cell(x, (h, c))[1].c, c + i * torch.tanh(pre["g"]), atol=1e-12, rtol=0)


def test_nig_has_no_input_gate() -> None:
    cell = unrolled.LSTMCell(I, H, variant="NIG").to(DT)
    x, h, c = _inputs()
    pre, p = _pre(cell, x, h), _peep(cell)
    f = torch.sigmoid(pre["f"] + p["f"] * c)
    torch.testing.assert_close(cell(x, (h, c))[1].c, f * c + torch.tanh(pre["g"]), atol=1e-12, rtol=0)


def test_nog_output_is_tanh_of_cell() -> None:
    cell = unrolled.LSTMCell(I, H, variant="NOG").to(DT)
    x, h, c = _inputs()
    out, (_, c1) = cell(x, (h, c))
    torch.testing.assert_close(out, torch.tanh(c1), atol=0, rtol=0)


def test_noaf_output_is_o_times_c() -> None:
    cell = unrolled.LSTMCell(I, H, variant="NOAF").to(DT)
    x, h, c = _inputs()
    pre, p = _pre(cell, x, h), _peep(cell)
    out, (_, c1) = cell(x, (h, c))
    torch.testing.assert_close(out, torch.sigmoid(pre["o"] + p["o"] * c1) * c1, atol=1e-12, rtol=0)


def test_niaf_candidate_has_no_tanh() -> None:
    cell = unrolled.LSTMCell(I, H, variant="NIAF").to(DT)
    x, h, c = _inputs()
    pre, p = _pre(cell, x, h), _peep(cell)
    i = torch.sigmoid(pre["i"] + p["i"] * c)
    f = torch.sigmoid(pre["f"] + p["f"] * c)
    torch.testing.assert_close(cell(x, (h, c))[1].c, f * c + i * pre["g"], atol=1e-12, rtol=0)


def test_fgr_gates_read_all_previous_gate_activations() -> None:
    cell = unrolled.LSTMCell(I, H, variant="FGR").to(DT)
    x, h, c = _inputs()
    a = torch.rand(B, 3 * H, dtype=DT)
    pre, p = _pre(cell, x, h), _peep(cell)
    R = {g: rows for g, rows in zip("ifo", cell.weight_gate_hh.chunk(3, 0), strict=True)}  # (H, 3H) each
    i = torch.sigmoid(pre["i"] + a @ R["i"].T + p["i"] * c)
    f = torch.sigmoid(pre["f"] + a @ R["f"].T + p["f"] * c)
    c_new = f * c + i * torch.tanh(pre["g"])
    o = torch.sigmoid(pre["o"] + a @ R["o"].T + p["o"] * c_new)
    out, (h1, c1, a1) = cell(x, unrolled.LSTMGateState(h, c, a))
    torch.testing.assert_close(c1, c_new, atol=1e-12, rtol=0)
    torch.testing.assert_close(h1, o * torch.tanh(c_new), atol=1e-12, rtol=0)
    torch.testing.assert_close(a1, torch.cat([i, f, o], 1), atol=1e-12, rtol=0)


def test_fgr_extra_weights_change_the_result_only_when_non_zero() -> None:
    fgr = unrolled.LSTMCell(I, H, variant="FGR").to(DT)
    vanilla = unrolled.LSTMCell(I, H, variant="vanilla").to(DT)
    vanilla.load_state_dict({k: v for k, v in fgr.state_dict().items() if k != "weight_gate_hh"})
    xs = torch.randn(5, B, I, dtype=DT)
    _, _, c = _inputs()

    def run(cell, state):
        outs = []
        for x in xs:
            out, state = cell(x, state)
            outs.append(out)
        return torch.stack(outs)

    with torch.no_grad():
        fgr.weight_gate_hh.zero_()
    h0 = torch.randn(B, H, dtype=DT)
    a0 = torch.rand(B, 3 * H, dtype=DT)  # any previous activations: with R = 0 they are ignored
    expected = run(vanilla, unrolled.LSTMState(h0, c))
    torch.testing.assert_close(run(fgr, unrolled.LSTMGateState(h0, c, a0)), expected, atol=1e-14, rtol=0)
    for block in range(9):  # each of the paper's nine matrices R_ii, R_fi, ..., R_oo matters alone
        row, col = divmod(block, 3)
        with torch.no_grad():
            fgr.weight_gate_hh.zero_()
            fgr.weight_gate_hh[row * H : (row + 1) * H, col * H : (col + 1) * H].uniform_(-0.5, 0.5)
        got = run(fgr, fgr.init_state(B, dtype=DT)._replace(h=h0, c=c))
        assert not torch.allclose(got, expected, atol=1e-6), f"block {block} had no effect"


def test_fgr_state_errors() -> None:
    cell = unrolled.LSTMCell(I, H, variant="FGR")
    with pytest.raises(ValueError, match=r"state is \(h, c, a\): expected 3 tensors, got 2"):
        cell(torch.randn(B, I), (torch.zeros(B, H), torch.zeros(B, H)))
    with pytest.raises(ValueError, match=r"gate state has the wrong shape: expected \(3, 18\)"):
        cell(torch.randn(B, I), (torch.zeros(B, H), torch.zeros(B, H), torch.zeros(B, H)))


def test_variant_by_name_equals_explicit_flags() -> None:
    torch.manual_seed(3)
    by_name = unrolled.LSTMCell(I, H, variant="cifg")
    torch.manual_seed(3)
    by_flags = unrolled.LSTMCell(I, H, peephole=True, coupled=True)
    x = torch.randn(B, I)
    torch.testing.assert_close(by_name(x)[0], by_flags(x)[0], atol=0, rtol=0)
    mixed = unrolled.LSTMCell(I, H, peephole=True, output_activation=False, forget_gate=False)
    assert mixed.gate_names == ("i", "g", "o")


def test_variant_errors() -> None:
    with pytest.raises(ValueError, match="unknown LSTM variant 'XYZ'"):
        resolve_variant("XYZ")
    with pytest.raises(ValueError, match="variant 'CIFG' sets coupled=True, but coupled=False"):
        resolve_variant("CIFG", coupled=False)
    with pytest.raises(ValueError, match="needs both the input and the forget gate"):
        resolve_variant(None, coupled=True, input_gate=False)
    with pytest.raises(TypeError, match="unknown LSTM option 'peepholes'"):
        unrolled.LSTM(I, H, peepholes=True)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_layers_are_bidirectional_and_stackable(variant) -> None:
    layer = unrolled.LSTM(I, H, num_layers=2, bidirectional=True, variant=variant)
    out, (h_n, c_n, *gates_n) = layer(torch.randn(4, B, I))
    assert out.shape == (4, B, 2 * H) and h_n.shape == c_n.shape == (4, B, H)
    assert [a.shape for a in gates_n] == ([(4, B, 3 * H)] if variant == "FGR" else [])
    keys = layer.state_dict().keys()
    assert ("weight_peephole_l1_reverse" in keys) == (variant not in ("NP",))
    assert ("weight_gate_hh_l1_reverse" in keys) == (variant == "FGR")


def test_forget_bias_sets_the_total_forget_bias() -> None:
    cell = unrolled.LSTMCell(I, H, variant="vanilla", forget_bias=1.0)
    f_rows = slice(H, 2 * H)  # gates i, f, g, o
    assert torch.equal(cell.bias_ih[f_rows] + cell.bias_hh[f_rows], torch.ones(H))
    assert not torch.equal(cell.bias_ih[:H], torch.ones(H))  # the other gates keep their init
    layer = unrolled.LSTM(I, H, num_layers=2, forget_bias=2.0)
    assert torch.equal(layer.bias_ih_l1[f_rows] + layer.bias_hh_l1[f_rows], torch.full((H,), 2.0))
    with pytest.raises(ValueError, match="forget_bias needs a forget gate"):
        unrolled.LSTMCell(I, H, variant="CIFG", forget_bias=1.0)
    with pytest.raises(ValueError, match="forget_bias needs a forget gate"):
        unrolled.LSTMCell(I, H, bias=False, forget_bias=1.0)


@pytest.mark.parametrize("variant", ["NP", "vanilla", "CIFG", "NOAF"])
def test_layer_norm_gradcheck(variant) -> None:
    cell = unrolled.LSTMCell(I, H, variant=variant, layer_norm=True).to(DT)
    with torch.no_grad():  # move gains and shifts off their initial 1 and 0
        for name in ("ln_ih_weight", "ln_hh_weight", "ln_c_weight", "ln_c_bias"):
            getattr(cell, name).uniform_(0.5, 1.5)
    x, h, c = (t.requires_grad_() for t in _inputs())
    assert torch.autograd.gradcheck(
        lambda x, h, c, *p: cell(x, (h, c))[1], (x, h, c, *cell.parameters()), eps=1e-6, atol=1e-5
    )


def test_layer_norm_equations() -> None:
    cell = unrolled.LSTMCell(I, H, layer_norm=True).to(DT)
    with torch.no_grad():
        for name in ("ln_ih_weight", "ln_hh_weight", "ln_c_weight", "ln_c_bias"):
            getattr(cell, name).uniform_(0.5, 1.5)
    x, h, c = _inputs()

    def ln(v, gain, shift=0.0):
        return (v - v.mean(-1, keepdim=True)) / torch.sqrt(
            v.var(-1, unbiased=False, keepdim=True) + 1e-5
        ) * gain + shift

    gates = ln(x @ cell.weight_ih.T, cell.ln_ih_weight) + ln(h @ cell.weight_hh.T, cell.ln_hh_weight)
    i, f, g, o = (gates + cell.bias_ih + cell.bias_hh).chunk(4, 1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(ln(c_new, cell.ln_c_weight, cell.ln_c_bias))
    out, (h1, c1) = cell(x, (h, c))
    torch.testing.assert_close(c1, c_new, atol=1e-12, rtol=0)  # the carried cell is not normalised
    torch.testing.assert_close(h1, h_new, atol=1e-12, rtol=0)


def test_layer_norm_is_invariant_to_scaling_the_weight_matrices() -> None:
    """LN(a W x) = LN(W x) for a > 0, up to LN's epsilon (made negligible by large weights)."""
    cell = unrolled.LSTMCell(I, H, layer_norm=True).to(DT)
    with torch.no_grad():
        cell.weight_ih.mul_(100.0)
        cell.weight_hh.mul_(100.0)
    x, h, c = _inputs()
    before = cell(x, (h, c))[0]
    with torch.no_grad():
        cell.weight_ih.mul_(7.0)
        cell.weight_hh.mul_(0.2)
    torch.testing.assert_close(cell(x, (h, c))[0], before, atol=1e-6, rtol=0)
    plain = unrolled.LSTMCell(I, H).to(DT)  # without layer norm the same scaling changes everything
    plain.load_state_dict({k: v for k, v in cell.state_dict().items() if not k.startswith("ln_")})
    assert not torch.allclose(plain(x, (h, c))[0], before, atol=1e-3)


def test_layer_norm_layer_keys() -> None:
    layer = unrolled.LSTM(I, H, num_layers=2, bidirectional=True, layer_norm=True)
    keys = set(layer.state_dict())
    assert {"ln_ih_weight_l0", "ln_hh_weight_l1_reverse", "ln_c_weight_l1", "ln_c_bias_l0_reverse"} <= keys
    out, _ = layer(torch.randn(4, B, I))
    assert out.shape == (4, B, 2 * H)
