"""The ASGI app of ``unrolled serve``: a JSON API over the predictors of ``unrolled.load`` and one page.

Every verb is a thin call of the run's predictor (the web layer holds no model code): the same
inputs give the same answers as ``unrolled.load(RUN).<verb>(...)``. Handlers that touch a model
are plain functions, which FastAPI runs in its thread pool, off the event loop: a long sample
does not hold up the runs list.

Errors are JSON ``{"detail": "one line"}``: 404 for a run id that names no run under the root
(or a place outside it), 405 for a verb the run's task has not (the detail lists its verbs), 400
for a body that is not JSON, 413 for a body or a text over the limits, 422 for input the verb
refuses (the predictor's own message), 409 for a run whose model cannot be loaded or whose
outputs are not finite. A bug is a 500 with one line; the traceback goes to the server's log.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..api import task_of
from ..errors import Diverged
from ..training import checkpoint as ckpt
from .runs import Models, RunNotFound, RunUnavailable, find_runs, metrics, resolve, summary, verbs_of

log = logging.getLogger(__name__)
MAX_TEXTS = 64  # sentences or texts per request


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (``unrolled serve`` flags)."""

    text: int = 10_000  # characters of a text, a prime, or all texts of a request together
    length: int = 5_000  # tokens of a sample
    body: int = 1_000_000  # bytes of a request body
    beam: int = 16
    horizon: int = 1_000
    history: int = 100_000  # values of a forecast's history


class VerbNotAllowed(LookupError):
    def __init__(self, run_id: str, task: str, verb: str, verbs: tuple[str, ...]) -> None:
        super().__init__(
            f"a {task} run has no {verb}: run {run_id!r} answers {', '.join(verbs) or 'no verb'}"
        )


class TooLarge(ValueError):
    pass


# ---- request bodies --------------------------------------------------------------------------
class Texts(BaseModel):
    """One text or several: give ``text`` or ``texts``."""

    text: str | None = None
    texts: list[str] | None = Field(default=None, min_length=1, max_length=MAX_TEXTS)

    def all(self, limits: Limits) -> list[str]:
        if (self.text is None) == (self.texts is None):
            raise ValueError(
                "give either 'text' (one string) or 'texts' (a list of strings), not both or none"
            )
        texts = [self.text] if self.text is not None else list(self.texts or [])
        if sum(len(t) for t in texts) > limits.text:
            raise TooLarge(
                f"the texts have more than {limits.text} characters together (the server's --max-text)"
            )
        for k, t in enumerate(texts):
            if not t.strip():
                raise ValueError(f"text {k + 1} is empty")
        return texts


class SampleBody(BaseModel):
    prime: str = Field("", description="text that warms the state first (not repeated)")
    length: int = Field(200, ge=1, description="tokens to generate")
    temperature: float = Field(0.8, ge=0.0, description="0 = greedy")
    top_k: int | None = Field(None, ge=1)
    seed: int | None = None


class ScoreBody(BaseModel):
    text: str = Field(min_length=1)


class NeuronsBody(BaseModel):
    text: str = Field(min_length=1)
    signal: str | None = Field(None, description="e.g. 'layer 0 h' (default: the best-correlated unit's)")
    unit: int | None = Field(None, ge=0)


class TranslateBody(Texts):
    beam: int = Field(1, ge=1)
    length_penalty: float = Field(0.0, ge=0.0)
    max_len: int | None = Field(None, ge=1)


class ForecastBody(BaseModel):
    horizon: int | None = Field(None, ge=1, description="steps [the run's --horizon]")
    history: list[float] | list[list[float]] | None = Field(None, description="None: the run's own series")
    seed: int | None = None


# ---- the app ---------------------------------------------------------------------------------
def create_app(
    root: str | Path, *, device: str = "cpu", cache: int = 4, limits: Limits | None = None
) -> FastAPI:
    """The app serving the runs under ``root`` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"the runs folder {str(root)!r} does not exist: give a folder of run directories")
    limits = limits or Limits()
    models = Models(root, cache, device)
    app = FastAPI(
        title="unrolled serve",
        summary="The runs of a folder: their curves, and their models' verbs (unrolled.load).",
        version="1",
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: ours is served from the package
        redoc_url=None,
    )
    app.state.root, app.state.models, app.state.limits = root, models, limits
    _add_errors(app, limits)
    _add_api_page(app)

    def predictor(run_id: str, verb: str) -> Any:
        """The run's predictor (loaded or cached), if its task has ``verb``."""
        path = resolve(root, run_id)
        task = task_of(path)
        verbs = verbs_of(task.Predictor, ckpt.read_json(path / ckpt.CONFIG, "config.json"))
        if verb not in verbs:
            raise VerbNotAllowed(run_id, task.name, verb, verbs)
        return models.get(run_id)

    # ---- the page and the runs ----
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return _static("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        types = {".js": "text/javascript", ".css": "text/css"}
        suffix = Path(name).suffix
        if suffix not in types or name not in _STATIC:
            raise RunNotFound(f"no file {name!r}")
        return Response(_static(name), media_type=f"{types[suffix]}; charset=utf-8")

    @app.get("/api/runs", summary="every run under the root")
    def runs() -> dict[str, Any]:
        return {
            "root": str(root),
            "runs": [summary(root, i) for i in find_runs(root)],
            "loaded": models.loaded(),
        }

    @app.get("/api/runs/{run_id:path}/metrics", summary="the run's metrics.jsonl records")
    def run_metrics(run_id: str) -> dict[str, Any]:
        return {"id": run_id, "records": metrics(resolve(root, run_id))}

    # ---- language models ----
    @app.post("/api/runs/{run_id:path}/sample", summary="generate text (language models)")
    def sample(run_id: str, body: SampleBody | None = None) -> dict[str, Any]:
        body = body or SampleBody()
        p = predictor(run_id, "sample")
        _check_sample(body, limits)
        text = p.sample(body.prime, body.length, body.temperature, body.top_k, body.seed)
        return {"id": run_id, "prime": body.prime, "text": text}

    @app.post(
        "/api/runs/{run_id:path}/stream",
        summary="generate text, sent as it is drawn (chunked text/plain)",
        response_class=StreamingResponse,
    )
    async def stream(run_id: str, body: SampleBody | None = None) -> StreamingResponse:
        body = body or SampleBody()
        p = await run_in_threadpool(predictor, run_id, "stream")
        _check_sample(body, limits)
        tokens = p.stream(body.prime, body.length, body.temperature, body.top_k, body.seed)
        first = await run_in_threadpool(next, tokens, "")  # a bad prime fails here, before any byte is sent
        return StreamingResponse(itertools.chain([first], tokens), media_type="text/plain; charset=utf-8")

    @app.post("/api/runs/{run_id:path}/score", summary="how well the model predicts a text")
    def score(run_id: str, body: ScoreBody) -> dict[str, Any]:
        p = predictor(run_id, "score")
        _check_length(body.text, limits)
        return {"id": run_id, **p.score(body.text)}

    @app.post("/api/runs/{run_id:path}/neurons", summary="one unit's values over a text (char-LM)")
    def neurons(run_id: str, body: NeuronsBody) -> dict[str, Any]:
        p = predictor(run_id, "neurons")
        _check_length(body.text, limits)
        return {"id": run_id, **_neurons(p, body)}

    # ---- the other tasks ----
    @app.post("/api/runs/{run_id:path}/predict", summary="classify texts")
    def predict(run_id: str, body: Texts) -> dict[str, Any]:
        p = predictor(run_id, "predict")
        texts = body.all(limits)
        probs = p.predict_proba(texts)
        out = []
        for text, (label, prob), row in zip(texts, p.predict(texts), probs, strict=True):
            out.append(
                {
                    "text": text,
                    "label": label,
                    "probability": prob,
                    "probabilities": dict(zip(p.labels, row.tolist(), strict=True)),
                }
            )
        return {"id": run_id, "predictions": out}

    @app.post("/api/runs/{run_id:path}/translate", summary="translate sentences, with attention weights")
    def translate(run_id: str, body: TranslateBody) -> dict[str, Any]:
        p = predictor(run_id, "translate")
        texts = body.all(limits)
        if body.beam > limits.beam:
            raise TooLarge(f"beam {body.beam} is over the server's limit of {limits.beam}")
        found = p.translate(texts, body.beam, body.length_penalty, attention=True, max_len=body.max_len)
        return {"id": run_id, "translations": [_translation(t) for t in found]}

    @app.post("/api/runs/{run_id:path}/tag", summary="tag sentences")
    def tag(run_id: str, body: Texts) -> dict[str, Any]:
        p = predictor(run_id, "tag")
        tagged = p.tag(body.all(limits))
        return {"id": run_id, "sentences": [[list(pair) for pair in s] for s in tagged]}

    @app.post("/api/runs/{run_id:path}/forecast", summary="forecast the series (or a history given)")
    def forecast(run_id: str, body: ForecastBody | None = None) -> dict[str, Any]:
        body = body or ForecastBody()
        p = predictor(run_id, "forecast")
        if body.horizon is not None and body.horizon > limits.horizon:
            raise TooLarge(f"horizon {body.horizon} is over the server's limit of {limits.horizon}")
        if body.history is not None and len(body.history) > limits.history:
            raise TooLarge(f"the history has more than {limits.history} values (the server's limit)")
        found = p.forecast(body.horizon, body.history, seed=body.seed)
        out = {k: v.tolist() for k, v in found.items()}
        if body.history is None:  # the end of the run's own series, for the picture
            series = p.series()
            T = len(series)
            n = min(T, max(3 * len(out["mean"]), p.lookback, 50))
            times = series.times[-n:] if series.times else [str(t) for t in range(T - n, T)]
            values = [v if math.isfinite(v) else None for v in series.values[-n:].tolist()]  # NaN: missing
            out["history"] = {"time": list(times), "values": values}
        return {"id": run_id, **out}

    return app


# ---- helpers ---------------------------------------------------------------------------------
_STATIC = ("index.html", "app.js", "style.css")


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def _check_length(text: str, limits: Limits) -> None:
    if len(text) > limits.text:
        raise TooLarge(
            f"the text has {len(text)} characters; the server's limit is {limits.text} (--max-text)"
        )


def _check_sample(body: SampleBody, limits: Limits) -> None:
    _check_length(body.prime, limits)
    if body.length > limits.length:
        raise TooLarge(f"length {body.length} is over the server's limit of {limits.length} (--max-length)")


def _translation(t: Any) -> dict[str, Any]:
    attention = t.attention
    return {
        "text": t.text,
        "translation": t.translation,
        "source_tokens": t.source_tokens,
        "output_tokens": t.output_tokens,
        "unknown": t.unknown,
        "log_prob": t.log_prob,
        "attention": None if attention is None else attention.tolist(),
    }


def _neurons(p: Any, body: NeuronsBody) -> dict[str, Any]:
    from ..analysis import neurons

    ids = p.vocab.encode(body.text)
    signals = neurons.activations(p.model, ids)
    ranking = neurons.correlations(signals, neurons.text_features(body.text))
    names = [s.name for s in signals]
    if body.signal is None:
        best = max(
            (u for f in ranking.values() for u in f["units"][:1]), key=lambda u: abs(u["r"]), default=None
        )
        index, unit = (0, 0) if best is None else (best["signal"], best["unit"])
    elif body.signal in names:
        index, unit = names.index(body.signal), body.unit or 0
    else:
        raise ValueError(f"no signal {body.signal!r}: the model has {', '.join(names)}")
    units = signals[index].values.size(1)
    if body.unit is not None and body.unit >= units:
        raise ValueError(
            f"unit {body.unit} is out of range: {names[index]} has {units} units (0..{units - 1})"
        )
    unit = body.unit if body.unit is not None else unit
    return {
        "text": body.text,
        "signals": [{"name": s.name, "units": s.values.size(1), "bounded01": s.bounded01} for s in signals],
        "signal": names[index],
        "unit": unit,
        "values": signals[index].values[:, unit].tolist(),
        "features": {
            k: {**f, "units": [{**u, "signal": names[u["signal"]]} for u in f["units"]]}
            for k, f in ranking.items()
        },
    }


def _add_api_page(app: FastAPI) -> None:
    """``/docs``: the OpenAPI page (Swagger UI from the swagger-ui-bundle package, offline), or,
    without that package, a line pointing to the schema at ``/openapi.json``."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        swagger_ui_path = None
    if swagger_ui_path is not None:
        from fastapi.staticfiles import StaticFiles

        app.mount("/swagger", StaticFiles(directory=str(swagger_ui_path)), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        if swagger_ui_path is None:
            return HTMLResponse('The API is described by <a href="/openapi.json">/openapi.json</a>.')
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="unrolled serve: API",
            swagger_js_url="/swagger/swagger-ui-bundle.js",
            swagger_css_url="/swagger/swagger-ui.css",
            swagger_favicon_url="data:,",
        )


def error_detail(e: BaseException) -> str:
    """The ``detail`` of an error's answer: its message (a KeyError-like one without quotes)."""
    return str(e.args[0]) if isinstance(e, LookupError) and e.args else str(e)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _add_errors(app: FastAPI, limits: Limits) -> None:
    def answer(status: int, detail: str) -> JSONResponse:
        return JSONResponse({"detail": _one_line(detail)}, status_code=status)

    @app.middleware("http")
    async def body_limit(request: Request, call_next: Any) -> Response:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limits.body:
            return answer(413, f"the request body has {size} bytes; the server's limit is {limits.body}")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            return answer(400, "the request body is not valid JSON")
        first = errors[0] if errors else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or "the body"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return answer(422, f"{where}: {first.get('msg', 'invalid')}{more}")

    handlers = {
        RunNotFound: 404,
        VerbNotAllowed: 405,
        TooLarge: 413,
        RunUnavailable: 409,
        Diverged: 409,  # the model's outputs are not finite
        ValueError: 422,
        TypeError: 422,
    }
    for kind, code in handlers.items():

        async def handle(request: Request, e: Exception, code: int = code) -> JSONResponse:
            return answer(code, error_detail(e))

        app.add_exception_handler(kind, handle)

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception) -> JSONResponse:
        log.exception("unrolled serve: %s %s failed", request.method, request.url.path)
        return answer(500, f"internal error ({type(e).__name__}); the server's log has the traceback")
