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

`RFTJob` is the job runner (the job object, events, checkpoints, snapshots, pause/resume/cancel, eval runs); the
training step itself (policy, optimizer, reference model, sampling, grading, the GRPO update) is `Trainer`.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradekit.graders import Env, Grader, validate
from gradekit.graders.api import GraderLike
from gradekit.runtime.engine import Backend

from ..models.catalogue import auto_options, default_model, display_name, unavailable
from ..models.policy import Policy
from .atomic_files import publish_dir, read_json, write_json
from .checkpoints import Checkpoint, CheckpointStore, Snapshots
from .data import DataError, Row, load_rows
from .evals import eval_run_path, write_eval_run
from .events import EventLog, read_events
from .hyperparameters import Hyperparameters, LoopOptions, Resolved
from .metrics import add_validation_time, estimated_finish, grading_tables
from .plot import plot_rewards
from .trainer import StepOutcome, Trainer, batch_rows

if TYPE_CHECKING:
    from torch.optim import Optimizer
    from transformers import PreTrainedModel

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


@dataclass
class _Run:
    """What a run carries from step to step besides the trainer: data, counters, history and step times."""

    train: list[Row]
    valid: list[Row]
    step: int = 0
    trained_tokens: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)  # each training step's wall time
    valid_seconds: list[float] = field(default_factory=list)  # each validation's (run, checkpoint, snapshot, plot)

    def seed_times(self) -> None:
        """Start the step times of a resumed run from the steps its history recorded.

        A recorded `valid_s` is the validation run alone, without its checkpoint and snapshot: the first estimates
        after a resume can be a little early, until this run's own validations are timed.
        """
        own = [h.get("gradekit", {}) for h in self.history]
        self.step_seconds = [g["step_s"] for g in own if "step_s" in g]
        self.valid_seconds = [g["valid_s"] for g in own if "valid_s" in g]


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
        self.trainer: Trainer | None = None  # built by run(), once the model is loaded
        self._events: EventLog | None = None
        self._store = CheckpointStore(self.dir / "checkpoints", self.id)
        self._snapshots = Snapshots(self.dir / "snapshots")

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
        return self._store.list()

    def _trainer(self) -> Trainer:
        if self.trainer is None:
            raise AttributeError("the job's model is loaded by run(): no policy, optimizer or settings before it")
        return self.trainer

    @property
    def policy(self) -> Policy:
        """The model being trained (after `run()` has loaded it)."""
        return self._trainer().policy

    @property
    def optimizer(self) -> Optimizer:
        """The policy's optimizer (after `run()` has built it)."""
        return self._trainer().optimizer

    @property
    def res(self) -> Resolved:
        """The run's resolved hyperparameters and loop settings (after `run()` has resolved them)."""
        return self._trainer().settings

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
        events = self._events = EventLog(self.dir / "events.jsonl", listener=self.listener)
        self._store.prepare()
        self._snapshots.prepare()
        (self.dir / "evals").mkdir(exist_ok=True)
        if fresh:
            events.emit(f"Created fine-tuning job: {self.id}")
            # A run killed before its first snapshot starts over from here, without repeating its events.
            self.record["gradekit"]["events_start"] = events.offset()
            self._update()
        elif self._snapshots.current() is None:
            events.truncate(self.record["gradekit"].get("events_start", 0))
        try:
            return self._run()
        except JobError as e:
            self._fail(e)
            raise
        except Exception as e:
            error = JobError("training_error", f"{type(e).__name__}: {e}")
            self._fail(error)
            raise error from e

    @property
    def _log(self) -> EventLog:
        assert self._events is not None, "run() opens the events log"
        return self._events

    def _fail(self, error: JobError) -> None:
        self._log.emit(f"Fine-tuning job failed: {error.message}", level="error")
        self._update(
            status="failed",
            error={"code": error.code, "message": error.message, "param": error.param},
            finished_at=int(time.time()),
        )

    def _load_data(self) -> tuple[list[Row], list[Row]]:
        self._update(status="validating_files")
        self._log.emit("Validating training file and validation file")
        try:
            train = load_rows(self.training_file, what="training file")
        except (DataError, OSError) as e:
            raise JobError("invalid_training_file", str(e), "training_file") from None
        try:
            valid = load_rows(self.validation_file, what="validation file")
        except (DataError, OSError) as e:
            raise JobError("invalid_validation_file", str(e), "validation_file") from None
        return train, valid

    def _load_policy(self, snapshot: Path | None, rows: list[Row]) -> Policy:
        if snapshot is not None:
            policy = Policy.load(snapshot)
            policy.name = display_name(self.model)
            return policy
        return Policy.load(self.model, texts=[t for row in rows for t in row.texts], seed=self.seed)

    def _resolve(self, n_train: int, policy: Policy) -> Resolved:
        """The run's concrete settings: loop options left "auto" are chosen for the loaded model's size."""
        self.options = self.options.with_auto(auto_options(policy.n_parameters))
        try:
            return self.hyperparameters.resolve(n_train, self.options)
        except ValueError as e:
            raise JobError("invalid_hyperparameters", str(e), "hyperparameters") from None

    def _reference(self, policy: Policy, snapshot: Path | None) -> PreTrainedModel | None:
        """The frozen model the KL term pulls towards: the policy as the run began, kept in `reference/`."""
        if self.options.kl_beta <= 0:
            return None
        ref_dir = self.dir / "reference"
        if snapshot is None:
            publish_dir(ref_dir, policy.save)
        ref = Policy.load(ref_dir).model
        ref.eval().requires_grad_(False)
        return ref

    def _run(self) -> dict[str, Any]:
        import torch

        train, valid = self._load_data()
        problem = unavailable(self.model)
        if problem is not None:
            raise JobError("model_not_found", problem, "model")
        snapshot = self._snapshots.current()
        policy = self._load_policy(snapshot, [*train, *valid])
        settings = self._resolve(len(train), policy)
        self.record["gradekit"]["resolved"] = settings.to_json()
        if self.options.lora_rank > 0 and not policy.is_lora:
            policy.add_lora(self.options.lora_rank, self.options.lora_alpha)
        reference = self._reference(policy, snapshot)
        trainer = self.trainer = Trainer(
            policy, self.grader, settings, self.options, reference=reference, env=self.env, backend=self.backend
        )
        try:
            run = _Run(train, valid)
            if snapshot is not None:
                self._restore(run, snapshot)
            else:
                torch.manual_seed(self.seed)
            self._update(status="running", error=None)
            self._log.emit(f"Files validated; training {policy.name} for {settings.total_steps} steps")
            return self._loop(run)
        finally:
            trainer.close()

    def _restore(self, run: _Run, snapshot: Path) -> None:
        """Continue from `snapshot`: optimizer, random state, counters; drop what was written after it."""
        import torch

        state = torch.load(snapshot / TRAINER_STATE, weights_only=True)
        self._trainer().optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        run.step, run.trained_tokens, run.history = state["step"], state["trained_tokens"], state["history"]
        run.seed_times()
        # Whatever was written after the snapshot belongs to steps this run repeats.
        self._log.truncate(state["events_offset"])
        self._store.drop_after(run.step)
        for path in (self.dir / "evals").glob("step-*.jsonl"):
            if int(path.stem.removeprefix("step-")) > run.step:
                path.unlink()
        self._log.emit(f"Fine-tuning job resumed from step {run.step}")

    def _loop(self, run: _Run) -> dict[str, Any]:
        import torch
        from tqdm.auto import tqdm

        trainer = self._trainer()
        res = trainer.settings
        if run.step == 0 and not run.history:
            self._validate(run, {"step": 0, "total_steps": res.total_steps})
        bar = tqdm(total=res.total_steps, initial=run.step, unit="step", disable=not self.progress, desc=self.id)
        try:
            while run.step < res.total_steps:
                if self._cancel.is_set():
                    return self._finish_cancelled()
                if self._pause.is_set():
                    return self._finish_paused(run)
                started = time.perf_counter()
                step = run.step + 1
                rng = torch.get_rng_state()
                rows = batch_rows(
                    run.train, step, seed=self.seed, batch_size=res.batch_size, steps_per_epoch=res.steps_per_epoch
                )
                outcome = trainer.step(rows, step=step)
                if outcome.data is None:  # no sample got a reward: pause before the step, to grade them again
                    torch.set_rng_state(rng)
                    return self._finish_ungraded(run, step, outcome)
                run.step, run.trained_tokens = step, run.trained_tokens + outcome.trained_tokens
                run.step_seconds.append(time.perf_counter() - started)
                if step % res.eval_interval == 0 or step == res.total_steps:
                    self._validate(run, outcome.data)
                else:
                    self._publish(run, outcome.data)
                bar.update(1)
                bar.set_postfix(self._postfix(run), refresh=False)
        finally:
            bar.close()
        return self._finish_succeeded(run)

    def _postfix(self, run: _Run) -> dict[str, str]:
        last = run.history[-1]
        valid = next((h["valid_reward_mean"] for h in reversed(run.history) if "valid_reward_mean" in h), None)
        out = {"train": f"{last.get('train_reward_mean', float('nan')):.3f}"}
        if valid is not None:
            out["valid"] = f"{valid:.3f}"
        own = last.get("gradekit", {})
        if own.get("sampled_tokens_per_s") is not None:
            out["sampling"] = f"{own['sampled_tokens_per_s']:.0f} tok/s"
        if own.get("trained_tokens_per_s") is not None:
            out["training"] = f"{own['trained_tokens_per_s']:.0f} tok/s"
        return out

    def _publish(self, run: _Run, data: dict[str, Any]) -> None:
        """Record a step's metrics: its history entry, the job's counters and finish estimate, its event."""
        run.history.append(data)
        if data["step"] > 0:
            res = self._trainer().settings
            finish = estimated_finish(
                time.time(),
                run.step_seconds,
                run.valid_seconds,
                step=data["step"],
                total_steps=res.total_steps,
                eval_interval=res.eval_interval,
            )
            data.setdefault("gradekit", {})["estimated_finish"] = finish
            # Before the event, so that a listener (the service's worker) copies the estimate the event carries.
            self._update(trained_tokens=run.trained_tokens, estimated_finish=finish)
        self._emit_metrics(data)

    def _emit_metrics(self, data: dict[str, Any]) -> None:
        step = data["step"]
        parts = [f"Step {step}/{data['total_steps']}:"]
        if "train_reward_mean" in data:
            parts.append(f"train_reward_mean={data['train_reward_mean']:.4f}")
        if "valid_reward_mean" in data:
            parts.append(f"valid_reward_mean={data['valid_reward_mean']:.4f}")
        self._log.emit(" ".join(parts), type="metrics", data=data)

    # --- validation, checkpoints, snapshots ------------------------------------------------------------------

    def _validate(self, run: _Run, data: dict[str, Any]) -> None:
        """Evaluate on the validation file at `data["step"]`; write its eval run, checkpoint, event and snapshot."""
        started = time.perf_counter()
        step = data["step"]
        parts, valid = self._trainer().evaluate(run.valid, seed=self.seed * 7_919 + step)
        write_eval_run(
            eval_run_path(self.dir / "evals", step), step, [(p.rows, p.rollout.texts, p.result) for p in parts]
        )
        graders = data.get("graders", {})
        for name, values in valid.pop("graders").items():
            graders.setdefault(name, {}).update(values)
        data.update(valid, graders=graders)
        add_validation_time(data, time.perf_counter() - started)
        if step > 0:
            metrics = {k: v for k, v in data.items() if k in ("step", "train_reward_mean", "valid_reward_mean")}
            ckpt = self._store.save(step, metrics, self.policy.save)
            self._log.emit(f"Checkpoint created at step {step}", data={"checkpoint": ckpt.id})
        self._publish(run, data)
        self._snapshot_now(run)
        plot_rewards(run.history, self.dir / "reward_curve.png", title=f"{self.id} ({self.grader.name})")
        run.valid_seconds.append(time.perf_counter() - started)

    def _snapshot_now(self, run: _Run) -> None:
        import torch

        trainer = self._trainer()

        def write(tmp: Path) -> None:
            trainer.policy.save(tmp)
            state = {
                "optimizer": trainer.optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "step": run.step,
                "trained_tokens": run.trained_tokens,
                "history": run.history,
                "events_offset": self._log.offset(),
            }
            torch.save(state, tmp / TRAINER_STATE)

        self._snapshots.save(run.step, write)

    def _finish_paused(self, run: _Run) -> dict[str, Any]:
        self._pause.clear()
        # The event goes before the snapshot so that a resume keeps it (it truncates to the snapshot's offset).
        self._log.emit(f"Fine-tuning job paused at step {run.step}")
        self._snapshot_now(run)
        self._update(status="paused")
        return self.record

    def _finish_ungraded(self, run: _Run, step: int, outcome: StepOutcome) -> dict[str, Any]:
        """No sample of `step` got a reward, even graded twice: pause before it (a resume grades them again)."""
        self._log.emit(
            f"Step {step}: no sample got a reward, even graded twice (the grading failed, or no grader applied); "
            f"paused before the step: resume to grade its samples again",
            level="warn",
            data={"step": step, **grading_tables(self.grader, outcome.results)},
        )
        return self._finish_paused(run)

    def _finish_cancelled(self) -> dict[str, Any]:
        self._log.emit("Fine-tuning job cancelled")
        self._update(status="cancelled", finished_at=int(time.time()))
        return self.record

    def _finish_succeeded(self, run: _Run) -> dict[str, Any]:
        publish_dir(self.dir / "final", self.policy.save)
        self._update(
            status="succeeded",
            fine_tuned_model=self.fine_tuned_model,
            trained_tokens=run.trained_tokens,
            finished_at=int(time.time()),
            estimated_finish=None,
        )
        self._log.emit("The job has successfully completed")
        return self.record
