"""The `gradekit` command line: validate and run graders, grade datasets, serve the HTTP API.

```
gradekit validate GRADER
gradekit run GRADER --sample TEXT [--item JSON]
gradekit grade --grader G --data data.jsonl --samples samples.jsonl --out results.jsonl [--resume]
gradekit grade --grader G --data data.jsonl --sample-from BASE_URL --model NAME --out results.jsonl
gradekit grade ... [--backend lambda:ARN] [--max-error-rate 0.5]
gradekit serve [--host 127.0.0.1] [--port 8000] [--api-key KEY | --allow-open] [--grader GRADER]
gradekit --version
```

GRADER is a `.json`/`.yaml` file, JSON text, or a `module:function` reference (see `load_grader`).

Files `grade` writes: only `--out`, the results JSONL. It is written incrementally, in place (one line per
graded row, flushed every half second; truncated first unless `--resume`, appended to with it), so an
interrupted run keeps every row it finished and `--resume` goes on from there; under `--sample-from`
each line also keeps the answer the model gave, `sample` (its text) and `sample_tool_calls` (if any).
An `--out` that is the `--data`, `--samples` or `--grader` file (same path, symlink or hard link) is refused
before anything is read or written. A run whose grading or sampling service fails stops early with the cause (a refused
connection or 401/403 from `--sample-from` at once; the first `FAIL_FAST_ROWS` rows failing alike with
an infrastructure flag), writing none of those rows; a finished run in which a larger share of rows failed
than `--max-error-rate` (default `MAX_ERROR_RATE`) exits 1.

Nothing a row holds fails the run: a line that is not JSON (or nests too deeply to parse)
is graded as a `sample_parse_error` naming its file and line, and every output is encoded safely (lone
surrogates replaced, strict JSON).

Plugins: upper layers add subcommands without this module importing them. Every entry point in the group
`gradekit.commands` names a callable `register(subparsers) -> None`, given the `argparse` sub-parsers
action: it calls `subparsers.add_parser(...)`, adds its options, and sets `func` with
`parser.set_defaults(func=handler)`, where `handler(args: argparse.Namespace) -> int | None` returns the exit
status (None means 0). A plugin that fails to load is logged and skipped.

Mistakes: every error the user can fix (a usage error, a missing or malformed file, a bad option value, a
failing grading or sampling service) is ONE line on stderr, `gradekit: error: <what>` naming the file, key or
option, and a non-zero exit status, never a traceback. Plugins raise `CLIError` (or call `error_line`) for
theirs; `main` prints it. A closed stdout (`gradekit evals diff A B | head`) ends the command quietly (141).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from gradekit.graders import Grader, GraderValidationError, GradingError, RunResult, run, validate
from gradekit.graders.aggregate import Aggregate
from gradekit.graders.api import GRADER_FILE_SUFFIXES
from gradekit.graders.samples import make_sample
from gradekit.runtime.engine import Engine, Graded, Pair, load_backend
from gradekit.runtime.jsonl import (
    TOO_DEEP,
    JsonlError,
    JsonlWriter,
    Line,
    clean_text,
    count_lines,
    dumps,
    iter_lines,
    loads,
    model_json,
    scan_complete_lines,
    write_text,
)
from gradekit.runtime.report import print_summary

if TYPE_CHECKING:
    import openai

__all__ = [
    "COMMANDS_GROUP",
    "ERROR_PREFIX",
    "FAIL_FAST_ROWS",
    "MAX_ERROR_RATE",
    "CLIError",
    "build_parser",
    "error_line",
    "load_grader_arg",
    "main",
    "number_arg",
    "os_error_text",
    "version_text",
]

logger = logging.getLogger(__name__)

#: Entry point group of command plugins: each names `register(subparsers) -> None`.
COMMANDS_GROUP = "gradekit.commands"
#: The folder of run folders `serve --runs` hands to the fine-tuning routes (gradekit.trainer_bridge.service.runs).
RUNS_ENV = "GRADEKIT_RUNS"


#: What every error line of the command line starts with.
ERROR_PREFIX = "gradekit: error: "

#: Exit status after stdout was closed by the reader (`| head`): 128 + SIGPIPE, as a killed `cat` has.
BROKEN_PIPE_STATUS = 141


class CLIError(Exception):
    """A mistake the CLI reports as one line, `gradekit: error: <message>`, with exit status `status` (1)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def error_line(message: str) -> str:
    """`message` as the CLI's one error line: the shared prefix, newlines folded, cut when very long."""
    folded = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    return f"{ERROR_PREFIX}{_shortened(folded)}\n"


def version_text() -> str:
    """`gradekit <version>`, the installed distribution's version (from importlib.metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"gradekit {version('gradekit')}"
    except PackageNotFoundError:
        return "gradekit (version unknown: not installed)"


def _say(message: str) -> None:
    """A note on stderr that does not tear a progress bar apart."""
    message = clean_text(message)
    try:
        from tqdm import tqdm
    except ImportError:
        write_text(sys.stderr, message + "\n")
        sys.stderr.flush()
    else:
        tqdm.write(message, file=sys.stderr)


def _out(text: str) -> None:
    """Print `text` on stdout, safely encoded."""
    write_text(sys.stdout, text + "\n")


def _object(text: str, what: str) -> dict[str, Any]:
    try:
        value = loads(text)
    except ValueError as e:
        raise CLIError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise CLIError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


# --- validate, run ----------------------------------------------------------------------------------------


def load_grader_arg(text: str) -> Grader:
    """The grader a GRADER argument names (`validate`); a `CLIError` when it names a file that is not there."""
    path = Path(text)
    if not text.lstrip().startswith("{") and path.suffix.lower() in GRADER_FILE_SUFFIXES:
        if not path.exists():
            raise CLIError(f"grader file {text} does not exist")
        if path.is_dir():
            raise CLIError(f"grader file {text} is a directory")
    return validate(text)


def _cmd_validate(args: argparse.Namespace) -> int:
    _out(dumps(load_grader_arg(args.grader).to_json(), indent=2))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    grader = load_grader_arg(args.grader)
    item = _object(args.item, "--item") if args.item is not None else None
    _out(model_json(run(grader, args.sample, item), indent=2))
    return 0


# --- grade ------------------------------------------------------------------------------------------------


@dataclass
class _Done:
    """Rows already in the results file: a contiguous prefix plus any stragglers (constant memory when ordered)."""

    prefix: int = 0
    extra: set[int] = field(default_factory=set)

    def add(self, row: int) -> bool:
        """Mark `row` done; False when it already was."""
        if row in self:
            return False
        if row == self.prefix:
            self.prefix += 1
            while self.prefix in self.extra:
                self.extra.remove(self.prefix)
                self.prefix += 1
        else:
            self.extra.add(row)
        return True

    def __contains__(self, row: int) -> bool:
        return row < self.prefix or row in self.extra

    def __len__(self) -> int:
        return self.prefix + len(self.extra)

    @property
    def last(self) -> int:
        """The highest row done (-1 when none)."""
        return max(self.extra, default=self.prefix - 1)


def _result_line(line: Line, grader: Grader) -> tuple[int, RunResult]:
    obj = line.parse()
    if not isinstance(obj, dict) or not isinstance(obj.get("row"), int) or obj["row"] < 0:
        raise JsonlError(line.path, line.number, "not a results line: no non-negative integer `row`")
    row = obj.pop("row")
    try:
        result = RunResult.model_validate(obj)
    except ValidationError as e:
        raise JsonlError(line.path, line.number, f"not a results line: {e.error_count()} invalid field(s)") from None
    if result.metadata.name != grader.name:
        raise CLIError(
            f"{line.where}: written by grader {result.metadata.name!r}, not {grader.name!r}; "
            "grade into another file, or drop --resume to start over"
        )
    return row, result


def _resume(out: Path, aggregate: Aggregate, grader: Grader) -> _Done:
    """Fold the finished rows of `out` into `aggregate`; cut off a last line a killed run left unfinished."""
    done = _Done()
    end = 0
    lines = scan_complete_lines(out)
    for line, line_end in lines:
        try:
            row, result = _result_line(line, grader)
        except JsonlError as e:
            if next(lines, None) is not None:  # damage in the middle is not a cut-short write
                raise CLIError(f"{e}; the results file is damaged: fix it or grade into a new file") from None
            break
        if not done.add(row):
            raise CLIError(f"{line.where}: row {row} appears twice")
        aggregate.add_result(result)
        end = line_end
    size = out.stat().st_size
    if size > end:
        os.truncate(out, end)
        _say(f"gradekit: {out}: dropped an unfinished last line ({size - end} bytes); it will be graded again")
    _say(f"gradekit: resuming: {len(done)} row(s) already graded in {out}")
    return done


def _mismatch(data: Path, n_data: int, samples: Path, n_samples: int) -> CLIError:
    return CLIError(
        f"{samples} has {n_samples} sample line(s) but {data} has {n_data} row(s): "
        "give exactly one sample per data row, in the same order"
    )


def _item(line: Line) -> tuple[dict[str, Any] | None, GradingError | None]:
    """A data row as the grader's `item`, or the error that fails it."""
    try:
        row = line.parse()
    except JsonlError as e:
        return None, GradingError("sample_parse_error", f"data row {e}")
    if not isinstance(row, dict):
        return None, GradingError(
            "sample_parse_error", f"{line.where}: data row is a {type(row).__name__}, not an object"
        )
    return row, None


def _sample(line: Line) -> Any:
    try:
        return line.parse()
    except JsonlError as e:
        return GradingError("sample_parse_error", str(e))


def _failed(error: GradingError) -> GradingError:
    _say(f"gradekit: {error.message}")
    return error


#: A row handed to the engine: its number, and the fields its results line keeps besides the result (the sample).
_Row = tuple[int, dict[str, Any] | None]


def _file_pairs(data: Path, samples: Path, done: _Done, rows: deque[_Row]) -> Iterator[Pair]:
    """(sample, item) per data row not yet done, read lazily from both files in step."""
    data_lines, sample_lines = iter_lines(data), iter_lines(samples)
    n = 0
    for row, (d, s) in enumerate(zip_longest(data_lines, sample_lines)):
        if d is None:
            raise _mismatch(data, row, samples, row + 1 + sum(1 for _ in sample_lines))
        if s is None:
            raise _mismatch(data, row + 1 + sum(1 for _ in data_lines), samples, row)
        n = row + 1
        if row in done:
            continue
        item, error = _item(d)
        sample = _sample(s)
        if error is None and isinstance(sample, GradingError):
            error = sample
        rows.append((row, None))
        yield (_failed(error) if error is not None else sample), item
    _check_done(done, data, n)


def _check_done(done: _Done, data: Path, n: int) -> None:
    if done.last >= n:
        raise CLIError(f"the results file has row {done.last} but {data} has only {n} row(s)")


#: Rows that, failing alike from the first row on, stop a run: its grading or sampling service is down.
FAIL_FAST_ROWS = 20

#: Default of `--max-error-rate`: a run in which more than half of the rows failed exits 1.
MAX_ERROR_RATE = 0.5


class _Breaker:
    """Stops a run whose first calls all fail alike (refused, no credentials, 401/403, a missing function)."""

    def __init__(self, where: str, window: int = FAIL_FAST_ROWS) -> None:
        self.where = where
        self.window = window
        self.settled = False  # a call worked, or calls failed differently: the service is up
        self.cause: str | None = None
        self.count = 0

    def ok(self) -> None:
        """A call worked."""
        self.settled = True

    def failed(self, cause: str) -> None:
        """A call failed with `cause`; a `CLIError` once the first `window` calls all failed with it."""
        if self.settled:
            return
        if self.cause is not None and cause != self.cause:
            self.settled = True
            return
        self.cause = cause
        self.count += 1
        if self.count >= self.window:
            raise self._error(f"the first {self.count} rows")

    def finish(self) -> None:
        """At the end of the input: a `CLIError` when every call failed alike (fewer than `window` rows)."""
        if not self.settled and self.count:
            raise self._error(f"all {self.count} row(s)")

    def _error(self, rows: str) -> CLIError:
        return CLIError(f"{self.where}: {rows} failed alike, so the run stopped: {self.cause}")


def _root_cause(error: BaseException) -> str:
    """The innermost cause's text (`[Errno 111] Connection refused`, not `Connection error.`)."""
    seen: set[int] = set()
    while error.__cause__ is not None and id(error.__cause__) not in seen:
        seen.add(id(error))
        error = error.__cause__
    return str(error) or type(error).__name__


def _fatal_sampling_error(error: Exception, base_url: str) -> CLIError | None:
    """A `CLIError` when `error` means no row can be sampled: the endpoint refuses us or cannot be reached."""
    import openai

    where = f"--sample-from {base_url}"
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        body = error.body if isinstance(error.body, dict) else {}
        message = body.get("message") or error.message
        return CLIError(f"{where}: {error.status_code} {message} (the key comes from OPENAI_API_KEY)")
    if isinstance(error, openai.APIConnectionError) and not isinstance(error, openai.APITimeoutError):
        return CLIError(f"{where}: cannot connect: {_root_cause(error)}")
    return None


async def _sample_row(client: openai.AsyncOpenAI, line: Line, model: str, breaker: _Breaker | None = None) -> Pair:
    import openai

    item, error = _item(line)
    if error is not None or item is None:
        return _failed(error or GradingError("sample_parse_error", f"{line.where}: no data row")), None
    request: dict[str, Any] = {"model": model, "messages": item.get("messages")}
    for key in ("response_format", "tools"):
        if key in item:
            request[key] = item[key]
    try:
        completion = await client.chat.completions.create(**request)
    except openai.OpenAIError as e:
        fatal = _fatal_sampling_error(e, str(client.base_url).rstrip("/"))
        if fatal is not None:
            raise fatal from None
        if breaker is not None:
            breaker.failed(f"sampling failed: {e}")
        return _failed(GradingError("sample_parse_error", f"{line.where}: sampling failed: {e}")), item
    if breaker is not None:
        breaker.ok()
    return completion.model_dump(mode="json", exclude_unset=True), item


def _kept_sample(output: Any) -> dict[str, Any] | None:
    """What a results line keeps of a sampled answer: `sample` (its text) and `sample_tool_calls` (if any)."""
    if isinstance(output, GradingError):
        return None  # the row's error says why there is no answer
    try:
        sample = make_sample(output)
    except GradingError:
        return None
    kept: dict[str, Any] = {"sample": sample["output_text"]}
    if sample["output_tools"]:
        kept["sample_tool_calls"] = sample["output_tools"]
    return kept


async def _sampled_pairs(
    data: Path, done: _Done, rows: deque[_Row], *, base_url: str, model: str, concurrency: int
) -> AsyncIterator[Pair]:
    """(completion, item) per data row not yet done, sampled `concurrency` rows at a time, in row order."""
    import openai

    api_key = os.environ.get("OPENAI_API_KEY") or "unused"
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key)
    breaker = _Breaker(f"--sample-from {base_url}")
    window: deque[tuple[int, asyncio.Task[Pair]]] = deque()

    async def sampled() -> Pair:
        row, task = window.popleft()
        pair = await task
        rows.append((row, _kept_sample(pair[0])))
        return pair

    n = 0
    try:
        for row, line in enumerate(iter_lines(data)):
            n = row + 1
            if row in done:
                continue
            window.append((row, asyncio.create_task(_sample_row(client, line, model, breaker))))
            if len(window) >= concurrency:
                yield await sampled()
        while window:
            yield await sampled()
        breaker.finish()
        _check_done(done, data, n)
    finally:
        for _, task in window:
            task.cancel()
        await asyncio.gather(*(task for _, task in window), return_exceptions=True)
        await client.close()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int | None, initial: int, quiet: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, unit="row", file=sys.stderr, disable=quiet, dynamic_ncols=True)


def _infra_failure(graded: Graded) -> tuple[bool, str | None]:
    """(did the grading infrastructure answer?, why it failed this row): (True, None) for a graded row."""
    notes = graded.batch.notes[graded.position]
    if notes is None or not notes.failures:
        return True, None
    # the grading's faults (a Lambda invoke, a model endpoint, a sandbox), as SampleNotes classifies them
    for grader, (flag, message) in notes.failures.items():
        if notes.unrewarded.get(grader) == "grading_error":
            return False, f"{flag}: {message}"
    if all(flag == "sample_parse_error" for flag, _ in notes.failures.values()):
        return False, None  # failed before any call (a bad line, a failed sample): says nothing either way
    return True, None


async def _drain(
    engine: Engine,
    pairs: Iterable[Pair] | AsyncIterable[Pair],
    rows: deque[_Row],
    writer: JsonlWriter,
    bar: Any,
    breaker: _Breaker | None = None,
) -> None:
    """Grade and write every row; the first rows wait for `breaker` to settle, so a stopped run writes none."""
    held: list[str] = []
    async for graded in engine.astream(pairs):
        # The engine keeps input order, so results pair up with the rows the source handed out, first in first out.
        row, kept = rows.popleft()
        fields = "".join(f"{dumps(key)}:{dumps(value)}," for key, value in (kept or {}).items())
        line = f'{{"row":{row},{fields}{model_json(graded.result)[1:]}'
        bar.update(1)
        if breaker is not None and not breaker.settled:
            answered, cause = _infra_failure(graded)
            held.append(line)
            if answered:
                breaker.ok()
            elif cause is not None:
                breaker.failed(cause)  # raises once the first rows all failed alike
            if len(held) >= 4 * breaker.window:
                breaker.ok()  # many rows that say nothing about the service: stop holding them back
            if not breaker.settled:
                continue
        else:
            held.append(line)
        for waiting in held:
            writer.write_line(waiting)
        held.clear()
    if breaker is not None:
        breaker.finish()
    for waiting in held:
        writer.write_line(waiting)


def _same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` name one file (same resolved path, or same device and inode)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return os.path.samefile(a, b)
    except (OSError, RuntimeError):  # a missing file, or a symlink loop
        return False


def _refuse_overwriting_inputs(out: Path, inputs: dict[str, Path | None]) -> None:
    """A `CLIError` when `--out` is one of the inputs: opening it for writing would truncate it before reading."""
    for option, path in inputs.items():
        if path is not None and _same_file(out, path):
            raise CLIError(
                f"--out {out} is the same file as {option} {path}: writing results there would destroy it; "
                "choose another --out"
            )


def _cmd_grade(args: argparse.Namespace) -> int:
    if (args.samples is None) == (args.sample_from is None):
        raise CLIError("give exactly one of --samples and --sample-from")
    if args.sample_from is not None and not args.model:
        raise CLIError("--sample-from needs --model")
    data, out = Path(args.data), Path(args.out)
    samples = Path(args.samples) if args.samples is not None else None
    grader_file = Path(args.grader) if os.path.isfile(args.grader) else None
    _refuse_overwriting_inputs(out, {"--data": data, "--samples": samples, "--grader": grader_file})
    grader = load_grader_arg(args.grader)
    for path in (data, samples):
        if path is not None and not path.exists():
            raise CLIError(f"{path}: no such file")
        if path is not None and path.is_dir():
            raise CLIError(f"{path}: is a directory")
    total = count_lines(data)
    if samples is not None:
        n_samples = count_lines(samples)
        if total is not None and n_samples is not None and total != n_samples:
            raise _mismatch(data, total, samples, n_samples)

    try:
        backend = load_backend(args.backend, grader) if args.backend else None
    except ValueError as e:
        raise CLIError(str(e)) from None
    engine = Engine(grader, chunk_size=args.chunk_size, concurrency=args.concurrency, backend=backend)
    resuming = args.resume and out.exists()
    done = _resume(out, engine.aggregate, grader) if resuming else _Done()
    rows: deque[_Row] = deque()
    pairs: Iterable[Pair] | AsyncIterable[Pair]
    if samples is not None:
        pairs = _file_pairs(data, samples, done, rows)
    else:
        pairs = _sampled_pairs(
            data, done, rows, base_url=args.sample_from, model=args.model, concurrency=args.sample_concurrency
        )
    bar = _progress(total, len(done), args.quiet)
    writer = JsonlWriter(out, append=resuming)
    breaker = _Breaker(f"--backend {args.backend}" if args.backend else f"grader {grader.name!r}")
    try:
        with writer:
            asyncio.run(_drain(engine, pairs, rows, writer, bar, breaker))
    except KeyboardInterrupt:
        _say(f"gradekit: interrupted; {writer.count} new row(s) written to {out}: rerun with --resume to go on")
        return 130
    finally:
        bar.close()
    aggregate = engine.aggregate
    print_summary(aggregate.summary(), title=f"grader: {grader.name} ({grader.type}) on {data}")
    if aggregate.count and aggregate.failed_samples / aggregate.count > args.max_error_rate:
        raise CLIError(
            f"{aggregate.failed_samples} of {aggregate.count} rows failed "
            f"({aggregate.failed_samples / aggregate.count:.0%}), more than --max-error-rate {args.max_error_rate:g}; "
            f"their errors are in {out}"
        )
    return 0


# --- serve ------------------------------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    from gradekit.runtime.server import serve

    api_key = args.api_key or os.environ.get("GRADEKIT_API_KEY") or None
    if api_key is None and not _is_loopback(args.host):
        # Plugins serve file uploads and training too (the fine-tuning API is on by default).
        if not args.allow_open:
            raise CLIError(
                f"refusing to serve on {args.host} without an API key: anyone who can reach it could grade, upload "
                "files and train; give --api-key KEY (or $GRADEKIT_API_KEY), or --allow-open to serve it open"
            )
        _say(
            f"gradekit: warning: serving on {args.host} without an API key (--allow-open): "
            "anyone who reaches it can use it"
        )
    grader = load_grader_arg(args.grader) if args.grader else None  # a bad grader fails here, before the server starts
    if args.runs is not None:
        if not args.runs.is_dir():
            raise CLIError(f"--runs {args.runs}: no such folder")
        os.environ[RUNS_ENV] = str(args.runs.resolve())  # read by the fine-tuning jobs routes (a routes plugin)
    serve(args.host, args.port, api_key, max_body_bytes=args.max_body_bytes, grader=grader, log_level=args.log_level)
    return 0


def _is_loopback(host: str) -> bool:
    """Whether `host` (a `--host` value) is this machine only: `localhost` or a loopback address."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may be reachable from elsewhere
        return False


# --- parser -----------------------------------------------------------------------------------------------


def number_arg(
    kind: type[int] | type[float],
    *,
    low: float | None = None,
    high: float | None = None,
    what: str | None = None,
    words: Sequence[str] = (),
) -> Callable[[str], Any]:
    """An argparse `type=`: the text as a finite `kind` within [low, high], or one of `words` (e.g. "auto").

    Every option of every `gradekit` command checks its numbers with this, so a wrong value always reads the
    same way: `'x' is not an integer`, `0 is not at least 1`, `2 is not between 0 and 1`.
    """
    noun = what or ("an integer" if kind is int else "a number")
    choices = " nor ".join(repr(w) for w in words)

    def parse(text: str) -> Any:
        if text in words:
            return text
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(
                f"{text!r} is neither {choices} nor {noun}" if words else f"{text!r} is not {noun}"
            )
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low:g} and {high:g}" if low is not None and high is not None else ""
            bounds = bounds or (f"at least {low:g}" if low is not None else f"at most {high:g}")
            raise argparse.ArgumentTypeError(f"{value:g} is not {bounds}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


_positive = number_arg(int, low=1)
_rate = number_arg(float, low=0, high=1)
_port = number_arg(int, low=0, high=65535, what="a port number")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage mistakes reported as the CLI's one error line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """Print `gradekit: error: <message>; see '<command> --help'` and exit 2."""
        write_text(sys.stderr, error_line(f"{message}; see '{self.prog} --help'"))
        sys.exit(2)


def _add(
    subparsers: Any, name: str, handler: Callable[[argparse.Namespace], int], help: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(func=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: gradekit's own subcommands, then those of `gradekit.commands` plugins."""
    parser = _Parser(prog="gradekit", description="Graders (reward functions) for RFT.")
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    grader_help = "a grader: .json/.yaml file, JSON text, or module:function"

    p = _add(sub, "validate", _cmd_validate, "check a grader; print it normalised, or every problem (exit 1)")
    p.add_argument("grader", metavar="GRADER", help=grader_help)

    p = _add(sub, "run", _cmd_run, "grade one sample and print the result JSON (as OpenAI's graders.run)")
    p.add_argument("grader", metavar="GRADER", help=grader_help)
    p.add_argument("--sample", required=True, metavar="TEXT", help="the model's output (the `sample` namespace)")
    p.add_argument("--item", metavar="JSON", help="the dataset row as a JSON object (the `item` namespace)")

    p = _add(sub, "grade", _cmd_grade, "grade a JSONL dataset; write one result line per row, print a summary")
    p.add_argument("--grader", required=True, metavar="GRADER", help=grader_help)
    p.add_argument("--data", required=True, metavar="FILE", help="OpenAI RFT JSONL: each whole row is the item")
    p.add_argument(
        "--samples",
        metavar="FILE",
        help="JSONL, one line per data row: a JSON string, an object with output_text, or a chat completion",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help='results JSONL: {"row": N, ...RunResult}, with "sample" (the answer) under --sample-from',
    )
    p.add_argument("--resume", action="store_true", help="keep the rows already in --out; grade only the rest")
    p.add_argument("--chunk-size", type=_positive, default=256, metavar="N", help="rows per grading batch")
    p.add_argument("--concurrency", type=_positive, default=4, metavar="N", help="batches in flight")
    p.add_argument(
        "--backend",
        metavar="NAME:SPEC",
        help="grade elsewhere, e.g. lambda:<function arn> (a deployed gradekit reward Lambda); "
        "backends come from the gradekit.backends entry point group",
    )
    p.add_argument(
        "--sample-from",
        metavar="BASE_URL",
        help="sample each row's answer from this OpenAI-compatible endpoint instead of --samples "
        "(messages, response_format and tools of the row; key from OPENAI_API_KEY); a failed request "
        "grades that row as a sample_parse_error",
    )
    p.add_argument("--model", metavar="NAME", help="the model to sample with --sample-from")
    p.add_argument("--sample-concurrency", type=_positive, default=8, metavar="N", help="sampling requests in flight")
    p.add_argument(
        "--max-error-rate",
        type=_rate,
        default=MAX_ERROR_RATE,
        metavar="R",
        help=f"exit 1 when more than this share of the rows failed (0 to 1; default {MAX_ERROR_RATE}); "
        f"a run whose first {FAIL_FAST_ROWS} rows all fail alike (a service down, no credentials) stops at once",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = _add(sub, "serve", _cmd_serve, "serve the grader HTTP API (OpenAI's graders run/validate, batch runs)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port, 0 to 65535 (default 8000)")
    p.add_argument("--api-key", metavar="KEY", help="require `Authorization: Bearer KEY` (default $GRADEKIT_API_KEY)")
    p.add_argument(
        "--allow-open",
        action="store_true",
        help="serve on a non-loopback --host without an API key (refused otherwise: the API uploads files and trains)",
    )
    p.add_argument("--max-body-bytes", type=_positive, default=8 * 1024 * 1024, metavar="N", help="request size cap")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument(
        "--grader",
        metavar="GRADER",
        help=f"the server's own grader ({grader_help}), for routes whose callers send none: POST /score "
        "(Microsoft Foundry's endpoint grader contract), OpenRLHF's POST /openrlhf/get_reward",
    )
    p.add_argument(
        "--runs",
        type=Path,
        metavar="DIR",
        help=f"also serve the run folders in DIR (or DIR itself), written by `gradekit train` or RFTJob, read-only "
        f"through the jobs API and the dashboard at / (default ${RUNS_ENV})",
    )

    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except Exception:
            logger.warning("%s plugin %r (%s) failed; skipped", COMMANDS_GROUP, ep.name, ep.value, exc_info=True)
    return parser


#: Longest error message printed whole; longer ones (e.g. an OSError quoting JSON text taken for a path) are cut.
_MAX_ERROR_CHARS = 1000


def _shortened(message: str) -> str:
    if len(message) <= _MAX_ERROR_CHARS:
        return message
    return f"{message[:_MAX_ERROR_CHARS]}... ({len(message) - _MAX_ERROR_CHARS} more characters)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `gradekit` command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse has already explained
        return e.code if isinstance(e.code, int) else 2
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args) or 0)
    except GraderValidationError as e:
        if len(e.problems) == 1:
            write_text(sys.stderr, error_line(f"invalid grader: {e.problems[0]}"))
        else:
            write_text(sys.stderr, error_line(f"invalid grader ({len(e.problems)} problems): {'; '.join(e.problems)}"))
        return 1
    except CLIError as e:
        write_text(sys.stderr, error_line(str(e)))
        return e.status
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, and keep the exit flush quiet too
        _silence_stdout()
        return BROKEN_PIPE_STATUS
    except JsonlError as e:
        write_text(sys.stderr, error_line(str(e)))
        return 1
    except OSError as e:
        write_text(sys.stderr, error_line(os_error_text(e)))
        return 1
    except RecursionError:  # e.g. a grader given as JSON text nested deeper than Python's parser allows
        write_text(sys.stderr, error_line(f"RecursionError: is an input nested too deeply? {TOO_DEEP}"))
        return 1
    except KeyboardInterrupt:
        write_text(sys.stderr, "gradekit: interrupted\n")
        return 130


def os_error_text(e: OSError) -> str:
    """`<file>: <reason>` for an OSError about a file, else its text."""
    if e.filename is not None and e.strerror:
        reason = "no such file" if isinstance(e, FileNotFoundError) else e.strerror
        return f"{e.filename}: {reason}"
    return str(e)


def _silence_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so that flushing what is left at exit raises nothing."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a capture: nothing to silence
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
