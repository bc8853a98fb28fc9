"""Training on what was graded: a judge that fails a fifth of the time moves no advantage, and is counted.

The judge is the project's FakeLLM (real HTTP, the real openai SDK in the model client) answering 429, 500, 503
or nothing in time for some samples; docs/no-reward.md describes the behaviour these tests pin down.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from gradekit.graders import Env, grader, validate
from gradekit.runtime.engine import Engine
from gradekit.runtime.model_client import OpenAIModelClient
from gradekit.testing.fake_llm import Delay, FakeLLM, Judge, RateLimited, ServerError
from gradekit.trainer_bridge import RFTJob
from gradekit.trainer_bridge.loop.batch_grading import BackgroundGrader
from gradekit.trainer_bridge.loop.grpo import group_advantages, grpo_update, rewards_tensor
from gradekit.trainer_bridge.loop.hyperparameters import LoopOptions
from gradekit.trainer_bridge.loop.metrics import train_metrics
from gradekit.trainer_bridge.models.policy import TINY_MODEL, Policy

from .rft_task import FAST, metrics, rollout_of

JUDGE = {
    "type": "score_model",
    "name": "judge",
    "model": "fake-judge",
    "input": [{"role": "user", "content": "Grade this answer: {{ sample.output_text }}"}],
}
GROUP = 5
# Group g, sample k: the judge's score. Four of the twenty samples (a fifth) meet a judge that fails every time.
SCORES = [[0.1, 0.9, 0.4, 0.4, 0.7], [0.2, 0.3, 0.8, 0.6, 0.5], [0.0, 1.0, 0.5, 0.25, 0.75], [0.3, 0.3, 0.9, 0.1, 0.6]]
FAILING = {(0, 1): RateLimited(), (0, 3): ServerError(), (1, 2): Delay(30.0, Judge(1.0)), (3, 0): ServerError(code=503)}


def _answer(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"]).removeprefix("Grade this answer: ")


class _Judge:
    """A FakeLLM script: a score per answer `g.k`, failures for FAILING (or for every answer `down` names)."""

    def __init__(self, fail: bool = True) -> None:
        self.fail = fail
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any], n: int) -> Any:
        text = _answer(body)
        with self.lock:
            self.calls[text] += 1
        return self.reply(text)

    def reply(self, text: str) -> Any:
        """The reply to answer `text` (without counting the call)."""
        g, k = map(int, re.fullmatch(r"answer (\d+)\.(\d+)", text).groups())  # type: ignore[union-attr]
        if self.fail and (g, k) in FAILING:
            return FAILING[(g, k)]
        return Judge(SCORES[g][k])


def _grade(script: _Judge, keys: list[tuple[int, int]]) -> Any:
    """Grade answers `g.k` as the RFT loop does: once, then once more what got no reward."""
    samples = [f"answer {g}.{k}" for g, k in keys]
    with (
        FakeLLM(script, max_lifetime=60.0) as llm,
        OpenAIModelClient(base_url=llm.base_url, max_retries=1, base_delay=0.001, timeout=0.5) as client,
    ):
        grading = BackgroundGrader(Engine(validate(JUDGE), env=Env(model=client)))
        try:
            first, _ = grading.submit(samples, [{}] * len(samples)).result()
            result, _ = grading.regrade(samples, [{}] * len(samples), first)
        finally:
            grading.close()
    return first, result


def test_a_judge_failing_a_fifth_of_the_time_leaves_the_other_advantages_as_if_never_drawn() -> None:
    keys = [(g, k) for g in range(len(SCORES)) for k in range(GROUP)]
    script = _Judge()
    first, result = _grade(script, keys)
    rewards = result.rewards_or_none()
    assert rewards == [None if key in FAILING else SCORES[key[0]][key[1]] for key in keys]
    # every failing answer was asked twice per grading (one retry) and graded twice; the others once
    assert script.calls == Counter({f"answer {g}.{k}": 4 if (g, k) in FAILING else 1 for g, k in keys})
    assert [first.no_reward(i) for i in range(20)] == ["grading_error" if k in FAILING else None for k in keys]
    flags = [result.error_flags(i) for i in range(20)]
    assert flags == [["model_grader_server_error"] if k in FAILING else [] for k in keys]

    advantages = group_advantages(rewards_tensor(rewards), GROUP)

    # The run where the failed samples were never drawn: the others alone, graded by a judge that never fails.
    kept = [key for key in keys if key not in FAILING]
    _, clean = _grade(_Judge(fail=False), kept)
    assert clean.rewards_or_none() == [SCORES[g][k] for g, k in kept]
    for g in range(len(SCORES)):
        positions = [i for i, key in enumerate(keys) if key[0] == g and key not in FAILING]
        alone = [clean.rewards[kept.index(keys[i])] for i in positions]
        expected = group_advantages(torch.tensor(alone, dtype=torch.float32), len(alone))  # groups of 3, 4, 5, 4
        assert torch.equal(advantages[positions], expected)
    assert [advantages[i].item() for i, key in enumerate(keys) if key in FAILING] == [0.0] * 4
    assert advantages[[10, 11, 12, 13, 14]].tolist() == pytest.approx(
        [(s - 0.5) / (torch.tensor(SCORES[2]).std(unbiased=False).item() + 1e-4) for s in SCORES[2]]
    )

    # ... and the failures are counted, not learned: the step's metrics event
    data = train_metrics(
        validate(JUDGE),
        [result],
        step=1,
        total_steps=1,
        completion_tokens=[1] * 20,
        stats={"kl": 0.0, "clip_fraction": 0.0},
        timing={},
    )
    assert data["no_reward"] == {"judge": {"count": 4, "rate": 0.2}}
    assert data["errors"]["judge"]["model_grader_server_error"] == {"count": 4, "rate": 0.2}
    graded = [SCORES[g][k] for g, k in kept]
    assert data["train_reward_mean"] == pytest.approx(sum(graded) / 16)  # the mean of the sixteen, not / 20


def test_a_sample_that_failed_once_is_graded_again_and_counts() -> None:
    class Once(_Judge):
        def __call__(self, body: dict[str, Any], n: int) -> Any:
            text = _answer(body)
            with self.lock:
                self.calls[text] += 1
                first = self.calls[text] == 1
            return ServerError() if first and text != "answer 0.0" else self.reply(text)

    # max_retries=0 in this client would make every first call final: check with the loop's own re-grade
    script = Once(fail=False)
    samples = ["answer 0.0", "answer 0.1", "answer 2.1"]
    with (
        FakeLLM(script) as llm,
        OpenAIModelClient(base_url=llm.base_url, max_retries=0) as client,
    ):
        grading = BackgroundGrader(Engine(validate(JUDGE), env=Env(model=client)))
        try:
            first, _ = grading.submit(samples, [{}] * 3).result()
            again, _ = grading.regrade(samples, [{}] * 3, first)
        finally:
            grading.close()
    assert first.rewards_or_none() == [0.1, None, None]
    assert again.rewards_or_none() == [0.1, 0.9, 1.0]
    assert [again.error_flags(i) for i in range(3)] == [[], [], []]
    assert script.calls == Counter({"answer 0.0": 1, "answer 0.1": 2, "answer 2.1": 2})


def test_a_sample_without_reward_adds_nothing_to_the_update() -> None:
    words = ["billing", "account", "shipping", "technical"]
    options = LoopOptions(group_size=4, temperature=1.0)

    def update(completions: list[str], rewards: list[float | None], group: int) -> list[torch.Tensor]:
        policy = Policy.load(TINY_MODEL, texts=[" ".join(words), "where is my parcel"], seed=0)
        optimizer = torch.optim.SGD(policy.model.parameters(), lr=0.5)
        rollout = rollout_of(policy, "where is my parcel", completions)
        grpo_update(policy, optimizer, [(rollout, rewards)], group_size=group, options=options)
        return [p.detach().clone() for p in policy.model.parameters()]

    with_gap = update(words, [0.0, None, 1.0, 0.0], 4)
    never_drawn = update([words[0], words[2], words[3]], [0.0, 1.0, 0.0], 3)
    fresh = Policy.load(TINY_MODEL, texts=[" ".join(words), "where is my parcel"], seed=0)
    untouched = [p.detach().clone() for p in fresh.model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(with_gap, untouched, strict=True))  # it did learn
    for a, b in zip(with_gap, never_drawn, strict=True):
        torch.testing.assert_close(a, b, rtol=0.0, atol=1e-6)
    # nothing graded at all: no update
    assert all(torch.equal(a, b) for a, b in zip(update(words, [None] * 4, 4), untouched, strict=True))


# --- the RFT job -------------------------------------------------------------------------------------------------

Task = tuple[Path, Path, Path]
HYPER = {"n_epochs": 1, "batch_size": 4, "eval_interval": 2}  # 16 rows: 4 steps, validation at 0, 2 and 4
TICKET_JUDGE = {**JUDGE, "name": "ticket_judge"}


class _TicketJudge:
    """Scores 0.5 for "billing" else 0.25; fails every fifth call (429 or 500) if `flaky`, every call when `down`."""

    def __init__(self, flaky: bool) -> None:
        self.flaky = flaky
        self.lock = threading.Lock()
        self.failed = 0
        self.answered = 0
        self.down = False
        self.texts: list[str] = []

    def __call__(self, body: dict[str, Any], n: int) -> Any:
        with self.lock:
            self.texts.append(_answer(body))
            if self.down or (self.flaky and n % 5 == 4):
                self.failed += 1
                return RateLimited() if n % 2 else ServerError()
            self.answered += 1
        return Judge(0.5 if "billing" in _answer(body) else 0.25)


def test_an_rft_job_trains_on_the_graded_four_fifths_and_counts_the_rest(task: Task, tmp_path: Path) -> None:
    train, valid, base = task
    script = _TicketJudge(flaky=True)
    with FakeLLM(script, max_lifetime=300.0) as llm, OpenAIModelClient(base_url=llm.base_url, max_retries=0) as client:
        job = RFTJob(
            base, TICKET_JUDGE, train, valid, HYPER, output_dir=tmp_path / "job", options=FAST, progress=False,
            seed=3, env=Env(model=client),
        )  # fmt: skip
        assert job.run()["status"] == "succeeded"
    data = metrics(job.events)
    assert [d["step"] for d in data] == [0, 1, 2, 3, 4]
    train_samples, valid_samples = 4 * 4 * 4, 3 * 8 * job.res.eval_samples
    for d in data:
        tables = [t for t in (d.get("no_reward"), d.get("valid_no_reward")) if t is not None]
        assert tables and all(set(t) == {"ticket_judge"} for t in tables)
    no_reward = sum(d[t]["ticket_judge"]["count"] for d in data for t in ("no_reward", "valid_no_reward") if t in d)
    judge_errors = sum(
        d[t]["ticket_judge"]["model_grader_server_error"]["count"]
        for d in data
        for t in ("errors", "valid_errors")
        if t in d
    )
    # Each sample is asked once, and once more if that failed: the calls beyond one per sample are the re-grades,
    # and the failed calls beyond the re-grades are the samples that got no reward. All of them are in the metrics.
    regrades = len(script.texts) - (train_samples + valid_samples)
    assert regrades > 0
    assert no_reward == judge_errors == script.failed - regrades
    # the rewarded ones are the judge's verdicts: 0.5 or 0.25, never a 0 from a failed call
    for d in data[1:]:
        assert 0.25 <= d["train_reward_mean"] <= 0.5


def test_a_step_with_no_reward_at_all_pauses_and_a_resume_grades_the_same_samples(task: Task, tmp_path: Path) -> None:
    train, valid, base = task
    script = _TicketJudge(flaky=False)
    holder: dict[str, Any] = {}

    def judge_down_after_step_2(event: dict[str, Any]) -> None:
        if event["type"] == "metrics" and event["data"]["step"] == 2:
            with script.lock:
                script.down = True
                holder["mark"] = len(script.texts)

    with FakeLLM(script, max_lifetime=300.0) as llm, OpenAIModelClient(base_url=llm.base_url, max_retries=0) as client:
        job = RFTJob(
            base, TICKET_JUDGE, train, valid, HYPER, output_dir=tmp_path / "job", options=FAST, progress=False,
            seed=4, env=Env(model=client), listener=judge_down_after_step_2,
        )  # fmt: skip
        record = job.run()
        assert record["status"] == "paused"
        step3 = script.texts[holder["mark"] :]
        assert len(step3) == 2 * 16  # step 3's sixteen samples, each graded twice, none with a reward
        warn = next(e for e in job.events if e["level"] == "warn")
        assert warn["message"].startswith("Step 3: no sample got a reward, even graded twice")
        assert warn["data"]["no_reward"] == {"ticket_judge": {"count": 16, "rate": 1.0}}
        assert job.events[-1]["message"] == "Fine-tuning job paused at step 2"
        assert [d["step"] for d in metrics(job.events)] == [0, 1, 2]

        script.down = False
        mark = len(script.texts)
        resumed = RFTJob.resume(job.dir, progress=False, env=Env(model=client))
        assert resumed.run()["status"] == "succeeded"
    # the resumed job drew the very same samples for step 3 and graded them again (each was asked twice before)
    again = Counter(script.texts[mark : mark + 16])
    assert Counter(step3) == Counter({text: 2 * n for text, n in again.items()})
    assert [d["step"] for d in metrics(resumed.events)] == [0, 1, 2, 3, 4]
    messages = [e["message"] for e in resumed.events]
    assert (
        messages.index("Fine-tuning job resumed from step 2") == messages.index("Fine-tuning job paused at step 2") + 1
    )


# --- TRL -----------------------------------------------------------------------------------------------------


@grader(name="parity")
def _parity(sample: dict[str, Any], item: dict[str, Any]) -> float | None:
    """No reward for a completion of an odd number of tokens; else whether it holds the answer."""
    if len(sample["completion_ids"]) % 2:
        return None
    return float(item["answer"] in sample["output_text"])


@pytest.mark.filterwarnings(r"ignore:`\w*gradient_checkpointing\w*` is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore:All reward functions returned None")
def test_trl_leaves_samples_without_reward_out_of_its_reward_and_advantages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from gradekit.trainer_bridge.adapters import trl_rewards
    from gradekit.trainer_bridge.adapters.trl_rewards import to_trl
    from gradekit.trainer_bridge.models.tiny import build_tiny_model, build_tokenizer

    rows = [{"prompt": f"what is {a} plus {b} ?", "answer": str(a + b)} for a, b in [(1, 2), (2, 3), (3, 4), (4, 5)]]
    graded: list[Any] = []
    real = trl_rewards.run_batch

    def recording(grader_: Any, samples: Any, items: Any, *, env: Any = None) -> Any:
        graded.append(real(grader_, samples, items, env=env))
        return graded[-1]

    monkeypatch.setattr(trl_rewards, "run_batch", recording)
    tokenizer = build_tokenizer(r["prompt"] + " " + r["answer"] for r in rows)
    config = GRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=4,
        max_steps=1,
        logging_steps=1,
        learning_rate=0.1,
        report_to="none",
        save_strategy="no",
        seed=1,
    )
    trainer = GRPOTrainer(
        model=build_tiny_model(tokenizer),
        reward_funcs=to_trl(_parity, name="gk"),
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "rewards/gk/mean" in entry]
    assert len(steps) == len(graded) == 1
    saw_none = False
    for entry, result in zip(steps, graded, strict=True):
        values = result.rewards_or_none()
        kept = [v for v in values if v is not None]
        saw_none = saw_none or len(kept) < len(values)
        assert entry["rewards/gk/no_reward/rate"] == pytest.approx((len(values) - len(kept)) / len(values))
        if kept:  # TRL's reward is the mean over the samples that got one (nanmean), not a mean with zeros
            assert entry["reward"] == pytest.approx(sum(kept) / len(kept), abs=1e-6)
            assert entry["rewards/gk/mean"] == pytest.approx(sum(kept) / len(kept), abs=1e-6)
    assert saw_none  # the run met completions of odd length
