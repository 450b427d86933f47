"""Strict reading of the exporters' JSON records (spec.json, state.json).

A :class:`JsonFields` wraps one decoded JSON object and hands out its fields one by one, each
checked for its type (a bool is never taken for a number; an integer is accepted where a
number is wanted); :meth:`JsonFields.done` then refuses any field nobody asked for. Every
error is an :class:`~exporters.errors.ExportError` naming the file and the field, for example
``/data/exports/pacs-nfs/spec.json: options.port must be an integer, not true``.
"""

from __future__ import annotations

from typing import Final, TypeGuard

from .errors import ExportError


class _Required:
    """The marker for "no default: the field must be there"."""


REQUIRED: Final = _Required()


def describe(value: object) -> str:
    """How a JSON value is named in an error: its JSON type and, when short, the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def is_int(value: object) -> TypeGuard[int]:
    """A JSON integer (not a bool, not a float)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number (integer or float, not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class JsonFields:
    """The fields of one JSON object in the file WHERE, read strictly.

    PREFIX names the object inside the file (``"options."``, empty for the top level). Each
    getter returns the field's value, or its default when the field is absent (an absent field
    without a default is an error); :meth:`done` refuses the fields nobody read."""

    def __init__(self, doc: object, where: str, prefix: str = "") -> None:
        self.where = where
        self.prefix = prefix
        if not isinstance(doc, dict):
            what = f"{prefix.rstrip('.')} " if prefix else ""
            raise ExportError(f"{where}: {what}must be a JSON object, not {describe(doc)}")
        self._doc: dict[str, object] = doc
        self._read: set[str] = set()

    def error(self, name: str, message: str) -> ExportError:
        """An ExportError about field NAME of this object (``NAME`` may carry an index)."""
        return ExportError(f"{self.where}: {self.prefix}{name} {message}")

    def _get(self, name: str, default: object) -> tuple[object, bool]:
        self._read.add(name)
        if name in self._doc:
            return self._doc[name], True
        if isinstance(default, _Required):
            raise self.error(name, "is missing")
        return default, False

    def _wrong(self, name: str, want: str, value: object) -> ExportError:
        return self.error(name, f"must be {want}, not {describe(value)}")

    def text(self, name: str, default: str | _Required = REQUIRED) -> str:
        value, _ = self._get(name, default)
        if isinstance(value, str):
            return value
        raise self._wrong(name, "a string", value)

    def opt_text(self, name: str) -> str | None:
        value, _ = self._get(name, None)
        if value is None or isinstance(value, str):
            return value
        raise self._wrong(name, "a string or null", value)

    def flag(self, name: str, default: bool | _Required = REQUIRED) -> bool:
        value, _ = self._get(name, default)
        if isinstance(value, bool):
            return value
        raise self._wrong(name, "true or false", value)

    def opt_flag(self, name: str) -> bool | None:
        value, _ = self._get(name, None)
        if value is None or isinstance(value, bool):
            return value
        raise self._wrong(name, "true, false or null", value)

    def integer(self, name: str, default: int | _Required = REQUIRED) -> int:
        value, _ = self._get(name, default)
        if is_int(value):
            return value
        raise self._wrong(name, "an integer", value)

    def opt_integer(self, name: str) -> int | None:
        value, _ = self._get(name, None)
        if value is None or is_int(value):
            return value
        raise self._wrong(name, "an integer or null", value)

    def number(self, name: str, default: float | _Required = REQUIRED) -> float:
        value, _ = self._get(name, default)
        if is_number(value):
            return float(value)
        raise self._wrong(name, "a number", value)

    def opt_number(self, name: str) -> float | None:
        value, _ = self._get(name, None)
        if value is None:
            return None
        if is_number(value):
            return float(value)
        raise self._wrong(name, "a number or null", value)

    def array(self, name: str, default: list[object] | _Required = REQUIRED) -> list[object]:
        value, _ = self._get(name, default)
        if isinstance(value, list):
            return value
        raise self._wrong(name, "an array", value)

    def obj(self, name: str) -> JsonFields:
        """The object in field NAME, as JsonFields of its own (required)."""
        value, _ = self._get(name, REQUIRED)
        return JsonFields(value, self.where, f"{self.prefix}{name}.")

    def done(self) -> None:
        """Refuse the fields nobody read: a field this version does not know is an error."""
        unknown = sorted(set(self._doc) - self._read)
        if unknown:
            what = f"{self.prefix.rstrip('.')} has" if self.prefix else "has"
            raise ExportError(f"{self.where}: {what} unknown field(s): {', '.join(unknown)}")
