"""Reinforcement fine-tune SmolLM2-135M-Instruct on ticket routing, offline, on the CPU (docs/models.md's run).

The `routing` task of `smollm2_learn.py`: the task's few-shot files (four worked examples, a ticket and its team,
before each ticket: they show the answer's form, so no warm start is needed), the exact-team grader
(ticket_routing/grader.json), 24 steps of 4 tickets, 6 new tokens, the rest "auto". Prints `valid_reward_mean`
at step 0 and at the end, the best constant answer's reward and the reward curve's path. Needs the model
(docs/models.md); `GRADEKIT_DEMO_DIR` sets the output folder.
"""

from __future__ import annotations

import smollm2_learn

if __name__ == "__main__":
    raise SystemExit(smollm2_learn.main(["routing"]))
