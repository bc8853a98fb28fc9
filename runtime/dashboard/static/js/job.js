// A job: its facts, pause/resume/cancel, the reward chart, per-grader means and errors, checkpoints, live events.

import { api, jobPath } from "./api.js";
import { RewardChart } from "./chart.js";
import { errorText, h, num, table, when } from "./dom.js";
import { FINAL, JobEvents, metricsByStep } from "./jobdata.js";
import { poll, REFRESH_MS } from "./poll.js";

const CONTROLS = {
  pause: (s) => !FINAL.has(s) && s !== "paused",
  resume: (s) => s === "paused",
  cancel: (s) => !FINAL.has(s),
};

function facts(job, metrics) {
  const last = metrics[metrics.length - 1];
  const items = [
    ["status", h("span", { class: `status status-${job.status}` }, job.status)],
    ["model", job.model],
    ["fine_tuned_model", job.fine_tuned_model ?? "—"],
    ["created", when(job.created_at)],
    ["finished", when(job.finished_at)],
    ["step", last ? `${last.step} / ${last.total_steps}` : "—"],
    ["trained_tokens", job.trained_tokens ?? "—"],
  ];
  if (job.error) items.push(["error", h("span", { class: "error" }, job.error.message ?? "")]);
  return items.flatMap(([label, value]) => [h("dt", {}, label), h("dd", { dataset: { field: label } }, value)]);
}

/** `{grader: {train, valid}}`: each grader's latest train and validation reward means. */
function graderMeans(metrics) {
  const means = new Map();
  for (const m of metrics) {
    for (const [name, values] of Object.entries(m.graders ?? {})) {
      const entry = means.get(name) ?? { train: null, valid: null };
      if (values.train_reward_mean != null) entry.train = values.train_reward_mean;
      if (values.valid_reward_mean != null) entry.valid = values.valid_reward_mean;
      means.set(name, entry);
    }
  }
  return means;
}

/** One row per (step, split, grader, flag) whose count is not zero. */
function errorRows(metrics, jobId) {
  const rows = [];
  for (const m of metrics) {
    for (const [split, table_] of [["train", m.errors], ["valid", m.valid_errors]]) {
      for (const [grader, flags] of Object.entries(table_ ?? {})) {
        for (const [flag, { count, rate }] of Object.entries(flags)) {
          if (!count) continue;
          const link =
            split === "valid"
              ? h("a", { href: `#/jobs/${encodeURIComponent(jobId)}/evals?step=${m.step}&filter=errors` }, "samples")
              : "";
          rows.push({
            props: { dataset: { step: m.step, split, grader, flag } },
            cells: [String(m.step), split, grader, h("span", { class: "flag" }, flag), String(count), num(rate), link],
          });
        }
      }
    }
  }
  return rows;
}

/** One row per (step, split, grader) that gave some samples no reward (docs/no-reward.md). */
function noRewardRows(metrics) {
  const rows = [];
  for (const m of metrics) {
    for (const [split, table_] of [["train", m.no_reward], ["valid", m.valid_no_reward]]) {
      for (const [grader, { count, rate }] of Object.entries(table_ ?? {})) {
        if (!count) continue;
        rows.push({ props: { dataset: { step: m.step, split, grader } }, cells: [String(m.step), split, grader, String(count), num(rate)] });
      }
    }
  }
  return rows;
}

export async function jobPage(main, [jobId], _params, onError) {
  const factsEl = h("dl", { class: "facts", id: "job-facts" });
  const controlError = h("span", { class: "error", id: "control-error" });
  const label = (name) => name[0].toUpperCase() + name.slice(1);
  const buttons = Object.fromEntries(Object.keys(CONTROLS).map((name) => [name, h("button", { id: name }, label(name))]));
  const chartEl = h("div", { id: "reward-chart" });
  const meansEl = h("div", { id: "grader-means" });
  const errorsEl = h("div", { id: "grader-errors" });
  const noRewardEl = h("div", { id: "no-reward" });
  const checkpointsEl = h("div", { id: "checkpoints" });
  const eventsEl = h("ol", { class: "events", id: "events" });
  main.replaceChildren(
    h("h1", {}, "Job ", h("span", { id: "job-id" }, jobId)),
    h(
      "section",
      { class: "card" },
      factsEl,
      h("div", { class: "controls" }, Object.values(buttons), controlError),
      h("a", { href: `#/jobs/${encodeURIComponent(jobId)}/evals`, id: "evals-link" }, "Eval runs (validation samples)"),
    ),
    h("section", { class: "card" }, h("h2", {}, "Reward"), chartEl),
    h("section", { class: "card" }, h("h2", {}, "Per-grader reward means (latest)"), meansEl),
    h("section", { class: "card" }, h("h2", {}, "Grader errors by step"), errorsEl),
    h("section", { class: "card" }, h("h2", {}, "Samples that got no reward, by step"), noRewardEl),
    h("section", { class: "card" }, h("h2", {}, "Kept checkpoints"), checkpointsEl),
    h("section", { class: "card" }, h("h2", {}, "Events (newest first)"), eventsEl),
  );
  const chart = new RewardChart(chartEl);
  const events = new JobEvents(jobId);
  let job = null;

  const refresh = async () => {
    job = await api(jobPath(jobId));
    await events.refresh(job.status);
    const checkpoints = (await api(`${jobPath(jobId)}/checkpoints?limit=10`)).data;
    const metrics = metricsByStep(events.events);
    factsEl.replaceChildren(...facts(job, metrics));
    for (const [name, enabled] of Object.entries(CONTROLS)) buttons[name].disabled = !enabled(job.status);
    chart.update(metrics);
    const means = [...graderMeans(metrics)].map(([name, { train, valid }]) => ({
      props: { dataset: { grader: name } },
      cells: [name, h("span", { class: "train" }, num(train)), h("span", { class: "valid" }, num(valid))],
    }));
    meansEl.replaceChildren(
      table([["Grader"], ["train_reward_mean", "num"], ["valid_reward_mean", "num"]], means, { id: "means-table" }),
    );
    const errors = errorRows(metrics, jobId);
    errorsEl.replaceChildren(
      errors.length
        ? table(
            [["Step", "num"], ["Split"], ["Grader"], ["Error flag"], ["Count", "num"], ["Rate", "num"], [""]],
            errors,
            { id: "errors-table" },
          )
        : h("p", { class: "muted", id: "no-errors" }, "No grader errors so far."),
    );
    const unrewarded = noRewardRows(metrics);
    noRewardEl.replaceChildren(
      unrewarded.length
        ? table([["Step", "num"], ["Split"], ["Grader"], ["Samples", "num"], ["Rate", "num"]], unrewarded, {
            id: "no-reward-table",
          })
        : h("p", { class: "muted", id: "all-rewarded" }, "Every sample got a reward so far."),
    );
    checkpointsEl.replaceChildren(
      checkpoints.length
        ? table(
            [["Step", "num"], ["Checkpoint"], ["Model"], ["train_reward_mean", "num"], ["valid_reward_mean", "num"]],
            checkpoints.map((c) => ({
              props: { dataset: { checkpoint: c.id } },
              cells: [
                String(c.step_number),
                c.id,
                c.fine_tuned_model_checkpoint,
                h("span", { class: "train" }, num(c.metrics.train_reward_mean)),
                h("span", { class: "valid" }, num(c.metrics.valid_reward_mean)),
              ],
            })),
            { id: "checkpoints-table" },
          )
        : h("p", { class: "muted" }, "No checkpoints yet."),
    );
    eventsEl.replaceChildren(
      ...events.events.map((e) =>
        h(
          "li",
          { class: `level-${e.level}`, dataset: { event: e.id } },
          `${when(e.created_at)} ${e.level.padEnd(5)} `,
          h("span", { class: "message" }, e.message),
        ),
      ),
    );
  };

  for (const [name, button] of Object.entries(buttons)) {
    button.addEventListener("click", async () => {
      controlError.textContent = "";
      button.disabled = true;
      try {
        await api(`${jobPath(jobId)}/${name}`, { method: "POST" });
        await refresh();
      } catch (err) {
        controlError.textContent = errorText(err);
      }
    });
  }
  const { first, stop } = poll(refresh, REFRESH_MS, onError);
  await first;
  return () => {
    stop();
    chart.destroy();
  };
}
