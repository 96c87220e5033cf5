"""Markdown documents from Jinja2 templates: one environment, with costtrack.format's functions as filters.

The built-in templates live in the `costtrack.templates` package (``templates/`` in the
repository); ``--template FILE`` renders a user's copy instead, which can still
``{% include %}`` or ``{% extends %}`` the built-in ones by name. Undefined names are
errors (StrictUndefined), and any template error becomes a one-line ConfigError
naming the file and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
)

from .. import format as fmt
from ..errors import ConfigError

__all__ = ["BUILTIN", "TEMPLATES_DIR", "check", "environment", "md_cell", "render", "tidy"]

#: The package directory of the built-in templates.
TEMPLATES_DIR = Path(__import__("costtrack.templates", fromlist=["__file__"]).__file__).resolve().parent

#: The built-in template of each document.
BUILTIN = {
    "audit": "optimization-audit.md.j2",
    "results": "optimization-results.md.j2",
    "summary": "summary.md.j2",
}


def md_cell(value: object) -> str:
    """Text safe in a Markdown table cell: pipes escaped, line breaks flattened."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def tidy(text: str) -> str:
    """Markdown spacing made regular: one blank line before a heading, never two in a row (outside code fences)."""
    out: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            if line.startswith("#") and out and out[-1].strip():
                out.append("")
            if not line.strip() and out and not out[-1].strip():
                continue
        out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def environment(extra_dir: Path | None = None) -> Environment:
    """The Jinja environment: the built-in templates (after `extra_dir`'s), strict, with the number filters."""
    loaders = [FileSystemLoader(str(TEMPLATES_DIR))]
    if extra_dir is not None:
        loaders.insert(0, FileSystemLoader(str(extra_dir)))
    env = Environment(
        loader=ChoiceLoader(loaders), undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False,
    )  # fmt: skip
    env.filters.update(fmt.FORMATS)
    env.filters["fmt"] = fmt.fmt
    env.filters["delta"] = fmt.delta
    env.filters["cell"] = md_cell
    env.filters["code"] = fmt.code
    return env


def _load(document: str, template: str | Path | None) -> tuple[Environment, str, str]:
    """(environment, template name, how errors name it) for `document`, or the user's `template` file."""
    if template is None:
        name = BUILTIN[document]
        return environment(), name, f"built-in template {name}"
    path = Path(template).expanduser()
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "is not a file" if path.exists() else "does not exist"
        raise ConfigError(f"template {path} {problem}: give the path of a Jinja2 template file")
    return environment(path.resolve().parent), path.name, f"template {path}"


def check(document: str, template: str | Path | None = None) -> None:
    """Load and compile the template now, so a missing file or a syntax error fails before any work is done."""
    env, name, where = _load(document, template)
    try:
        env.get_template(name)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"{where}, line {exc.lineno}: {exc.message}") from None
    except TemplateError as exc:
        raise ConfigError(f"{where}: {type(exc).__name__}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {where} ({exc.strerror or exc})") from None


def render(document: str, context: dict[str, Any], template: str | Path | None = None) -> str:
    """Render `document`'s built-in template, or the user's `template` file, with `context`."""
    env, name, where = _load(document, template)
    try:
        return tidy(env.get_template(name).render(**context))
    except TemplateSyntaxError as exc:
        raise ConfigError(f"{where}, line {exc.lineno}: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - a user template can fail in any way: one line, exit 2
        line = _template_line(exc, env, name)
        at = f", line {line}" if line else ""
        raise ConfigError(f"{where}{at}: {type(exc).__name__}: {exc}") from None


def _template_line(exc: BaseException, env: Environment, name: str) -> int | None:
    """The template line the error happened on (Jinja rewrites tracebacks to point into templates)."""
    try:
        source_file = env.get_template(name).filename
    except Exception:  # noqa: BLE001 - only a hint for the message being built
        return None
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == source_file:
            line = tb.tb_lineno
        tb = tb.tb_next
    del tb
    return line
