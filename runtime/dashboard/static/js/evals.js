// A job's eval runs: per validation step, the prompts, the model's samples and each grader's verdict; filter to
// samples with errors or a low reward; compare the same prompt across two steps; re-grade one sample to see the
// error details and what each template rendered to (the same /graders/run and render endpoints as the playground).

import { api, jobPath } from "./api.js";
import { append, errorText, h, num, table } from "./dom.js";
import { FINAL } from "./jobdata.js";
import { flagsOf } from "./playground.js";
import { poll } from "./poll.js";

const EVAL_RUNS = (id) => `/v1/gradekit/fine_tuning/jobs/${encodeURIComponent(id)}/eval_runs`;
const RUN = "/v1/fine_tuning/alpha/graders/run";
const RENDER = "/v1/gradekit/graders/render";

/** The text a row was prompted with: its last user message (JSON for multi-part content). */
function promptOf(row) {
  const messages = Array.isArray(row.messages) ? row.messages : [];
  const user = [...messages].reverse().find((m) => m && m.role === "user") ?? messages[messages.length - 1];
  if (!user) return "";
  return typeof user.content === "string" ? user.content : JSON.stringify(user.content);
}

function flagChips(row) {
  const flagged = Object.entries(row.errors ?? {}).filter(([, flag]) => flag);
  const chips = flagged.map(([grader, flag]) => h("span", { class: "flag", dataset: { grader } }, `${grader}: ${flag}`));
  if (row.no_reward) chips.push(h("span", { class: "flag no-reward" }, `no reward: ${row.no_reward}`));
  return chips.length ? chips : h("span", { class: "muted" }, "none");
}

function subRewards(row) {
  return Object.entries(row.sub_rewards ?? {}).map(([name, value]) =>
    h("div", { dataset: { grader: name } }, `${name}: `, num(value)),
  );
}

function matches(row, filter, threshold) {
  if (filter === "errors") return Boolean(row.no_reward) || Object.values(row.errors ?? {}).some(Boolean);
  if (filter === "low") return !row.no_reward && Number(row.reward) < threshold; // no reward is not a low one
  return true;
}

/** Grade the row's sample again with the job's grader: reward, error details and rendered templates. */
async function regrade(grader, row, out) {
  out.replaceChildren(h("span", { class: "muted" }, "grading…"));
  const body = { grader, model_sample: row.sample, item: row.item ?? undefined };
  try {
    const [result, rendered] = await Promise.all([
      api(RUN, { method: "POST", body }),
      api(RENDER, { method: "POST", body }),
    ]);
    const failures = Object.entries(result.metadata.scores?.error_details ?? {});
    out.replaceChildren();
    append(out, [
      h("div", {}, "reward ", num(result.reward), " · flags: ", flagsOf(result).join(", ") || "none"),
      failures.map(([name, f]) =>
        h("div", { class: "failure error", dataset: { grader: name } }, `${name}: ${f.flag}: `, h("span", { class: "text" }, f.message)),
      ),
      rendered.templates.map((t) =>
        h(
          "div",
          { class: "template", dataset: { grader: t.grader, field: t.field } },
          `${t.grader ? `${t.grader}.` : ""}${t.field} → `,
          t.error ? h("span", { class: "error" }, `${t.error.flag}: ${t.error.message}`) : h("span", { class: "text value" }, t.value),
        ),
      ),
    ]);
  } catch (err) {
    out.replaceChildren(h("span", { class: "error" }, errorText(err)));
  }
}

/** While the job runs: show the page again (same URL) once a validation step was added or the job finished. */
function followRuns(jobId, count, onError) {
  let stopped = false;
  const { stop } = poll(
    async () => {
      const [job, runs] = await Promise.all([api(jobPath(jobId)), api(EVAL_RUNS(jobId))]);
      if (!stopped && (runs.data.length !== count || FINAL.has(job.status))) {
        stopped = true;
        window.dispatchEvent(new HashChangeEvent("hashchange"));
      }
    },
    2000,
    onError,
  );
  return () => {
    stopped = true;
    stop();
  };
}

export async function evalsPage(main, [jobId], params, onError) {
  const [job, runs] = await Promise.all([api(jobPath(jobId)), api(EVAL_RUNS(jobId))]);
  const steps = runs.data.map((r) => r.step);
  const grader = job.method?.reinforcement?.grader ?? null;
  const step = params.has("step") ? Number(params.get("step")) : steps[steps.length - 1];
  const compare = params.has("compare") ? Number(params.get("compare")) : null;
  const filter = params.get("filter") ?? "all";
  const threshold = params.has("threshold") ? Number(params.get("threshold")) : 0.5;

  const go = (changes) => {
    const next = new URLSearchParams({ step, filter, threshold });
    if (compare != null) next.set("compare", compare);
    for (const [k, v] of Object.entries(changes)) {
      if (v == null || v === "") next.delete(k);
      else next.set(k, v);
    }
    location.hash = `#/jobs/${encodeURIComponent(jobId)}/evals?${next}`;
  };
  const select = (id, options, value, onchange) => {
    const el = h("select", { id }, options.map(([v, label]) => h("option", { value: v }, label)));
    el.value = value == null ? "" : String(value);
    el.addEventListener("change", () => onchange(el.value));
    return el;
  };

  const summary = table(
    [["Step", "num"], ["Samples", "num"], ["reward_mean", "num"], ["With errors", "num"], ["No reward", "num"], ["Errors by grader"]],
    runs.data.map((r) => ({
      props: { dataset: { step: r.step } },
      cells: [
        h("a", { href: "#", onclick: (e) => (e.preventDefault(), go({ step: r.step })) }, String(r.step)),
        String(r.samples),
        num(r.reward_mean),
        h("span", { class: "with-errors" }, String(r.samples_with_errors)),
        h("span", { class: "without-reward" }, String(r.samples_without_reward ?? 0)),
        Object.entries(r.errors).flatMap(([g, flags]) =>
          Object.entries(flags).map(([flag, n]) => h("span", { class: "flag" }, `${g}: ${flag} ×${n}`)),
        ),
      ],
    })),
    { id: "eval-runs-table" },
  );
  const head = h(
    "section",
    { class: "card" },
    h("h1", {}, "Eval runs of ", h("a", { href: `#/jobs/${encodeURIComponent(jobId)}` }, jobId)),
    steps.length ? summary : h("p", { class: "muted", id: "no-eval-runs" }, "No validation step has run yet."),
  );
  const follow = () => (FINAL.has(job.status) ? null : followRuns(jobId, steps.length, onError));
  if (!steps.length) {
    main.replaceChildren(head);
    return follow();
  }

  const stepOptions = steps.map((s) => [String(s), `step ${s}`]);
  const controls = h(
    "div",
    { class: "filters" },
    h("label", {}, "Step ", select("eval-step", stepOptions, step, (v) => go({ step: v }))),
    h(
      "label",
      {},
      "Show ",
      select(
        "eval-filter",
        [["all", "all samples"], ["errors", "samples with a grader error or no reward"], ["low", "reward below the threshold"]],
        filter,
        (v) => go({ filter: v }),
      ),
    ),
    h("label", {}, "Threshold ", h("input", { id: "eval-threshold", type: "number", step: "0.05", value: threshold, onchange: (e) => go({ threshold: e.target.value }) })),
    h(
      "label",
      {},
      "Compare with ",
      select("eval-compare", [["", "—"], ...stepOptions.filter(([s]) => Number(s) !== step)], compare, (v) => go({ compare: v })),
    ),
  );

  const load = async (s) => (await api(`${EVAL_RUNS(jobId)}/${s}?limit=10000`)).data;
  const [rows, other] = await Promise.all([load(step), compare != null ? load(compare) : Promise.resolve(null)]);
  const otherByKey = new Map((other ?? []).map((r) => [`${r.index}/${r.sample_index}`, r]));
  const shown = rows.filter((r) => matches(r, filter, threshold));

  const columns = [["#", "num"], ["Prompt"], ["Item"], [`Sample (step ${step})`], ["Reward", "num"], ["Sub-rewards"], ["Error flags"]];
  if (compare != null) columns.push([`Sample (step ${compare})`], ["Reward", "num"], ["Error flags"]);
  columns.push([""]);
  const body = shown.map((row) => {
    const out = h("div", { class: "regrade" });
    const cells = [
      row.sample_index ? `${row.index} (${row.sample_index + 1})` : String(row.index),
      h("div", { class: "text prompt" }, promptOf(row)),
      h("pre", { class: "item" }, JSON.stringify(row.item ?? null, null, 1)),
      h("div", { class: "text sample" }, row.sample),
      h("span", { class: "reward" }, num(row.reward)),
      subRewards(row),
      h("div", { class: "flags" }, flagChips(row)),
    ];
    if (compare != null) {
      const twin = otherByKey.get(`${row.index}/${row.sample_index}`);
      cells.push(
        h("div", { class: "text other-sample" }, twin ? twin.sample : "—"),
        h("span", { class: "other-reward" }, num(twin?.reward)),
        h("div", { class: "other-flags" }, twin ? flagChips(twin) : "—"),
      );
    }
    cells.push(
      h("div", {}, grader ? h("button", { class: "regrade-button", type: "button", onclick: () => regrade(grader, row, out) }, "details") : "", out),
    );
    const flagged = Boolean(row.no_reward) || Object.values(row.errors ?? {}).some(Boolean);
    return { props: { class: flagged ? "has-error" : null, dataset: { index: row.index, sample: row.sample_index } }, cells };
  });
  main.replaceChildren(
    head,
    h(
      "section",
      { class: "card" },
      controls,
      h("p", { class: "muted", id: "eval-count" }, `${shown.length} of ${rows.length} samples`),
      table(columns, body, { id: "eval-samples" }),
    ),
  );
  return follow();
}
