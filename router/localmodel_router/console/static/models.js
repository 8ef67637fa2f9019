// The Models page: every model with its state, polled every 1.5 s.
import { getJson, el } from "./api.js";

const POLL_MS = 1500;

export class ModelsPage {
  constructor(notify) {
    this.notify = notify;
    this.timer = null;
    this.known = new Set();
    this.list = document.getElementById("models-list");
    this.summary = document.getElementById("models-summary");
    this.problems = document.getElementById("models-problems");
  }

  start() {
    this.known = new Set();
    this.poll();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  async poll() {
    try {
      const data = await getJson("/console/api/models");
      this.render(data);
      this.notify(null);
    } catch (error) {
      this.notify(error.message);
      if (this.known.size && !this.summary.textContent.startsWith("Last known")) {
        this.summary.textContent = `Last known state, not current: ${this.summary.textContent}`;
      }
      if (error.status === 401) {
        this.summary.textContent = "No models shown: the router needs a valid API key.";
        this.list.replaceChildren();
        return; // a new key restarts the page
      }
    }
    this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  render(data) {
    const names = new Set(data.models.map((m) => m.name));
    const gone = [...this.known].filter((name) => !names.has(name));
    this.known = names;
    const ready = data.models.filter((m) => m.ready).length;
    let summary = `${data.models.length} model(s), ${ready} ready — ${data.mode} mode`;
    if (!data.synced) summary += " (discovery has not synced yet)";
    if (gone.length) summary += `. Gone since the last look: ${gone.join(", ")}`;
    this.summary.textContent = summary;
    this.problems.replaceChildren(...data.problems.map((p) => el("li", { text: p })));
    if (!data.models.length) {
      this.list.replaceChildren(el("p", { class: "muted", text: "The router serves no model." }));
      return;
    }
    this.list.replaceChildren(...data.models.map((model) => card(model)));
  }
}

function card(model) {
  const replicas = model.replicas;
  const desired = replicas.desired === null || replicas.desired === undefined ? "?" : replicas.desired;
  const facts = el(
    "dl",
    { class: "facts" },
    ...fact("Backend", model.backend || "—"),
    ...fact("Device", model.device || "—"),
    ...fact("Namespace", model.namespace || "—"),
    ...fact("Replicas ready", `${replicas.ready}/${desired}`),
    ...fact("In flight", model.inFlight),
    ...fact("Endpoints", model.endpoints.map((e) => `${e.address}${e.ready ? "" : " (not ready)"}`).join(", ") || "none"),
  );
  const node = el(
    "article",
    { class: `card model state-${model.state.replace(/ /g, "-")}`, "data-model": model.name },
    el("h2", {}, el("span", { class: "name", text: model.name }), " ", el("span", { class: "badge", text: model.state })),
    facts,
  );
  if (model.conditions.length) {
    node.append(
      el("h3", { text: "Conditions" }),
      el("ul", { class: "conditions" }, ...model.conditions.map(condition)),
    );
  }
  if (model.events.length) {
    node.append(
      el("h3", { text: "Recent events" }),
      el("ul", { class: "events" }, ...model.events.map(event)),
    );
  }
  return node;
}

function fact(term, value) {
  return [el("dt", { text: term }), el("dd", { text: String(value) })];
}

function condition(c) {
  const flagged = (c.type === "Degraded" && c.status === "True") ? "bad" : c.status === "True" ? "good" : "";
  const text = `${c.type}=${c.status}${c.reason ? ` (${c.reason})` : ""}${c.message ? `: ${c.message}` : ""}`;
  return el("li", { class: `condition ${flagged}`, "data-type": c.type, text });
}

function event(e) {
  const count = e.count > 1 ? ` ×${e.count}` : "";
  return el("li", { class: `event ${e.type === "Warning" ? "bad" : ""}`, text: `${e.time || ""} ${e.type || ""} ${e.reason || ""}${count}: ${e.message || ""}` });
}
