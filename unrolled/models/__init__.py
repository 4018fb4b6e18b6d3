"""Models: thin heads around a recurrent layer."""

from .language_model import LanguageModel

__all__ = ["LanguageModel"]
