// Building DOM nodes safely: every string becomes a text node or an attribute value, never markup.

/** An element: `props` are attributes (`class`, `dataset`, `on<event>` handlers); children are nodes or text. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** Append children (nested arrays, nodes, or values shown as text) to `el`. */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A table: `columns` are [header, class?]; `rows` are arrays of cells (text or nodes) or {cells, props}. */
export function table(columns, rows, props = {}) {
  const head = h("tr", {}, columns.map(([label, cls]) => h("th", { class: cls }, label)));
  const body = rows.map((row) => {
    const { cells, props: rowProps } = Array.isArray(row) ? { cells: row, props: {} } : row;
    return h("tr", rowProps, cells.map((cell, i) => h("td", { class: columns[i][1] }, cell)));
  });
  return h("table", props, h("thead", {}, head), h("tbody", {}, body));
}

/** A Unix time (seconds) as `YYYY-MM-DD HH:MM:SSZ` in UTC; "—" for none. */
export function when(seconds) {
  if (seconds == null) return "—";
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

/** A number to 4 decimals in a span that keeps the exact value in `data-value`; "—" for none. */
export function num(value, digits = 4) {
  if (value == null || Number.isNaN(value)) return h("span", { class: "muted" }, "—");
  return h("span", { dataset: { value: String(value) } }, Number(value).toFixed(digits));
}

/** The text of an API error (OpenAI's `{"error": {"message"}}`) or any other failure. */
export function errorText(err) {
  return err?.body?.error?.message ?? err?.message ?? String(err);
}
