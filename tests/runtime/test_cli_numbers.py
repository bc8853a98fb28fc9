"""Every number option of every `gradekit` command is checked by one helper (`number_arg`): one line, exit 2."""

from __future__ import annotations

import argparse

import pytest

from gradekit.runtime.cli import main, number_arg

from .test_cli_mistakes import one_line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["grade", "--chunk-size", "0"], "argument --chunk-size: 0 is not at least 1; see 'gradekit grade --help'"),
        (["grade", "--concurrency", "many"], "argument --concurrency: 'many' is not an integer"),
        (["grade", "--max-error-rate", "nan"], "argument --max-error-rate: 'nan' is not a number"),
        (["serve", "--port", "65536"], "argument --port: 65536 is not between 0 and 65535"),
        (["train", "--n-epochs", "three"], "argument --n-epochs: 'three' is neither 'auto' nor an integer"),
        (["train", "--learning-rate-multiplier", "x"], "argument --learning-rate-multiplier: 'x' is neither"),
        (["train", "--group-size", "2.5"], "argument --group-size: '2.5' is not an integer"),
        (["train", "--seed", "abc"], "argument --seed: 'abc' is not an integer"),
        (["lambda", "invoke", "--timeout", "0"], "argument --timeout: 0 is not at least 1"),
        (["lambda", "deploy", "z.zip", "--memory", "64"], "argument --memory: 64 is not between 128 and 10240"),
        (["lambda", "deploy", "z.zip", "--timeout", "901"], "argument --timeout: 901 is not between 1 and 900"),
    ],
)
def test_a_bad_number_is_one_line_from_every_command(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert one_line(capsys).startswith(expected)


def test_number_arg_values() -> None:
    auto_float = number_arg(float, low=0, words=("auto",))
    assert auto_float("auto") == "auto"
    assert auto_float("0.5") == 0.5 and isinstance(auto_float("2"), float)
    assert number_arg(int, low=1)("7") == 7
    for bad in ("inf", "-1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            auto_float(bad)
    with pytest.raises(argparse.ArgumentTypeError, match=r"^5 is not at most 4$"):
        number_arg(int, high=4)("5")
