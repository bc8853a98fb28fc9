"""Model names the service knows: base models, each succeeded job's model, each kept checkpoint.

```
<base>                                   a catalogue model installed here (smollm2-135m-instruct, tiny-local) or a
                                         name in the config's base_models (-> a catalogue name, model folder or Hub id)
ft:<base>:<suffix or gradekit>:<job>     a succeeded job's final model (<run>/final)
ft:...:<job>:ckpt-step-<N>               a kept checkpoint of that job (<run>/checkpoints/step-N), even mid-run
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models.catalogue import available
from .config import ServiceConfig
from .store import JobRow, Store

__all__ = ["CHECKPOINT_MARK", "ModelRef", "Models", "kept_checkpoints"]

CHECKPOINT_MARK = ":ckpt-step-"
_STARTED = 0  # base models have no creation time of their own


@dataclass(frozen=True)
class ModelRef:
    """A servable model: its public name, where its weights are (a catalogue name, a folder), who owns it."""

    name: str
    path: str
    owned_by: str
    created: int
    base: str  # the base model's name (itself for a base model)

    def to_json(self) -> dict[str, Any]:
        """OpenAI's `model` object."""
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": self.owned_by}


def kept_checkpoints(run_dir: Path) -> list[dict[str, Any]]:
    """The checkpoint.json records of a run's kept checkpoints, newest step first (read-only: safe mid-run)."""
    found = []
    for meta in (run_dir / "checkpoints").glob("step-*/checkpoint.json"):
        try:
            record = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # being pruned or replaced right now
            continue
        found.append({**record, "path": str(meta.parent)})
    return sorted(found, key=lambda c: c["step_number"], reverse=True)


class Models:
    """Resolves and lists model names."""

    def __init__(self, config: ServiceConfig, store: Store) -> None:
        self.config = config
        self.store = store

    def run_dir(self, job_id: str) -> Path:
        """The run folder of a job."""
        return self.config.jobs_dir / job_id

    def _fine_tuned(self, row: JobRow) -> ModelRef:
        return ModelRef(
            row.model_name,
            str(self.run_dir(row.id) / "final"),
            row.object.get("organization_id", "user"),
            int(row.object.get("finished_at") or row.object["created_at"]),
            str(row.spec["base"]),
        )

    def base_models(self) -> dict[str, str]:
        """Base model name -> what `catalogue.load_model` loads: the config's names, then the installed catalogue."""
        return {**self.config.base_models, **{n: n for n in available() if n not in self.config.base_models}}

    def resolve(self, name: str) -> ModelRef | None:
        """The model called `name`, or None."""
        bases = self.base_models()
        if name in bases:
            return ModelRef(name, bases[name], "gradekit", _STARTED, name)
        if not name.startswith("ft:"):
            return None
        if CHECKPOINT_MARK in name:
            model, _, step = name.rpartition(CHECKPOINT_MARK)
            row = self.store.job_by_model(model)
            if row is None or not step.isdigit():
                return None
            path = self.run_dir(row.id) / "checkpoints" / f"step-{int(step):06d}"
            if not (path / "checkpoint.json").is_file():
                return None
            created = int(json.loads((path / "checkpoint.json").read_text())["created_at"])
            return ModelRef(name, str(path), row.object.get("organization_id", "user"), created, str(row.spec["base"]))
        row = self.store.job_by_model(name)
        if row is None or row.status != "succeeded":
            return None
        return self._fine_tuned(row)

    def list(self) -> list[ModelRef]:
        """Every servable model: base models, then each job's model and checkpoints (oldest job first)."""
        refs = [ModelRef(n, p, "gradekit", _STARTED, n) for n, p in self.base_models().items()]
        for row in self.store.jobs():
            if row.status == "succeeded":
                refs.append(self._fine_tuned(row))
            for ckpt in kept_checkpoints(self.run_dir(row.id)):
                name = f"{row.model_name}{CHECKPOINT_MARK}{ckpt['step_number']}"
                owner = row.object.get("organization_id", "user")
                refs.append(ModelRef(name, ckpt["path"], owner, int(ckpt["created_at"]), str(row.spec["base"])))
        return refs
