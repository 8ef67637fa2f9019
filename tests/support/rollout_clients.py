"""Clients that use a model while it is rolled: steady short requests, and one long stream.

Threads with the synchronous `openai` client (no retries), so that the test's own thread can poll the
cluster meanwhile. Every outcome is kept: `ok`, or the status and message of an error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import openai


class Traffic(threading.Thread):
    """Short completions of `model`, one after another until `stopping` is set."""

    def __init__(self, client: openai.OpenAI, model: str) -> None:
        super().__init__(daemon=True)
        self.client, self.model = client, model
        self.outcomes: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                reply = self.client.completions.create(model=self.model, prompt="hi", max_tokens=2)
                self.outcomes.append("ok" if reply.choices else "empty")
            except openai.APIStatusError as exc:
                self.outcomes.append(f"{exc.status_code}: {exc.message}")
            except openai.APIError as exc:
                self.outcomes.append(f"{type(exc).__name__}: {exc}")

    def failures(self) -> list[str]:
        return [o for o in self.outcomes if o != "ok"]


class Stream(threading.Thread):
    """One long stream of `model`; `ended` is `length` (it finished) or the error it raised."""

    def __init__(self, client: openai.OpenAI, model: str, max_tokens: int = 1500) -> None:
        super().__init__(daemon=True)
        self.client, self.model, self.max_tokens = client, model, max_tokens
        self.started = threading.Event()
        self.ended = ""

    def run(self) -> None:
        try:
            chunks = self.client.completions.create(
                model=self.model, prompt="a long one", max_tokens=self.max_tokens, stream=True
            )
            finish = "none"
            for chunk in chunks:
                self.started.set()
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
            self.ended = finish
        except openai.APIError as exc:
            self.ended = f"{type(exc).__name__}: {exc}"
        finally:
            self.started.set()

    def ended_well(self) -> bool:
        """Finished, or told by an error event (an APIError of the SDK's own: not a cut connection, not a
        timeout)."""
        return self.ended == "length" or self.ended.startswith("APIError: ")


def answers(client: openai.OpenAI, model: str) -> bool:
    try:
        client.completions.create(model=model, prompt="up?", max_tokens=2)
    except openai.APIError:
        return False
    return True


def settle_and_check(
    traffic: Traffic,
    stream: Stream,
    wait: Callable[[Callable[[], bool], float, str], object],
    label: str,
) -> None:
    """After a rollout: a few more requests, the clients stopped, then nothing failed and the stream did
    not hang (`wait(check, timeout, what)` is the cluster's bounded wait)."""
    during = len(traffic.outcomes)
    wait(lambda: len(traffic.outcomes) > during + 3, 60, "requests after the rollout")
    traffic.stopping.set()
    traffic.join(120)
    stream.join(150)  # bounded: the client's own timeout is 120 s
    assert not stream.is_alive(), "the stream hung"
    failures = traffic.failures()
    print(f"\n[{label}] {len(traffic.outcomes)} requests, the stream ended with {stream.ended!r}")
    assert failures == [], f"{len(failures)} of {len(traffic.outcomes)} requests failed: {failures[:5]}"
    assert stream.ended_well(), stream.ended
