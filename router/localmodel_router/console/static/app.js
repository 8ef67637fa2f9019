// The console's shell: the page named by the URL's hash, the API key form and the notice line.
import { getKey, setKey } from "./api.js";
import { ModelsPage } from "./models.js";
import { ChatPage } from "./chat.js";
import { GalleriesPage } from "./galleries.js";

const notice = document.getElementById("notice");

export function notify(message) {
  notice.textContent = message || "";
  notice.hidden = !message;
}

const pages = {
  models: new ModelsPage(notify),
  chat: new ChatPage(notify),
  galleries: new GalleriesPage(notify),
};
let current = null;

function show() {
  const name = location.hash.replace("#", "") || "models";
  const page = pages[name] ? name : "models";
  if (current === page) return;
  if (current) pages[current].stop();
  notify(null);
  for (const key of Object.keys(pages)) {
    document.getElementById(`page-${key}`).hidden = key !== page;
    document.getElementById(`nav-${key}`).classList.toggle("active", key === page);
  }
  current = page;
  pages[page].start();
}

const keyInput = document.getElementById("api-key");
keyInput.value = getKey();
document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setKey(keyInput.value.trim());
  notify(null);
  const page = current;
  current = null;
  pages[page].stop();
  show();
});

window.addEventListener("hashchange", show);
show();
