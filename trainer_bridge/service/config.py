"""The fine-tuning service's settings: data folder, base models, Lambda ARNs mapped to graders, worker knobs.

Read from a JSON or YAML file named by `$GRADEKIT_FINETUNE_CONFIG` (relative paths in it are relative to the
file), or given as a `ServiceConfig` in `app.state.fine_tuning_config` before the app starts. Without either,
`gradekit serve` uses `ServiceConfig.default()`: data in `./gradekit-data`, the default base models, no Lambda
mappings.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..models.catalogue import CATALOGUE

__all__ = ["CONFIG_ENV", "DEFAULT_DATA_DIR", "ConfigError", "ServiceConfig"]

#: The environment variable naming the service's config file; without it `gradekit serve` uses the default
#: config, and an app made by `create_app` without a config on `app.state` answers 404 on these routes.
CONFIG_ENV = "GRADEKIT_FINETUNE_CONFIG"
#: The data folder of the default config, under the working directory.
DEFAULT_DATA_DIR = "gradekit-data"


class ConfigError(ValueError):
    """A config file that cannot be used: one line naming the file, the key and what is wrong."""


def _problem(error: dict[str, Any], known: list[str]) -> str:
    """One validation error as `key 'a.b': what is wrong` (an unknown key gets the nearest known one)."""
    key = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
        import difflib

        near = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        return f"unknown key {key!r} ({hint}known keys: {', '.join(known)})"
    if error["type"] == "missing":
        return f"key {key!r} is required"
    return f"key {key!r}: {error['msg'].removeprefix('Value error, ')}"


class ServiceConfig(BaseModel):
    """Settings of the local fine-tuning service (every field has a default but `data_dir`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(description="where the database, uploaded files and job runs live")
    base_models: dict[str, str] = Field(
        default_factory=dict,
        description="more base models: the name clients use -> a catalogue name, a local Hugging Face model folder "
        "or a Hub id (the installed catalogue models, smollm2-135m-instruct and tiny-local, are always served)",
    )
    lambda_graders: dict[str, Any] = Field(
        default_factory=dict,
        description="Lambda function ARN -> the grader it runs here: a .json/.yaml path, module:function, or JSON",
    )
    lambda_backend: bool = Field(
        False, description="grade ARNs not in lambda_graders by invoking the deployed Lambda (AWS credentials)"
    )
    max_concurrent_jobs: int = Field(
        1,
        ge=1,
        description="jobs trained at once (threads of the one worker process, sharing torch's random state, so "
        "concurrent runs do not reproduce exactly); the rest wait as `queued`",
    )
    start_worker: bool = Field(True, description="False serves the API only: jobs stay queued")
    options: dict[str, Any] = Field(default_factory=dict, description="gradekit loop options (LoopOptions fields)")
    poll_interval: float = Field(0.2, gt=0, description="seconds between the worker's looks at the database")
    shutdown_grace: float = Field(5.0, ge=0, description="seconds a stopping worker may take to pause its jobs")
    max_worker_deaths: int = Field(
        3,
        ge=1,
        description="a job fails once the worker process has died this many times while running it (the server "
        "restarts the worker after each death and resumes the job from its last snapshot until then)",
    )
    progress_interval: float = Field(
        10.0, ge=0, description="seconds between the server's progress lines of a running job (0: none)"
    )
    inference_cache: int = Field(2, ge=1, description="models kept loaded for inference")
    max_inference_tokens: int = Field(512, ge=1, description="cap on max_tokens of inference requests")

    @field_validator("options")
    @classmethod
    def _known_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        from ..loop.hyperparameters import LoopOptions

        try:
            LoopOptions(**options)
        except TypeError as e:
            known = ", ".join(f.name for f in fields(LoopOptions))
            raise ValueError(f"{e} (loop options: {known})") from None
        return options

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ServiceConfig:
        """The config in a JSON or YAML file (relative paths resolved against its folder); `ConfigError` if bad."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{file}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{file}: cannot read it: {e.strerror if isinstance(e, OSError) else e}") from None
        if file.suffix.lower() in (".yaml", ".yml"):
            import yaml

            try:
                raw = yaml.safe_load(text)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                raise ConfigError(f"{file}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
        else:
            try:
                raw = json.loads(text)
            except ValueError as e:
                hint = " (a YAML config needs a .yaml or .yml name)" if file.suffix.lower() != ".json" else ""
                raise ConfigError(f"{file}: not valid JSON: {e}{hint}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{file}: the config must be an object, not {type(raw).__name__}")
        try:
            config = cls.model_validate(raw)
        except ValidationError as e:
            known = list(cls.model_fields)
            problems = "; ".join(_problem(dict(err), known) for err in e.errors(include_url=False))
            raise ConfigError(f"{file}: {problems}") from None
        return config.relative_to(file.resolve().parent)

    @classmethod
    def default(cls) -> ServiceConfig:
        """The config without a file: data in `./gradekit-data` (made absolute now), default base models."""
        return cls(data_dir=Path.cwd() / DEFAULT_DATA_DIR)

    @classmethod
    def from_env(cls) -> ServiceConfig | None:
        """The config named by `$GRADEKIT_FINETUNE_CONFIG`, or None when it is unset; `ConfigError` if bad."""
        path = os.environ.get(CONFIG_ENV)
        if not path:
            return None
        try:
            return cls.load(path)
        except ConfigError as e:
            raise ConfigError(f"{CONFIG_ENV}: {e}") from None

    def relative_to(self, root: Path) -> ServiceConfig:
        """This config with relative file paths made absolute under `root`."""

        def resolve(value: str) -> str:
            path = Path(value)
            looks_like_path = value.endswith((".json", ".yaml", ".yml")) or (root / path).is_dir()
            return str(root / path) if looks_like_path and not path.is_absolute() else value

        models = {k: v if v in CATALOGUE else resolve(v) for k, v in self.base_models.items()}
        graders = {k: resolve(v) if isinstance(v, str) else v for k, v in self.lambda_graders.items()}
        data_dir = self.data_dir if self.data_dir.is_absolute() else root / self.data_dir
        return self.model_copy(update={"data_dir": data_dir, "base_models": models, "lambda_graders": graders})

    @property
    def db_path(self) -> Path:
        """The SQLite database."""
        return self.data_dir / "service.db"

    @property
    def files_dir(self) -> Path:
        """Uploaded files, one `<file id>.jsonl` each."""
        return self.data_dir / "files"

    @property
    def jobs_dir(self) -> Path:
        """Job runs, one `<job id>/` folder each (an `RFTJob` output folder)."""
        return self.data_dir / "jobs"
