"""GET /localapi/account's flat dump gives what the schema's own dump gives (api/flat_dump.py)."""

import itertools

import pytest
from marshmallow import Schema, fields, post_dump, pre_dump

from api.flat_dump import flat_dumper
from api.schemas import AccountSchema
from api.views import dump_account
from identity.store.tokens import LiveUser

ROW = dict(id=7, subject="3f9a0c", username="alice", email="alice@example.com", name="Alice Example",
           password_version=2, password_changed_at=1_780_000_000, email_verified=1, pending_email=None,
           has_second_factor=False)

# the values each column can hold as the bearer check reads them (SQLite gives 0 and 1 for booleans)
VARIANTS = {
    "email": ["alice@example.com", None, "ålice@exämple.com"],
    "name": ["Alice Example", None, ""],
    "email_verified": [1, 0, True, False],
    "pending_email": [None, "new@example.com"],
    "password_changed_at": [1_780_000_000, 0, None],
    "has_second_factor": [False, True, 0, 1],
}


def rows():
    names = list(VARIANTS)
    for values in itertools.product(*(VARIANTS[name] for name in names)):
        yield LiveUser(**{**ROW, **dict(zip(names, values))})


def test_every_account_row_dumps_as_the_schema_dumps_it():
    schema = AccountSchema()
    checked = 0
    for row in rows():
        flat = dump_account(row)
        assert flat == schema.dump(row), row
        assert list(flat) == list(schema.dump(row)), "the same members in the same order"
        checked += 1
    assert checked == 3 * 3 * 4 * 2 * 3 * 4


def test_the_dump_keeps_the_schemas_formats_and_data_keys():
    flat = dump_account(LiveUser(**{**ROW, "email_verified": 1, "has_second_factor": 1}))
    assert flat["sub"] == "3f9a0c", "the member is named by the schema, the value read from `subject`"
    assert flat["email_verified"] is True and flat["mfa_enabled"] is True, "0 and 1 become JSON booleans"
    assert flat["password_changed_at"] == "2026-05-28T20:26:40Z"

    class Renamed(Schema):
        user_name = fields.String(data_key="userName", attribute="username")

    assert flat_dumper(Renamed())(LiveUser(**ROW)) == Renamed().dump(LiveUser(**ROW)) == {"userName": "alice"}


def test_a_schema_it_cannot_dump_alike_is_refused_when_built():
    class Hooked(Schema):
        username = fields.String()

        @post_dump
        def upper(self, data, **kwargs):
            return {key: value.upper() for key, value in data.items()}

    class Prepared(Schema):
        username = fields.String()

        @pre_dump
        def prepare(self, obj, **kwargs):
            return obj

    class Computed(Schema):
        initials = fields.Method("first_letter")

        def first_letter(self, obj):
            return obj.username[0]

    class Nesting(Schema):
        account = fields.Nested(AccountSchema)

    for schema in (Hooked(), Prepared(), Computed(), Nesting()):
        with pytest.raises(TypeError):
            flat_dumper(schema)


def test_a_missing_attribute_is_an_error_not_a_silently_shorter_answer():
    class Partial(Schema):
        username = fields.String()
        nickname = fields.String()

    with pytest.raises(AttributeError):
        flat_dumper(Partial())(LiveUser(**ROW))
