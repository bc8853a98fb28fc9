// The public API, as the openai SDK and gradekit's documented extensions call it; the key goes as Bearer.

const KEY = "gradekit.apiKey";

/** A non-2xx answer: `status` and the parsed body (OpenAI's error object when the server sent one). */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** `method path` with an optional JSON body; the parsed JSON answer, or an ApiError. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Every item of a cursor-paged list (`limit` per page, `after` the last id), newest first as the API lists. */
export async function listAll(path, { limit = 1000, stopAt = null } = {}) {
  const items = [];
  let after = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(`${path}${sep}limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    for (const item of page.data) {
      if (stopAt && stopAt(item)) return items;
      items.push(item);
    }
    if (!page.has_more || page.data.length === 0) return items;
    after = page.data[page.data.length - 1].id;
  }
}

export const jobPath = (id) => `/v1/fine_tuning/jobs/${encodeURIComponent(id)}`;
