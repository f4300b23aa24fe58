"""The parsed HL7 v2 message model: Message → Segment → Field → Repetition → components.

Everything is lazy: a segment keeps its raw text and splits it into fields on first access; a
field splits into repetitions/components/subcomponents and decodes escape sequences only when
read. Mappings therefore pay only for the fields they use, which keeps the MLLP hot path cheap.

The HL7 null ``""`` (two double quotes) is kept as the literal ``'""'`` in values; mappings treat
it as "delete/null".

Numbering follows the standard: ``PID-3`` is ``segment.field(3)``; for MSH (and FHS/BHS)
``field(1)`` is the field separator and ``field(2)`` the encoding characters, so ``MSH-9`` is
``field(9)``. Components, subcomponents are 1-based, repetitions 0-based.

Extensions beyond the issue-6 contract (backwards compatible): ``Segment.raw``, ``len(Segment)``,
``Field.raw``, ``Field.value``, ``Message.raw``, ``Message.delimiters``, ``Message.split``,
``Message.processing_id``, ``Message.datetime``.
"""

from __future__ import annotations

from functools import cached_property

from hl7_adapters.v2._delimiters import Delimiters
from hl7_adapters.v2._escape import decode

_HEADER_SEGMENTS = frozenset({"MSH", "FHS", "BHS"})

# Message structure (MSH-9.3) for trigger events that share another event's structure.
_STRUCTURES: dict[tuple[str, str], str] = {
    **{("ADT", t): "ADT_A01" for t in ("A01", "A04", "A08", "A13")},
    **{("ADT", t): "ADT_A05" for t in ("A05", "A14", "A28", "A31")},
    **{("ADT", t): "ADT_A09" for t in ("A09", "A10", "A11")},
    **{("ADT", t): "ADT_A06" for t in ("A06", "A07")},
    **{("ADT", t): "ADT_A39" for t in ("A39", "A40", "A41", "A42")},
    **{("ADT", t): "ADT_A21" for t in ("A21", "A22", "A25", "A26", "A27", "A29", "A32", "A33")},
    **{("ADT", t): "ADT_A12" for t in ("A12",)},
    **{("SIU", t): "SIU_S12" for t in ("S12", "S13", "S14", "S15", "S16", "S17", "S26")},
    **{("MDM", t): "MDM_T02" for t in ("T02", "T04", "T06", "T08", "T10")},
    **{("MDM", t): "MDM_T01" for t in ("T01", "T03", "T05", "T07", "T09", "T11")},
    **{("BAR", t): "BAR_P01" for t in ("P01", "P05")},
    ("VXU", "V04"): "VXU_V04",
    ("ORU", "R01"): "ORU_R01",
    ("ORM", "O01"): "ORM_O01",
    ("OML", "O21"): "OML_O21",
    ("DFT", "P03"): "DFT_P03",
    ("RDE", "O11"): "RDE_O11",
    ("OUL", "R22"): "OUL_R22",
}


class Repetition:
    """One repetition of a field: components → subcomponents, decoded."""

    __slots__ = ("_d", "_raw", "components")

    def __init__(self, raw: str, d: Delimiters) -> None:
        self._raw = raw
        self._d = d
        if d.subcomponent in raw or (d.escape and d.escape in raw):
            self.components: list[list[str]] = [
                [decode(sub, d) for sub in comp.split(d.subcomponent)] for comp in raw.split(d.component)
            ]
        else:  # nothing to split below the components nor to decode (most values)
            self.components = [[comp] for comp in raw.split(d.component)]

    def component(self, i: int, sub: int = 1) -> str:
        """Component ``i`` (1-based), subcomponent ``sub`` (1-based); ``""`` if absent."""
        if i < 1 or sub < 1 or i > len(self.components):
            return ""
        subs = self.components[i - 1]
        return subs[sub - 1] if sub <= len(subs) else ""

    @property
    def raw(self) -> str:
        return self._raw

    def __repr__(self) -> str:
        return f"Repetition({self._raw!r})"


class Field:
    """One field: its repetitions (empty list when the field is empty)."""

    __slots__ = ("_d", "_raw", "_reps", "_verbatim")

    def __init__(self, raw: str, d: Delimiters, *, verbatim: bool = False) -> None:
        self._raw = raw
        self._d = d
        self._reps: list[Repetition] | None = None
        self._verbatim = verbatim  # MSH-1/MSH-2: never split or decoded

    @property
    def repetitions(self) -> list[Repetition]:
        if self._reps is None:
            if not self._raw:
                self._reps = []
            elif self._verbatim:
                rep = Repetition("", self._d)
                rep.components = [[self._raw]]
                self._reps = [rep]
            else:
                self._reps = [Repetition(r, self._d) for r in self._raw.split(self._d.repetition)]
        return self._reps

    def value(self, component: int = 1, repetition: int = 0, subcomponent: int = 1) -> str:
        reps = self._reps
        if reps is None:
            reps = self.repetitions
        if repetition < 0 or repetition >= len(reps):
            return ""
        return reps[repetition].component(component, subcomponent)

    @property
    def raw(self) -> str:
        """The field exactly as received (escape sequences not decoded)."""
        return self._raw

    def __bool__(self) -> bool:
        return bool(self._raw)

    def __repr__(self) -> str:
        return f"Field({self._raw!r})"


class Segment:
    """One segment; fields are split on first access."""

    __slots__ = ("_d", "_fields", "_parts", "index", "name", "raw")

    def __init__(self, raw: str, index: int, d: Delimiters) -> None:
        self.raw = raw
        self.name = raw[:3]
        self.index = index
        self._d = d
        self._parts: list[str] | None = None
        self._fields: dict[int, Field] = {}

    def _split(self) -> list[str]:
        if self._parts is None:
            self._parts = self.raw.split(self._d.field)
        return self._parts

    def field(self, n: int) -> Field:
        cached = self._fields.get(n)
        if cached is not None:
            return cached
        header = self.name in _HEADER_SEGMENTS
        if header and n == 1:
            f = Field(self._d.field, self._d, verbatim=True)
        elif header and n == 2:
            f = Field(self._d.encoding_characters, self._d, verbatim=True)
        else:
            parts = self._split()
            pos = n - 1 if header else n
            f = Field(parts[pos] if n >= 1 and pos < len(parts) else "", self._d)
        self._fields[n] = f
        return f

    def value(self, n: int, component: int = 1, repetition: int = 0, subcomponent: int = 1) -> str:
        """Leaf value of field ``n``; ``""`` if absent."""
        found = self._fields.get(n)
        if found is None:
            found = self.field(n)
        return found.value(component, repetition, subcomponent)

    def __len__(self) -> int:
        """Number of the last field present (``PID|1|2`` has length 2)."""
        count = len(self._split()) - 1
        return count + 1 if self.name in _HEADER_SEGMENTS else count

    def __repr__(self) -> str:
        return f"Segment({self.name}, index={self.index})"


class Message:
    """A parsed message; segments in order, MSH first."""

    def __init__(self, segments: list[Segment], delimiters: Delimiters, raw: str) -> None:
        self.segments = segments
        self.delimiters = delimiters
        self.raw = raw

    def first(self, name: str) -> Segment | None:
        for seg in self.segments:
            if seg.name == name:
                return seg
        return None

    def all(self, name: str) -> list[Segment]:
        return [seg for seg in self.segments if seg.name == name]

    def split(self, head: str) -> list[list[Segment]]:
        """Groups starting at each ``head`` segment, up to (not including) the next ``head``."""
        groups: list[list[Segment]] = []
        for seg in self.segments:
            if seg.name == head:
                groups.append([seg])
            elif groups:
                groups[-1].append(seg)
        return groups

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @cached_property
    def message_type(self) -> str:
        return self.msh.value(9, 1)

    @cached_property
    def trigger_event(self) -> str:
        return self.msh.value(9, 2)

    @cached_property
    def structure(self) -> str:
        explicit = self.msh.value(9, 3)
        if explicit:
            return explicit
        key = (self.message_type, self.trigger_event)
        if key in _STRUCTURES:
            return _STRUCTURES[key]
        return f"{key[0]}_{key[1]}" if key[1] else key[0]

    @cached_property
    def control_id(self) -> str:
        return self.msh.value(10)

    @cached_property
    def version(self) -> str:
        return self.msh.value(12, 1)

    @property
    def processing_id(self) -> str:
        return self.msh.value(11)

    @property
    def datetime(self) -> str:
        """MSH-7 as received (TS/DTM)."""
        return self.msh.value(7)

    @property
    def sending_application(self) -> str:
        return self.msh.value(3)

    @property
    def sending_facility(self) -> str:
        return self.msh.value(4)

    @property
    def receiving_application(self) -> str:
        return self.msh.value(5)

    @property
    def receiving_facility(self) -> str:
        return self.msh.value(6)

    @property
    def accept_ack_type(self) -> str | None:
        return self.msh.value(15) or None

    @property
    def application_ack_type(self) -> str | None:
        return self.msh.value(16) or None

    def __repr__(self) -> str:
        return f"Message({self.message_type}^{self.trigger_event}, {self.control_id!r})"
