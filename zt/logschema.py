"""The one log-line schema (zt/log_line.schema.json), loaded and checked with `jsonschema`.

Every component, in every language, writes the same shape of line (docs/logs.md): the Python
daemons through zt.logjson, service-a and service-b through their own loggers. Tests, the lab
and CI run each line a run produced through `validate_line`, so a key renamed or a serial
printed as a decimal in one language fails a build instead of a dashboard months later.

The schema's patterns are ECMA-262 regular expressions, where `$` ends the input. Python's
`re` also lets `$` match before a final newline, so this validator anchors a trailing `$` at
`\\Z`: "ab\\n" is not a serial here either.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema.validators
from jsonschema.exceptions import ValidationError

SCHEMA_RESOURCE = "log_line.schema.json"


def load_schema() -> dict[str, Any]:
    """The schema document, read from the installed package (it ships as package data)."""
    text = resources.files("zt").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@functools.lru_cache(maxsize=256)
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(
    validator: jsonschema.protocols.Validator, patrn: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_pattern(patrn).search(instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = load_schema()
    base = jsonschema.Draft202012Validator
    base.check_schema(schema)
    # jsonschema's `extend` is untyped; it returns a Draft 2020-12 validator class.
    cls: type[jsonschema.protocols.Validator] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        base, {"pattern": _pattern}
    )
    return cls(schema)


def validate_line(doc: Any) -> list[str]:
    """Every way `doc` (one parsed log line) breaks the schema; empty when it follows it.

    The messages name the field (`serial: 'AB' does not match ...`) so that a failing test says
    which component printed what; they are sorted so the output is stable.
    """
    errors: list[str] = []
    for err in _validator().iter_errors(doc):
        # An if/then failure's own message ("... is not valid under ...") says little; its
        # sub-errors name the field that broke the event's rule.
        leaves = _leaves(err)
        errors.extend(_describe(e) for e in leaves)
    return sorted(set(errors))


def _leaves(err: ValidationError) -> list[ValidationError]:
    if err.validator in ("allOf", "then") and err.context:
        out: list[ValidationError] = []
        for sub in err.context:
            out.extend(_leaves(sub))
        return out
    return [err]


def _describe(err: ValidationError) -> str:
    where = "/".join(str(p) for p in err.absolute_path)
    message = err.message
    if err.validator == "anyOf" and err.context:
        # "x or null": say what x had to be, not only "not valid under any of the given schemas".
        alternatives = [e.message for e in err.context if e.validator != "type" or e.validator_value != "null"]
        if alternatives:
            message = "; ".join(alternatives) + " (and is not null)"
    return f"{where}: {message}" if where else message


def _split_lines(data: bytes) -> list[bytes]:
    # b"a\nb\n" is two lines, b"a\nb" two, b"" none: a final newline ends a line, it starts none.
    lines = data.split(b"\n")
    return lines[:-1] if data.endswith(b"\n") or not data else lines


def validate_bytes(data: bytes) -> list[tuple[int, str]]:
    """Check every line of a log (1-based line numbers): one JSON object per line and nothing else.

    A line that is not UTF-8, not JSON, or blank is an error like a line that breaks the schema.
    """
    problems: list[tuple[int, str]] = []
    for lineno, raw in enumerate(_split_lines(data), start=1):
        try:
            doc = json.loads(raw.decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
            problems.append((lineno, f"not JSON: {e}: {raw[:120]!r}"))
            continue
        problems.extend((lineno, msg) for msg in validate_line(doc))
    return problems


def validate_text(text: str) -> list[tuple[int, str]]:
    """`validate_bytes` of a log already read as text."""
    return validate_bytes(text.encode("utf-8"))


def validate_file(path: Path | str) -> list[tuple[int, str]]:
    """`validate_bytes` of a log file."""
    return validate_bytes(Path(path).read_bytes())
