"""Vision on the llama backend (`mmproj`): images in chat messages reach the tiny random GGUF through a
tiny generated projector (tests/support/tiny_mmproj.py) and llama.cpp's mtmd; greedy output shows
which image the model saw. Bad images and projectors are a 400 or a load error, never a crash."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from localmodel_runtime.backends.base import Finished, ModelLoadError, SamplingParams, TextPiece
from localmodel_runtime.backends.llama import LlamaBackend
from localmodel_runtime.config import ModelConfig, unsupported_keys
from localmodel_runtime.fetch.fetcher import plan_fetches
from localmodel_runtime.server.images import MAX_IMAGE_BYTES, MAX_IMAGES
from tests.support.http_files import serve_directory
from tests.support.net import free_port
from tests.support.router_fixtures import openai_client, runtime_or_router
from tests.support.runtime_server import RuntimeServer, runtime_server
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.tiny_mmproj import png_image, write_tiny_mmproj, write_tiny_qwen2vl_mmproj

RED = png_image(40, 30, (220, 20, 20))
GREEN = png_image(40, 30, (20, 220, 20))
# What the tiny model's chat template (tiny_gguf.DEFAULT_CHAT_TEMPLATE) makes of one user message with an
# image part and a text part: llama.cpp's marker where the image is.
CHAT_PROMPT = "<s><user><__media__>what is this?\n<assistant>"
GREEDY = SamplingParams(temperature=0, max_tokens=12)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Path:
    directory = tmp_path_factory.mktemp("vision-models")
    (directory / "tiny.gguf").symlink_to(tiny_gguf)
    write_tiny_mmproj(directory / "mmproj.gguf")
    write_tiny_mmproj(directory / "narrow-mmproj.gguf", n_embd_text=32)
    return directory


def config(**keys: Any) -> ModelConfig:
    base = {"name": "tiny", "backend": "llama", "context_size": 256, "parameters": {"model": "tiny.gguf"}}
    return ModelConfig.model_validate({**base, **keys})


async def greedy(backend: LlamaBackend, prompt: str, images: list[bytes]) -> str:
    params = SamplingParams(temperature=0, max_tokens=GREEDY.max_tokens, images=images)
    text = ""
    async for event in backend.generate(prompt, params):
        if isinstance(event, TextPiece):
            text += event.text
    return text


async def test_the_model_sees_the_image(models: Path) -> None:
    backend = LlamaBackend(config(mmproj="mmproj.gguf"), models)
    await backend.load()
    try:
        assert backend.capabilities().vision
        text_only = await greedy(backend, "<s><user>what is this?\n<assistant>", [])
        red = await greedy(backend, CHAT_PROMPT, [RED])
        green = await greedy(backend, CHAT_PROMPT, [GREEN])
        assert red != green
        # The same image again, in a slot that holds the other image's KV: nothing of it is reused.
        assert await greedy(backend, CHAT_PROMPT, [RED]) == red
        assert await greedy(backend, CHAT_PROMPT, [GREEN]) == green
        # Two images in one prompt go in their markers' order; text alone after them is text alone.
        both = "<__media__><__media__>x"
        assert await greedy(backend, both, [RED, GREEN]) != await greedy(backend, both, [GREEN, RED])
        assert await greedy(backend, "<s><user>what is this?\n<assistant>", []) == text_only
    finally:
        await backend.close()


async def test_m_rope_images_take_fewer_positions_than_embeddings(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "qwen.gguf", architecture="qwen2vl")
    write_tiny_qwen2vl_mmproj(tmp_path / "mmproj.gguf")
    keys = {"parameters": {"model": "qwen.gguf"}, "mmproj": "mmproj.gguf", "options": ["parallel:2"]}
    backend = LlamaBackend(config(**keys), tmp_path)
    await backend.load()
    try:
        prompt = "<__media__>what"
        red, green = await greedy(backend, prompt, [RED]), await greedy(backend, prompt, [GREEN])
        assert red != green
        # Text after the image sits at the image's last position + 1 (M-RoPE), in a batch with others.
        assert list(
            await asyncio.gather(greedy(backend, prompt, [GREEN]), greedy(backend, prompt, [RED]))
        ) == [
            green,
            red,
        ]
        # 12 embeddings in 4 positions: a generation to the end of the context stops when the cells (not
        # the positions) are full, so it leaves the 8 cells the image fills beyond its positions (the last
        # token is sampled, never decoded: it takes no cell, hence the + 1).
        params = SamplingParams(temperature=0, max_tokens=None, ignore_eos=True, images=[RED])
        finished = [e async for e in backend.generate(prompt, params) if isinstance(e, Finished)]
        (end,) = finished
        assert end.finish_reason == "length"
        assert end.prompt_tokens + end.completion_tokens == backend.capabilities().context_size + 1 - 8
    finally:
        await backend.close()


async def test_image_requests_run_in_the_batch_with_text_ones(models: Path) -> None:
    backend = LlamaBackend(config(mmproj="mmproj.gguf", options=["parallel:3"]), models)
    await backend.load()
    try:
        text = "<s><user>what is this?\n<assistant>"
        alone = [await greedy(backend, text, []), await greedy(backend, CHAT_PROMPT, [RED])]
        alone.append(await greedy(backend, CHAT_PROMPT, [GREEN]))
        # An image is decoded into its sequence between the batches that carry the other sequences.
        together = await asyncio.gather(
            greedy(backend, text, []),
            greedy(backend, CHAT_PROMPT, [RED]),
            greedy(backend, CHAT_PROMPT, [GREEN]),
        )
        assert list(together) == alone
    finally:
        await backend.close()


async def test_markers_must_match_the_images(models: Path) -> None:
    backend = LlamaBackend(config(mmproj="mmproj.gguf"), models)
    await backend.load()
    try:
        with pytest.raises(Exception, match="0 image markers"):
            await greedy(backend, "no marker here", [RED])
        with pytest.raises(Exception, match="end with text"):
            await greedy(backend, "text then <__media__>", [RED])
    finally:
        await backend.close()


async def test_a_model_without_mmproj_refuses_images(models: Path) -> None:
    backend = LlamaBackend(config(), models)
    await backend.load()
    try:
        assert not backend.capabilities().vision
        with pytest.raises(Exception, match="does not accept images"):
            await greedy(backend, CHAT_PROMPT, [RED])
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("mmproj", "message"),
    [
        ("missing.gguf", "does not exist"),
        ("narrow-mmproj.gguf", "mismatch between text model"),
        ("tiny.gguf", "could not load"),
    ],
)
async def test_a_projector_that_does_not_fit_fails_the_load(models: Path, mmproj: str, message: str) -> None:
    backend = LlamaBackend(config(mmproj=mmproj), models)
    with pytest.raises(ModelLoadError, match=f"mmproj: .*{message}"):
        await backend.load()
    await backend.close()


def test_mmproj_is_served_by_llama_and_fetched_like_the_model() -> None:
    assert unsupported_keys(config(mmproj="mmproj.gguf")) == []
    other = ModelConfig.model_validate(
        {"backend": "vllm", "parameters": {"model": "org/repo"}, "mmproj": "p.gguf"}
    )
    assert unsupported_keys(other) == ["mmproj"]
    uri = "https://example.com/models/vision-mmproj.gguf"
    fetched = config(mmproj=uri)
    assert fetched.mmproj_file == "vision-mmproj.gguf"
    assert [(item.filename, item.uri) for item in plan_fetches([fetched])] == [("vision-mmproj.gguf", uri)]


# -- through the runtime server (and the router) with the official client --------------------------


def data_url(image: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(image).decode()


def message(url: str, text: str = "what is this?") -> list[Any]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}],
        }
    ]


SPEC = {
    "name": "tiny",
    "backend": "llama",
    "context_size": 256,
    "parameters": {"model": "tiny.gguf"},
    "template": {"use_tokenizer_template": True},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models: Path) -> Iterator[RuntimeServer]:
    with runtime_server(
        tmp_path_factory.mktemp("vision"), {**SPEC, "mmproj": "mmproj.gguf"}, models
    ) as running:
        yield running


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("images")
    (directory / "red.png").write_bytes(RED)
    (directory / "huge.png").write_bytes(RED + b"\0" * MAX_IMAGE_BYTES)
    with serve_directory(directory) as url:
        yield url


@pytest.mark.parametrize("where", ["runtime", "router"])
async def test_an_image_in_a_chat_message_reaches_the_model(
    models: Path, server: RuntimeServer, files: str, where: str
) -> None:
    backend = LlamaBackend(config(mmproj="mmproj.gguf"), models)
    await backend.load()
    try:
        red, green = await greedy(backend, CHAT_PROMPT, [RED]), await greedy(backend, CHAT_PROMPT, [GREEN])
    finally:
        await backend.close()
    with openai_client(where, server.base_url, "tiny") as client:

        def ask(image_url: str) -> str:
            reply = client.chat.completions.create(
                model="tiny", messages=message(image_url), max_tokens=GREEDY.max_tokens, temperature=0
            )
            return reply.choices[0].message.content or ""

        assert ask(data_url(RED)) == red
        assert ask(data_url(GREEN)) == green
        assert ask(f"{files}/red.png") == red  # fetched over http


@pytest.mark.parametrize("where", ["runtime", "router"])
async def test_images_of_the_responses_and_messages_apis_reach_the_model(
    models: Path, server: RuntimeServer, where: str
) -> None:
    backend = LlamaBackend(config(mmproj="mmproj.gguf"), models)
    await backend.load()
    try:
        red = await greedy(backend, CHAT_PROMPT, [RED])
    finally:
        await backend.close()
    with (
        runtime_or_router(where, server.base_url, "tiny") as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="test", max_retries=0) as client,
        anthropic.Anthropic(base_url=url, api_key="test", max_retries=0) as claude,
    ):
        image = {"type": "input_image", "image_url": data_url(RED)}
        text = {"type": "input_text", "text": "what is this?"}
        response = client.responses.create(
            model="tiny",
            input=[{"role": "user", "content": [image, text]}],  # type: ignore[list-item]
            max_output_tokens=GREEDY.max_tokens,
            temperature=0,
        )
        assert response.output_text == red
        source = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(RED).decode()}
        message = claude.messages.create(
            model="tiny",
            max_tokens=GREEDY.max_tokens or 1,
            extra_body={"temperature": 0},
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": source},  # type: ignore[typeddict-item]
                        {"type": "text", "text": "what is this?"},
                    ],
                }
            ],
        )
        assert "".join(b.text for b in message.content if b.type == "text") == red
        with pytest.raises(openai.BadRequestError) as bad:
            client.responses.create(
                model="tiny",
                input=[{"role": "user", "content": [{"type": "input_image", "image_url": "data:,x"}]}],
            )
        assert bad.value.param == "input.0.content.0"


def bad_images(files: str) -> list[tuple[str, str]]:
    huge_header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", 10_000, 10_000) + b"\0" * 64
    corrupt = RED[:33] + b"not the image data" * 4
    return [
        (data_url(b"plain text, not an image"), "is not a PNG, JPEG, GIF or BMP file"),
        ("data:image/png;base64,@@@", "not valid base64"),
        (data_url(huge_header), "too large (PNG, 10000x10000 pixels"),
        (data_url(corrupt), "could not be decoded"),
        (data_url(png_image(0, 0, (0, 0, 0))), "the image is empty"),
        (f"{files}/huge.png", f"larger than {MAX_IMAGE_BYTES} bytes"),
        (f"{files}/missing.png", "answered HTTP 404"),
        (f"http://127.0.0.1:{free_port()}/red.png", "could not be fetched"),
        ("ftp://example.com/red.png", "data: URL or an http(s) URL"),
    ]


def test_bad_images_are_a_400(server: RuntimeServer, files: str) -> None:
    with server.client() as client:
        for url, expected in bad_images(files):
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(model="tiny", messages=message(url), max_tokens=4)
            assert expected in caught.value.message, url[:80]
            assert caught.value.param is not None and caught.value.param.startswith("messages")
        many = [{"type": "image_url", "image_url": {"url": data_url(RED)}}] * (MAX_IMAGES + 1)
        with pytest.raises(openai.BadRequestError, match=f"at most {MAX_IMAGES} images"):
            client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": many}], max_tokens=4
            )
        # The runtime is still there and serves the next image.
        reply = client.chat.completions.create(model="tiny", messages=message(data_url(RED)), max_tokens=4)
        assert reply.choices[0].finish_reason == "length"


@pytest.mark.parametrize("where", ["runtime", "router"])
def test_images_to_a_model_without_mmproj_are_a_400(tmp_path: Path, models: Path, where: str) -> None:
    with (
        runtime_server(tmp_path, SPEC, models) as running,
        openai_client(where, running.base_url, "tiny") as client,
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="tiny", messages=message(data_url(RED)), max_tokens=4)
        assert "does not accept images" in caught.value.message
        assert caught.value.param == "messages[0].content[0].image_url"
