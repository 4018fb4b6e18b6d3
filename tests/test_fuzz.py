"""Fuzzed readers: every file the tasks read, given random and hostile bytes, either parses or raises
the error family the command line turns into one line (``ValueError``, ``TypeError``, ``OSError``:
exit code 2) — never another exception, never a hang (a deadline per example).

The bytes: random bytes; text built from hostile pieces (a BOM, CRLF, NUL bytes, quotes nested and
unclosed, separators, huge fields, invalid UTF-8); and valid files of each format cut at a random
point or with a random byte changed. A hundred examples per reader in the fast suite, two thousand
with ``-m slow``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import unrolled  # noqa: E402
from unrolled.cli import main  # noqa: E402
from unrolled.data import read_text  # noqa: E402
from unrolled.data.labelled import read_labelled  # noqa: E402
from unrolled.data.pairs import read_pairs  # noqa: E402
from unrolled.data.series import read_csv_series  # noqa: E402
from unrolled.data.tagged import read_tagged  # noqa: E402
from unrolled.training import checkpoint as ckpt  # noqa: E402

OURS = (ValueError, TypeError, OSError)  # one line and exit code 2 at the command line
EXAMPLES = [pytest.param(100, id="fast"), pytest.param(2000, id="slow", marks=pytest.mark.slow)]
CHECKED = settings(deadline=2000, suppress_health_check=[HealthCheck.too_slow], database=None)

PIECES = [
    b"\xef\xbb\xbf", b"\r\n", b"\n", b"\r", b"\x00", b'"', b'""', b'"a,b"', b",", b";", b"\t", b"/",
    b"//", b"#", b" ", b"\xff\xfe", b"\xc3", b"\xe2\x82", b"x" * 9_000, b"1", b"-3.5", b"1e400", b"nan",
    b"NA", b"text", b"label", b"y", b"time", b"source", b"target", b"word/NN", b"1\tThe\tthe\tDET",
    b"# sent_id = 1", b"\xf0\x9f\x98\x80",
]  # fmt: skip
VALID = {
    "text": b"ROMEO:\nBut soft, what light\nthrough yonder window breaks?\n",
    "labelled": b'text,label\n"a good, ""warm"" film",pos\nflat and dull,neg\nfine,pos\nbad,neg\n',
    "pairs": b"one\tun\ntwo\tdeux\nthree\ttrois\n",
    "slash": b"The/DT cat/NN sat/VBD ./.\nA/DT dog/NN ran/VBD ./.\n",
    "conllu": (
        b"# sent_id = 1\n1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\tNN\t_\t0\troot\t_\t_\n\n"
    ),
    "conll": b"The DT\ncat NN\n\nA DT\ndog NN\n",
    "series": b"time,y,x\n2000,1.5,3\n2001,2.5,\n2002,NA,4\n2003,3.0,5\n",
}


def damaged(valid: bytes, within: int | None = None) -> st.SearchStrategy[bytes]:
    """``valid`` cut at a random point, or with one byte changed (in its first ``within`` bytes)."""
    n = len(valid) if within is None else min(len(valid), within)
    cut = st.integers(0, n).map(lambda i: valid[:i])
    flipped = st.tuples(st.integers(0, n - 1), st.integers(0, 255)).map(
        lambda p: valid[: p[0]] + bytes([p[1]]) + valid[p[0] + 1 :]
    )
    return st.one_of(cut, flipped)


def hostile(kind: str) -> st.SearchStrategy[bytes]:
    """Bytes for a reader of ``kind``: random, assembled from hostile pieces, or a valid file of the
    kind cut short or with one byte changed."""
    valid = VALID[kind]
    text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40).map(str.encode)
    pieces = st.lists(st.one_of(st.sampled_from(PIECES), text), max_size=30).map(b"".join)
    joined = st.lists(st.sampled_from([valid, *PIECES[:12]]), max_size=6).map(b"".join)
    return st.one_of(st.binary(max_size=400), pieces, damaged(valid), joined)


def _fuzz(data: st.SearchStrategy[bytes], target: Path, read: Callable[[], object], examples: int) -> None:
    """Write every example of ``data`` to ``target``, then ``read()``: it returns, or raises one of ours."""

    @settings(CHECKED, max_examples=examples)
    @given(data)
    def check(example: bytes) -> None:
        target.write_bytes(example)
        try:
            read()
        except OURS:
            pass

    check()


READERS = {
    "text": ("text", read_text),
    "labelled, columns guessed": ("labelled", read_labelled),
    "labelled, columns named": ("labelled", lambda p: read_labelled(p, "text", "label")),
    "pairs": ("pairs", read_pairs),
    "slash-tagged": ("slash", lambda p: read_tagged(p, "slash")),
    "conllu": ("conllu", lambda p: read_tagged(p, "conllu")),
    "conll": ("conll", lambda p: read_tagged(p, "conll")),
    "series csv": ("series", lambda p: read_csv_series(p, "y", ["x"], "time")),
}


@pytest.mark.parametrize("examples", EXAMPLES)
@pytest.mark.parametrize("reader", list(READERS))
def test_every_data_reader_parses_or_says_why(reader, examples, tmp_path) -> None:
    kind, read = READERS[reader]
    path = tmp_path / "data.txt"
    _fuzz(hostile(kind), path, lambda: read(path), examples)


# ---- run directories: config, vocabulary, pointer, trainer state, safetensors ------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    text = out.parent / "text.txt"
    text.write_bytes(VALID["text"] * 30)
    argv = ["train", "charlm", "--text", str(text), "--out", str(out), "--hidden", "8", "--batch-size", "2"]
    assert main([*argv, "--seq-len", "8", "--max-steps", "2", "--no-progress", "--sample-length", "0"]) == 0
    return out


def _run_files(run: Path) -> dict[str, Path]:
    latest = ckpt.committed(run).latest
    return {
        "config.json": run / ckpt.CONFIG,
        "vocab.json": run / ckpt.VOCAB,
        "checkpoint.json": run / ckpt.POINTER,
        "trainer_state.json": latest / ckpt.STATE,
        "model.safetensors": latest / ckpt.WEIGHTS,
    }


@pytest.mark.parametrize("examples", EXAMPLES)
@pytest.mark.parametrize(
    "name", ["config.json", "vocab.json", "checkpoint.json", "trainer_state.json", "model.safetensors"]
)
def test_a_damaged_run_file_opens_or_says_why(run, name, examples, tmp_path) -> None:
    """One file of a run directory replaced by hostile bytes (or its own bytes cut or changed):
    ``unrolled.load`` and the trainer state either read it or raise one of ours."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    target = _run_files(copy)[name]
    original = target.read_bytes()
    mutated = st.one_of(
        st.binary(max_size=400),
        damaged(original, within=400),  # a safetensors file's length prefix and JSON header
        st.lists(st.sampled_from(PIECES[:20]), max_size=10).map(b"".join),
    )

    def read() -> None:
        unrolled.load(copy, which="latest")
        ckpt.trainer_state(copy)

    _fuzz(mutated, target, read, examples)
