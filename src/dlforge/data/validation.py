"""Validation at the store's boundary: pandera schemas, reported as row-level errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from dlforge.core.errors import InvalidInput


def check_source_file(source: Path, expect: str) -> None:
    """Fail early and clearly when a source path is missing or of the wrong kind."""
    if not source.exists():
        raise InvalidInput(source, "no such file", f"check the path; expected {expect}")
    if not source.is_file():
        raise InvalidInput(source, "is not a file", f"expected {expect}")


def fullmatch(pattern: str, error: str | None = None):
    """A pandera check that each value matches ``pattern`` as a whole.

    Pandera's ``str_matches`` anchors only the start, and a ``$`` also matches before
    a final newline, so ``'cat\\n'`` would pass ``^[a-z]+$``; ``str.fullmatch`` does not.
    """
    import pandera.pandas as pda

    return pda.Check(lambda values: values.str.fullmatch(pattern, na=False),
                     name="fullmatch", error=error or f"fullmatch({pattern!r})")


def validate(schema, table: pa.Table, source: Path, first_row: int, fixes: dict[str, str]) -> None:
    """Validate ``table`` (rows ``first_row``... of ``source``) against a pandera schema.

    Raises:
        InvalidInput: naming the first failing row and column, the number of
            other failing rows, and the fix for that column.
    """
    import pandera.errors

    frame = table.to_pandas()
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as err:
        cases = err.failure_cases.dropna(subset=["index"]).sort_values("index")
        if cases.empty:  # a table-level problem (missing column, wrong type)
            raise InvalidInput(source, f"does not match the {schema.name} schema: {err}",
                               "see the dataset type's format") from None
        first = cases.iloc[0]
        column = str(first["column"])
        problem = _describe(column, first["failure_case"], str(first["check"]))
        others = cases["index"].nunique() - 1
        if others:
            problem += f" (and {others} more failing rows)"
        raise InvalidInput(source, problem, fixes.get(column, "correct the value"),
                           row=first_row + int(first["index"]), column=column) from None


def _describe(column: str, value: object, check: str) -> str:
    if value is None or (isinstance(value, str) and not value):
        return f"empty {column.rstrip('s') if column == 'labels' else column}"
    if "empty label" in check:
        return f"empty label in {value!r}"
    return f"value {value!r} fails check {check}"
