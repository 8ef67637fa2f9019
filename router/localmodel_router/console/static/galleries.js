// The Galleries page: the configured galleries' entries, a search, and installing an entry through
// automatic setup where the router allows it, then watching the new model until it is ready.
import { getJson, postJson, el } from "./api.js";

const WATCH_MS = 1500;

export class GalleriesPage {
  constructor(notify) {
    this.notify = notify;
    this.watching = new Map(); // model name → status element
    this.timer = null;
    this.$ = (id) => document.getElementById(id);
    this.$("gallery-search").addEventListener("submit", (event) => {
      event.preventDefault();
      this.load();
    });
  }

  start() {
    this.load();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  async load() {
    const query = this.$("gallery-query").value.trim();
    const list = this.$("gallery-list");
    try {
      const data = await getJson(`/console/api/galleries?q=${encodeURIComponent(query)}`);
      this.notify(null);
      const names = data.galleries.length ? data.galleries.join(", ") : "none configured";
      this.$("gallery-summary").textContent =
        `${data.total} entr${data.total === 1 ? "y" : "ies"}${query ? ` matching “${query}”` : ""} — galleries: ${names}`;
      this.$("gallery-install").textContent = data.install.enabled
        ? `Installing is on for: ${data.install.galleries.join(", ") || "no gallery"}.`
        : `Installing is off: ${data.install.reason}.`;
      list.replaceChildren(...data.entries.map((entry) => this.card(entry)));
    } catch (error) {
      this.notify(error.message);
      list.replaceChildren();
    }
  }

  card(entry) {
    const status = el("p", { class: "install-status", role: "status" });
    const button = el("button", { type: "button", disabled: !entry.installable || entry.installed },
      entry.installed ? "Installed" : "Install");
    if (!entry.installable) button.title = entry.reason || "";
    button.addEventListener("click", () => this.install(entry, button, status));
    const node = el(
      "article",
      { class: "card entry", "data-ref": entry.ref },
      el("h2", {}, el("span", { class: "name", text: entry.name }), " ", el("span", { class: "badge", text: entry.gallery })),
      el("p", { class: "description", text: entry.description || "No description." }),
      el("p", { class: "tags" }, ...entry.tags.map((tag) => el("span", { class: "tag", text: tag }))),
      entry.license ? el("p", { class: "muted", text: `License: ${entry.license}` }) : null,
      el("div", { class: "row" }, button, entry.installable ? null : el("span", { class: "muted", text: entry.reason })),
      status,
    );
    return node;
  }

  async install(entry, button, status) {
    button.disabled = true;
    status.textContent = `Asking the router to install ${entry.ref}…`;
    try {
      const result = await postJson("/console/api/galleries/install", { ref: entry.ref });
      status.textContent = result.message;
      this.watching.set(result.model, status);
      this.watch();
    } catch (error) {
      status.textContent = `Not installed: ${error.message}`;
      status.classList.add("error");
      button.disabled = false;
    }
  }

  async watch() {
    clearTimeout(this.timer);
    if (!this.watching.size) return;
    try {
      const data = await getJson("/console/api/models");
      for (const [name, status] of this.watching) {
        const model = data.models.find((m) => m.name === name);
        if (!model) {
          status.textContent = `${name}: waiting for the router to see the new model…`;
          continue;
        }
        const progressing = model.conditions.find((c) => c.type === "Progressing" || c.type === "Degraded");
        const detail = progressing && progressing.message ? ` — ${progressing.message}` : "";
        status.textContent = `${name}: ${model.state}${detail}`;
        if (model.ready) {
          this.watching.delete(name);
          const button = status.parentElement.querySelector("button");
          if (button) button.textContent = "Installed";
        }
      }
    } catch (error) {
      this.notify(error.message);
    }
    this.timer = setTimeout(() => this.watch(), WATCH_MS);
  }
}
