// What the pages read about a job from the public API: its events (metrics live in `metrics` events' data).

import { jobPath, listAll } from "./api.js";

export const FINAL = new Set(["succeeded", "failed", "cancelled"]);

/** The `metrics` events' data, one per step (the latest wins), in step order. */
export function metricsByStep(events) {
  const steps = new Map();
  for (const e of [...events].reverse()) {
    if (e.type === "metrics" && e.data && typeof e.data.step === "number") steps.set(e.data.step, e.data);
  }
  return [...steps.values()].sort((a, b) => a.step - b.step);
}

const summaries = new Map();

/** A job's current step, total steps and latest `valid_reward_mean`, read from its newest events. */
export async function progress(job) {
  const cached = summaries.get(job.id);
  if (cached && cached.status === job.status && FINAL.has(job.status)) return cached;
  const found = { status: job.status, step: null, total: null, valid: null };
  await listAll(`${jobPath(job.id)}/events`, {
    limit: 100,
    stopAt: (e) => {
      if (e.type !== "metrics" || !e.data) return false;
      if (found.step == null) {
        found.step = e.data.step;
        found.total = e.data.total_steps;
      }
      if (e.data.valid_reward_mean != null) {
        found.valid = e.data.valid_reward_mean;
        return true;
      }
      return false;
    },
  });
  summaries.set(job.id, found);
  return found;
}

/** A job's events, newest first, kept up to date with as few requests as possible. */
export class JobEvents {
  constructor(id) {
    this.id = id;
    this.events = [];
    this.status = null;
  }

  /** Fetch what is new; everything again when the status changed (a resumed run rewinds its events). */
  async refresh(status) {
    const path = `${jobPath(this.id)}/events`;
    if (status !== this.status || this.events.length === 0) {
      this.status = status;
      this.events = await listAll(path, { limit: 1000 });
      return;
    }
    const newest = this.events[0].id;
    const fresh = await listAll(path, { limit: 100, stopAt: (e) => e.id === newest });
    this.events = [...fresh, ...this.events];
  }
}
