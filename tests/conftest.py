"""Shared test helpers: small sizes and a tiny corpus the tests write themselves."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


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


@pytest.fixture(params=["reference", "fused", "native"])
def impl(request) -> str:
    """Every engine that runs the cells torch.nn has: each is checked against torch.nn."""
    return request.param
