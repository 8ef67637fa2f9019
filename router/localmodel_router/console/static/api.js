// Calls to the router with the API key from session storage; every failure becomes an ApiError whose
// message is a sentence for the page.
const KEY = "localmodel.apiKey";

export class ApiError extends Error {
  constructor(message, status = 0, code = null) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

export function headers(extra = {}) {
  const result = { ...extra };
  const key = getKey();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

// The message of an error answer: OpenAI's {"error": {"message"}} body, else the status.
export async function errorFrom(response) {
  let message = `the router answered HTTP ${response.status}`;
  let code = null;
  try {
    const body = await response.json();
    if (body && body.error) {
      message = typeof body.error === "string" ? body.error : body.error.message || message;
      code = body.error.code || null;
    }
  } catch (_) {
    // not JSON: keep the status line
  }
  if (response.status === 401) {
    message = `The API key was refused (${message}). Enter a valid key above.`;
  }
  return new ApiError(message, response.status, code);
}

export function unreachable(error) {
  if (error instanceof ApiError) return error;
  return new ApiError(
    `The router cannot be reached (${error.message || error}); it may be restarting. Retrying…`,
  );
}

export async function getJson(path) {
  let response;
  try {
    response = await fetch(path, { headers: headers(), cache: "no-store" });
  } catch (error) {
    throw unreachable(error);
  }
  if (!response.ok) throw await errorFrom(response);
  try {
    return await response.json();
  } catch (error) {
    throw new ApiError(`The router sent an answer that is not JSON: ${error.message}`);
  }
}

export async function postJson(path, data) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(data),
    });
  } catch (error) {
    throw unreachable(error);
  }
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

// A small element builder: text only, never HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
