"""Models: thin heads around a recurrent or convolutional layer."""

from .classifier import RecurrentClassifier, TextCNN
from .language_model import LanguageModel
from .seq2seq import Seq2Seq

__all__ = ["LanguageModel", "RecurrentClassifier", "Seq2Seq", "TextCNN"]
