"""`vaekit serve`: an HTTP API (FastAPI) and a web page for trained models.

Design:
- Models are loaded once at start; requests name one (``model``) or get the first.
- Inference is CPU-bound: it runs off the event loop on the model's own worker thread, one request per model at
  a time (PyTorch already uses every core for one request), under a per-request timeout. One thread per model,
  not one per waiting request: with anyio's pool, 20 clients grew the server from 7 threads to 45 and its
  memory by 68% in 60 s (each thread that calls PyTorch gets its own allocator arena and OpenMP team).
- Limits (text length, n, steps, request body, timeout) are configurable and listed at GET /v1/models.
- No endpoint reads or writes a path given by the client; images travel as base64 PNG in JSON.
- With an API key, every /v1 endpoint wants ``Authorization: Bearer KEY``, compared in constant time.
- Errors are JSON ``{"error": message}`` with a 4xx code (5xx only for a timeout or a bug).
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import hmac
import io
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .anomaly import SCORES
from .deadline import DeadlinePassed, deadline
from .errors import VaekitError
from .generate import Strategy
from .models import modality_of
from .models.text_front import Rank

log = logging.getLogger(__name__)

try:  # the serve extra
    from fastapi import Depends, FastAPI, Request
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, model_validator
except ImportError:  # pragma: no cover - reported by create_app
    FastAPI = None
    BaseModel = object

    def Field(*args, **kwargs):  # noqa: N802
        return None

    ConfigDict = dict

    def model_validator(*args, **kwargs):  # noqa: D103
        return lambda f: f

EXTRA_HINT = "pip install 'vaekit[serve]'"


@dataclasses.dataclass(frozen=True)
class Limits:
    max_text_chars: int = 2000
    max_n: int = 50
    max_steps: int = 20
    max_items: int = 256  # texts or images per encode/score request
    max_body_bytes: int = 1_000_000
    timeout_s: float = 30.0
    body_timeout_s: float = 10.0  # a request's body must arrive within this, or 408
    max_draws: int = 200  # candidates looked at for constrained variations


@dataclasses.dataclass
class Served:
    name: str
    model: Any
    kind: str  # "text" | "image"
    calibration: dict | None
    worker: concurrent.futures.ThreadPoolExecutor = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        if self.worker is None:  # all of this model's work runs on this one thread, in arrival order
            self.worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"vaekit-{self.name}")


async def _on_worker(s: Served, fn):
    """``fn()`` on the model's worker thread. Cancelling the wait cancels ``fn`` if it has not started; once
    started it stops at its deadline (vaekit.deadline)."""
    return await asyncio.wrap_future(s.worker.submit(fn))


# --- request bodies -------------------------------------------------------------------------------
# a seed is a whole number PyTorch's generators take (torch.Generator.manual_seed: below 2^63); a count is never a
# JSON true or false (pydantic would read true as 1)
SEED = dict(ge=0, lt=2**63, strict=True, description="Seed for the random draws, 0 <= seed < 2^63")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="Model name (GET /v1/models); default: the first one")

    @model_validator(mode="after")
    def _encodable(self):
        """JSON may escape a lone surrogate (\\ud800), which no tokenizer or encoder can take: refuse it by field."""
        for name, value in self:
            for i, text in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(text, str):
                    try:
                        text.encode("utf-8")
                    except UnicodeEncodeError:
                        where = f"{name}[{i}]" if isinstance(value, list) else name
                        raise ValueError(f"{where} holds a lone surrogate (\\ud800-\\udfff), which is not text; "
                                         "send valid UTF-8") from None
        return self


class VaryRequest(_Body):
    text: str = Field(..., description="The text to vary")
    n: int = Field(5, ge=1, strict=True, description="How many variations")
    temperature: float = Field(0.5, ge=0, le=5, description="Spread around the text's posterior (0: its mean)")
    strategy: Strategy = "sample"
    top_p: float = Field(0.9, gt=0, le=1)
    seed: int | None = Field(None, **SEED)
    label: str | None = Field(None, description="Condition: a label (conditional models)")
    tags: list[str] | None = Field(None, description="Condition: tags (conditional models)")
    condition_text: str | None = Field(None, description="Condition: a text to move toward (conditional models)")
    require: list[str] = Field(default_factory=list, description="Words every variation must contain")
    ban: list[str] = Field(default_factory=list, description="Words no variation may contain (masked in decoding)")
    min_similarity: float | None = Field(None, ge=-1, le=1, description="Minimum similarity to the input")
    keep_words: float | None = Field(None, ge=0, le=1, description="Models trained with word hints: the share of the "
                                     "input's content words each variation's decoder is given (default: the model's)")
    rank: Rank | None = Field(
        None, description="Order of the candidates: the model's likelihood, or similarity to the input (3n drawn, the n "
                          "most similar kept); default: the model's")


class SampleRequest(_Body):
    n: int = Field(8, ge=1, strict=True)
    label: str | None = Field(None, description="Conditional models: the label to write with")
    tags: list[str] | None = Field(None, description="Conditional text models: the tags to write with")
    condition_text: str | None = Field(None, description="Text-embedding-conditioned models (required there): "
                                                         "the text whose embedding the samples are written with")
    temperature: float = Field(1.0, ge=0, le=5)
    seed: int | None = Field(None, **SEED)
    strategy: Strategy = "greedy"
    near: str | None = Field(None, description="Text models: draw codes only within radius of this text's code")
    avoid: str | None = Field(None, description="Text models: reject codes within radius of this text's code")
    radius: float = Field(1.0, gt=0, description="Radius of near/avoid, in prior standard deviations")
    between: list[str] | None = Field(None, min_length=2, max_length=2,
                                      description="Text models: n evenly spaced codes between two texts")
    require: list[str] = Field(default_factory=list, description="Text models: words every sample must contain")
    ban: list[str] = Field(default_factory=list, description="Text models: words no sample may contain")
    min_similarity: float | None = Field(None, ge=-1, le=1, description="Text models: minimum similarity to near")

    def constrained(self) -> bool:
        return any([self.near is not None, self.avoid is not None, self.between is not None, self.require, self.ban,
                    self.min_similarity is not None])


class InterpolateRequest(_Body):
    a: str | list[float] = Field(..., description="Text models: a text; image models: a latent point")
    b: str | list[float] = Field(..., description="Text models: a text; image models: a latent point")
    steps: int = Field(7, ge=2)
    label: str | None = Field(None, description="Conditional image models: the class to draw (default: the first)")


class ItemsRequest(_Body):
    texts: list[str] | None = Field(None, description="Text models: the texts")
    images: list[str] | None = Field(None, description="Image models: base64-encoded PNG or JPEG images")


class ScoreRequest(ItemsRequest):
    score: Literal[SCORES] | None = None
    iw_samples: int = Field(10, ge=1, le=100)
    seed: int = Field(0, **SEED)


class DecodeRequest(_Body):
    z: list[float] = Field(..., description="A latent point")
    label: str | None = Field(None, description="Conditional image models: the class to draw (default: the first)")


# --- helpers --------------------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _png_data_url(images: torch.Tensor, nrow: int | None = None) -> str:
    from PIL import Image

    from .viz import auto_scale, image_grid

    picture = image_grid(images, nrow=nrow, scale=auto_scale(images.shape[-2]))
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _decode_image(data: str, index: int, model) -> torch.Tensor:
    """A base64 PNG/JPEG (optionally a data URL) as a float tensor (c, h, w) in [0, 1] that fits ``model``."""
    from PIL import Image, UnidentifiedImageError

    if "," in data[:100] and data.startswith("data:"):
        data = data.split(",", 1)[1]
    try:
        raw = base64.b64decode(data, validate=True)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (ValueError, UnidentifiedImageError, OSError):
        raise ApiError(400, f"images[{index}]: not a base64-encoded PNG or JPEG image") from None
    cfg = model.config
    image = image.convert("L" if cfg.in_channels == 1 else "RGB")
    if image.size != (cfg.width, cfg.height):
        raise ApiError(400, f"images[{index}]: {image.size[0]}x{image.size[1]} pixels, the model takes "
                            f"{cfg.width}x{cfg.height}")
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(array.copy())


class _BodyLimit:
    """ASGI middleware: the request body is read in full before the app sees it, so that one over ``limit`` bytes
    gets 413 whether or not it declares its length, and one that does not arrive within ``timeout_s`` gets 408.
    (Raising from inside the app's own read does not work: FastAPI turns any exception there into 400 "error
    parsing the body".)"""

    def __init__(self, app, limit: int, timeout_s: float):
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        import anyio

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send, 413, f"request body is larger than the server's limit of {self.limit} bytes")
        chunks, received, more = [], 0, True
        with anyio.move_on_after(self.timeout_s) as scope_timer:
            while more:
                message = await receive()
                if message["type"] != "http.request":  # the client went away: nothing to answer
                    return
                chunks.append(message.get("body", b""))
                received += len(chunks[-1])
                if received > self.limit:
                    return await self._reject(send, 413,
                                              f"request body is larger than the server's limit of {self.limit} bytes")
                more = message.get("more_body", False)
        if scope_timer.cancelled_caught:
            return await self._reject(send, 408, f"the request body did not arrive within {self.timeout_s:g} s")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: the client's disconnect, if any

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(send, status: int, message: str):
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def load_models(specs: dict[str, str | Path], device: str | torch.device = "cpu") -> dict[str, Served]:
    """Each run folder's model on ``device`` (generation and evaluation follow the model's device)."""
    from .anomaly import read_calibration
    from .models import load

    served = {}
    for name, path in specs.items():
        model = load(path, map_location=str(device))
        calibration = read_calibration(path) if Path(path).is_dir() else None
        served[name] = Served(name, model, modality_of(model), calibration)
    return served


def _summary(s: Served, limits: Limits) -> dict:
    model = s.model
    info = {"name": s.name, "type": s.kind, "latent_dim": model.latent_dim,
            "config": dataclasses.asdict(model.config),
            "conditions": ({"labels": list(model.config.label_names) or None,
                            "tags": list(getattr(model.config, "tag_names", ())) or None,
                            # the encoder (or "word-vectors") whose embedding of condition_text steers decoding
                            "text_embedding": getattr(model.config, "condition_encoder", "") or None}
                           if getattr(model, "conditional", False) else None),
            "anomaly_threshold": s.calibration["threshold"] if s.calibration else None,
            "limits": dataclasses.asdict(limits)}
    if s.kind == "text":
        info["vocab_size"] = model.config.vocab_size
    return info


# --- the app --------------------------------------------------------------------------------------
def create_app(models: dict[str, str | Path] | dict[str, Served], limits: Limits | None = None,
               api_key: str | None = None, similarity_model: str | None = None,
               device: str | torch.device = "cpu") -> "FastAPI":
    """The FastAPI app serving ``models`` ({name: run folder}, loaded on ``device``, or loaded Served
    models); see the module docstring."""
    if FastAPI is None:
        raise VaekitError(f"vaekit serve needs FastAPI and uvicorn: {EXTRA_HINT}")
    if not models:
        raise VaekitError("give at least one run folder to serve")
    limits = limits or Limits()
    served = models if all(isinstance(v, Served) for v in models.values()) else load_models(models, device)
    default = next(iter(served))
    similarity_lock = threading.Lock()
    from .web import PAGE

    app = FastAPI(title="vaekit", version=_version(),
                  description="Variational autoencoders: variations, samples, interpolations, codes and anomaly "
                              "scores from trained vaekit models.")
    app.add_middleware(_BodyLimit, limit=limits.max_body_bytes, timeout_s=limits.body_timeout_s)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    # Starlette's HTTPException, which FastAPI's subclasses: the router's own 404 and 405 are raised as it
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return JSONResponse({"error": "malformed JSON in the request body"}, status_code=400)
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"{where or 'body'}: {first.get('msg', 'invalid request')}"}, status_code=422)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer KEY'")
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise ApiError(401, "wrong API key")

    def pick(name: str | None, kind: str | None = None) -> Served:
        s = served.get(name or default)
        if s is None:
            raise ApiError(404, f"unknown model {name!r}; serving: {', '.join(served)}")
        if kind is not None and s.kind != kind:
            raise ApiError(400, f"model {s.name!r} is a{'n' if s.kind == 'image' else ''} {s.kind} model; "
                                f"this needs a{'n' if kind == 'image' else ''} {kind} model")
        return s

    def check_text(text: str, what: str = "text") -> str:
        if not text or not text.strip():
            raise ApiError(400, f"{what} is empty")
        if len(text) > limits.max_text_chars:
            raise ApiError(413, f"{what} has {len(text)} characters; the limit is {limits.max_text_chars}")
        return text

    def check_n(n: int, what: str = "n", limit: int | None = None) -> int:
        limit = limit or limits.max_n
        if n > limit:
            raise ApiError(400, f"{what} = {n} is above the limit of {limit}")
        return n

    async def run(s: Served, work):
        """``work`` on the model's worker thread. Past the timeout the client gets 504 and the work stops too, at
        its next decoding step or scoring pass (vaekit.deadline): left running, one expensive request held the
        model and every other request to it timed out behind it (issue 33)."""
        import anyio

        until = time.monotonic() + limits.timeout_s

        def timed():
            if time.monotonic() >= until:  # waited its whole time behind other requests
                raise DeadlinePassed("the model stayed busy past the time limit")
            with torch.no_grad(), deadline(until):
                return work()

        timed_out = ApiError(504, f"the request took longer than the server's limit of {limits.timeout_s:g} s")
        try:
            with anyio.fail_after(limits.timeout_s):
                return await _on_worker(s, timed)
        except (TimeoutError, DeadlinePassed):
            raise timed_out from None
        except VaekitError as exc:
            raise ApiError(400, str(exc)) from None

    def similarity(text: str, candidates: list[str]) -> list[float] | None:
        from .semantic import similarities

        try:
            with similarity_lock:
                return similarities(text, candidates, similarity_model)
        except VaekitError:
            return None

    def no_conditions(body, s: Served) -> None:
        for field in ("label", "tags", "condition_text"):
            if field == "label" and getattr(s.model, "labelled", False):
                continue
            if field == "tags" and getattr(getattr(s.model, "config", None), "tag_names", ()):
                continue
            if field == "condition_text" and getattr(getattr(s.model, "config", None), "condition_dim", 0):
                if body.condition_text is not None:
                    check_text(body.condition_text, field)
                continue
            if getattr(body, field, None):
                raise ApiError(400, f"{field}: model {s.name!r} was trained without this kind of condition; "
                                    "train a conditional model to steer generation this way")

    auth = [Depends(check_key)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "models": list(served)}

    @app.get("/v1/models", dependencies=auth)
    async def list_models():
        return {"models": [_summary(s, limits) for s in served.values()], "limits": dataclasses.asdict(limits)}

    @app.post("/v1/vary", dependencies=auth)
    async def vary(body: VaryRequest):
        s = pick(body.model, "text")
        check_text(body.text)
        check_n(body.n)
        no_conditions(body, s)

        def work():
            result = s.model.vary(body.text, n=body.n, require=body.require, ban=body.ban,
                                  min_similarity=body.min_similarity, similarity=similarity,
                                  max_draws=limits.max_draws, seed=body.seed, temperature=body.temperature,
                                  strategy=body.strategy, top_p=body.top_p, label=body.label, tags=body.tags,
                                  condition_text=body.condition_text, keep_words=body.keep_words, rank=body.rank)
            if result.drawn is None:  # nothing constrained: every distinct candidate drawn passed
                result.drawn = result.passed = len(result)
                result.rejected = {"require": 0, "ban": 0, "length": 0, "similarity": 0}
            sims = result.similarities
            if sims is None and result:
                sims = similarity(body.text, result.texts) or [None] * len(result)
            return {"model": s.name, "input": body.text,
                    "variations": [{"text": v.text, "score": round(v.score, 4),
                                    "similarity": None if sim is None else round(sim, 4)}
                                   for v, sim in zip(result, sims)],
                    "requested": body.n, "drawn": result.drawn, "passed": result.passed, "rejected": result.rejected}

        return await run(s, work)

    @app.post("/v1/sample", dependencies=auth)
    async def sample(body: SampleRequest):
        s = pick(body.model)
        check_n(body.n)
        generator = torch.Generator().manual_seed(body.seed if body.seed is not None else torch.seed() % 2**63)

        no_conditions(body, s)
        if s.kind == "text" and getattr(s.model.config, "condition_dim", 0) and body.condition_text is None:
            raise ApiError(400, f"condition_text: model {s.name!r} is conditioned on a text embedding; "
                                "give the text to write with")

        def work():
            if s.kind == "text":
                for field in ("near", "avoid"):
                    if getattr(body, field) is not None:
                        check_text(getattr(body, field), field)
                for i, text in enumerate(body.between or []):
                    check_text(text, f"between[{i}]")
                wants_similarity = body.min_similarity is not None
                texts = s.model.sample(
                    body.n, generator=generator, temperature=body.temperature, strategy=body.strategy, near=body.near,
                    avoid=body.avoid, radius=body.radius, between=tuple(body.between) if body.between else None,
                    label=body.label, tags=body.tags, condition_text=body.condition_text, require=body.require, ban=body.ban,
                    min_similarity=body.min_similarity, similarity=similarity if wants_similarity else None,
                    max_draws=limits.max_draws)
                if texts.drawn is None:
                    return {"model": s.name, "texts": list(texts)}
                return {"model": s.name, "texts": list(texts), "requested": body.n, "drawn": texts.drawn,
                        "passed": texts.passed, "rejected": texts.rejected}
            if body.constrained():
                raise ApiError(400, "near, avoid, between, require, ban and min_similarity are for text models")
            images = s.model.sample(body.n, generator=generator, temperature=body.temperature, label=body.label)
            return {"model": s.name, "n": body.n, "grid": _png_data_url(images)}

        return await run(s, work)

    @app.post("/v1/interpolate", dependencies=auth)
    async def interpolate(body: InterpolateRequest):
        s = pick(body.model)
        check_n(body.steps, "steps", limits.max_steps)

        def work():
            if s.kind == "text":
                if body.label is not None:
                    raise ApiError(400, "label: for conditional image models")
                if not isinstance(body.a, str) or not isinstance(body.b, str):
                    raise ApiError(400, "a and b are texts for a text model")
                return {"model": s.name, "texts": s.model.interpolate(check_text(body.a, "a"), check_text(body.b, "b"),
                                                                      steps=body.steps)}
            za, zb = (_latent(p, s.model, name) for p, name in ((body.a, "a"), (body.b, "b")))
            t = torch.linspace(0, 1, body.steps, device=za.device)[:, None]
            images = s.model.decode_as((1 - t) * za + t * zb, body.label)
            return {"model": s.name, "grid": _png_data_url(images, nrow=body.steps)}

        return await run(s, work)

    @app.post("/v1/decode", dependencies=auth)
    async def decode(body: DecodeRequest):
        s = pick(body.model)

        def work():
            z = _latent(body.z, s.model, "z")
            if s.kind == "text":
                if body.label is not None:
                    raise ApiError(400, "label: for conditional image models")
                return {"model": s.name, "text": s.model.decode(z)[0]}
            return {"model": s.name, "image": _png_data_url(s.model.decode_as(z, body.label), nrow=1)}

        return await run(s, work)

    def items_of(body: ItemsRequest, s: Served):
        if s.kind == "text":
            if not body.texts:
                raise ApiError(400, "texts: give at least one text for a text model")
            check_n(len(body.texts), "number of texts", limits.max_items)
            for i, text in enumerate(body.texts):
                check_text(text, f"texts[{i}]")
            return s.model.batch(body.texts)
        if not body.images:
            raise ApiError(400, "images: give at least one base64 PNG for an image model")
        check_n(len(body.images), "number of images", limits.max_items)
        return torch.stack([_decode_image(data, i, s.model) for i, data in enumerate(body.images)])

    @app.post("/v1/encode", dependencies=auth)
    async def encode(body: ItemsRequest):
        s = pick(body.model)

        def work():
            posterior = s.model.encode(items_of(body, s))
            return {"model": s.name, "mean": posterior.mean.tolist(), "logvar": posterior.logvar.tolist()}

        return await run(s, work)

    @app.post("/v1/score", dependencies=auth)
    async def score(body: ScoreRequest):
        s = pick(body.model)
        name = body.score or (s.calibration or {}).get("score", "neg_elbo")

        def work():
            x = items_of(body, s)
            out = s.model.iw_nll(x, k=body.iw_samples, generator=torch.Generator().manual_seed(body.seed))
            scores = out[name].float().tolist()
            threshold = s.calibration["threshold"] if s.calibration and s.calibration["score"] == name else None
            return {"model": s.name, "score": name, "scores": scores, "threshold": threshold,
                    "flagged": None if threshold is None else [v > threshold for v in scores]}

        return await run(s, work)

    return app


def _latent(point, model, name: str) -> torch.Tensor:
    if isinstance(point, str) or len(point) != model.latent_dim:
        raise ApiError(400, f"{name}: a latent point of {model.latent_dim} numbers")
    z = torch.tensor(point, dtype=torch.float32, device="cpu")[None]
    if not torch.isfinite(z).all():
        raise ApiError(400, f"{name}: numbers must be finite")
    return z.to(model.device)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vaekit")
    except PackageNotFoundError:
        return "0"
