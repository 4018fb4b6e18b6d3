"""Text reading, the character vocabulary, the Shakespeare corpus and truncated-BPTT batching."""

from __future__ import annotations

import json

import pytest
import torch

from unrolled.data import BPTTChunks, CharVocab, load_shakespeare, num_chunks, read_text, stream_rows
from unrolled.data.shakespeare import render_play


def test_chunk_k_plus_1_continues_chunk_k_in_every_row() -> None:
    B, T = 3, 5
    ids = torch.arange(100)
    got = list(BPTTChunks(ids, B, T))
    assert len(got) == num_chunks(ids, B, T) == (100 // B - 1) // T
    rows = stream_rows(ids, B)  # row b is the contiguous slice [b*33, (b+1)*33)
    assert torch.equal(rows[1], torch.arange(33, 66))
    for (x0, y0), (x1, _) in zip(got, got[1:], strict=False):
        assert x0.shape == y0.shape == (B, T)
        assert torch.equal(y0[:, :-1], x0[:, 1:])  # targets are the inputs shifted by one
        assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # next chunk starts right after, row by row
        assert torch.equal(x1[:, 0], y0[:, -1])


def test_chunks_are_indexable_for_resuming_mid_epoch() -> None:
    c = BPTTChunks(torch.arange(200), 2, 7)
    assert len(c) == (100 - 1) // 7
    assert torch.equal(c[3][0], torch.stack([torch.arange(21, 28), torch.arange(121, 128)]))
    with pytest.raises(IndexError):
        c[len(c)]


def test_batching_rejects_nonpositive_sizes() -> None:
    with pytest.raises(ValueError, match="batch_size must be positive"):
        stream_rows(torch.arange(10), 0)
    with pytest.raises(ValueError, match="seq_len must be positive"):
        num_chunks(torch.arange(10), 2, 0)


def test_vocab_round_trip_and_unknown_characters() -> None:
    v = CharVocab.from_text("abcab\n")
    assert v.chars == ["\n", "a", "b", "c"]
    assert v.decode(v.encode("cab\n").tolist()) == "cab\n"
    assert CharVocab.from_json(json.loads(json.dumps(v.to_json()))).chars == v.chars
    with pytest.raises(ValueError, match="'x', 'é'"):
        v.encode("abxéx")


def test_read_text_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="not found"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="directory"):
        read_text(tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_text(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8 text .*0xe9 at offset 3"):
        read_text(tmp_path / "latin1.txt")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfhi")
    assert read_text(tmp_path / "bom.txt") == "hi"


def test_render_play_speaker_lines_and_no_stage_directions() -> None:
    md = (
        "# A Play\n\n## ACT I\n\n### SCENE I. A room.\n\n_Enter ANNA and a long direction that\n"
        "goes on_\n\n**ANNA**  \nGood day to you,  \nand \\[to\\] all.\n\n_\\[Aside]_  \nHush.\n\n"
        "**BEN**  \n_\\[Aside]_ Farewell.\n\n_Exeunt_\n"
    )
    assert render_play(md) == "ANNA:\nGood day to you,\nand [to] all.\nHush.\n\nBEN:\nFarewell.\n"


def test_default_corpus_is_about_a_megabyte_of_speeches() -> None:
    text = load_shakespeare()
    assert 1_000_000 < len(text) < 1_300_000
    assert text.startswith("First Citizen:\n")
    assert "_" not in text and "**" not in text and "#" not in text
