"""A schema's dump as one dict comprehension, for the local API's hot path.

marshmallow's Schema.dump looks each value up through its accessor, which tries `obj[key]` before
`getattr`: on the namedtuple a bearer check gives (store/tokens.py, LiveUser) that is a caught
TypeError per field. GET /localapi/account's eight fields took 21 µs of the request's 131 in the
app (in-process, alternated runs); calling each field's own `_serialize` on the attribute takes
8. The fields, their data keys and their formats stay the schema's, and so does the OpenAPI
document built from it.
"""

from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields
from marshmallow.decorators import POST_DUMP, PRE_DUMP

_NOT_FLAT = (fields.Nested, fields.Pluck, fields.List, fields.Tuple, fields.Dict, fields.Method, fields.Function)


def flat_dumper(schema: Schema) -> Callable[[Any], dict]:
    """A function giving `schema.dump(obj)` for an object that has every field's attribute.

    Only for a flat schema: no pre- or post-dump hooks, no nested or computed fields (TypeError
    otherwise, when the dumper is built). An attribute the object lacks raises AttributeError,
    where `dump` would leave the member out.
    """
    if _has_dump_hooks(schema):
        raise TypeError(f"{type(schema).__name__} has dump hooks; use its dump()")
    plan = []
    for name, field in schema.dump_fields.items():
        if isinstance(field, _NOT_FLAT) or not field._CHECK_ATTRIBUTE:
            raise TypeError(f"{type(schema).__name__}.{name} is not a plain field; use the schema's dump()")
        attribute = field.attribute or name
        plan.append((field.data_key if field.data_key is not None else name, attribute, field._serialize))

    def dump(obj) -> dict:
        return {key: serialize(getattr(obj, attribute), attribute, obj) for key, attribute, serialize in plan}

    return dump


def _has_dump_hooks(schema: Schema) -> bool:
    for tag, hooks in getattr(schema, "_hooks", {}).items():
        name = tag[0] if isinstance(tag, tuple) else tag  # marshmallow 3 keys hooks by (tag, pass_many)
        if name in (PRE_DUMP, POST_DUMP) and hooks:
            return True
    return False
