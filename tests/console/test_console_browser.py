"""The console in a real browser (headless Chromium through Selenium) against a real router in local
mode serving Gemma 3 270M: the models page with a ready and a `Degraded` model, a reply streamed token by
token into the chat page, Stop cancelling the request upstream, the galleries page with a test gallery,
installing and watching, and the bad cases said in words (wrong key, refused install, vanished model,
router restart). Each page's screenshot goes to the test's temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from localmodel_router.app import RouterApp
from localmodel_router.auth import ApiKeys
from localmodel_router.autosetup import AutoSetup, AutoSetupSettings
from localmodel_router.settings import RouterSettings
from localmodel_router.table import ModelTable
from tests.support.autosetup_store import FakeStore
from tests.support.browser import chromium, csp_violations, element, text_of, wait
from tests.support.console import DEGRADED_MESSAGE, console_router, degraded_entry, write_gallery, write_table
from tests.support.polling import poll_until
from tests.support.router_fixtures import FakeRuntime, ThreadServer
from tests.support.runtime_server import RuntimeServer, runtime_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]
KEY = "browser-key"
GEMMA = "gemma-3-270m"
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "router" / "localmodel_router" / "default-model.yaml"


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path) -> Iterator[RuntimeServer]:
    """The router's default model (Gemma 3 270M and its turn format), its file already on disk."""
    config: dict[str, Any] = yaml.safe_load(DEFAULT_MODEL.read_text(encoding="utf-8"))
    config.pop("download_files")
    config["parameters"]["model"] = gemma_gguf.name
    with runtime_server(tmp_path_factory.mktemp("gemma"), config, gemma_gguf.parent) as running:
        yield running


@pytest.fixture(scope="module")
def stalling() -> Iterator[tuple[ThreadServer, FakeRuntime]]:
    """A runtime that streams two tokens, then goes silent until its client leaves."""
    fake = FakeRuntime(mode="stall_mid_stream")
    server = ThreadServer(fake).start()
    yield server, fake
    server.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser(shots: Path) -> Iterator[webdriver.Chrome]:
    with chromium(shots) as driver:
        yield driver


def gemma_table(path: Path, gemma: RuntimeServer, *extra: dict[str, Any]) -> None:
    address = gemma.base_url.removeprefix("http://")
    write_table(path, [{"name": GEMMA, "endpoints": [address], "backend": "llama", "device": "cpu"}, *extra])


@pytest.fixture(scope="module")
def router(
    tmp_path_factory: pytest.TempPathFactory, gemma: RuntimeServer, stalling: tuple[ThreadServer, FakeRuntime]
) -> Iterator[ThreadServer]:
    directory = tmp_path_factory.mktemp("console")
    table = directory / "table.yaml"
    gemma_table(table, gemma, {"name": "stalling", "endpoints": [stalling[0].address]}, degraded_entry())
    with console_router(table, {KEY}, (write_gallery(directory),)) as server:
        yield server


def open_console(driver: webdriver.Chrome, url: str, key: str | None = KEY, page: str = "models") -> None:
    driver.get(f"{url}/#{page}")
    if key is not None:
        field = element(driver, "#api-key")
        field.clear()
        field.send_keys(key)
        element(driver, "#key-form button").click()


def listed(server: ThreadServer) -> set[str]:
    response = httpx.get(f"{server.url}/console/api/models", headers={"x-api-key": KEY})
    return {m["name"] for m in response.json()["models"]}


def card(driver: webdriver.Chrome, model: str) -> str:
    return text_of(driver, f'article[data-model="{model}"]')


def test_models_page_asks_for_the_key_then_shows_gemma_ready_and_the_degraded_reason(
    browser: webdriver.Chrome, router: ThreadServer, shots: Path
) -> None:
    open_console(browser, router.url, key="wrong-key")
    notice = wait(browser, lambda d: text_of(d, "#notice"), "the refused key said")
    assert "The API key was refused (Incorrect API key provided)" in notice
    assert text_of(browser, "#models-summary") == "No models shown: the router needs a valid API key."
    browser.save_screenshot(str(shots / "models-wrong-key.png"))

    open_console(browser, router.url)
    gemma_card = wait(browser, lambda d: "ready" in card(d, GEMMA) and card(d, GEMMA), "Gemma listed")
    assert "Backend\nllama" in gemma_card and "Device\ncpu" in gemma_card
    assert "Replicas ready\n1/1" in gemma_card and "In flight\n0" in gemma_card
    broken = card(browser, "broken")
    assert "degraded" in broken
    assert f"Degraded=True (RuntimeExited): {DEGRADED_MESSAGE}" in broken
    assert not element(browser, "#notice").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('localmodel.apiKey')") == KEY
    browser.save_screenshot(str(shots / "models.png"))
    assert csp_violations(browser) == []


def test_a_gemma_reply_streams_into_the_chat_page_token_by_token(
    browser: webdriver.Chrome, router: ThreadServer, shots: Path
) -> None:
    open_console(browser, router.url, page="chat")
    wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#chat-model option[value="{GEMMA}"]'), "models"
    )
    Select(element(browser, "#chat-model")).select_by_value(GEMMA)
    Select(element(browser, "#chat-mode")).select_by_value("completion")
    for field, value in (("#chat-temperature", "0"), ("#chat-max-tokens", "16")):
        element(browser, field).clear()
        element(browser, field).send_keys(value)
    element(browser, "#chat-input").send_keys("Q: What is the capital of France?\nA:")
    # Count every change to the reply's text: a stream shows it growing, an answer at once would not.
    browser.execute_script(
        """
        window.replyUpdates = 0;
        const inReply = (r) => r.target.closest && r.target.closest('.turn.assistant');
        new MutationObserver((records) => {
          if (records.some(inReply)) window.replyUpdates++;
        }).observe(document.getElementById('chat-transcript'), {childList: true, subtree: true});
        """
    )
    element(browser, "#chat-send").click()
    stats = wait(
        browser, lambda d: "done" in text_of(d, "#chat-stats") and text_of(d, "#chat-stats"), "reply"
    )
    reply = text_of(browser, ".turn.assistant .text")
    assert "Paris" in reply
    assert browser.execute_script("return window.replyUpdates") >= 2
    assert "time to first token" in stats and "tokens/s" in stats and "finish:" in stats
    assert element(browser, "#chat-send").is_enabled() and not element(browser, "#chat-stop").is_enabled()
    browser.save_screenshot(str(shots / "chat.png"))

    # Chat mode with a system prompt: the turn format from the model's YAML, a reply in words.
    Select(element(browser, "#chat-mode")).select_by_value("chat")
    element(browser, "#chat-system").send_keys("Answer in one short sentence.")
    element(browser, "#chat-input").send_keys("What is the capital of France?")
    element(browser, "#chat-send").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".turn.assistant")) == 2, "a second turn")
    wait(browser, lambda d: "done" in text_of(d, "#chat-stats"), "the chat reply")
    second = browser.find_elements(By.CSS_SELECTOR, ".turn.assistant .text")[1].text
    assert any(c.isalpha() for c in second)
    assert not element(browser, "#chat-error").is_displayed()


def test_stop_ends_the_stream_and_the_router_cancels_it_upstream(
    browser: webdriver.Chrome, router: ThreadServer, stalling: tuple[ThreadServer, FakeRuntime]
) -> None:
    fake = stalling[1]
    open_console(browser, router.url, page="chat")
    element(browser, "#chat-clear").click()
    wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#chat-model option[value="stalling"]'), "models"
    )
    Select(element(browser, "#chat-model")).select_by_value("stalling")
    Select(element(browser, "#chat-mode")).select_by_value("chat")
    element(browser, "#chat-input").send_keys("Tell me everything.")
    element(browser, "#chat-send").click()
    wait(browser, lambda d: text_of(d, ".turn.assistant .text").strip() == "t0 t1", "the first tokens")
    assert element(browser, "#chat-stop").is_enabled()
    element(browser, "#chat-stop").click()
    stats = wait(
        browser, lambda d: "stopped" in text_of(d, "#chat-stats") and text_of(d, "#chat-stats"), "stop"
    )
    assert stats.startswith("stopped")
    poll_until(lambda: fake.disconnects == 1, "the upstream request cancelled", 20)
    models = httpx.get(f"{router.url}/console/api/models", headers={"x-api-key": KEY}).json()["models"]
    assert next(m for m in models if m["name"] == "stalling")["inFlight"] == 0
    assert not element(browser, "#chat-error").is_displayed()


def aborted(gemma: RuntimeServer) -> float:
    """The runtime's count of generations ended because their client went away."""
    series = f'vllm:request_success_total{{finished_reason="abort",model_name="{GEMMA}"}}'
    for line in httpx.get(f"{gemma.base_url}/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_stop_aborts_a_long_gemma_generation_in_the_runtime(
    browser: webdriver.Chrome, router: ThreadServer, gemma: RuntimeServer
) -> None:
    before = aborted(gemma)
    open_console(browser, router.url, page="chat")
    element(browser, "#chat-clear").click()
    wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#chat-model option[value="{GEMMA}"]'), "models"
    )
    Select(element(browser, "#chat-model")).select_by_value(GEMMA)
    Select(element(browser, "#chat-mode")).select_by_value("completion")
    element(browser, "#chat-max-tokens").clear()
    element(browser, "#chat-max-tokens").send_keys("1500")
    element(browser, "#chat-input").send_keys("Chapter one. Once upon a time, in a city by the sea,")
    element(browser, "#chat-send").click()
    wait(browser, lambda d: text_of(d, ".turn.assistant .text").strip(), "Gemma's first tokens")
    element(browser, "#chat-stop").click()
    stats = wait(
        browser, lambda d: "stopped" in text_of(d, "#chat-stats") and text_of(d, "#chat-stats"), "stop"
    )
    assert stats.startswith("stopped · time to first token")
    # The runtime ended the generation because its client (the router) went away, not at its end.
    poll_until(lambda: aborted(gemma) == before + 1, "the runtime's generation aborted", 30)


def test_the_galleries_page_lists_and_searches_the_test_gallery(
    browser: webdriver.Chrome, router: ThreadServer, shots: Path
) -> None:
    open_console(browser, router.url, page="galleries")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.entry")) == 3, "three entries")
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "article.entry .name")]
    assert names == ["tiny-chat", "tiny-embed", "story-writer"]
    # Gallery text is shown as text: the description's markup is not markup.
    story = text_of(browser, 'article[data-ref="test@story-writer"]')
    assert "Writes <b>stories</b> & more." in story
    assert browser.find_elements(By.CSS_SELECTOR, "article.entry b") == []
    assert "Installing is off: installing needs automatic setup" in text_of(browser, "#gallery-install")
    assert not element(browser, 'article[data-ref="test@tiny-chat"] button').is_enabled()
    browser.save_screenshot(str(shots / "galleries.png"))
    element(browser, "#gallery-query").send_keys("embeddings")
    element(browser, "#gallery-search button").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.entry")) == 1, "one match")
    assert text_of(browser, "article.entry .name") == "tiny-embed"
    assert text_of(browser, "#gallery-summary").startswith("1 entry matching “embeddings”")


def test_install_from_the_gallery_page_then_watch_it_ready_and_a_refusal_in_words(
    browser: webdriver.Chrome, gemma: RuntimeServer, tmp_path: Path, shots: Path
) -> None:
    """Automatic setup with a store standing in for the API server: a created model shows up in the
    table with Gemma's endpoint (as a watch would), and the cap of one refuses the second install."""
    table = ModelTable()
    store = FakeStore(table, ready=gemma.base_url.removeprefix("http://"))
    settings = AutoSetupSettings(
        enabled=True,
        namespace="models",
        galleries=("test",),
        sources=(write_gallery(tmp_path),),
        max_models=1,
    )
    app = RouterApp(
        table, None, RouterSettings(), ApiKeys({KEY}), autosetup=AutoSetup(settings, table, store)
    )
    server = ThreadServer(app).start()
    try:
        open_console(browser, server.url, page="galleries")
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.entry")) == 3, "entries")
        assert text_of(browser, "#gallery-install") == "Installing is on for: test."
        element(browser, 'article[data-ref="test@tiny-chat"] button').click()
        status = 'article[data-ref="test@tiny-chat"] .install-status'
        wait(browser, lambda d: text_of(d, status) == "tiny-chat: ready", "the installed model ready")
        assert [o["spec"]["name"] for o in store.created] == ["tiny-chat"]
        assert text_of(browser, 'article[data-ref="test@tiny-chat"] button') == "Installed"
        element(browser, 'article[data-ref="test@tiny-embed"] button').click()
        refused = 'article[data-ref="test@tiny-embed"] .install-status'
        message = wait(
            browser, lambda d: text_of(d, refused).startswith("Not installed") and text_of(d, refused), ""
        )
        assert "automatic setup refused to create it" in message and "the maximum is 1" in message
        browser.save_screenshot(str(shots / "galleries-install.png"))
    finally:
        server.stop()


def test_a_vanished_model_and_a_router_restart_are_said_in_words(
    browser: webdriver.Chrome, gemma: RuntimeServer, tmp_path: Path, shots: Path
) -> None:
    table = tmp_path / "table.yaml"
    gemma_table(table, gemma, degraded_entry("doomed"))
    with console_router(table, {KEY}) as server:
        port = server.port
        open_console(browser, server.url, page="chat")
        wait(
            browser,
            lambda d: d.find_elements(By.CSS_SELECTOR, '#chat-model option[value="doomed"]'),
            "models",
        )
        Select(element(browser, "#chat-model")).select_by_value("doomed")
        gemma_table(table, gemma)
        poll_until(lambda: "doomed" not in listed(server), "the model gone from the router", 10)
        element(browser, "#chat-input").send_keys("Hello?")
        element(browser, "#chat-send").click()
        error = wait(browser, lambda d: text_of(d, "#chat-error"), "the vanished model said")
        assert error.startswith("The model doomed is no longer served (The model `doomed` does not exist)")
        browser.get(f"{server.url}/#models")
        wait(browser, lambda d: "ready" in card(d, GEMMA), "the models page")
    # The router goes away with the page open, then comes back on the same port.
    notice = wait(browser, lambda d: text_of(d, "#notice"), "the unreachable router said")
    assert notice.startswith("The router cannot be reached") and "restarting" in notice
    assert text_of(browser, "#models-summary").startswith("Last known state, not current: 1 model(s)")
    browser.save_screenshot(str(shots / "models-router-gone.png"))
    again = ThreadServer(RouterApp(ModelTable(), None, RouterSettings(), ApiKeys({KEY})))
    again.port = again.server.config.port = port
    again.start()
    try:
        wait(browser, lambda d: not d.find_element(By.ID, "notice").is_displayed(), "the notice gone")
        assert text_of(browser, "#models-summary").startswith("0 model(s), 0 ready")
    finally:
        again.stop()
