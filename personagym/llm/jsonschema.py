"""The JSON schema of a reply type: what servers and constrained decoders are sent, and part of every
structured call's cache key.

Reply types are msgspec Structs (personagym/method/schemas.py). The schema is written in the dialect
pydantic v2 wrote for the same types until personagym dropped pydantic for start-up time (bench/RESULTS.md,
"Fifth session"): titles from class and field names, the class docstring as description, nested types
under $defs with #/$defs refs, keys sorted except a type's properties, which keep field order. It must
stay byte for byte the same, or every cached structured reply would stop matching (llm/cache.py);
tests/reply_schemas.json pins it for every reply type the product sends.

Only what reply types use is covered: strings, integers, lists and tuples with bounds, literals, Any
and nested Structs. Anything else is a programming error, raised at the first use of the type.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any


@functools.lru_cache(maxsize=256)
def json_schema(reply_type: type) -> dict[str, Any]:
    """The JSON schema of a Struct type, built once per type; callers must not change the dict.

    A type may advertise a stricter schema than it validates with (`__advertised__`, a Struct type):
    a batch asks for exactly k sets in order, but is read set by set so one bad set is asked again
    alone (method/schemas.py, score_example_batch)."""
    from msgspec import inspect as types  # only where a schema is written: not on every import

    shown = getattr(reply_type, "__advertised__", reply_type)
    defs: dict[str, Any] = {}
    schema = _struct(types.type_info(shown), defs, types)
    if defs:
        schema["$defs"] = defs
    return _sorted(schema)


def _struct(info: Any, defs: dict[str, Any], types: Any) -> dict[str, Any]:
    cls = info.cls
    schema: dict[str, Any] = {}
    if cls.__doc__:
        schema["description"] = inspect.cleandoc(cls.__doc__)
    hints = typing.get_type_hints(cls, include_extras=True)
    schema["properties"] = {
        f.encode_name: {**_type(f.type, defs, types, _literals(hints[f.name])), "title": f.name.replace("_", " ").title()}
        for f in info.fields
    }
    schema["required"] = [f.encode_name for f in info.fields if f.required]
    schema["title"] = cls.__name__
    schema["type"] = "object"
    return schema


def _type(info: Any, defs: dict[str, Any], types: Any, order: dict[Any, int]) -> dict[str, Any]:
    if isinstance(info, types.StructType):
        name = info.cls.__name__
        if name not in defs:
            defs[name] = {}  # placed first: a type that refers to itself stops here
            defs[name] = _struct(info, defs, types)
        return {"$ref": f"#/$defs/{name}"}
    if isinstance(info, types.StrType):
        return _bounds(info, {"type": "string"}, "minLength", "maxLength") | _given(pattern=info.pattern)
    if isinstance(info, types.IntType):
        return {"type": "integer"} | _given(
            exclusiveMinimum=info.gt, minimum=info.ge, exclusiveMaximum=info.lt, maximum=info.le,
            multipleOf=info.multiple_of,
        )
    if isinstance(info, types.BoolType):
        return {"type": "boolean"}
    if isinstance(info, types.ListType):
        return _bounds(info, {"items": _type(info.item_type, defs, types, order), "type": "array"}, "minItems", "maxItems")
    if isinstance(info, types.TupleType):
        k = len(info.item_types)
        return {"maxItems": k, "minItems": k, "prefixItems": [_type(t, defs, types, order) for t in info.item_types],
                "type": "array"}
    if isinstance(info, types.LiteralType):
        values = sorted(info.values, key=order.__getitem__)  # as declared: msgspec sorts them
        kinds = {type(v) for v in values}
        kind = {str: "string", int: "integer"}.get(kinds.pop()) if len(kinds) == 1 else None
        spelled: dict[str, Any] = {"const": values[0]} if len(values) == 1 else {"enum": values}
        return spelled | ({"type": kind} if kind else {})
    if isinstance(info, types.AnyType):
        return {}
    raise TypeError(f"no JSON schema for {info!r} in a reply type")


def _literals(annotation: Any) -> dict[Any, int]:
    """Where each value of the Literals in a field's annotation was declared."""
    found: dict[Any, int] = {}
    if typing.get_origin(annotation) is typing.Literal:
        found.update((v, i) for i, v in enumerate(typing.get_args(annotation)))
    for arg in typing.get_args(annotation):
        if not isinstance(arg, (str, int)):
            found.update(_literals(arg))
    return found


def _bounds(info: Any, schema: dict[str, Any], low: str, high: str) -> dict[str, Any]:
    return schema | _given(**{low: info.min_length, high: info.max_length})


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _sorted(value: Any, keep_order: bool = False) -> Any:
    """Keys sorted at every level, except the names of a type's properties (field order)."""
    if isinstance(value, dict):
        items = value.items() if keep_order else sorted(value.items())
        return {k: _sorted(v, keep_order=(k == "properties" and not keep_order)) for k, v in items}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value
