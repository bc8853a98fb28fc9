// The jobs list: every fine-tuning job with its status, model, times, step and latest valid_reward_mean.

import { ApiError, api } from "./api.js";
import { h, num, table, when } from "./dom.js";
import { progress } from "./jobdata.js";
import { poll, REFRESH_MS } from "./poll.js";

const COLUMNS = [
  ["Job"],
  ["Status"],
  ["Base model"],
  ["Created"],
  ["Finished"],
  ["Step", "num"],
  ["valid_reward_mean", "num"],
];

function row(job, p) {
  return {
    props: { dataset: { job: job.id } },
    cells: [
      h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "job-id" }, job.id),
      h("span", { class: `status status-${job.status}` }, job.status),
      h("span", { class: "model" }, job.model),
      h("span", { class: "created" }, when(job.created_at)),
      h("span", { class: "finished" }, when(job.finished_at)),
      h("span", { class: "step" }, p.step == null ? "—" : `${p.step} / ${p.total}`),
      h("span", { class: "valid" }, num(p.valid)),
    ],
  };
}

export async function jobsPage(main, _args, _params, onError) {
  const list = h("div", { id: "jobs" });
  const updated = h("p", { class: "muted", id: "jobs-updated" });
  main.replaceChildren(h("h1", {}, "Fine-tuning jobs"), h("section", { class: "card" }, list, updated));
  const { first, stop } = poll(
    async () => {
      let jobs;
      try {
        jobs = (await api("/v1/fine_tuning/jobs?limit=100")).data;
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          list.replaceChildren(h("p", { class: "muted", id: "no-service" }, err.message));
          return;
        }
        throw err;
      }
      const rows = [];
      for (const job of jobs) rows.push(row(job, await progress(job)));
      list.replaceChildren(
        jobs.length ? table(COLUMNS, rows, { id: "jobs-table" }) : h("p", { class: "muted" }, "No jobs yet."),
      );
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes by itself.`;
    },
    REFRESH_MS,
    onError,
  );
  await first;
  return stop;
}
