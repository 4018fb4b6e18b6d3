"""Models: thin heads around a recurrent or convolutional layer."""

from .classifier import RecurrentClassifier, TextCNN
from .language_model import LanguageModel

__all__ = ["LanguageModel", "RecurrentClassifier", "TextCNN"]
