"""Engines: how a layer runs its time loop. ``reference`` is the plain autograd loop."""

from .reference import run_reference

__all__ = ["run_reference"]
