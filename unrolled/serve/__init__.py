"""``unrolled serve``: a local web app over a folder of runs (the ``[serve]`` extra: FastAPI, uvicorn).

    unrolled serve runs/                     # http://127.0.0.1:8000/
    unrolled serve runs/ --port 8080 --cache 8

The page lists the runs with their curves and offers each run's verbs (sample, translate, tag,
predict, forecast, score, and the neurons of a char-LM); the JSON API under ``/api`` is what the
page calls (documented at ``/docs`` and in docs/serve.md). :func:`create_app` builds the app for
other ASGI servers or tests. The web layer holds no model code: every answer comes from the
predictors of :func:`unrolled.load`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """:func:`unrolled.serve.app.create_app` (imported on call: the extra may be missing)."""
    from .app import create_app as create

    return create(*args, **kwargs)
