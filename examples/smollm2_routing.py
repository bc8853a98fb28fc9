"""Reinforcement fine-tune SmolLM2-135M-Instruct on ticket routing, offline, on the CPU (docs/models.md's run).

The `routing` task of `smollm2_learn.py`: the prompt names the four teams with a line on what each handles, a
format-only warm start (a team picked at random as the target, never the right one on purpose) makes every
answer a team name, and RFT with the partial-credit grader (ticket_routing/grader_partial.json: 1 for the exact
team, 0.3 for naming it in a longer answer) has to learn which team each ticket belongs to. Prints
`valid_reward_mean` at step 0 and at the end, the best constant answer's reward and the reward curve's path.
Needs the model (docs/models.md); `GRADEKIT_DEMO_DIR` sets the output folder.
"""

from __future__ import annotations

import smollm2_learn

if __name__ == "__main__":
    raise SystemExit(smollm2_learn.main(["routing"]))
