"""The service config: JSON or YAML, paths relative to the file, unknown keys and loop options refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from gradekit.trainer_bridge.service import CONFIG_ENV, ServiceConfig


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "grader.json").write_text("{}")
    settings = {
        "data_dir": "data",
        "base_models": {"small": "models/base", "tiny": "tiny-local"},
        "lambda_graders": {"arn:a": "grader.json", "arn:b": "pkg.mod:grade", "arn:c": {"type": "string_check"}},
    }
    (tmp_path / "service.json").write_text(json.dumps(settings))
    (tmp_path / "service.yaml").write_text("data_dir: data\nbase_models: {small: models/base}\n")
    config = ServiceConfig.load(tmp_path / "service.json")
    assert config.data_dir == tmp_path / "data" and config.db_path == tmp_path / "data" / "service.db"
    assert config.base_models == {"small": str(tmp_path / "models" / "base"), "tiny": "tiny-local"}
    assert config.lambda_graders == {
        "arn:a": str(tmp_path / "grader.json"),
        "arn:b": "pkg.mod:grade",
        "arn:c": {"type": "string_check"},
    }
    assert (config.max_concurrent_jobs, config.start_worker, config.lambda_backend) == (1, True, False)
    assert ServiceConfig.load(tmp_path / "service.yaml").base_models == {"small": str(tmp_path / "models" / "base")}


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert ServiceConfig.from_env() is None
    (tmp_path / "c.json").write_text('{"data_dir": "/srv/gradekit"}')
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "c.json"))
    config = ServiceConfig.from_env()
    assert config is not None and config.data_dir == Path("/srv/gradekit")


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"data_dir": "d", "options": {"groupsize": 4}}, "loop options: group_size"),
        ({"data_dir": "d", "worker": 2}, "Extra inputs are not permitted"),
        ({"data_dir": "d", "max_concurrent_jobs": 0}, "greater than or equal to 1"),
        ({}, "data_dir"),
    ],
)
def test_bad_configs_say_what_is_wrong(settings: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        ServiceConfig.model_validate(settings)


def test_from_env_names_the_variable_the_file_and_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradekit.trainer_bridge.service import ConfigError

    (tmp_path / "c.json").write_text('{"data_dir": "d", "options": {"groupsize": 4}}')
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "c.json"))
    with pytest.raises(ConfigError) as caught:
        ServiceConfig.from_env()
    assert str(caught.value).startswith(
        f"{CONFIG_ENV}: {tmp_path / 'c.json'}: key 'options': LoopOptions.__init__() got an"
    )
    assert "loop options: group_size" in str(caught.value) and "\n" not in str(caught.value)
