// The chat playground: streamed replies from /v1/chat/completions (or /v1/completions for base
// models), read as server-sent events from fetch's ReadableStream; Stop aborts the request, which the
// router passes upstream. Model output is only ever set as text.
import { getJson, headers, errorFrom, unreachable, el } from "./api.js";

export class ChatPage {
  constructor(notify) {
    this.notify = notify;
    this.history = [];
    this.controller = null;
    this.$ = (id) => document.getElementById(id);
    this.$("chat-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.$("chat-stop").addEventListener("click", () => this.controller && this.controller.abort());
    this.$("chat-clear").addEventListener("click", () => {
      this.history = [];
      this.$("chat-transcript").replaceChildren();
      this.$("chat-stats").textContent = "";
      this.showError(null);
    });
  }

  async start() {
    try {
      const data = await getJson("/console/api/models");
      const select = this.$("chat-model");
      const chosen = select.value;
      select.replaceChildren(
        ...data.models.map((m) => el("option", { value: m.name, text: `${m.name} (${m.state})` })),
      );
      if (data.models.some((m) => m.name === chosen)) select.value = chosen;
      if (!data.models.length) this.showError("The router serves no model to chat with.");
    } catch (error) {
      this.notify(error.message);
    }
  }

  stop() {}

  showError(message) {
    const node = this.$("chat-error");
    node.textContent = message || "";
    node.hidden = !message;
  }

  turn(role, text) {
    const body = el("span", { class: "text", text });
    const node = el("div", { class: `turn ${role}` }, el("span", { class: "role", text: role }), body);
    this.$("chat-transcript").append(node);
    return body;
  }

  request(model, input) {
    const mode = this.$("chat-mode").value;
    const temperature = Number(this.$("chat-temperature").value);
    const maxTokens = Math.trunc(Number(this.$("chat-max-tokens").value));
    const system = this.$("chat-system").value.trim();
    const common = {
      model,
      stream: true,
      stream_options: { include_usage: true },
      temperature: Number.isFinite(temperature) ? temperature : 0.7,
      max_tokens: maxTokens > 0 ? maxTokens : 128,
    };
    if (mode === "completion") {
      const prompt = system ? `${system}\n\n${input}` : input;
      return { path: "/v1/completions", body: { ...common, prompt } };
    }
    const messages = [];
    if (system) messages.push({ role: "system", content: system });
    messages.push(...this.history, { role: "user", content: input });
    return { path: "/v1/chat/completions", body: { ...common, messages } };
  }

  async send() {
    const model = this.$("chat-model").value;
    const input = this.$("chat-input").value;
    if (!model) return this.showError("Pick a model first.");
    if (!input.trim()) return this.showError("Write a message first.");
    this.showError(null);
    const { path, body } = this.request(model, input);
    this.turn("user", input);
    const output = this.turn("assistant", "");
    this.$("chat-input").value = "";
    this.setBusy(true);
    const stats = { started: performance.now(), first: null, chunks: 0, tokens: null, finish: null };
    this.controller = new AbortController();
    let outcome = "done";
    try {
      let response;
      try {
        response = await fetch(path, {
          method: "POST",
          headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
          body: JSON.stringify(body),
          signal: this.controller.signal,
        });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw unreachable(error);
      }
      if (!response.ok) {
        const error = await errorFrom(response);
        if (error.code === "model_not_found") {
          error.message = `The model ${model} is no longer served (${error.message}).`;
          this.start();
        }
        throw error;
      }
      await readEvents(response, (event) => this.onEvent(event, output, stats));
    } catch (error) {
      if (error.name === "AbortError") {
        outcome = "stopped";
      } else {
        outcome = "failed";
        const broken = error instanceof TypeError ? `The connection to the router broke: ${error.message}` : null;
        this.showError(broken || error.message);
      }
    } finally {
      this.controller = null;
      this.setBusy(false);
    }
    if (body.messages && outcome !== "failed") {
      this.history.push({ role: "user", content: input }, { role: "assistant", content: output.textContent });
    }
    this.showStats(stats, outcome);
  }

  onEvent(data, output, stats) {
    if (data.error) {
      throw new Error(`The stream ended with an error: ${data.error.message || JSON.stringify(data.error)}`);
    }
    if (data.usage && data.usage.completion_tokens !== undefined) stats.tokens = data.usage.completion_tokens;
    for (const choice of data.choices || []) {
      const piece = choice.delta ? choice.delta.content : choice.text;
      if (piece) {
        if (stats.first === null) stats.first = performance.now();
        stats.chunks += 1;
        output.textContent += piece;
      }
      if (choice.finish_reason) stats.finish = choice.finish_reason;
    }
  }

  showStats(stats, outcome) {
    const parts = [outcome];
    if (stats.first !== null) {
      const tokens = stats.tokens ?? stats.chunks;
      const seconds = (performance.now() - stats.first) / 1000;
      parts.push(`time to first token ${Math.round(stats.first - stats.started)} ms`);
      parts.push(`${tokens} tokens`);
      if (seconds > 0 && tokens > 1) parts.push(`${(tokens / seconds).toFixed(1)} tokens/s`);
    }
    if (stats.finish) parts.push(`finish: ${stats.finish}`);
    this.$("chat-stats").textContent = parts.join(" · ");
  }

  setBusy(busy) {
    this.$("chat-send").disabled = busy;
    this.$("chat-stop").disabled = !busy;
    this.$("chat-stats").textContent = busy ? "streaming…" : this.$("chat-stats").textContent;
  }
}

// Server-sent events: `data: {...}` lines, events separated by a blank line, `data: [DONE]` at the end.
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      let parsed;
      try {
        parsed = JSON.parse(data);
      } catch (_) {
        throw new Error(`The stream sent something that is not JSON: ${data.slice(0, 200)}`);
      }
      onData(parsed);
    }
  }
}
