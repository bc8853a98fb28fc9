// The reward chart (uPlot, bundled): train_reward_mean and valid_reward_mean over steps.

import uPlot from "../vendor/uplot/uPlot.esm.js";

export class RewardChart {
  constructor(el) {
    this.el = el;
    this.plot = null;
    this.key = "";
  }

  /** Draw `metrics` (one data object per step); the plotted values are also kept in data-* attributes. */
  update(metrics) {
    const steps = metrics.map((m) => m.step);
    const train = metrics.map((m) => m.train_reward_mean ?? null);
    const valid = metrics.map((m) => m.valid_reward_mean ?? null);
    const key = JSON.stringify([steps, train, valid]);
    if (key === this.key) return;
    this.key = key;
    Object.assign(this.el.dataset, {
      points: String(steps.length),
      steps: JSON.stringify(steps),
      train: JSON.stringify(train),
      valid: JSON.stringify(valid),
    });
    if (steps.length === 0) return;
    const data = [steps, train, valid];
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    const options = {
      width: Math.max(320, this.el.clientWidth || 800),
      height: 260,
      // Rewards are mostly in [0, 1]: keep that range in view (a flat 0 line would otherwise get 0..100).
      scales: { x: { time: false }, y: { range: (_u, min, max) => [Math.min(0, min ?? 0), Math.max(1, max ?? 1)] } },
      series: [
        { label: "step" },
        { label: "train_reward_mean", stroke: "#2f5bd3", width: 2, spanGaps: true },
        { label: "valid_reward_mean", stroke: "#d97706", width: 2, spanGaps: true, points: { show: true, size: 6 } },
      ],
      axes: [{ label: "step", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] }, { label: "reward" }],
    };
    this.plot = new uPlot(options, data, this.el);
  }

  destroy() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}
