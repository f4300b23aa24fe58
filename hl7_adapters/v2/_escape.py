"""HL7 v2 escape sequences (v2.5.1 ch. 2.7): decoding on read, encoding on write.

Decoding is lazy: a component is only decoded when a mapping reads it, and the fast path
(no escape character in the text) is a single ``in`` test.
"""

from __future__ import annotations

from hl7_adapters.v2._delimiters import Delimiters

# Formatting commands (\.br\, \.sp\, \.in\ ...) that carry a line break; the others are dropped.
_LINE_BREAKS = {".br", ".sp"}


def decode(text: str, d: Delimiters) -> str:
    """Decode escape sequences in one leaf value; unknown sequences are kept verbatim."""
    esc = d.escape
    if not esc or esc not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != esc:
            out.append(ch)
            i += 1
            continue
        end = text.find(esc, i + 1)
        if end < 0:  # unterminated: keep the rest as it is
            out.append(text[i:])
            break
        out.append(_expand(text[i + 1 : end], d))
        i = end + 1
    return "".join(out)


def _expand(seq: str, d: Delimiters) -> str:
    simple = {
        "F": d.field,
        "S": d.component,
        "T": d.subcomponent,
        "R": d.repetition,
        "E": d.escape,
        "P": d.truncation or "#",
    }
    if seq in simple:
        return simple[seq]
    if not seq:
        return d.escape + d.escape
    head = seq[0]
    if head == "X":
        return _hex(seq[1:])
    if head in ("H", "N") and len(seq) == 1:
        return ""  # highlighting on/off carries no data
    if head in ("C", "M", "Z"):
        return ""  # character-set switches and locally defined escapes: no data
    if head == "." and seq[:3] in _LINE_BREAKS:
        return "\n"
    if head == ".":
        return ""
    return d.escape + seq + d.escape


def _hex(digits: str) -> str:
    try:
        return bytes.fromhex(digits).decode("utf-8", errors="replace")
    except ValueError:
        return ""


def encode(text: str, d: Delimiters) -> str:
    """Escape delimiter characters so ``text`` can be placed in one leaf of an outbound message."""
    if not text:
        return text
    specials = (d.escape, d.field, d.component, d.repetition, d.subcomponent, "\r", "\n")
    if not any(c in text for c in specials):
        return text
    table = {
        d.escape: f"{d.escape}E{d.escape}",
        d.field: f"{d.escape}F{d.escape}",
        d.component: f"{d.escape}S{d.escape}",
        d.repetition: f"{d.escape}R{d.escape}",
        d.subcomponent: f"{d.escape}T{d.escape}",
        "\r": f"{d.escape}.br{d.escape}",
        "\n": f"{d.escape}.br{d.escape}",
    }
    return "".join(table.get(c, c) for c in text.replace("\r\n", "\n"))
