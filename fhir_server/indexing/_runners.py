"""Runtime navigation: the functions compiled branches are made of.

A step is ``(items, root) -> items`` (``root`` is the resource, for ``%resource`` and ``resolve()``).  JSON
property look-ups are fused into one walk per run of consecutive names; a list value contributes its items, a
missing or ``null`` value nothing, and non-object items are skipped, so malformed input never raises.  Steps may
return the resource's own arrays: callers must not mutate what they get.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "EMPTY",
    "Nav",
    "Step",
    "const",
    "identity",
    "resource_filter",
    "root_runner",
    "root_step",
    "runner",
    "union",
    "url_filter",
]

Step = Callable[[list[Any], dict[str, Any]], list[Any]]
Nav = Step
EMPTY: list[Any] = []


def runner(steps: tuple[str | Step, ...]) -> Nav:
    """Fuse a branch's steps into one function ``(items, root) -> items``."""
    fused = _fuse(steps)
    if not fused:
        return identity
    if len(fused) == 1:
        return fused[0]

    def run(items: list[Any], root: dict[str, Any]) -> list[Any]:
        for step in fused:
            items = step(items, root)
            if not items:
                return items
        return items

    return run


def root_runner(steps: tuple[str | Step, ...]) -> Callable[[dict[str, Any]], list[Any]]:
    """Like :func:`runner`, starting from the resource itself, with a fast exit when the first element is
    absent (the common case for most parameters of a resource)."""
    if not steps or not isinstance(steps[0], str):
        nav = runner(steps)
        return lambda resource: nav([resource], resource)
    first, rest = steps[0], runner(steps[1:]) if len(steps) > 1 else None

    def run(resource: dict[str, Any]) -> list[Any]:
        value = resource.get(first)
        if value is None:
            return EMPTY
        items = value if type(value) is list else [value]
        return items if rest is None else rest(items, resource)

    return run


def _fuse(steps: tuple[str | Step, ...]) -> list[Step]:
    fused: list[Step] = []
    keys: list[str] = []
    for step in steps:
        if isinstance(step, str):
            keys.append(step)
            continue
        if keys:
            fused.append(_walk(tuple(keys)))
            keys = []
        fused.append(step)
    if keys:
        fused.append(_walk(tuple(keys)))
    return fused


def _walk(keys: tuple[str, ...]) -> Step:
    if len(keys) == 1:
        (key,) = keys

        def walk_one(items: list[Any], root: dict[str, Any]) -> list[Any]:
            out: list[Any] = []
            for item in items:
                if type(item) is dict:
                    value = item.get(key)
                    if value is not None:
                        if type(value) is list:
                            out.extend(value)
                        else:
                            out.append(value)
            return out

        return walk_one

    def walk(items: list[Any], root: dict[str, Any]) -> list[Any]:
        for key in keys:
            out: list[Any] = []
            for item in items:
                if type(item) is dict:
                    value = item.get(key)
                    if value is not None:
                        if type(value) is list:
                            out.extend(value)
                        else:
                            out.append(value)
            if not out:
                return out
            items = out
        return items

    return walk


def union(runners: list[Nav]) -> Nav:
    if not runners:
        return lambda items, root: EMPTY
    if len(runners) == 1:
        return runners[0]

    def union(items: list[Any], root: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for run in runners:
            out.extend(run(items, root))
        return out

    return union


def identity(items: list[Any], root: dict[str, Any]) -> list[Any]:
    return items


def root_step(items: list[Any], root: dict[str, Any]) -> list[Any]:
    return [root]


def const(value: Any) -> Step:
    result = [value]
    return lambda items, root: result


def url_filter(url: Any) -> Step:
    return lambda items, root: [i for i in items if type(i) is dict and i.get("url") == url]


def resource_filter(kinds: frozenset[str]) -> Step:
    return lambda items, root: [i for i in items if type(i) is dict and i.get("resourceType") in kinds]
