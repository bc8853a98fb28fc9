"""`{{ }}` templates over `item` and `sample`: plain paths on a fast path, anything else in sandboxed jinja2."""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any

from .batch import Batch, Column, Path, all_text, to_text
from .errors import GradingError

if TYPE_CHECKING:
    import jinja2

NAMESPACES = frozenset({"item", "sample"})

_STEP = r"(?:\.[A-Za-z_]\w*|\[\s*(?:-?\d+|'[^'\]]*'|\"[^\"\]]*\")\s*\])"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*" + _STEP + r"*)\s*\}\}")
_STEPS = re.compile(r"\.([A-Za-z_]\w*)|\[\s*(-?\d+|'[^'\]]*'|\"[^\"\]]*\")\s*\]")


@functools.cache
def _jinja() -> Any:
    """The sandboxed jinja2 environment, imported on first use (plain-path templates never need it)."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    def finalize(value: Any) -> Any:
        # Non-string values render as JSON (as OpenAI's templates do), not as Python reprs.
        if isinstance(value, str | jinja2.Undefined):
            return value
        try:
            return json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            return str(value)

    return SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, finalize=finalize)


def _parse_path(text: str) -> Path:
    root = re.match(r"[A-Za-z_]\w*", text)
    assert root is not None
    steps: list[str | int] = [root.group(0)]
    for name, index in _STEPS.findall(text[root.end() :]):
        if name:
            steps.append(name)
        elif index[0] in "'\"":
            steps.append(index[1:-1])
        else:
            steps.append(int(index))
    return tuple(steps)


class Template:
    """A compiled template; renders a whole batch at once."""

    __slots__ = ("_jinja", "_parts", "paths", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._parts: list[str | Path] | None = None
        self._jinja: jinja2.Template | None = None
        self.paths: list[Path] = []
        parts: list[str | Path] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(source):
            if m.start() > pos:
                parts.append(source[pos : m.start()])
            path = _parse_path(m.group(1))
            parts.append(path)
            self.paths.append(path)
            pos = m.end()
        if pos < len(source):
            parts.append(source[pos:])
        literal = "".join(p for p in parts if isinstance(p, str))
        if "{{" not in literal and "{%" not in literal and "{#" not in literal:
            self._parts = parts
            roots = {p[0] for p in self.paths}
        else:
            import jinja2
            from jinja2 import meta

            try:
                ast = _jinja().parse(source)
            except jinja2.TemplateSyntaxError as e:
                raise ValueError(f"template syntax error on line {e.lineno}: {e.message}") from None
            roots = meta.find_undeclared_variables(ast)
            self._jinja = _jinja().from_string(source)
        unknown = sorted(str(r) for r in roots - NAMESPACES)
        if unknown:
            raise ValueError(
                f"template {source!r} uses {', '.join(unknown)}: only the `item` and `sample` namespaces exist"
            )

    @property
    def is_plain(self) -> bool:
        """True when the template is literal text and plain paths only (no jinja2 needed)."""
        return self._parts is not None

    @property
    def is_constant(self) -> bool:
        """True when the template has no placeholders at all."""
        return self._parts is not None and not self.paths

    def values(self, batch: Batch) -> Column:
        """Raw values when the template is exactly one path (`{{ item.calls }}`), else rendered strings."""
        if self._parts is not None and len(self._parts) == 1 and not isinstance(self._parts[0], str):
            return batch.column(self._parts[0])
        return self.render(batch)

    def render(self, batch: Batch) -> Column:
        """The rendered string for every sample of the batch."""
        if self._parts is None:
            return self._render_jinja(batch)
        if not self._parts:
            return Column([""] * batch.n, {})
        if len(self._parts) == 1:
            part = self._parts[0]
            if isinstance(part, str):
                return Column([part] * batch.n, {})
            col = batch.column(part)
            if col.failures or not all_text(col.values):
                col = Column(
                    [to_text(v) if i not in col.failures else "" for i, v in enumerate(col.values)],
                    col.failures,
                )
            return col
        cols = [p if isinstance(p, str) else batch.column(p) for p in self._parts]
        failures: dict[int, GradingError] = {}
        for c in cols:
            if isinstance(c, Column):
                for i, e in c.failures.items():
                    failures.setdefault(i, e)
        out = []
        for i in range(batch.n):
            if i in failures:
                out.append("")
            else:
                out.append("".join(c if isinstance(c, str) else to_text(c.values[i]) for c in cols))
        return Column(out, failures)

    def _render_jinja(self, batch: Batch) -> Column:
        import jinja2

        assert self._jinja is not None
        dicts = batch.sample_dicts()
        out: list[str] = []
        failures: dict[int, GradingError] = {}
        for i, sample in enumerate(dicts):
            if isinstance(sample, GradingError):
                failures[i] = sample
                out.append("")
                continue
            try:
                out.append(self._jinja.render(sample=sample, item=batch.item(i)))
            except jinja2.UndefinedError as e:
                failures[i] = GradingError("invalid_variable_error", f"template {self.source!r}: {e.message}")
                out.append("")
            except Exception as e:  # a sandbox violation or a failing filter is this sample's error only
                failures[i] = GradingError("other_error", f"template {self.source!r}: {type(e).__name__}: {e}")
                out.append("")
        return Column(out, failures)

    def render_one(self, sample: Any, item: Any) -> str:
        """Render for one sample (a model output string or sample dict); raises GradingError."""
        col = self.render(Batch([sample], [item]))
        if col.failures:
            raise col.failures[0]
        return col.values[0]


def check_template(source: str) -> list[str]:
    """Problems with a template string, or [] when it compiles."""
    try:
        Template(source)
    except ValueError as e:
        return [str(e)]
    return []
