"""Generate the compact R4 definitions under ``fhir_server/definitions/`` from the official core package.

Usage::

    .venv/bin/python scripts/generate_definitions.py [--package ../shared/fhir/hl7.fhir.r4.core-4.0.1.tgz]

The package is read with :mod:`tarfile` (no unpacking).  Four gzip-compressed JSON files are written, each with
sorted keys and ``mtime=0`` so that a rerun on the same package is byte-identical:

``elements.json.gz``
    every base type (primitive, complex type, resource; specialisations only, plus the abstract roots) with its
    snapshot elements reduced to what validation needs: path, min, max, type codes, regex (primitive ``.value``),
    Reference/canonical target type names, isSummary, isModifier, contentReference, maxLength, required bindings
    (ValueSet canonical without ``|version``) and ``system`` for bare FHIRPath values (element ids,
    ``Extension.url``; their type is the ``structuredefinition-fhir-type`` extension's).
``valuesets.json.gz``
    the expansion, as ``{system: [code, ...]}``, of every value set used by a required binding, computed from the
    package's ValueSets and CodeSystems (whole systems with nested concepts, explicit concept lists, imported
    value sets, ``is-a``/``descendent-of``/``is-not-a``/``=``/``in``/``regex`` filters, excludes, and the implicit
    value set of a CodeSystem).  A value set needing a code system that is absent from the package or not
    ``complete`` is listed under ``uncheckable`` with the reason (an explicit concept list needs no code system).
``search_parameters.json.gz``
    the 1,375 core SearchParameters: version 4.0.1 and not experimental, which leaves out the 24 experimental
    extension/example parameters and the ``_filter`` placeholder (version 1); Bundles in the package are searched
    too.
``compartments.json.gz``
    the five CompartmentDefinitions: compartment code -> resource type -> search parameter codes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PACKAGE = REPO.parent / "shared" / "fhir" / "hl7.fhir.r4.core-4.0.1.tgz"
DEFAULT_OUT = REPO / "fhir_server" / "definitions"

SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
FHIR_TYPE_EXT = SD_PREFIX + "structuredefinition-fhir-type"
REGEX_EXT = SD_PREFIX + "regex"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
CORE_SEARCH_PARAMETER_COUNT = 1375
COMPARTMENTS = ("Patient", "Encounter", "RelatedPerson", "Practitioner", "Device")

Json = dict[str, Any]


# --------------------------------------------------------------------------------------------------- reading
def read_package(path: Path) -> list[Json]:
    """Every resource at the top level of ``package/`` (``package.json`` and ``.index.json`` skipped)."""
    resources: list[Json] = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name
            if not member.isfile() or not name.startswith("package/") or name.count("/") != 1:
                continue
            base = name.rsplit("/", 1)[1]
            if not base.endswith(".json") or base in ("package.json", ".index.json"):
                continue
            stream = tar.extractfile(member)
            assert stream is not None
            data = json.load(stream)
            if isinstance(data, dict) and "resourceType" in data:
                resources.append(data)
    return resources


def flatten_bundles(resources: Iterable[Json]) -> Iterator[Json]:
    """The resources themselves, and the entries of any Bundle among them."""
    for resource in resources:
        if resource["resourceType"] == "Bundle":
            for entry in resource.get("entry", []):
                if isinstance(entry.get("resource"), dict):
                    yield entry["resource"]
        else:
            yield resource


# -------------------------------------------------------------------------------------------------- elements
def is_base_type(sd: Json) -> bool:
    if sd.get("kind") not in ("primitive-type", "complex-type", "resource"):
        return False
    # Resource and Element are the roots of the hierarchy and have no derivation at all.
    return sd.get("derivation") == "specialization" or "baseDefinition" not in sd


def _extension(ext_list: list[Json] | None, url: str) -> Any:
    for ext in ext_list or ():
        if ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def _type_code(type_: Json) -> str:
    code: str = type_["code"]
    if code.startswith(SYSTEM_PREFIX):
        fhir_type = _extension(type_.get("extension"), FHIR_TYPE_EXT)
        # xhtml.id carries no fhir-type extension; it is a plain string.
        return str(fhir_type) if fhir_type else "string"
    return code


def compact_element(element: Json, primitive: bool) -> Json:
    out: Json = {"path": element["path"]}
    if element.get("min", 0):
        out["min"] = element["min"]
    if element.get("max", "1") != "1":
        out["max"] = element["max"]
    types = element.get("type") or []
    if types:
        out["types"] = [_type_code(t) for t in types]
        if any(t["code"].startswith(SYSTEM_PREFIX) for t in types):
            out["system"] = True  # a bare FHIRPath value (ids, Extension.url): no "_name" extensions in JSON
        targets = {
            _type_code(t): sorted(p.removeprefix(SD_PREFIX) for p in t["targetProfile"])
            for t in types
            if t.get("targetProfile")
        }
        if targets:
            out["targets"] = targets
        if primitive and element["path"].endswith(".value"):
            regex = _extension(types[0].get("extension"), REGEX_EXT)
            if regex:
                out["regex"] = regex
    if element.get("maxLength"):
        out["maxLength"] = element["maxLength"]
    if element.get("isSummary"):
        out["summary"] = True
    if element.get("isModifier"):
        out["modifier"] = True
    if "contentReference" in element:
        out["contentReference"] = element["contentReference"]
    binding = element.get("binding") or {}
    if binding.get("strength") == "required" and binding.get("valueSet"):
        out["binding"] = binding["valueSet"].split("|", 1)[0]
    return out


def build_elements(resources: list[Json]) -> Json:
    types: Json = {}
    for sd in resources:
        if sd["resourceType"] != "StructureDefinition" or not is_base_type(sd):
            continue
        primitive = sd["kind"] == "primitive-type"
        base = sd.get("baseDefinition", "")
        types[sd["type"]] = {
            "kind": sd["kind"],
            "abstract": bool(sd.get("abstract")),
            "base": base.removeprefix(SD_PREFIX) if base else None,
            "elements": [compact_element(e, primitive) for e in sd["snapshot"]["element"]],
        }
    return types


def required_bindings(types: Json) -> dict[str, list[str]]:
    """Value set URL -> the element paths bound to it with strength required."""
    bound: dict[str, list[str]] = {}
    for type_def in types.values():
        for element in type_def["elements"]:
            if "binding" in element:
                bound.setdefault(element["binding"], []).append(element["path"])
    return bound


# ------------------------------------------------------------------------------------------------ value sets
class Uncheckable(Exception):
    """The value set cannot be expanded from the package alone."""


class Terminology:
    """Expands value sets from the CodeSystems and ValueSets in the package."""

    def __init__(self, resources: list[Json]) -> None:
        self.value_sets: dict[str, Json] = {}
        self.code_systems: dict[str, Json] = {}
        self.implicit: dict[str, str] = {}  # CodeSystem.valueSet -> CodeSystem.url
        for resource in resources:
            if resource["resourceType"] == "ValueSet":
                self.value_sets[resource["url"]] = resource
            elif resource["resourceType"] == "CodeSystem":
                self.code_systems[resource["url"]] = resource
                if "valueSet" in resource:
                    self.implicit[resource["valueSet"].split("|", 1)[0]] = resource["url"]
        self._cache: dict[str, dict[str, set[str]]] = {}
        self.unsupported: list[str] = []

    # ---------------------------------------------------------------- code systems
    def _code_system(self, url: str) -> Json:
        cs = self.code_systems.get(url)
        if cs is None:
            raise Uncheckable(f"code system {url} is not in the package")
        if cs.get("content") != "complete":
            raise Uncheckable(f"code system {url} has content {cs.get('content')!r}")
        return cs

    def _concepts(self, cs: Json) -> Iterator[tuple[Json, str | None]]:
        """Every concept with its parent code (nesting or a ``parent`` property defines the hierarchy)."""
        stack: list[tuple[Json, str | None]] = [(c, None) for c in reversed(cs.get("concept", []))]
        while stack:
            concept, parent = stack.pop()
            declared = [p["valueCode"] for p in concept.get("property", []) if p.get("code") == "parent"]
            yield concept, parent if parent is not None else (declared[0] if declared else None)
            stack.extend((child, concept["code"]) for child in reversed(concept.get("concept", [])))

    def _descendants(self, cs: Json, root: str) -> set[str]:
        children: dict[str, list[str]] = {}
        for concept, parent in self._concepts(cs):
            if parent is not None:
                children.setdefault(parent, []).append(concept["code"])
        found: set[str] = set()
        todo = list(children.get(root, []))
        while todo:
            code = todo.pop()
            if code not in found:
                found.add(code)
                todo.extend(children.get(code, []))
        return found

    def _filter(self, cs: Json, flt: Json) -> set[str]:
        prop, op, value = flt.get("property"), flt.get("op"), flt.get("value", "")
        all_codes = {c["code"] for c, _ in self._concepts(cs)}
        if prop == "concept" and op == "is-a":
            return {value} & all_codes | self._descendants(cs, value)
        if prop == "concept" and op == "descendent-of":
            return self._descendants(cs, value)
        if prop == "concept" and op == "is-not-a":
            return all_codes - {value} - self._descendants(cs, value)
        if prop == "code" and op == "regex":
            pattern = re.compile(value)
            return {code for code in all_codes if pattern.fullmatch(code)}
        if op in ("=", "in"):
            wanted = set(value.split(",")) if op == "in" else {value}
            return {
                c["code"]
                for c, _ in self._concepts(cs)
                for p in c.get("property", [])
                if p.get("code") == prop and str(_property_value(p)) in wanted
            }
        self.unsupported.append(f"filter {prop} {op} {value} on {cs['url']}")
        raise Uncheckable(f"unsupported filter {prop} {op} {value}")

    # ---------------------------------------------------------------- value sets
    def expand(self, url: str, stack: tuple[str, ...] = ()) -> dict[str, set[str]]:
        if url in self._cache:
            return self._cache[url]
        if url in stack:
            raise Uncheckable(f"value set {url} imports itself")
        vs = self.value_sets.get(url)
        if vs is None:
            if url in self.implicit:
                cs = self._code_system(self.implicit[url])
                result = {cs["url"]: {c["code"] for c, _ in self._concepts(cs)}}
            else:
                raise Uncheckable(f"value set {url} is not in the package")
        else:
            result = self._compose(vs, (*stack, url))
        self._cache[url] = result
        return result

    def _compose(self, vs: Json, stack: tuple[str, ...]) -> dict[str, set[str]]:
        compose = vs.get("compose")
        if not compose:
            if "expansion" in vs:
                return _from_expansion(vs["expansion"].get("contains", []))
            raise Uncheckable(f"value set {vs['url']} has neither compose nor expansion")
        result: dict[str, set[str]] = {}
        for include in compose.get("include", []):
            _merge(result, self._include(include, stack))
        for exclude in compose.get("exclude", []):
            for system, codes in self._include(exclude, stack).items():
                result.get(system, set()).difference_update(codes)
        return {system: codes for system, codes in result.items() if codes}

    def _include(self, include: Json, stack: tuple[str, ...]) -> dict[str, set[str]]:
        parts: list[dict[str, set[str]]] = []
        system = include.get("system")
        if system:
            if "concept" in include:  # an explicit list is checkable without the code system
                codes = {c["code"] for c in include["concept"]}
            else:
                cs = self._code_system(system)
                codes = {c["code"] for c, _ in self._concepts(cs)}
                for flt in include.get("filter", []):
                    codes &= self._filter(cs, flt)
            parts.append({system: codes})
        parts.extend(self.expand(vs_url.split("|", 1)[0], stack) for vs_url in include.get("valueSet", []))
        if not parts:
            raise Uncheckable("include without system or valueSet")
        result = parts[0]
        for other in parts[1:]:  # a system and imported value sets intersect
            result = {s: result[s] & other[s] for s in result.keys() & other.keys()}
        return result


def _property_value(prop: Json) -> Any:
    for key, value in prop.items():
        if key.startswith("value"):
            return value
    return None


def _from_expansion(contains: list[Json]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    stack = list(contains)
    while stack:
        item = stack.pop()
        if "code" in item and not item.get("abstract"):
            result.setdefault(item.get("system", ""), set()).add(item["code"])
        stack.extend(item.get("contains", []))
    return result


def _merge(into: dict[str, set[str]], other: dict[str, set[str]]) -> None:
    for system, codes in other.items():
        into.setdefault(system, set()).update(codes)


def build_valuesets(resources: list[Json], types: Json) -> tuple[Json, list[str]]:
    terminology = Terminology(resources)
    expansions: Json = {}
    uncheckable: Json = {}
    for url in sorted(required_bindings(types)):
        try:
            expansion = terminology.expand(url)
        except Uncheckable as exc:
            uncheckable[url] = str(exc)
            continue
        expansions[url] = {system: sorted(codes) for system, codes in sorted(expansion.items())}
    return {"valuesets": expansions, "uncheckable": uncheckable}, terminology.unsupported


# ------------------------------------------------------------------------------------------ search parameters
SEARCH_KEYS = (
    "url",
    "code",
    "name",
    "base",
    "type",
    "expression",
    "target",
    "modifier",
    "comparator",
    "multipleOr",
    "multipleAnd",
    "chain",
)


def is_core_search_parameter(sp: Json) -> bool:
    """Core = published with the specification (version 4.0.1), not an experimental extension parameter."""
    return sp.get("version") == "4.0.1" and not sp.get("experimental") and bool(sp.get("base"))


def build_search_parameters(resources: list[Json]) -> list[Json]:
    by_url: dict[str, Json] = {}
    for sp in flatten_bundles(resources):
        if sp["resourceType"] != "SearchParameter" or not is_core_search_parameter(sp):
            continue
        compact = {key: sp[key] for key in SEARCH_KEYS if sp.get(key) not in (None, [], "")}
        if sp.get("component"):
            compact["component"] = [
                {"definition": c["definition"], "expression": c["expression"]} for c in sp["component"]
            ]
        by_url[sp["url"]] = compact
    params = [by_url[url] for url in sorted(by_url)]
    if len(params) != CORE_SEARCH_PARAMETER_COUNT:
        raise SystemExit(
            f"expected {CORE_SEARCH_PARAMETER_COUNT} core search parameters, found {len(params)}"
        )
    return params


# ----------------------------------------------------------------------------------------------- compartments
def build_compartments(resources: list[Json]) -> Json:
    compartments: Json = {}
    for cd in resources:
        if cd["resourceType"] != "CompartmentDefinition" or cd.get("code") not in COMPARTMENTS:
            continue
        if cd["url"] != f"http://hl7.org/fhir/CompartmentDefinition/{cd['id']}" or cd["id"] == "example":
            continue
        compartments[cd["code"]] = {r["code"]: r["param"] for r in cd.get("resource", []) if r.get("param")}
    if sorted(compartments) != sorted(COMPARTMENTS):
        raise SystemExit(f"expected compartments {COMPARTMENTS}, found {sorted(compartments)}")
    return compartments


# --------------------------------------------------------------------------------------------------- writing
def write_gz(path: Path, data: Any) -> int:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    path.write_bytes(packed)
    return len(packed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--package", type=Path, default=DEFAULT_PACKAGE, help="hl7.fhir.r4.core-4.0.1.tgz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)

    resources = read_package(args.package)
    types = build_elements(resources)
    valuesets, unsupported = build_valuesets(resources, types)
    outputs = {
        "elements.json.gz": {"fhirVersion": "4.0.1", "types": types},
        "valuesets.json.gz": valuesets,
        "search_parameters.json.gz": build_search_parameters(resources),
        "compartments.json.gz": build_compartments(resources),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, data in outputs.items():
        size = write_gz(args.out / name, data)
        total += size
        print(f"wrote {name}: {size:,} bytes")
    print(f"total {total:,} bytes")

    n_resources = sum(1 for t in types.values() if t["kind"] == "resource" and not t["abstract"])
    print(f"{len(types)} types ({n_resources} concrete resource types)")
    print(f"{len(valuesets['valuesets'])} required-binding value sets expanded")
    print(f"{len(valuesets['uncheckable'])} not checkable (any code accepted):")
    for url, reason in valuesets["uncheckable"].items():
        print(f"  {url}: {reason}")
    if unsupported:
        print("unsupported value set features:")
        for item in unsupported:
            print(f"  {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
