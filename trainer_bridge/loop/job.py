"""`RFTJob`: gradekit's integrated RFT loop (GRPO) with OpenAI's hyperparameters, metrics, events and checkpoints.

A run lives in one folder:

    job.json            the job object (OpenAI's `fine_tuning.job` fields), replaced atomically on every change
    events.jsonl        `fine_tuning.job.event` objects, oldest first
    evals/step-N.jsonl  the eval run of each validation step (prompts, samples, grader outputs)
    checkpoints/step-N/ the best three validation checkpoints (Hugging Face model folders + checkpoint.json)
    snapshots/          the resume snapshot (model, optimizer, random state, counters, events offset)
    reward_curve.png    train and validation reward per step
    final/              the fine-tuned model, once the job succeeds

A killed run resumes from its snapshot: events, eval runs and checkpoints written after it are dropped and
redone, so nothing is lost or written twice, and the same seed gives the same metrics as an unbroken run.
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradekit.graders import BatchResult, Env, Grader, validate
from gradekit.graders.api import GraderLike
from gradekit.runtime.engine import Backend, Engine

from ..models.catalogue import auto_options, default_model, display_name, unavailable
from ..models.policy import Policy, Rollout
from .atomic_files import publish_dir, read_json, write_json
from .batch_grading import BackgroundGrader, split_range
from .checkpoints import Checkpoint, CheckpointStore, Snapshots
from .completions import to_sample
from .data import DataError, Row, load_rows
from .evals import eval_run_path, write_eval_run
from .events import EventLog, read_events
from .grpo import grpo_update
from .hyperparameters import Hyperparameters, LoopOptions, Resolved
from .metrics import grading_tables, train_metrics, valid_metrics
from .plot import plot_rewards

if TYPE_CHECKING:
    from torch.optim import Optimizer

__all__ = ["JobError", "RFTJob", "base_model_name", "fine_tuned_model_name", "job_object"]

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
TRAINER_STATE = "trainer.pt"

ORGANIZATION = "org-gradekit-local"


def base_model_name(model: str | os.PathLike[str]) -> str:
    """The name a base model goes by when none is given: its catalogue name or Hub id, or its folder's name."""
    return display_name(model)


def fine_tuned_model_name(base: str, suffix: str | None, job_id: str) -> str:
    """The name of a job's fine-tuned model: `ft:<base>:<suffix or gradekit>:<job id without ftjob->`."""
    return f"ft:{base}:{suffix or 'gradekit'}:{job_id.removeprefix('ftjob-')}"


def job_object(
    job_id: str,
    model: str,
    *,
    training_file: str,
    validation_file: str | None,
    hyperparameters: Hyperparameters,
    grader: dict[str, Any] | None,
    seed: int,
    suffix: str | None = None,
    metadata: dict[str, str] | None = None,
    status: str = "validating_files",
) -> dict[str, Any]:
    """A new `fine_tuning.job` object for a reinforcement job, as the OpenAI API returns it."""
    hyper = hyperparameters.to_json()
    return {
        "object": "fine_tuning.job",
        "id": job_id,
        "created_at": int(time.time()),
        "model": model,
        "organization_id": ORGANIZATION,
        "status": status,
        "training_file": training_file,
        "validation_file": validation_file,
        "seed": seed,
        "suffix": suffix,
        "metadata": metadata,
        # OpenAI's job object repeats three of the method's hyperparameters at the top level.
        "hyperparameters": {k: hyper[k] for k in ("batch_size", "learning_rate_multiplier", "n_epochs")},
        "method": {"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": hyper}},
        "fine_tuned_model": None,
        "trained_tokens": None,
        "error": None,
        "finished_at": None,
        "estimated_finish": None,
        "result_files": [],
        "integrations": None,
    }


class JobError(RuntimeError):
    """The job failed; `code` and `message` are what the job object's `error` carries."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        self.code, self.message, self.param = code, message, param
        super().__init__(message)


class RFTJob:
    """A reinforcement fine-tuning job on a local model: `run()` trains; `pause()`/`cancel()` stop it.

    `model` is a name of the model catalogue (`smollm2-135m-instruct`, the default when installed, else
    `tiny-local`; a local Hugging Face model folder; a Hub id); `model_name` is the base name the fine-tuned
    model's name carries (default: the catalogue name, or the folder's name). Loop options left "auto" (None) are
    chosen for the model's size (`catalogue.auto_options`). `hyperparameters` take OpenAI's names (`n_epochs`,
    `batch_size`, ...; `"auto"` allowed).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        grader: GraderLike | None = None,
        training_file: str | os.PathLike[str] | None = None,
        validation_file: str | os.PathLike[str] | None = None,
        hyperparameters: Hyperparameters | dict[str, Any] | None = None,
        *,
        seed: int | None = None,
        suffix: str | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        options: LoopOptions | dict[str, Any] | None = None,
        env: Env | None = None,
        backend: Backend | None = None,
        progress: bool = True,
        job_id: str | None = None,
        listener: Callable[[dict[str, Any]], None] | None = None,
        metadata: dict[str, str] | None = None,
        model_name: str | None = None,
    ) -> None:
        if grader is None or training_file is None or validation_file is None:
            raise TypeError("RFTJob needs a grader, a training_file and a validation_file")
        self.id = job_id or f"ftjob-{secrets.token_hex(12)}"
        self.model = os.fspath(model) if model is not None else default_model()
        self.model_name = model_name or base_model_name(self.model)
        self.grader: Grader = validate(grader)
        self.training_file = os.fspath(training_file)
        self.validation_file = os.fspath(validation_file)
        self.hyperparameters = (
            hyperparameters
            if isinstance(hyperparameters, Hyperparameters)
            else Hyperparameters.model_validate(hyperparameters or {})
        )
        self.options = options if isinstance(options, LoopOptions) else LoopOptions(**(options or {}))
        self.seed = secrets.randbelow(2**31) if seed is None else seed
        if suffix is not None and len(suffix) > 40:
            raise ValueError("suffix may be at most 40 characters")
        self.suffix = suffix
        self.metadata = metadata
        self.dir = Path(output_dir) if output_dir is not None else Path("gradekit-runs") / self.id
        self.env = env
        self.backend = backend
        self.progress = progress
        self.listener = listener
        self._pause = threading.Event()
        self._cancel = threading.Event()
        self.record: dict[str, Any] = {}

    # --- the job object -----------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """The job's status, as OpenAI names it (`queued`, `running`, `paused`, one of `FINAL_STATUSES`...)."""
        return self.record.get("status", "validating_files")

    @property
    def fine_tuned_model(self) -> str:
        """The name of the model this job produces: `ft:<model_name>:<suffix>:<job id>`."""
        return fine_tuned_model_name(self.model_name, self.suffix, self.id)

    def _new_record(self) -> dict[str, Any]:
        try:
            grader_json: dict[str, Any] | None = self.grader.to_json()
        except Exception:  # e.g. a function grader holding a closure: it is passed again on resume
            grader_json = None
        record = job_object(
            self.id,
            self.model,
            training_file=self.training_file,
            validation_file=self.validation_file,
            hyperparameters=self.hyperparameters,
            grader=grader_json,
            seed=self.seed,
            suffix=self.suffix,
            metadata=self.metadata,
        )
        record["gradekit"] = {"options": self.options.to_json(), "resolved": None, "model_name": self.model_name}
        return record

    def _update(self, **fields: Any) -> None:
        self.record.update(fields)
        write_json(self.dir / "job.json", self.record)

    # --- control ------------------------------------------------------------------------------------------

    def pause(self) -> None:
        """Ask the run to write a snapshot at the end of the current step and stop (status `paused`)."""
        self._pause.set()

    @property
    def pause_requested(self) -> bool:
        """Whether `pause()` was called and the run has not stopped yet."""
        return self._pause.is_set()

    def cancel(self) -> None:
        """Ask the run to stop at the end of the current step without a final model (status `cancelled`)."""
        self._cancel.set()

    @classmethod
    def resume(cls, path: str | os.PathLike[str], *, grader: GraderLike | None = None, **kwargs: Any) -> RFTJob:
        """The job in run folder `path`, ready to `run()` on from its last snapshot (paused, killed or failed)."""
        root = Path(path)
        record = read_json(root / "job.json")
        if record["status"] in ("succeeded", "cancelled"):
            raise JobError("job_not_resumable", f"job {record['id']} is {record['status']}; it cannot be resumed")
        spec = grader if grader is not None else record["method"]["reinforcement"]["grader"]
        if spec is None:
            raise ValueError(f"job {record['id']} used a grader that was not saved as JSON: pass grader=...")
        opts = record.get("gradekit", {}).get("options")
        kwargs.setdefault("model_name", record.get("gradekit", {}).get("model_name"))
        job = cls(
            record["model"],
            spec,
            record["training_file"],
            record["validation_file"],
            record["method"]["reinforcement"]["hyperparameters"],
            seed=record["seed"],
            suffix=record["suffix"],
            output_dir=root,
            options=kwargs.pop("options", opts),
            job_id=record["id"],
            metadata=record.get("metadata"),
            **kwargs,
        )
        job.record = record
        return job

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event so far, oldest first."""
        path = self.dir / "events.jsonl"
        return read_events(path) if path.exists() else []

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """The kept checkpoints, newest first."""
        return CheckpointStore(self.dir / "checkpoints", self.id).list()

    # --- the run ------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Train until done, paused or cancelled; returns the job object. Raises `JobError` when the job fails."""
        fresh = not self.record
        if fresh and (self.dir / "job.json").is_file():
            other = read_json(self.dir / "job.json")
            if other.get("id") != self.id:  # never write a new job over another one's history
                raise JobError(
                    "output_dir_in_use",
                    f"{self.dir} holds job {other.get('id')} ({other.get('status')}): resume it "
                    f"(RFTJob.resume, gradekit train --resume {self.dir}) or choose another output directory",
                    "output_dir",
                )
        self.dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.record = self._new_record()
        self.events_log = EventLog(self.dir / "events.jsonl", listener=self.listener)
        self.store = CheckpointStore(self.dir / "checkpoints", self.id)
        self.snapshots = Snapshots(self.dir / "snapshots")
        self.store.prepare()
        self.snapshots.prepare()
        (self.dir / "evals").mkdir(exist_ok=True)
        if fresh:
            self.events_log.emit(f"Created fine-tuning job: {self.id}")
            # A run killed before its first snapshot starts over from here, without repeating its events.
            self.record["gradekit"]["events_start"] = self.events_log.offset()
            self._update()
        elif self.snapshots.current() is None:
            self.events_log.truncate(self.record["gradekit"].get("events_start", 0))
        try:
            return self._run(fresh)
        except JobError as e:
            self._fail(e)
            raise
        except Exception as e:
            error = JobError("training_error", f"{type(e).__name__}: {e}")
            self._fail(error)
            raise error from e

    def _fail(self, error: JobError) -> None:
        self.events_log.emit(f"Fine-tuning job failed: {error.message}", level="error")
        self._update(
            status="failed",
            error={"code": error.code, "message": error.message, "param": error.param},
            finished_at=int(time.time()),
        )

    def _load_data(self) -> tuple[list[Row], list[Row]]:
        self._update(status="validating_files")
        self.events_log.emit("Validating training file and validation file")
        try:
            train = load_rows(self.training_file, what="training file")
        except (DataError, OSError) as e:
            raise JobError("invalid_training_file", str(e), "training_file") from None
        try:
            valid = load_rows(self.validation_file, what="validation file")
        except (DataError, OSError) as e:
            raise JobError("invalid_validation_file", str(e), "validation_file") from None
        return train, valid

    def _resolve(self, n_train: int) -> Resolved:
        """The run's concrete settings: loop options left "auto" are chosen for the loaded model's size."""
        self.options = self.options.with_auto(auto_options(self.policy.n_parameters))
        try:
            return self.hyperparameters.resolve(n_train, self.options)
        except ValueError as e:
            raise JobError("invalid_hyperparameters", str(e), "hyperparameters") from None

    def _run(self, fresh: bool) -> dict[str, Any]:
        import torch

        train, valid = self._load_data()
        problem = unavailable(self.model)
        if problem is not None:
            raise JobError("model_not_found", problem, "model")
        snapshot = self.snapshots.current()
        if snapshot is not None:
            self.policy = Policy.load(snapshot)
            self.policy.name = display_name(self.model)
        else:
            texts = [t for row in [*train, *valid] for t in row.texts]
            self.policy = Policy.load(self.model, texts=texts, seed=self.seed)
        res = self._resolve(len(train))
        self.res, self.train_rows, self.valid_rows = res, train, valid
        self.record["gradekit"]["resolved"] = res.to_json()
        if self.options.lora_rank > 0 and not self.policy.is_lora:
            self.policy.add_lora(self.options.lora_rank, self.options.lora_alpha)
        base_lr = res.learning_rate or self.options.learning_rate
        trained = [p for p in self.policy.model.parameters() if p.requires_grad]  # with LoRA: the adapters only
        self.optimizer: Optimizer = torch.optim.AdamW(
            trained, lr=base_lr * res.learning_rate_multiplier, weight_decay=0.0
        )
        self.reference = self._reference(snapshot)
        # Every row is prompted once per epoch: render each prompt once (keyed by the row object, which lives as
        # long as the job).
        # max_prompt_length keeps a prompt's last tokens, where the reply begins (`[-0:]`: the whole prompt).
        self.prompts = {
            id(row): self.policy.prompt_ids(row)[-(res.max_prompt_length or 0) :] for row in [*train, *valid]
        }
        self.history: list[dict[str, Any]] = []
        step, trained_tokens = 0, 0
        if snapshot is not None:
            state = torch.load(snapshot / TRAINER_STATE, weights_only=True)
            self.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            step, trained_tokens, self.history = state["step"], state["trained_tokens"], state["history"]
            # Whatever was written after the snapshot belongs to steps this run repeats.
            self.events_log.truncate(state["events_offset"])
            self.store.drop_after(step)
            for path in (self.dir / "evals").glob("step-*.jsonl"):
                if int(path.stem.removeprefix("step-")) > step:
                    path.unlink()
            self.events_log.emit(f"Fine-tuning job resumed from step {step}")
        else:
            torch.manual_seed(self.seed)
        self._update(status="running", error=None)
        self.events_log.emit(f"Files validated; training {self.policy.name} for {res.total_steps} steps")
        self.grading = BackgroundGrader(Engine(self.grader, env=self.env, backend=self.backend))
        try:
            return self._loop(step, trained_tokens)
        finally:
            self.grading.close()

    def _reference(self, snapshot: Path | None) -> Any:
        if self.options.kl_beta <= 0:
            return None
        ref_dir = self.dir / "reference"
        if snapshot is None:
            publish_dir(ref_dir, self.policy.save)
        ref = Policy.load(ref_dir).model
        ref.eval().requires_grad_(False)
        return ref

    def _loop(self, step: int, trained_tokens: int) -> dict[str, Any]:
        import torch
        from tqdm.auto import tqdm

        res = self.res
        if step == 0 and not self.history:
            self._evaluate_and_record(0, {"step": 0, "total_steps": res.total_steps}, trained_tokens)
        bar = tqdm(total=res.total_steps, initial=step, unit="step", disable=not self.progress, desc=self.id)
        started, steps_run = time.monotonic(), 0
        try:
            while step < res.total_steps:
                if self._cancel.is_set():
                    return self._finish_cancelled()
                if self._pause.is_set():
                    return self._finish_paused(step, trained_tokens)
                step += 1
                rng = torch.get_rng_state()
                data, tokens = self._train_step(step)
                if data is None:  # no sample got a reward: pause before the step, to grade the same samples again
                    torch.set_rng_state(rng)
                    return self._finish_ungraded(step, trained_tokens)
                trained_tokens += tokens
                if step % res.eval_interval == 0 or step == res.total_steps:
                    self._evaluate_and_record(step, data, trained_tokens)
                else:
                    self.history.append(data)
                    self._emit_metrics(data)
                steps_run += 1
                per_step = (time.monotonic() - started) / steps_run
                self._update(
                    trained_tokens=trained_tokens,
                    estimated_finish=int(time.time() + per_step * (res.total_steps - step)),
                )
                bar.update(1)
                bar.set_postfix(self._postfix(), refresh=False)
        finally:
            bar.close()
        return self._finish_succeeded(trained_tokens)

    def _postfix(self) -> dict[str, str]:
        last = self.history[-1]
        valid = next((h["valid_reward_mean"] for h in reversed(self.history) if "valid_reward_mean" in h), None)
        out = {"train": f"{last.get('train_reward_mean', float('nan')):.3f}"}
        if valid is not None:
            out["valid"] = f"{valid:.3f}"
        return out

    def _emit_metrics(self, data: dict[str, Any]) -> None:
        step = data["step"]
        parts = [f"Step {step}/{data['total_steps']}:"]
        if "train_reward_mean" in data:
            parts.append(f"train_reward_mean={data['train_reward_mean']:.4f}")
        if "valid_reward_mean" in data:
            parts.append(f"valid_reward_mean={data['valid_reward_mean']:.4f}")
        self.events_log.emit(" ".join(parts), type="metrics", data=data)

    # --- one training step ----------------------------------------------------------------------------------

    def _batch(self, step: int) -> list[Row]:
        import torch

        res = self.res
        epoch, position = divmod(step - 1, res.steps_per_epoch)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.train_rows), generator=gen).tolist()
        return [self.train_rows[i] for i in order[position * res.batch_size : (position + 1) * res.batch_size]]

    def _generate_and_grade(
        self, rows: list[Row], n: int
    ) -> tuple[list[tuple[list[Row], Rollout, BatchResult]], dict[str, float]]:
        """Sample `n` completions per row, a part at a time, grading each part while the next is generated."""
        generation = 0.0
        pending: list[tuple[list[Row], Rollout, list[Any], list[Any], Future[tuple[BatchResult, float]]]] = []
        for part in split_range(len(rows), self.options.grading_chunks):
            chunk = [rows[i] for i in part]
            start = time.perf_counter()
            rollout = self.policy.sample(
                [self.prompts[id(r)] for r in chunk],
                n,
                max_new_tokens=self.res.max_completion_tokens,
                temperature=self.options.temperature,
            )
            generation += time.perf_counter() - start
            items = [r.item for r in chunk for _ in range(n)]
            samples = [to_sample(text, i) for i, text in enumerate(rollout.texts)]
            pending.append((chunk, rollout, samples, items, self.grading.submit(samples, items)))
        start = time.perf_counter()
        done, grading = [], 0.0
        for chunk, rollout, samples, items, future in pending:
            result, seconds = future.result()
            result, again = self.grading.regrade(samples, items, result)  # what got no reward, once more
            grading += seconds + again
            done.append((chunk, rollout, result))
        timing = {"generation_s": generation, "grading_s": grading, "grading_wait_s": time.perf_counter() - start}
        return done, timing

    def _train_step(self, step: int) -> tuple[dict[str, Any] | None, int]:
        """The step's metrics and trained tokens; (None, 0) when no sample got a reward (nothing is updated)."""
        started = time.perf_counter()
        res = self.res
        parts, timing = self._generate_and_grade(self._batch(step), res.group_size)
        rewards = [(rollout, result.rewards_or_none()) for _, rollout, result in parts]
        if all(r is None for _, column in rewards for r in column):
            self._ungraded = [result for _, _, result in parts]
            return None, 0
        update_start = time.perf_counter()
        stats = grpo_update(
            self.policy,
            self.optimizer,
            rewards,
            group_size=res.group_size,
            options=self.options,
            reference=self.reference,
        )
        timing["update_s"] = time.perf_counter() - update_start
        timing["step_s"] = time.perf_counter() - started
        data = train_metrics(
            self.grader,
            [result for _, _, result in parts],
            step=step,
            total_steps=res.total_steps,
            completion_tokens=[int(m.sum()) for _, r, _ in parts for m in r.completion_mask],
            stats=stats,
            timing=timing,
        )
        return data, sum(r.tokens for _, r, _ in parts)

    # --- validation, checkpoints, snapshots ------------------------------------------------------------------

    def _evaluate(self, step: int) -> dict[str, Any]:
        import torch

        res = self.res
        parts, results = [], []
        # Validation samples come from their own seeded generator, so evaluating never moves training's RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 7_919 + step)
            for piece in split_range(len(self.valid_rows), math.ceil(len(self.valid_rows) / res.batch_size)):
                done, _ = self._generate_and_grade([self.valid_rows[i] for i in piece], res.eval_samples)
                for chunk, rollout, result in done:
                    results.append(result)
                    parts.append((chunk, rollout.texts, result))
        write_eval_run(eval_run_path(self.dir / "evals", step), step, parts)
        return valid_metrics(self.grader, results)

    def _evaluate_and_record(self, step: int, data: dict[str, Any], trained_tokens: int) -> None:
        valid = self._evaluate(step)
        graders = data.get("graders", {})
        for name, values in valid.pop("graders").items():
            graders.setdefault(name, {}).update(values)
        data.update(valid, graders=graders)
        self.history.append(data)
        if step > 0:
            metrics = {k: v for k, v in data.items() if k in ("step", "train_reward_mean", "valid_reward_mean")}
            ckpt = self.store.save(step, metrics, self.policy.save)
            self.events_log.emit(f"Checkpoint created at step {step}", data={"checkpoint": ckpt.id})
        self._emit_metrics(data)
        self._snapshot_now(step, trained_tokens)
        plot_rewards(self.history, self.dir / "reward_curve.png", title=f"{self.id} ({self.grader.name})")

    def _snapshot_now(self, step: int, trained_tokens: int) -> None:
        import torch

        def write(tmp: Path) -> None:
            self.policy.save(tmp)
            state = {
                "optimizer": self.optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "step": step,
                "trained_tokens": trained_tokens,
                "history": self.history,
                "events_offset": self.events_log.offset(),
            }
            torch.save(state, tmp / TRAINER_STATE)

        self.snapshots.save(step, write)

    def _finish_paused(self, step: int, trained_tokens: int) -> dict[str, Any]:
        self._pause.clear()
        # The event goes before the snapshot so that a resume keeps it (it truncates to the snapshot's offset).
        self.events_log.emit(f"Fine-tuning job paused at step {step}")
        self._snapshot_now(step, trained_tokens)
        self._update(status="paused")
        return self.record

    def _finish_ungraded(self, step: int, trained_tokens: int) -> dict[str, Any]:
        """No sample of `step` got a reward, even graded twice: pause before it (a resume grades them again)."""
        self.events_log.emit(
            f"Step {step}: no sample got a reward, even graded twice (the grading failed, or no grader applied); "
            f"paused before the step: resume to grade its samples again",
            level="warn",
            data={"step": step, **grading_tables(self.grader, self._ungraded)},
        )
        return self._finish_paused(step - 1, trained_tokens)

    def _finish_cancelled(self) -> dict[str, Any]:
        self.events_log.emit("Fine-tuning job cancelled")
        self._update(status="cancelled", finished_at=int(time.time()))
        return self.record

    def _finish_succeeded(self, trained_tokens: int) -> dict[str, Any]:
        publish_dir(self.dir / "final", self.policy.save)
        self._update(
            status="succeeded",
            fine_tuned_model=self.fine_tuned_model,
            trained_tokens=trained_tokens,
            finished_at=int(time.time()),
            estimated_finish=None,
        )
        self.events_log.emit("The job has successfully completed")
        return self.record
