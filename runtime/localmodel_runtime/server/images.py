"""The images of a chat request: its messages' `image_url` parts, in the order the prompt's media markers
take them (message by message, part by part), read from `data:` URLs or fetched over http(s). The
Responses and Messages APIs turn their images into such parts (`image_part`) and name where each came
from in their own request.

Every way an image can be wrong is the client's and a 400 naming the part: a scheme other than data,
http and https, a URL that does not answer (within FETCH_TIMEOUT) or answers with an error, more than
MAX_IMAGE_BYTES, a file that is not one of the formats the backend decodes, or a header that claims
more than MAX_IMAGE_PIXELS (image_headers.py: decoding such a file would take gigabytes); and more than
MAX_IMAGES images in one request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import APIError
from .image_headers import FORMATS, image_size
from .serving import read_at_most

MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""The largest image file accepted (a data: URL is also bounded by the request body's limit)."""
MAX_IMAGE_PIXELS = 40_000_000
"""The most pixels an image may have (decoded, it takes 3 bytes per pixel)."""
MAX_IMAGES = 16
"""The most images one request may carry (each is held in memory while the request runs)."""
FETCH_TIMEOUT = 30.0
"""Seconds an http(s) image may take, from connecting to its last byte."""


@dataclass(frozen=True)
class ImageRef:
    url: str
    param: str
    """Where the request names it, for error messages: `messages[1].content[0].image_url`."""


def image_part(url: str) -> dict[str, Any]:
    """An image as a chat message's content part."""
    return {"type": "image_url", "image_url": {"url": url}}


async def request_images(
    vision: bool, messages: list[dict[str, Any]], params: Sequence[str] | None = None
) -> list[bytes]:
    """The images of `messages`, fetched and checked; a 400 when there are images and the model cannot
    read them (`vision` false). `params` names each image in the request, when it is not a chat one."""
    refs = image_refs(messages, params)
    if refs and not vision:
        raise APIError(
            400,
            f"{refs[0].param}: this model does not accept images (its configuration has no `mmproj`, "
            "the multimodal projector).",
            param=refs[0].param,
        )
    return await load_images(refs) if refs else []


def image_refs(messages: list[dict[str, Any]], params: Sequence[str] | None = None) -> list[ImageRef]:
    """The `image_url` parts of `messages`, in prompt order; the k-th is called `params[k]` in errors
    when given (a Responses or Messages request), else by its place in the chat messages."""
    found: list[ImageRef] = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            param = params[len(found)] if params is not None else f"messages[{i}].content[{j}].image_url"
            value = part.get("image_url")
            url = value.get("url") if isinstance(value, dict) else value
            if not isinstance(url, str) or not url:
                raise APIError(400, f"{param}.url must be the image's URL.", param=f"{param}.url")
            found.append(ImageRef(url, param))
    if len(found) > MAX_IMAGES:
        raise APIError(
            400,
            f"A request may carry at most {MAX_IMAGES} images; this one has {len(found)}.",
            param="messages",
        )
    return found


async def load_images(refs: list[ImageRef]) -> list[bytes]:
    """Every image's file, checked (format and size), in order."""
    images: list[bytes] = []
    async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=True) as client:
        for ref in refs:
            scheme = ref.url.partition(":")[0].lower()
            if scheme == "data":
                data = _data_url(ref)
            elif scheme in ("http", "https"):
                data = await _download(client, ref)
            else:
                raise APIError(
                    400, f"{ref.param}: the URL must be a data: URL or an http(s) URL.", param=ref.param
                )
            _check(data, ref)
            images.append(data)
    return images


def _data_url(ref: ImageRef) -> bytes:
    header, comma, payload = ref.url[len("data:") :].partition(",")
    if not comma:
        raise APIError(400, f"{ref.param}: the data: URL has no ',' before its data.", param=ref.param)
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise _too_large(ref)
    if header.lower().endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, f"{ref.param}: the data: URL is not valid base64.", param=ref.param) from None
    return urllib.parse.unquote_to_bytes(payload)


async def _download(client: httpx.AsyncClient, ref: ImageRef) -> bytes:
    try:
        async with asyncio.timeout(FETCH_TIMEOUT), client.stream("GET", ref.url) as response:
            if response.status_code != 200:
                raise APIError(
                    400,
                    f"{ref.param}: fetching the image answered HTTP {response.status_code}.",
                    param=ref.param,
                )
            declared = response.headers.get("content-length")
            data = await read_at_most(declared, response.aiter_bytes(), MAX_IMAGE_BYTES)
            if data is None:
                raise _too_large(ref)
            return data
    except TimeoutError:
        raise APIError(
            400, f"{ref.param}: the image was not fetched within {FETCH_TIMEOUT:g} s.", param=ref.param
        ) from None
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise APIError(
            400, f"{ref.param}: the image could not be fetched: {reason}", param=ref.param
        ) from None


def _check(data: bytes, ref: ImageRef) -> None:
    found = image_size(data)
    if found is None:
        raise APIError(400, f"{ref.param}: the image is not a {FORMATS} file.", param=ref.param)
    kind, width, height = found
    if width == 0 or height == 0:
        raise APIError(
            400, f"{ref.param}: the image is empty ({kind}, {width}x{height} pixels).", param=ref.param
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise APIError(
            400,
            f"{ref.param}: the image is too large ({kind}, {width}x{height} pixels; at most "
            f"{MAX_IMAGE_PIXELS} pixels).",
            param=ref.param,
        )


def _too_large(ref: ImageRef) -> APIError:
    return APIError(400, f"{ref.param}: the image is larger than {MAX_IMAGE_BYTES} bytes.", param=ref.param)
