"""``token`` parameter entries (search.html#token).

* Coding → ``system|code`` with ``text`` = normalised ``display``.
* CodeableConcept → one entry per coding as above, plus, when it has ``text`` that no coding's display already
  gives, an entry with no system and no code whose ``text`` is the normalised ``CodeableConcept.text`` (so
  ``:text`` matches the text or any display).
* Identifier → ``system|value``, ``text`` = normalised ``type.text``, and ``type_system``/``type_code`` from
  ``type.coding`` for ``:of-type`` (one entry per type coding; one entry without type when there is none).
* ContactPoint → ``value`` as the code with no system: the specification gives ContactPoint tokens no
  namespace; ``ContactPoint.system`` (phone, email) is selected by the expressions of ``phone``/``email``.
* code → the code, with the system of its required binding's value set when exactly one code system of that
  value set defines the code (``Patient.gender`` male → ``http://hl7.org/fhir/administrative-gender|male``);
  otherwise no system.
* boolean → ``true``/``false`` (no system); string, id, uri and other string-like primitives → the value as a
  code without system; integers → their decimal text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from fhir_server.indexing._norm_string import normalise_string
from fhir_server.indexing.entries import Entry, TokenEntry

__all__ = ["token_normaliser"]

Out = list[Entry]
TokenNormaliser = Callable[[str, Any, dict[str, Any], Out], None]


def _str(value: Any) -> str | None:
    return value if type(value) is str else None


def _text(value: Any) -> str | None:
    return normalise_string(value) or None if type(value) is str else None


def _coding(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if type(value) is dict:
        system, code, display = (
            _str(value.get("system")),
            _str(value.get("code")),
            _text(value.get("display")),
        )
        if system is not None or code is not None or display is not None:
            out.append(TokenEntry(param, system, code, display))


def _codeable_concept(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if type(value) is not dict:
        return
    start = len(out)
    codings = value.get("coding")
    if type(codings) is list:
        for coding in codings:
            _coding(param, coding, resource, out)
    text = _text(value.get("text"))
    if text is not None and not any(entry.text == text for entry in out[start:]):  # type: ignore[union-attr]
        out.append(TokenEntry(param, None, None, text))


def _identifier(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if type(value) is not dict:
        return
    system, code = _str(value.get("system")), _str(value.get("value"))
    kind = value.get("type")
    text = _text(kind.get("text")) if type(kind) is dict else None
    if system is None and code is None and text is None:
        return
    codings = kind.get("coding") if type(kind) is dict else None
    typed = False
    if type(codings) is list:
        for coding in codings:
            if type(coding) is dict:
                type_system, type_code = _str(coding.get("system")), _str(coding.get("code"))
                if type_code is not None:
                    out.append(TokenEntry(param, system, code, text, type_system, type_code))
                    typed = True
    if not typed:
        out.append(TokenEntry(param, system, code, text))


def _contact_point(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if type(value) is dict:
        code = _str(value.get("value"))
        if code is not None:
            out.append(TokenEntry(param, None, code))


def _string(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if type(value) is str and value:
        out.append(TokenEntry(param, None, value))


def _boolean(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if value is True or value is False:
        out.append(TokenEntry(param, None, "true" if value else "false"))


def _number(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        out.append(TokenEntry(param, None, str(value)))


def _bound_code(systems: Mapping[str, str]) -> TokenNormaliser:
    def bound_code(param: str, value: Any, resource: dict[str, Any], out: Out) -> None:
        if type(value) is str and value:
            out.append(TokenEntry(param, systems.get(value), value))

    return bound_code


_BY_TYPE: dict[str, TokenNormaliser] = {
    "Coding": _coding,
    "CodeableConcept": _codeable_concept,
    "Identifier": _identifier,
    "ContactPoint": _contact_point,
    "boolean": _boolean,
    **dict.fromkeys(("integer", "positiveInt", "unsignedInt", "decimal"), _number),
    **dict.fromkeys(
        ("code", "string", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "date", "dateTime",
         "instant", "time"),
        _string,
    ),
}  # fmt: skip


def token_normaliser(type_code: str, code_systems: Mapping[str, str] | None = None) -> TokenNormaliser | None:
    """The normaliser for values of ``type_code`` (None when the type is not token-searchable)."""
    if type_code == "code" and code_systems:
        return _bound_code(code_systems)
    return _BY_TYPE.get(type_code)
