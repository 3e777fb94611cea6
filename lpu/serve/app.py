"""The HTTP side of ``lpu serve``: OpenAI's chat and completions API, real tokens paced by the simulator.

``create_app`` builds the FastAPI application: ``GET /v1/models``,
``POST /v1/chat/completions``, ``POST /v1/completions`` (streamed as
server-sent events, one per token, ending in ``data: [DONE]``, or in one
JSON answer) and the race page at ``/``. A request is admitted at once; its
pacing (`lpu.serve.catalog.pacing`, with the streams in flight on its id as
``users``, see `lpu.serve.catalog.users_bucket`) comes from the
`lpu.serve.schedules.Schedules` cache; its tokens come from the
`lpu.serve.streams.Generator` thread and leave at the simulated
times: the first at ``TTFT`` after the start (or when the CPU has it, if
later), token i at ``i x ITL`` after the first. Errors have OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..runtime import Engine
from . import catalog
from .catalog import KNOWN_IDS, ModelId, Pacing, bucket, users_bucket
from .schedules import Schedules
from .streams import END, EnginePool, Generator, Stream
from .text import StopFilter, chat_prompt, stop_list

DISCONNECT_POLL_S = 0.1  # a non-streamed request checks this often whether its client is still there
# request shapes pre-computed for the LPU ids (one user), most likely first: the race page's default prompt and max_tokens
WARM_PROMPT_BUCKETS, WARM_OUTPUT_BUCKETS = (32, 16, 64), (64, 32, 16, 128)


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None, type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": type, "param": param, "code": code}}


def _error_response(e: APIError) -> JSONResponse:
    return JSONResponse(e.body, status_code=e.status)


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Body(BaseModel):
    """Fields common to both endpoints; others are accepted and ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="allow")
    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=1)


class ChatBody(_Body):
    messages: list = Field(min_length=1)


class CompletionBody(_Body):
    prompt: str | list[str]


class _Run:
    """One admitted request: its slot on the model id, pacing, stream and what was sent."""

    def __init__(self, app_state: _State, mid: ModelId, prompt_tokens: int, max_tokens: int, stops: list[str], arrival_s: float):
        self.state, self.mid, self.prompt_tokens, self.max_tokens, self.stops = app_state, mid, prompt_tokens, max_tokens, stops
        self.arrival_s, self.start_s, self.first_s = arrival_s, arrival_s, None
        self.pacing: Pacing | None = None
        self.stream: Stream | None = None
        self.tokens, self.finish_reason, self.first_late_s, self.max_late_s = 0, None, 0.0, 0.0
        app_state.active[mid.id] += 1
        self.users, self._released = app_state.active[mid.id], False

    def release(self):
        """Free the slot and the engine (idempotent: called when the answer ends, fails or its client leaves)."""
        if self._released:
            return
        self._released = True
        self.state.active[self.mid.id] -= 1
        if self.stream is not None and not self.stream.closed:
            self.state.generator.cancel(self.stream)

    async def paced(self):
        """The answer's text pieces, each released at its simulated time (stop sequences cut out)."""
        p, filt = self.pacing, StopFilter(self.stops)
        while True:
            item = await self.stream.queue.get()
            if item is END:
                break
            if isinstance(item, Exception):
                raise APIError(500, f"generation failed: {item}", type="server_error", code="generation_failed")
            now = time.monotonic()
            if self.first_s is None:  # the schedule runs from the first token: a late first token shifts it, never squeezes it
                self.first_s = max(self.start_s + p.ttft_s, now)
                self.first_late_s = self.first_s - (self.start_s + p.ttft_s)
            due = self.first_s + self.tokens * p.itl_s
            if due > now:
                await asyncio.sleep(due - now)
            else:
                self.max_late_s = max(self.max_late_s, now - due)
            self.tokens += 1
            text, stopped = filt.feed(item.text)
            if stopped:
                self.finish_reason = "stop"
                self.release()
                if text:
                    yield text
                return
            if text:
                yield text
        tail = filt.flush()
        if tail:
            yield tail
        self.finish_reason = "length" if self.tokens >= self.max_tokens else "stop"

    def usage(self) -> dict:
        """Token counts and times as Groq's API reports them; times simulated, except the measured queue."""
        p, n = self.pacing, self.tokens
        queue, prompt, completion = self.start_s - self.arrival_s, p.ttft_s, max(n - 1, 0) * p.itl_s
        return dict(prompt_tokens=self.prompt_tokens, completion_tokens=n, total_tokens=self.prompt_tokens + n, queue_time=queue,
                    prompt_time=prompt, completion_time=completion, total_time=queue + prompt + completion)

    def x_lpu(self) -> dict:
        """The simulated system behind the times; the measured wait for its schedule; how late the CPU made any token."""
        p = self.pacing
        return dict(system=self.mid.system, chips=p.chips, precision=p.precision, users=p.users, streams=self.users, ttft_s=p.ttft_s, itl_s=p.itl_s,
                    output_tokens_per_s=p.output_tokens_per_s, queue_s=self.start_s - self.arrival_s, first_token_late_s=self.first_late_s,
                    max_token_late_s=self.max_late_s, source=p.source)


class _State:
    def __init__(self, engine: Engine, warm: bool):
        self.engine = engine
        self.pool = EnginePool(engine)
        self.generator = Generator(self.pool)
        shapes = [(i, 1, catalog.CATALOGUE_PROMPT_TOKENS, catalog.CATALOGUE_OUTPUT_TOKENS) for i in KNOWN_IDS]
        if warm:
            lpus = [i for i in KNOWN_IDS if ModelId.parse(i).lpu]
            shapes += [(i, 1, pb, ob) for pb in WARM_PROMPT_BUCKETS for ob in WARM_OUTPUT_BUCKETS for i in lpus]
            shapes += [(i, u, WARM_PROMPT_BUCKETS[0], WARM_OUTPUT_BUCKETS[0]) for u in (2, 4, 8) for i in lpus]  # a few people racing at once
        self.schedules = Schedules(shapes)
        self.active: Counter[str] = Counter()
        self.ids = itertools.count(1)

    def close(self):
        self.generator.close()
        self.schedules.close()

    async def pacing(self, key: tuple) -> Pacing:
        return await asyncio.wrap_future(self.schedules.get(key))

    async def describe(self, model_id: str) -> dict:
        """The /v1/models entry of an id: simulated TTFT and output speed at the catalogue's request shape."""
        p = await self.pacing((model_id, 1, catalog.CATALOGUE_PROMPT_TOKENS, catalog.CATALOGUE_OUTPUT_TOKENS))
        return dict(id=model_id, object="model", created=0, owned_by="lpu (simulated)", ttft_s=p.ttft_s, output_tokens_per_s=p.output_tokens_per_s,
                    precision=p.precision, chips=p.chips, prompt_tokens=p.prompt_tokens, output_tokens=p.output_tokens, source=p.source)

    def model_id(self, text) -> ModelId:
        try:
            return ModelId.parse(text)
        except ValueError as e:
            raise APIError(404, f"{e}. Known model ids: {', '.join(KNOWN_IDS)}", "model", "model_not_found") from None

    async def admit(self, body: _Body, prompt: str, prompt_param: str, arrival_s: float) -> _Run:
        """Check the request, take a slot on its model id, and get its pacing (APIError for anything wrong)."""
        mid = self.model_id(body.model)
        try:
            stops = stop_list(body.stop)
        except ValueError as e:
            raise APIError(400, str(e), "stop") from None
        n_prompt, ctx = len(self.engine.tokenizer.encode(prompt, bos=True)), self.engine.config.seq_len
        if n_prompt >= ctx:
            raise APIError(400, f"{prompt_param}: the prompt is {n_prompt} tokens (with BOS); {self.engine.config.name}'s context is {ctx} tokens",
                           prompt_param, "context_length_exceeded")
        max_tokens = body.max_completion_tokens or body.max_tokens or ctx - n_prompt
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        if n_prompt + max_tokens > ctx:
            raise APIError(400, f"{param}: the prompt's {n_prompt} tokens + {param} {max_tokens} exceed {self.engine.config.name}'s context of "
                           f"{ctx} tokens; ask for at most {ctx - n_prompt}", param, "context_length_exceeded")
        try:
            await self.describe(mid.id)  # the id must describe a system that serves one user
        except ValueError as e:
            raise APIError(404, f"model {mid.id!r} cannot be served: {e}. Known model ids: {', '.join(KNOWN_IDS)}", "model", "model_not_found") from None
        run = _Run(self, mid, n_prompt, max_tokens, stops, arrival_s)
        try:
            run.pacing = await self.pacing((mid.id, users_bucket(mid, run.users), bucket(n_prompt), bucket(max_tokens)))
        except ValueError as e:
            run.release()
            raise APIError(503, f"{mid.id} cannot take {run.users} concurrent streams: {e}", "model", "overloaded", "server_error") from None
        except BaseException:
            run.release()
            raise
        run.start_s = time.monotonic()
        run.stream = Stream(prompt, max_tokens, 1.0 if body.temperature is None else body.temperature, 1.0 if body.top_p is None else body.top_p,
                            0 if body.seed is None else body.seed, run.start_s, run.pacing.ttft_s, run.pacing.itl_s, asyncio.get_running_loop())
        self.generator.submit(run.stream)
        return run


def _sse(obj) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


async def _answer(state: _State, request: Request, body: _Body, prompt: str, prompt_param: str, chat: bool):
    arrival_s = time.monotonic()
    run = await state.admit(body, prompt, prompt_param, arrival_s)
    rid = f"{'chatcmpl' if chat else 'cmpl'}-{next(state.ids)}"
    head = dict(id=rid, object="chat.completion.chunk" if chat else "text_completion", created=int(time.time()), model=run.mid.id)

    def choice(text: str | None, first: bool = False, finish: str | None = None) -> dict:
        if not chat:
            return dict(index=0, text=text or "", logprobs=None, finish_reason=finish)
        delta = {} if text is None else ({"role": "assistant", "content": text} if first else {"content": text})
        return dict(index=0, delta=delta, logprobs=None, finish_reason=finish)

    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage

        async def events():
            try:
                first = True
                async for text in run.paced():
                    yield _sse({**head, "choices": [choice(text, first)]})
                    first = False
                if first and chat:
                    yield _sse({**head, "choices": [choice("", True)]})
                yield _sse({**head, "choices": [choice(None, finish=run.finish_reason)], "x_lpu": run.x_lpu()})
                if include_usage:
                    yield _sse({**head, "choices": [], "usage": run.usage()})
            except APIError as e:
                yield _sse(e.body)
            finally:
                run.release()
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
                                 background=BackgroundTask(run.release))  # also when the client left before the first event
    try:
        pieces, last_poll = [], time.monotonic()
        async for text in run.paced():
            pieces.append(text)
            if time.monotonic() - last_poll > DISCONNECT_POLL_S:
                last_poll = time.monotonic()
                if await request.is_disconnected():
                    return JSONResponse({}, status_code=499)  # nobody reads it; the slot is freed below
        if run.tokens > 1:  # the answer is complete when its last token would have left
            await asyncio.sleep(max(0.0, run.first_s + (run.tokens - 1) * run.pacing.itl_s - time.monotonic()))
    finally:
        run.release()
    text = "".join(pieces)
    out = dict(head, object="chat.completion" if chat else "text_completion", usage=run.usage(), x_lpu=run.x_lpu())
    out["choices"] = [dict(index=0, message=dict(role="assistant", content=text), logprobs=None, finish_reason=run.finish_reason) if chat
                      else dict(index=0, text=text, logprobs=None, finish_reason=run.finish_reason)]
    return JSONResponse(out)


def create_app(engine: Engine | None = None, warm: bool = True) -> FastAPI:
    """The application; ``engine`` writes the text (default: the bundled model, `lpu.Engine.default`).

    ``warm``: also pre-compute the LPU ids' pacing for short race-page requests (in the schedules process).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.lpu = _State(engine if engine is not None else Engine.default(), warm)
        try:
            yield
        finally:
            app.state.lpu.close()

    app = FastAPI(title="lpu serve", description="OpenAI-compatible endpoint: real tokens, paced as simulated systems would emit them",
                  lifespan=lifespan)

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return _error_response(e)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        err = e.errors()[0]
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        if err.get("type") == "json_invalid":
            return _error_response(APIError(400, f"the request body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}",
                                            code="invalid_json"))
        if not loc:
            return _error_response(APIError(400, f"the request body must be a JSON object: {err.get('msg')}"))
        param = ".".join(loc)
        return _error_response(APIError(400, f"{param}: {err.get('msg')} (got {repr(err.get('input'))[:200]})" if err.get("type") != "missing"
                                        else f"{param}: required field missing", loc[0], "invalid_value" if err.get("type") != "missing" else "missing"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        return _error_response(APIError(e.status_code, f"{request.method} {request.url.path}: {e.detail}", code=str(e.status_code)))

    @app.get("/", response_class=HTMLResponse)
    async def race_page():
        return HTMLResponse((files("lpu") / "static" / "race.html").read_text(encoding="utf-8"))

    @app.get("/v1/models")
    async def list_models(request: Request):
        return {"object": "list", "data": [await request.app.state.lpu.describe(i) for i in KNOWN_IDS]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str, request: Request):
        state = request.app.state.lpu
        try:
            return await state.describe(state.model_id(model_id).id)
        except ValueError as e:
            raise APIError(404, f"model {model_id!r} cannot be served: {e}", "model", "model_not_found") from None

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatBody, request: Request):
        try:
            prompt = chat_prompt(body.messages)
        except ValueError as e:
            raise APIError(400, str(e), "messages") from None
        return await _answer(request.app.state.lpu, request, body, prompt, "messages", chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionBody, request: Request):
        prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0] if len(body.prompt) == 1 else None
        if prompt is None:
            raise APIError(400, "prompt: give one string (batched prompts are not supported)", "prompt")
        return await _answer(request.app.state.lpu, request, body, prompt, "prompt", chat=False)

    return app
