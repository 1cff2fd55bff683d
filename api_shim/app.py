"""The FastAPI app: the endpoints of docs/api.md in the upstream envelope (OpenAPI at ``/docs``).

Routes only translate: read and check the request (size, JSON, key), call the backend, wrap the answer.
Every error, including unknown routes and server faults, comes back in the envelope with a one-line
message; nothing leaks a path, a key or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api_shim import audio_files
from api_shim.backends import Backend, make_backend
from api_shim.envelope import ApiError, Envelope, ErrorEnvelope, failure, ok
from api_shim.lora_routes import register_lora_routes
from api_shim.random_samples import random_sample
from api_shim.studio_page import add_studio
from api_shim.models import HealthData, QueryResultItem, QueryResultRequest, ReleaseTaskData, StatsData
from api_shim.requests_in import BodyBudget, authorize, body_limit, read_body
from api_shim.task_store import TaskStore
from inference.errors import public_message
from inference.contract import FormatInputRequest, FormatInputResponse, GenerateRequest, ModelsResponse
from inference.settings import Settings
from inference.delivery import secrets_of

log = logging.getLogger("acestep.shim")
PURGE_EVERY_S = 3600.0
_ERRORS = {400: {"model": ErrorEnvelope}, 401: {"model": ErrorEnvelope}, 413: {"model": ErrorEnvelope},
           429: {"model": ErrorEnvelope}, 503: {"model": ErrorEnvelope}}


def _body_schema(model) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema(
        ref_template="#/components/schemas/{model}")}}}}


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    secrets = secrets_of(settings)
    budget = BodyBudget(settings.body_budget_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal backend
        output_dir = settings.shim_output_dir
        output_dir.mkdir(parents=True, exist_ok=True)
        store = backend.store if backend is not None else TaskStore(settings.shim_task_db)
        backend = backend or make_backend(settings, store)
        app.state.backend = backend
        app.state.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=120.0), follow_redirects=False)
        await backend.start()
        purger = asyncio.create_task(_purge_forever(store, settings))
        log.info("ACE-Step API (%s backend) on %s:%d, output folder %s", backend.name, settings.api_host,
                 settings.api_port, output_dir)
        try:
            yield
        finally:
            purger.cancel()
            await backend.stop()
            await app.state.http.aclose()
            store.close()

    app = FastAPI(title="ACE-Step 1.5 API", version="1.0", lifespan=lifespan,
                  description="The ACE-Step 1.5 HTTP API served by acestep-worker (docs/api.md).")
    # browsers: upstream's rule by default (file:// pages and localhost), configurable
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list,
                       allow_origin_regex=settings.cors_regex, allow_methods=["GET", "POST", "OPTIONS"],
                       allow_headers=["Content-Type", "Authorization", "Range"],
                       expose_headers=["Content-Range", "Accept-Ranges", "Content-Length"])

    # --- errors, all in the envelope ---
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return failure(err.status, err.message, err.data, err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no endpoint {request.url.path}", 405: f"{request.method} is not allowed on "
                   f"{request.url.path}"}.get(err.status_code, str(err.detail))
        return failure(err.status_code, message, headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        name = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return failure(400, f"{name or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return failure(500, public_message(err, secrets))

    def backend_of(request: Request) -> Backend:
        return request.app.state.backend

    async def body_of(request: Request, route: str) -> Any:
        limit, limit_name = body_limit(settings, backend_of(request).name, route)
        return await read_body(request, settings, budget, limit, limit_name)

    async def object_body_of(request: Request, route: str) -> dict[str, Any]:
        body = await body_of(request, route)
        if not isinstance(body, dict):
            raise ApiError(400, f"the request body must be a JSON object (got {type(body).__name__})")
        return body

    # --- endpoints ---
    @app.get("/health", response_model=Envelope[HealthData], responses={503: {"model": Envelope[HealthData]}})
    async def health(request: Request):
        """``ok`` only once a job can really be served; 503 with ``starting`` while the model loads."""
        data = await backend_of(request).health()
        if data.status == "ok":
            return ok(data)
        return failure(503, data.error or "the model is still loading; retry in a few seconds", data,
                       headers={"Retry-After": "5"})

    @app.get("/v1/models", response_model=Envelope[ModelsResponse], responses=_ERRORS)
    async def models(request: Request):
        authorize(request, settings)
        return ok(await backend_of(request).models())

    @app.get("/v1/model_inventory", response_model=Envelope[ModelsResponse], responses=_ERRORS)
    async def model_inventory(request: Request):
        """The same as ``/v1/models`` (upstream serves both)."""
        authorize(request, settings)
        return ok(await backend_of(request).models())

    @app.post("/create_random_sample", responses=_ERRORS)
    async def create_random_sample(request: Request):
        """A ready-made request: ``sample_type`` ``simple_mode`` (a description) or ``custom_mode`` (caption,
        lyrics and metadata)."""
        return ok(random_sample(await body_of(request, "query_result")))

    @app.post("/release_task", response_model=Envelope[ReleaseTaskData], responses=_ERRORS,
              openapi_extra=_body_schema(GenerateRequest))
    async def release_task(request: Request):
        """Queue a generation (the fields of docs/api.md); poll it with ``/query_result``."""
        return ok(await backend_of(request).submit(await object_body_of(request, "release_task")))

    @app.post("/query_result", response_model=Envelope[list[QueryResultItem]], responses=_ERRORS,
              openapi_extra=_body_schema(QueryResultRequest))
    async def query_result(request: Request):
        """One item per id: status 0 queued/running, 1 succeeded, 2 failed; ``result`` is a JSON string."""
        body = await body_of(request, "query_result")
        try:
            query = QueryResultRequest.model_validate(body if isinstance(body, dict) else {})
        except ValidationError:
            raise ApiError(400, "task_id_list must be a list of at most 500 task ids (or a JSON string of one)") from None
        return ok(await backend_of(request).query(query.task_id_list))

    @app.post("/format_input", response_model=Envelope[FormatInputResponse], responses=_ERRORS,
              openapi_extra=_body_schema(FormatInputRequest))
    async def format_input(request: Request):
        """The 5 Hz LM rewrites caption and lyrics and fills in bpm, key, time signature, duration, language."""
        return ok(await backend_of(request).format_input(await object_body_of(request, "format_input")))

    @app.get("/v1/audio", responses={200: {"content": {"audio/mpeg": {}}}, **_ERRORS},
             response_class=Response)
    async def audio(request: Request, path: str | None = None):
        """A finished audio by the path in its ``file`` field; HTTP Range requests are answered."""
        authorize(request, settings)
        backend = backend_of(request)
        return await audio_files.serve(request, path, settings.shim_output_dir, backend.store, request.app.state.http,
                                       settings.allow_private_endpoints)

    register_lora_routes(app, settings, lambda request: object_body_of(request, "query_result"))

    @app.get("/v1/stats", response_model=Envelope[StatsData], responses=_ERRORS)
    async def stats(request: Request):
        authorize(request, settings)
        return ok(await backend_of(request).stats())

    add_studio(app)  # the page at / (api_shim/studio/), and nosniff on every answer
    return app


async def _purge_forever(store: TaskStore, settings: Settings) -> None:
    """Forget tasks older than ACESTEP_RESULT_TTL and delete their audio, at start and then hourly (or every
    quarter of the TTL when that is shorter)."""
    root = os.path.realpath(settings.shim_output_dir)
    while True:
        try:
            paths = await asyncio.to_thread(store.purge, settings.result_ttl_s)
            for path in paths:
                real = os.path.realpath(path)
                if real.startswith(root + os.sep) and os.path.isfile(real):
                    os.remove(real)
            if paths:
                log.info("forgot finished tasks older than %d s (%d audio file(s))", settings.result_ttl_s,
                         len(paths))
        except Exception:
            log.exception("purging old tasks failed")
        await asyncio.sleep(min(PURGE_EVERY_S, settings.result_ttl_s / 4))
