"""The neuron viewer: every signal of a char-LM over a text, the feature ranking, and the page,
opened in a real browser (headless Chromium)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from unrolled import GRUCell, LSTMCell, Recurrent
from unrolled.analysis.neurons import activations, correlations, pearson, quantize, text_features
from unrolled.cells import probe_gates
from unrolled.cli import main
from unrolled.models import LanguageModel

TEXT = 'ALICE:\nThe "old mill" stood (by the river),\nand every stone remembers rain.\n'


def _model(cell: str, layers: int = 2, embedding: int = 5) -> LanguageModel:
    torch.manual_seed(0)
    V, H = 11, 7
    make = {"lstm": LSTMCell, "gru": GRUCell}[cell]
    rnn = Recurrent(lambda i: make(i, H), embedding or V, num_layers=layers, batch_first=True)
    return LanguageModel(V, rnn, embedding_dim=embedding)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_activations_are_the_models_own_and_the_gates_rebuild_the_state(cell: str) -> None:
    model = _model(cell).double()
    ids = torch.randint(0, 11, (30,))
    signals = activations(model, ids)
    by = {s.name: s.values for s in signals}
    out, _ = model.rnn(model.embed(ids[None]))
    torch.testing.assert_close(by["layer 1 h"], out[0], atol=1e-12, rtol=0)  # the layer's own output
    for k in (0, 1):
        h = by[f"layer {k} h"]
        h_prev = torch.cat([torch.zeros(1, h.size(1), dtype=h.dtype), h[:-1]])
        if cell == "lstm":
            assert [s.kind for s in signals if s.layer == k] == [
                "h",
                "c",
                "gate i",
                "gate f",
                "gate o",
                "gate g",
            ]
            i, f, o, g, c = (by[f"layer {k} {n}"] for n in ("gate i", "gate f", "gate o", "gate g", "c"))
            c_prev = torch.cat([torch.zeros(1, c.size(1), dtype=c.dtype), c[:-1]])
            torch.testing.assert_close(c, f * c_prev + i * g, atol=1e-12, rtol=0)
            torch.testing.assert_close(h, o * torch.tanh(c), atol=1e-12, rtol=0)
        else:
            z, n = by[f"layer {k} gate z"], by[f"layer {k} gate n"]
            torch.testing.assert_close(h, (1 - z) * n + z * h_prev, atol=1e-12, rtol=0)
        assert all(s.values.size(0) == 30 for s in signals)


def test_probe_gates_leaves_no_trace_and_records_nothing_for_a_cell_without_gates() -> None:
    from unrolled import RNNCell

    cell = RNNCell(3, 4)
    with probe_gates(cell) as steps:
        cell(torch.randn(2, 3))
    assert steps == [] and "_gate_probe" not in cell.__dict__
    lstm = LSTMCell(3, 4)
    with probe_gates(lstm) as steps:
        lstm(torch.randn(2, 3))
        lstm(torch.randn(2, 3))
    assert len(steps) == 2 and sorted(steps[0]) == ["f", "g", "i", "o"]
    assert "_gate_probe" not in lstm.__dict__


def test_text_features_on_a_known_text() -> None:
    f = text_features(TEXT)
    at = {name: v.tolist() for name, v in f.items()}
    assert at["position in the line"][:8] == [0, 1, 2, 3, 4, 5, 6, 0]  # 'ALICE:\nT'
    assert [TEXT[t] for t, v in enumerate(at["after a newline"]) if v] == ["T", "a"]
    quoted = "".join(TEXT[t] for t, v in enumerate(at["inside quotes"]) if v)
    assert quoted == '"old mill"'
    bracketed = "".join(TEXT[t] for t, v in enumerate(at["inside brackets"]) if v)
    assert bracketed == "(by the river)"
    assert "".join(TEXT[t] for t, v in enumerate(at["in a line ending with ':'"]) if v) == "ALICE:"
    assert "".join(TEXT[t] for t, v in enumerate(at["upper-case letter"]) if v) == "ALICET"


def test_pearson_equals_numpy_and_constant_columns_give_zero() -> None:
    torch.manual_seed(0)
    a = torch.randn(50, 4, dtype=torch.float64)
    a[:, 3] = 2.0
    f = torch.randn(50, dtype=torch.float64) + a[:, 0]
    r = pearson(a, f)
    for u in range(3):
        assert float(r[u]) == pytest.approx(np.corrcoef(a[:, u].numpy(), f.numpy())[0, 1], abs=1e-12)
    assert float(r[3]) == 0.0


def test_correlations_find_a_unit_that_copies_a_feature_and_skip_absent_ones() -> None:
    from unrolled.analysis.neurons import Signal

    f = text_features(TEXT)
    torch.manual_seed(0)
    noise = torch.rand(len(TEXT), 5)
    noise[:, 3] = f["position in the line"] * 0.1 + 0.01 * noise[:, 3]  # unit 3 follows the column
    ranking = correlations([Signal(0, "h", torch.rand(len(TEXT), 3)), Signal(1, "c", noise)], f)
    best = ranking["position in the line"]["units"][0]
    assert (best["signal"], best["unit"]) == (1, 3) and best["r"] > 0.99
    plain = correlations([Signal(0, "h", noise[:11])], text_features("abc abc\nabc"))
    assert plain["inside quotes"] == {"present": False, "units": []}


def test_quantize_round_trips_within_half_a_step() -> None:
    import base64

    v = torch.tensor([[0.5, -3.0, 0.0], [-1.0, 6.0, 0.25]])
    codes, scale = quantize(v)
    q = np.frombuffer(base64.b64decode(codes), dtype=np.int8).reshape(2, 3)
    assert scale == [1.0, 6.0, 1.0]
    back = torch.tensor(q, dtype=torch.float32) * torch.tensor(scale) / 127
    assert float((back - v).abs().max()) <= 6.0 / 254 + 1e-6


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory) -> str:
    from conftest import TINY_TEXT

    d = tmp_path_factory.mktemp("neurons")
    (d / "tiny.txt").write_text(TINY_TEXT, encoding="utf-8")
    run = d / "run"
    args = ["--cell", "lstm", "--hidden", "16", "--layers", "2", "--batch-size", "8", "--seq-len", "40"]
    main(["train", "charlm", "--text", str(d / "tiny.txt"), *args, "--max-steps", "40", "--no-progress",
          "--sample-length", "0", "--out", str(run)])  # fmt: skip
    return str(run)


@pytest.fixture(scope="module")
def page(lstm_run, tmp_path_factory) -> tuple[str, str]:
    from conftest import TINY_TEXT

    d = tmp_path_factory.mktemp("page")
    text = d / "view.txt"
    text.write_text(TINY_TEXT[:600], encoding="utf-8")
    out = d / "view.html"
    assert main(["analyze", "neurons", lstm_run, "--text", str(text), "--out", str(out)]) == 0
    return str(out), str(text)


def test_neurons_command_writes_the_page_the_plot_and_the_ranking(page, capsys) -> None:
    out, _ = page
    summary = json.loads(Path(out).with_suffix(".json").read_text(encoding="utf-8"))
    assert summary["characters"] == 600
    names = [s["name"] for s in summary["signals"]]
    assert names[:6] == ["layer 0 h", "layer 0 c", "layer 0 gate i", "layer 0 gate f", "layer 0 gate o",
                         "layer 0 gate g"]  # fmt: skip
    assert summary["features"]["inside quotes"]["present"] is False  # the tiny text has none
    assert summary["features"]["after a newline"]["units"][0]["signal"] in names
    html = Path(out).read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    assert os.path.getsize(out.replace(".html", ".png")) > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["--unit", "16"], "--unit 16 is out of range: layer 0 has 16 units (0..15)"),
        (["--layer", "2"], "--layer 2 is out of range: the run has 2 layers (0..1)"),
        (["--out", "view.png"], "give a name ending in .html"),
    ],
)
def test_neurons_bad_input(lstm_run, page, tmp_path, args, message, capsys) -> None:
    _, text = page
    out = ["--out", str(tmp_path / "v.html")] if "--out" not in args else []
    assert main(["analyze", "neurons", lstm_run, "--text", text, *out, *args]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_neurons_refuses_a_text_over_the_limit(lstm_run, tmp_path, capsys) -> None:
    from unrolled.analysis.neurons import MAX_CHARS

    long = tmp_path / "long.txt"
    long.write_text("a" * (MAX_CHARS + 1), encoding="utf-8")
    assert main(["analyze", "neurons", lstm_run, "--text", str(long), "--out", str(tmp_path / "v.html")]) == 2
    assert f"the limit is {MAX_CHARS}" in capsys.readouterr().err


def _chromium() -> str | None:
    for name in (os.environ.get("UNROLLED_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _rgb(css: str) -> tuple[int, ...]:
    return tuple(int(x) for x in css[css.index("(") + 1 : css.index(")")].split(","))


def test_neuron_page_in_headless_chromium(page) -> None:
    """The page runs in a real browser with no network, and picking a unit recolours the text
    by that unit's values: red where it is positive, blue where it is negative."""
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [test] extra")
    out, _ = page
    summary = json.loads(Path(out).with_suffix(".json").read_text(encoding="utf-8"))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            requests, errors = [], []
            tab.on("request", lambda r: requests.append(r.url))
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.goto(f"file://{out}")
            spans = "#text span"

            def colours() -> list[str]:
                return tab.eval_on_selector_all(spans, "els => els.map(e => e.style.backgroundColor)")

            assert tab.eval_on_selector_all(spans, "els => els.length") == 600
            first = colours()
            tab.select_option("#signal", "0")  # layer 0 h
            tab.fill("#unit", "3")
            tab.dispatch_event("#unit", "change")
            unit3 = colours()
            tab.fill("#unit", "4")
            tab.dispatch_event("#unit", "change")
            unit4 = colours()
            shown = tab.evaluate("[document.body.dataset.signal, document.body.dataset.unit]")
            assert shown == ["0", "4"]
            assert unit3 != unit4 and len(set(unit4)) > 10
            titles = tab.eval_on_selector_all(spans, "els => els.map(e => e.title)")
            values = [float(t.split(": ")[1]) for t in titles]
            for css, v in zip(unit4, values, strict=True):  # red for positive, blue for negative
                r, _, b = _rgb(css)
                if v > 0.05:
                    assert r > b, (css, v)
                elif v < -0.05:
                    assert b > r, (css, v)
            best = summary["features"]["after a newline"]["units"][0]
            tab.click("a.unit >> nth=" + str(_link_index(summary, "after a newline")))
            assert tab.evaluate("document.body.dataset.unit") == str(best["unit"])
            names = [s["name"] for s in summary["signals"]]
            assert names[int(tab.evaluate("document.body.dataset.signal"))] == best["signal"]
            if (best["signal"], best["unit"]) != ("layer 0 h", 4):
                assert colours() != unit4
            assert first == colours() or first != unit4  # the page opened on a unit of its own
            assert not errors, errors
            assert requests == [f"file://{out}"], requests  # nothing fetched: the page is self-contained
        finally:
            browser.close()


def _link_index(summary: dict, feature: str) -> int:
    """The position of a feature's best unit among all unit links of the page."""
    index = 0
    for name, f in summary["features"].items():
        if name == feature:
            return index
        index += len(f["units"])
    raise KeyError(feature)
