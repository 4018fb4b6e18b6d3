"""Shared test helpers: small sizes and a tiny corpus the tests write themselves."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch

from unrolled.engines import compiled, graphed

# The engine auto trains this package's step cells with on a CPU: the compiled C++ loops where
# they could be built on this machine, else the Python fused engine.
STEP_ENGINE = "compiled" if compiled.available() else "fused"
NEEDS_COMPILED = pytest.mark.skipif(
    not compiled.available(), reason=f"no compiled engine: {compiled.unavailable_reason()}"
)
# the engines with hand-derived BPTT, each compared with the reference loop (graphed: on the CPU
# through Rerun, below)
BPTT_ENGINES = ["fused", pytest.param("compiled", marks=NEEDS_COMPILED), "graphed"]


class Rerun:
    """A CUDA graph's contract without a GPU: ``outputs`` are ``run()``'s results, and each
    replay runs the loop again on the same static buffers and writes its results into those
    same ``outputs``, as a graph's replay overwrites its output memory. With it the graphed
    engine's buffer logic runs on the CPU."""

    def __init__(self, run, device) -> None:
        self.run = run
        self.outputs = run()

    def replay(self) -> None:
        old, new = [], []
        graphed._flatten(self.outputs, old)
        graphed._flatten(self.run(), new)
        for o, n in zip(old, new, strict=True):
            o.copy_(n)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _graphed_on_the_cpu(request, monkeypatch) -> None:
    """A test parametrised with engine (or impl) "graphed" may run it on the CPU, via Rerun."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    if "graphed" in (params.get("engine"), params.get("impl")):
        monkeypatch.setitem(graphed.CAPTURES, "cpu", Rerun)


# A small original text (written for these tests, not taken from anywhere), repeated so that a
# char-LM has something to learn in a few steps.
TINY_TEXT = (
    "ALICE:\nThe river runs where the old mill stood,\nand every stone remembers rain.\n\n"
    "BORIS:\nThen let us follow it to the sea,\nand count the gulls until they sleep.\n\n"
) * 40


@pytest.fixture
def tiny_text_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture(params=["reference", "fused", pytest.param("compiled", marks=NEEDS_COMPILED), "native"])
def impl(request) -> str:
    """Every engine that runs the cells torch.nn has: each is checked against torch.nn."""
    return request.param


class DoublerCell(torch.nn.Module):
    """A custom cell, h_t = tanh(x_t W^T + 2 h_{t-1}): only the reference engine knows it."""

    def __init__(self, input_size: int, hidden_size: int = 6) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight = torch.nn.Parameter(torch.randn(hidden_size, input_size))

    def forward(self, x, h):
        h = torch.tanh(x @ self.weight.t() + 2 * h)
        return h, h

    def init_state(self, batch, *, device=None, dtype=None):
        return self.weight.new_zeros(batch, self.hidden_size, device=device, dtype=dtype)


@pytest.fixture
def custom_cell() -> type[DoublerCell]:
    """A cell class that no fast engine supports."""
    return DoublerCell


# ---- the code of the docs, run as it stands there ----------------------------------------------
DOCS = Path(__file__).resolve().parents[1] / "docs"


def doc_block(page: str, marker: str) -> str:
    """The one ```python block of ``docs/<page>`` that contains ``marker``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if marker in b]
    assert len(blocks) == 1, f"{len(blocks)} python blocks of docs/{page} contain {marker!r}"
    return blocks[0]


def doc_function(page: str, name: str):
    """The function ``name`` defined in a python block of ``docs/<page>``, with that block's
    top-level imports (so a test runs the code a reader copies, not a copy of it)."""
    lines = doc_block(page, f"def {name}(").splitlines()
    imports = [line for line in lines if line.startswith(("import ", "from "))]
    start = lines.index(next(line for line in lines if line.startswith(f"def {name}(")))
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in ("", " ")), len(lines))
    namespace: dict = {}
    exec(compile("\n".join(imports + lines[start:end]), f"docs/{page}", "exec"), namespace)
    return namespace[name]


def task_data(folder) -> dict[str, list[str]]:
    """Small data and flags for every task, written here (original toy data)."""
    rng = random.Random(5)
    words = "the river runs where old mill stood and every stone remembers rain".split()
    classes = (folder / "moods.csv", ["label,text"])
    for _ in range(60):
        mood = rng.choice(["calm", "storm"])
        classes[1].append(f"{mood},{' '.join(rng.choice(words) for _ in range(5))} {mood}ish")
    classes[0].write_text("\n".join(classes[1]) + "\n", encoding="utf-8")
    tags = {"the": "DT", "river": "NN", "runs": "VB", "old": "JJ", "mill": "NN", "stone": "NN"}
    tagged = folder / "tags.txt"
    tagged.write_text(
        "".join(" ".join(f"{w}/{tags[w]}" for w in rng.choices(list(tags), k=6)) + "\n" for _ in range(80)),
        encoding="utf-8",
    )
    text = folder / "text.txt"
    lines = (" ".join(rng.choice(words) for _ in range(8)) for _ in range(300))
    text.write_text("\n".join(lines), encoding="utf-8")
    small = ["--hidden", "16", "--batch-size", "4"]
    return {
        "word-lm": ["lm", "--unit", "word", "--text", str(text), *small, "--seq-len", "8"],
        "classify": ["classify", "--data", str(classes[0]), "--arch", "gru", *small],
        "translate": ["translate", "--train-numbers", "200", "--held-out", "10", *small],
        "tag": ["tag", "--data", str(tagged), *small],
        "forecast": ["forecast", "--series", "sine", *small],
    }


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--record-errors",
        metavar="FILE",
        help="append to FILE the raise statements of unrolled/ that each test triggers (tests/errortable.py)",
    )


def pytest_configure(config) -> None:
    if config.getoption("--record-errors"):
        from errortable import Recorder

        config.pluginmanager.register(Recorder(config.getoption("--record-errors")), "errortable")
