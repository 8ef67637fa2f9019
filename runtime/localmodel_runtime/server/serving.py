"""What every generating endpoint shares: the loaded model, request parsing, sampling defaults,
admission, and the response (one JSON body, or a Server-Sent Events stream that stops, and cancels its
generation, when the client goes away). Stop sequences and token counts are in generation.py.

The endpoint modules (serving_chat.py, serving_completion.py, serving_embedding.py) only turn their
request into a prompt and describe their response shape (`Framing`); `respond()` does the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ..backends.base import Backend, BackendError, SamplingParams
from ..config import ModelConfig, Parameters
from ..prefix_blocks import request_blocks
from ..stops import merge_stops
from ..templates import PromptRenderer
from . import protocol
from .admission import Admission, Ticket
from .errors import APIError, from_backend, from_validation, model_not_found
from .framing import Framing
from .generation import Generation, postprocess, usage_of
from .load import PrefixSlots
from .metrics import ServerMetrics
from .serving_choices import stream_choices
from .streaming import EventStream, json_response, until_disconnected

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


@dataclass
class ModelServer:
    """The model this process serves, once loaded."""

    name: str
    config: ModelConfig
    backend: Backend
    renderer: PromptRenderer
    admission: Admission
    metrics: ServerMetrics
    max_body_bytes: int
    prefixes: PrefixSlots = field(default_factory=lambda: PrefixSlots(1))
    """The prompt prefixes the slots hold, for the router's load-aware picker (load.py)."""
    aliases: frozenset[str] = frozenset()
    """Other names this model answers to (LocalAI's `alias:` models)."""

    def check_model(self, requested: str) -> None:
        # An empty `model` is accepted: one process serves one model, and some clients omit it.
        if requested and requested != self.name and requested not in self.aliases:
            raise model_not_found(requested)

    def note_prompt(self, body: bytes) -> None:
        """Record a valid request's prompt prefix. The raw JSON, not the parsed request, is hashed:
        it is what the router hashes, and pydantic's normalisation could make the two differ."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:  # pydantic accepted what orjson does not (NaN): nothing to note
            return
        if isinstance(data, dict):
            self.prefixes.record(request_blocks(data))


# -- request bodies ------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (checked before and while reading)."""
    body = await read_at_most(request.headers.get("content-length"), request.stream(), limit)
    if body is None:
        raise _too_large(limit)
    return body


async def read_at_most(declared: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes | None:
    """The bytes of `chunks`, or None as soon as they (or the declared Content-Length) pass `limit`."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"The request body is larger than {limit} bytes.", code="request_too_large")


def parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise APIError(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            ) from None
        if first["type"] == "model_type":
            raise APIError(400, "The request body must be a JSON object.") from None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        raise from_validation(exc, data) from None


# -- sampling ------------------------------------------------------------------------------------


def sampling_params(
    config: ModelConfig, req: protocol.SamplingRequest, max_tokens: int | None
) -> SamplingParams:
    """The request's sampling settings over the model's `parameters` defaults over LocalAI's defaults."""
    defaults = config.parameters or Parameters()

    def pick(name: str, fallback: Any) -> Any:
        value = getattr(req, name, None)
        if value is None:
            value = getattr(defaults, name, None)
        return fallback if value is None else value

    if req.logprobs:
        raise APIError(400, "logprobs are not supported by this server.", param="logprobs")
    if max_tokens is None and defaults.max_tokens:
        max_tokens = defaults.max_tokens  # 0 in the YAML: until the context is full
    seed = pick("seed", None)
    repeat_penalty = pick("repeat_penalty", 1.0)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=pick("temperature", 0.9),
        top_p=pick("top_p", 0.95),
        top_k=pick("top_k", 40),
        min_p=pick("min_p", 0.0),
        typical_p=pick("typical_p", 1.0),
        seed=None if seed == -1 else seed,
        presence_penalty=pick("presence_penalty", 0.0),
        frequency_penalty=pick("frequency_penalty", 0.0),
        repeat_penalty=repeat_penalty or 1.0,  # LocalAI: 0 means "the backend's default"
        repeat_last_n=pick("repeat_last_n", 64),
        mirostat=req.mirostat if req.mirostat is not None else (config.mirostat or 0),
        mirostat_tau=req.mirostat_tau or config.mirostat_tau or 5.0,
        mirostat_eta=req.mirostat_eta or config.mirostat_eta or 0.1,
        grammar=req.grammar or None,
        logit_bias=_logit_bias(defaults.logit_bias, req.logit_bias),
        ignore_eos=bool(pick("ignore_eos", False)),
        stop=merge_stops(config.stopwords, req.stop),
    )


MAX_CHOICES = 16
"""The most choices (`n`) one request may ask for: each is a generation of its own."""


def choice_count(config: ModelConfig, req: protocol.SamplingRequest) -> int:
    """`n`: the request's, else the model's `parameters.n`, else 1."""
    defaults = config.parameters or Parameters()
    n = req.n if req.n is not None else (defaults.n or 1)
    if n > MAX_CHOICES:
        raise APIError(400, f"n must be at most {MAX_CHOICES} here (each choice is a generation).", param="n")
    return max(n, 1)


def _logit_bias(*maps: dict[str, float] | None) -> dict[int, float]:
    merged: dict[int, float] = {}
    for mapping in maps:
        for key, value in (mapping or {}).items():
            try:
                merged[int(key)] = value
            except ValueError:
                raise APIError(
                    400, f"logit_bias keys must be token ids; {key!r} is not an integer.", param="logit_bias"
                ) from None
    return merged


# -- responses -----------------------------------------------------------------------------------


async def respond(
    server: ModelServer,
    request: Request,
    *,
    prompts: Sequence[tuple[str, str]],
    params: SamplingParams,
    framing: Framing,
    stream: bool,
    include_usage: bool,
    prompt_param: str,
    arrival: float,
    n: int = 1,
) -> Response:
    """Admit, generate `n` choices per prompt and answer. `prompts` are (prompt, prefix) pairs: the
    prefix (an echoed prompt, the reply prefix) comes first in each of that prompt's choices, which are
    numbered prompt by prompt (as OpenAI numbers a batch).

    Each choice is a generation of its own (with `seed + index` when a seed is set, so that the choices
    differ yet repeat): they queue for slots like separate requests and run together where the backend
    batches."""
    generations = [
        Generation(
            server.backend,
            server.metrics,
            prompt,
            choice_params(params, index),
            arrival,
            prefix=prefix,
            counts_prompt=index == 0,
        )
        for prompt, prefix in prompts
        for index in range(n)
    ]
    if not stream:
        return await _whole(server, request, generations, framing, prompt_param)
    if len(generations) > 1:
        return await stream_choices(
            server.admission, request, generations, framing, prompt_param, include_usage
        )

    (generation,) = generations

    async def start() -> tuple[Ticket, str | None]:
        ticket = await server.admission.acquire()
        try:
            # The first piece is awaited before the response starts, so that a prompt too long for the
            # context is still a 400 and not an error event after a 200.
            return ticket, await generation.next()
        except BaseException:
            ticket.release()
            await generation.aclose()
            raise

    try:
        ticket, first = await until_disconnected(request.receive, start())
    except BackendError as exc:
        generation.record()
        raise from_backend(exc, prompt_param=prompt_param) from None
    except BaseException:
        generation.record()
        raise
    return EventStream(_events(generation, ticket, framing, first, include_usage))


def choice_params(params: SamplingParams, index: int) -> SamplingParams:
    if index == 0 or params.seed is None:
        return params
    return dataclasses.replace(params, seed=params.seed + index)


async def _whole(
    server: ModelServer,
    request: Request,
    generations: list[Generation],
    framing: Framing,
    prompt_param: str,
) -> Response:
    async def run(generation: Generation) -> protocol.Choice:
        ticket = await server.admission.acquire()
        try:
            parts = []
            while (text := await generation.next()) is not None:
                parts.append(text)
            text = generation.prefix + postprocess(server.config, "".join(parts))
            return text, generation.finish_reason or "stop"
        finally:
            ticket.release()
            await generation.aclose()

    async def run_all() -> list[protocol.Choice]:
        tasks = [asyncio.ensure_future(run(g)) for g in generations]
        try:
            return list(await asyncio.gather(*tasks))
        finally:  # one choice failed, or the client left: the others stop too
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    try:
        choices = await until_disconnected(request.receive, run_all())
    except BackendError as exc:
        raise from_backend(exc, prompt_param=prompt_param) from None
    finally:
        for generation in generations:
            generation.record()
    return json_response(framing.whole(choices, usage_of(generations)))


async def _events(
    generation: Generation,
    ticket: Ticket,
    framing: Framing,
    first: str | None,
    include_usage: bool,
) -> AsyncGenerator[bytes, None]:
    try:
        head = framing.head()
        if head:
            yield head
        if generation.prefix:
            yield framing.piece(generation.prefix)
        text = first
        while text is not None:
            yield framing.piece(text)
            text = await generation.next()
        yield framing.tail(generation.finish_reason or "stop")
        if include_usage:
            yield framing.usage_chunk(usage_of([generation]))
        yield framing.done()
    except BackendError as exc:
        # After a 200 the only way to report a failure is an error event.
        log.warning("generation failed mid-stream: %s", exc)
        yield framing.error(from_backend(exc))
    finally:
        ticket.release()
        await generation.aclose()
        generation.record()
