// The dashboard's router: the URL's # names the page; each page returns a function that stops its polling.

import { ApiError, api, apiKey, setApiKey } from "./api.js";
import { errorText, h } from "./dom.js";
import { evalsPage } from "./evals.js";
import { jobPage } from "./job.js";
import { jobsPage } from "./jobs.js";
import { playgroundPage } from "./playground.js";

const ROUTES = [
  [/^\/?$/, jobsPage],
  [/^\/jobs\/([^/]+)$/, jobPage],
  [/^\/jobs\/([^/]+)\/evals$/, evalsPage],
  [/^\/playground$/, playgroundPage],
];

const main = document.getElementById("main");
let stop = null;

/** The form asking for the server's API key (kept in sessionStorage for this tab only). */
function keyForm(message) {
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", size: 40 });
  const form = h(
    "form",
    { id: "key-form", class: "card" },
    h("h1", {}, "API key"),
    h("p", { class: "error" }, message),
    h("p", {}, "This server requires an API key. It is kept in this tab's session storage and sent as a Bearer token."),
    input,
    " ",
    h("button", { class: "primary", type: "submit" }, "Use key"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    route();
  });
  return h("section", { class: "card" }, form);
}

/** Show a page's failure: the key form on a 401, else the error's message. */
export function showError(err) {
  if (stop) stop();
  stop = null;
  if (err instanceof ApiError && err.status === 401) {
    keyChecked = false;
    main.replaceChildren(keyForm(errorText(err)));
  } else {
    main.replaceChildren(h("section", { class: "card" }, h("p", { class: "error", id: "page-error" }, errorText(err))));
  }
}

let keyChecked = false;

/** Ask the server once whether it wants a key (any API path answers 401 without one, before routing). */
async function checkKey() {
  if (keyChecked) return;
  try {
    await api("/v1/models");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) throw err;
  }
  keyChecked = true;
}

async function route() {
  if (stop) stop();
  stop = null;
  document.getElementById("forget-key").hidden = !apiKey();
  try {
    await checkKey();
  } catch (err) {
    showError(err);
    return;
  }
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  for (const [pattern, page] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    const args = m.slice(1).map(decodeURIComponent);
    main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      stop = await page(main, args, params, showError);
    } catch (err) {
      showError(err);
    }
    return;
  }
  main.replaceChildren(h("p", { class: "error" }, `No page at #${path}`));
}

document.getElementById("forget-key").addEventListener("click", () => {
  setApiKey(null);
  keyChecked = false;
  route();
});
window.addEventListener("hashchange", route);
route();
