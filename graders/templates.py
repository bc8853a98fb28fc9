"""`{{ }}` templates over `item` and `sample`: plain paths on a fast path, anything else in sandboxed jinja2.

Bounds (`gradekit.graders.limits`): a template is at most `MAX_TEMPLATE_CHARS` long; text a template
builds is at most `MAX_RENDERED_CHARS` long (a template that is exactly one placeholder of a string
passes that string through unchanged); jinja2 templates render in `template_env.BoundedEnvironment`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .batch import Batch, Column, KeyPath, UnrenderableError, all_text, path_text, to_text
from .errors import GradingError
from .limits import MAX_RENDERED_CHARS, MAX_TEMPLATE_CHARS
from .safety import describe, exception_text, text_size
from .samples import UnparsedJSON

if TYPE_CHECKING:
    import jinja2

NAMESPACES = frozenset({"item", "sample"})

_STEP = r"(?:\.[A-Za-z_]\w*|\[\s*(?:-?\d+|'[^'\]]*'|\"[^\"\]]*\")\s*\])"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*" + _STEP + r"*)\s*\}\}")
_STEPS = re.compile(r"\.([A-Za-z_]\w*)|\[\s*(-?\d+|'[^'\]]*'|\"[^\"\]]*\")\s*\]")


def _parse_path(text: str) -> KeyPath:
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

    __slots__ = ("_jinja", "_label", "_parts", "paths", "source")

    def __init__(self, source: str) -> None:
        if len(source) > MAX_TEMPLATE_CHARS:
            raise ValueError(
                f"template is {len(source):,} characters long; the limit is MAX_TEMPLATE_CHARS ({MAX_TEMPLATE_CHARS:,})"
            )
        self.source = source
        self._label = describe(source, 80)  # what messages quote: a 64 kB template is not repeated per sample
        self._parts: list[str | KeyPath] | None = None
        self._jinja: jinja2.Template | None = None
        self.paths: list[KeyPath] = []
        parts: list[str | KeyPath] = []
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
            roots = self._compile_jinja(source)
        unknown = sorted(str(r) for r in roots - NAMESPACES)
        if unknown:
            raise ValueError(
                f"template {self._label} uses {', '.join(unknown)}: only the `item` and `sample` namespaces exist"
            )

    def _compile_jinja(self, source: str) -> set[str]:
        """Compile in the bounded environment; the names the template reads. Raises ValueError."""
        import jinja2
        from jinja2 import meta

        from .template_env import (
            RenderBudget,
            TemplateLimitError,
            bound_template,
            bounded_environment,
            check_constants,
        )

        env = bounded_environment()
        try:
            # One budget for compiling: jinja2 folds constant expressions while it compiles.
            with RenderBudget():
                tree = env.parse(source)
                roots: set[str] = meta.find_undeclared_variables(tree)
                check_constants(tree)
                self._jinja = env.from_string(bound_template(tree))
        except jinja2.TemplateSyntaxError as e:
            raise ValueError(f"template syntax error on line {e.lineno}: {e.message}") from None
        except TemplateLimitError as e:
            raise ValueError(f"template {self._label}: {e}") from None
        except RecursionError:
            raise ValueError(f"template {self._label} nests too deeply to compile") from None
        except Exception as e:  # e.g. Python's own limits on the code jinja2 generates
            raise ValueError(f"template {self._label} does not compile: {exception_text(e)}") from None
        return roots

    @property
    def is_plain(self) -> bool:
        """True when the template is literal text and plain paths only (no jinja2 needed)."""
        return self._parts is not None

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
                # a string passes through; any other value is printed, within the bounds
                return self._render_parts([col], [part], batch.n)
            return col
        cols = [p if isinstance(p, str) else batch.column(p) for p in self._parts]
        return self._render_parts(cols, self._parts, batch.n)

    def _render_parts(self, cols: list[str | Column], parts: list[str | KeyPath], n: int) -> Column:
        failures: dict[int, GradingError] = {}
        for c in cols:
            if isinstance(c, Column):
                for i, e in c.failures.items():
                    failures.setdefault(i, e)
        literal = sum(len(c) for c in cols if isinstance(c, str))
        out = []
        for i in range(n):
            if i in failures:
                out.append("")
                continue
            try:
                out.append(self._join(cols, parts, i, literal))
            except GradingError as e:
                failures[i] = e
                out.append("")
        return Column(out, failures)

    def _join(self, cols: list[str | Column], parts: list[str | KeyPath], i: int, literal: int) -> str:
        """Sample `i`'s text; refused (before it is built) past `MAX_RENDERED_CHARS`."""
        pieces: list[str] = []
        size = literal
        for c, part in zip(cols, parts, strict=True):
            if isinstance(c, str):
                pieces.append(c)
                continue
            value = c.values[i]
            if type(value) is not str:
                if text_size(value, MAX_RENDERED_CHARS) > MAX_RENDERED_CHARS:
                    raise self._too_long()
                try:
                    value = to_text(value)
                except UnrenderableError as e:
                    raise GradingError(
                        "invalid_variable_error",
                        f"template variable `{path_text(part)}` cannot be rendered: {e}",  # type: ignore[arg-type]
                    ) from None
            size += len(value)
            if size > MAX_RENDERED_CHARS and len(cols) > 1:  # one string placeholder passes through: nothing built
                raise self._too_long()
            pieces.append(value)
        return "".join(pieces) if len(pieces) != 1 else pieces[0]

    def _too_long(self) -> GradingError:
        return GradingError(
            "other_error",
            f"template {self._label}: the rendered text would be longer than "
            f"MAX_RENDERED_CHARS ({MAX_RENDERED_CHARS:,}) characters",
        )

    def _render_jinja(self, batch: Batch) -> Column:
        import jinja2

        from .template_env import RenderBudget, TemplateLimitError

        assert self._jinja is not None
        render = self._jinja.render
        dicts = batch.sample_dicts()
        out: list[str] = []
        failures: dict[int, GradingError] = {}
        for i, sample in enumerate(dicts):
            if isinstance(sample, GradingError):
                failures[i] = sample
                out.append("")
                continue
            try:
                with RenderBudget():
                    out.append(render(sample=sample, item=batch.item(i)))
                continue
            except jinja2.UndefinedError as e:
                failures[i] = self._undefined(sample, e)
            except UnrenderableError as e:
                failures[i] = GradingError("invalid_variable_error", f"template {self._label}: {e}")
            except TemplateLimitError as e:
                failures[i] = GradingError("other_error", f"template {self._label}: {e}")
            except RecursionError:
                failures[i] = GradingError("other_error", f"template {self._label}: recursion too deep")
            except Exception as e:  # a sandbox violation or a failing filter is this sample's error only
                failures[i] = GradingError("other_error", f"template {self._label}: {exception_text(e)}")
            out.append("")
        return Column(out, failures)

    def _undefined(self, sample: dict[str, Any], error: jinja2.UndefinedError) -> GradingError:
        if type(sample.get("output_json")) is UnparsedJSON and "output_json" in self.source:
            return GradingError("sample_parse_error", f"template {self._label}: {UnparsedJSON.reason}")
        return GradingError("invalid_variable_error", f"template {self._label}: {error.message}")

    def render_one(self, sample: Any, item: Any) -> str:
        """Render for one sample (a model output string or sample dict); raises GradingError."""
        col = self.render(Batch([sample], [item]))
        if col.failures:
            raise col.failures[0]
        return col.values[0]
