"""Data: reading text, vocabularies, corpora and truncated-BPTT batching. Never imports models."""

from .batching import BPTTChunks, num_chunks, stream_rows
from .shakespeare import load_shakespeare
from .text import read_text
from .vocab import CharVocab

__all__ = ["BPTTChunks", "CharVocab", "load_shakespeare", "num_chunks", "read_text", "stream_rows"]
