// The grader playground: a grader (JSON), a model sample and an item, graded by the server's own /graders/run.
// Validation errors show next to the field they concern; the case can be saved as a grader unit-test file
// (`<name>.grader-tests.yaml`, which gradekit's pytest plugin collects; JSON is YAML).

import { ApiError, api } from "./api.js";
import { errorText, h, num, table } from "./dom.js";

const RUN = "/v1/fine_tuning/alpha/graders/run";
const VALIDATE = "/v1/fine_tuning/alpha/graders/validate";
const RENDER = "/v1/gradekit/graders/render";

const EXAMPLE = {
  type: "multi",
  name: "routing",
  graders: {
    team: {
      type: "string_check",
      name: "team",
      input: "{{ sample.output_text }}",
      reference: "{{ item.team }}",
      operation: "eq",
    },
    mentions_team: {
      type: "string_check",
      name: "mentions_team",
      input: "{{ sample.output_text }}",
      reference: "{{ item.team }}",
      operation: "ilike",
    },
  },
  calculate_output: "0.8 * team + 0.2 * mentions_team",
};

/** The error flags that are set in a result's `metadata.errors` (booleans only; details are strings). */
export function flagsOf(result) {
  return Object.entries(result.metadata.errors).filter(([, v]) => v === true).map(([k]) => k);
}

function field(id, label, control) {
  const error = h("div", { class: "field-error", id: `${id}-error` });
  return { node: h("div", { class: "field" }, h("label", { for: id }, label), control, error), error };
}

export async function playgroundPage(main) {
  const graderInput = h("textarea", { id: "pg-grader", rows: 16, spellcheck: "false" });
  graderInput.value = JSON.stringify(EXAMPLE, null, 2);
  const fileInput = h("input", { type: "file", id: "pg-grader-file", accept: ".json,application/json" });
  const sampleInput = h("textarea", { id: "pg-sample", rows: 4, spellcheck: "false" });
  sampleInput.value = "billing";
  const itemInput = h("textarea", { id: "pg-item", rows: 5, spellcheck: "false" });
  itemInput.value = JSON.stringify({ team: "billing" }, null, 2);
  const caseName = h("input", { id: "pg-case-name", value: "billing ticket", size: 30 });
  const runButton = h("button", { id: "pg-run", class: "primary", type: "button" }, "Run grader");
  const saveButton = h("button", { id: "pg-save", type: "button", disabled: true }, "Save as test case");
  const grader = field("pg-grader", "Grader (JSON)", [graderInput, h("div", {}, "or load a file: ", fileInput)]);
  const sample = field("pg-sample", "Model sample (the model's output text)", sampleInput);
  const item = field("pg-item", "Item (JSON object; empty for none)", itemInput);
  const result = h("div", { id: "pg-result" }, h("p", { class: "muted" }, "Run the grader to see its result."));
  main.replaceChildren(
    h("h1", {}, "Grader playground"),
    h(
      "div",
      { class: "grid2" },
      h(
        "section",
        { class: "card" },
        grader.node,
        sample.node,
        item.node,
        h("div", { class: "controls" }, runButton, caseName, saveButton),
      ),
      h("section", { class: "card" }, h("h2", {}, "Result"), result),
    ),
  );

  fileInput.addEventListener("change", async () => {
    const file = fileInput.files[0];
    if (file) graderInput.value = await file.text();
  });

  let last = null; // {grader, sample, item, result} of the last successful run

  const fieldFor = (param) => (param?.startsWith("item") ? item : param?.startsWith("model_sample") ? sample : grader);

  const run = async () => {
    for (const f of [grader, sample, item]) f.error.textContent = "";
    saveButton.disabled = true;
    last = null;
    // No result of an earlier run stays on show beside inputs that changed.
    result.replaceChildren(h("p", { class: "muted", id: "pg-pending" }, "Grading…"));
    const failed = () => result.replaceChildren(h("p", { class: "muted" }, "No result: see the message on the left."));
    let graderJson;
    let itemJson = null;
    try {
      graderJson = JSON.parse(graderInput.value);
    } catch (err) {
      grader.error.textContent = `Not JSON: ${err.message}`;
      failed();
      return;
    }
    if (itemInput.value.trim()) {
      try {
        itemJson = JSON.parse(itemInput.value);
      } catch (err) {
        item.error.textContent = `Not JSON: ${err.message}`;
        failed();
        return;
      }
      if (itemJson === null || typeof itemJson !== "object" || Array.isArray(itemJson)) {
        item.error.textContent = "The item must be a JSON object.";
        failed();
        return;
      }
    }
    const body = { grader: graderJson, model_sample: sampleInput.value };
    if (itemJson) body.item = itemJson;
    let outcome;
    let rendered;
    try {
      await api(VALIDATE, { method: "POST", body: { grader: graderJson } });
      [outcome, rendered] = await Promise.all([
        api(RUN, { method: "POST", body }),
        api(RENDER, { method: "POST", body }),
      ]);
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) {
        const target = fieldFor(err.body?.error?.param);
        target.error.textContent = errorText(err);
        failed();
        return;
      }
      throw err;
    }
    last = { grader: graderJson, sample: sampleInput.value, item: itemJson, result: outcome };
    saveButton.disabled = false;
    showResult(result, outcome, rendered.templates);
  };

  runButton.addEventListener("click", () => run().catch((err) => (grader.error.textContent = errorText(err))));
  saveButton.addEventListener("click", () => {
    if (last) download(testCase(last, caseName.value.trim() || "case"));
  });
  return null;
}

function showResult(el, result, templates) {
  const flags = flagsOf(result);
  const failures = Object.entries(result.metadata.scores?.error_details ?? {});
  const details = Object.entries(result.metadata.errors).filter(([k, v]) => typeof v === "string" && k.endsWith("details"));
  el.replaceChildren(
    h("p", {}, "Reward: ", h("strong", { id: "pg-reward" }, num(result.reward))),
    Object.keys(result.sub_rewards).length
      ? table(
          [["Sub-grader"], ["Sub-reward", "num"]],
          Object.entries(result.sub_rewards).map(([name, value]) => ({
            props: { dataset: { grader: name } },
            cells: [name, num(value)],
          })),
          { id: "pg-sub-rewards" },
        )
      : "",
    h("h2", {}, "Error flags"),
    h(
      "div",
      { id: "pg-errors" },
      flags.length ? flags.map((f) => h("span", { class: "flag" }, f)) : h("span", { class: "muted" }, "none"),
      failures.map(([name, f]) =>
        h("p", { class: "failure", dataset: { grader: name } }, `${name}: ${f.flag}: `, h("span", { class: "text" }, f.message)),
      ),
      details.map(([k, v]) => h("details", {}, h("summary", {}, k), h("pre", {}, v))),
    ),
    h("h2", {}, "Templates rendered"),
    table(
      [["Grader"], ["Field"], ["Template"], ["Rendered"]],
      templates.map((t) => ({
        props: { dataset: { grader: t.grader, field: t.field } },
        cells: [
          t.grader || "—",
          t.field,
          h("pre", {}, t.template),
          t.error
            ? h("span", { class: "error" }, `${t.error.flag}: ${t.error.message}`)
            : h("pre", { class: "value" }, t.value),
        ],
      })),
      { id: "pg-templates" },
    ),
  );
}

/** A grader unit-test case file for gradekit's pytest plugin: the grader inline and what this run gave. */
export function testCase({ grader, sample, item, result }, name) {
  const expected = { name, sample };
  if (item) expected.item = item;
  expected.reward = result.reward;
  expected.errors = flagsOf(result);
  if (Object.keys(result.sub_rewards).length) expected.sub_rewards = result.sub_rewards;
  const text = `# gradekit grader test case (JSON is YAML): pytest collects *.grader-tests.yaml\n${JSON.stringify(
    { grader, cases: [expected] },
    null,
    2,
  )}\n`;
  const stem = String(grader.name || "grader").replace(/[^\w.-]+/g, "_");
  return { filename: `${stem}.grader-tests.yaml`, text };
}

function download({ filename, text }) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/yaml" }));
  const link = h("a", { href: url, download: filename, id: "pg-download" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
