"""Data: reading text, vocabularies, corpora, labelled files and batching. Never imports models."""

from .batching import BPTTChunks, num_chunks, stream_rows
from .labelled import (
    ClassBatches,
    LabelledTexts,
    check_classes,
    pad_batch,
    read_labelled,
    split_indices,
    tokenize,
)
from .shakespeare import load_shakespeare
from .text import read_text
from .vocab import PAD, UNK, CharVocab, WordVocab

__all__ = [
    "PAD",
    "UNK",
    "BPTTChunks",
    "CharVocab",
    "ClassBatches",
    "LabelledTexts",
    "WordVocab",
    "check_classes",
    "load_shakespeare",
    "num_chunks",
    "pad_batch",
    "read_labelled",
    "read_text",
    "split_indices",
    "stream_rows",
    "tokenize",
]
