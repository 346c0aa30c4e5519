"""The new-run form from an input schema (web/input_form.py): which control each property gets, and
the posted text typed back into the JSON the schema expects."""

from __future__ import annotations

from web.input_form import LONG_TEXT, form_fields, read_form

SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "title": "Text", "description": "What to read"},
        "short": {"type": ["string", "null"], "maxLength": LONG_TEXT},
        "long": {"type": "string", "maxLength": LONG_TEXT + 1},
        "n": {"type": "integer", "minimum": 0, "maximum": 9, "default": 3},
        "x": {"type": "number", "exclusiveMinimum": 0},
        "flag": {"type": "boolean", "default": True},
        "level": {"enum": [1, 2, "three"]},
        "items": {"type": "array", "items": {"type": "string"}, "default": ["a"]},
    },
    "required": ["text"],
}


def test_each_property_gets_the_control_its_schema_asks_for():
    fields = {f.name: f for f in form_fields(SCHEMA)}
    assert list(fields) == list(SCHEMA["properties"])
    assert (fields["text"].widget, fields["text"].label, fields["text"].required) == ("textarea", "Text", True)
    assert fields["text"].description == "What to read"
    assert (fields["short"].widget, fields["short"].max_length) == ("text", LONG_TEXT)
    assert fields["long"].widget == "textarea"
    n = fields["n"]
    assert (n.widget, n.minimum, n.maximum, n.step, n.shown({})) == ("number", 0, 9, "1", "3")
    assert (fields["x"].widget, fields["x"].step, fields["x"].minimum) == ("number", "any", None)
    assert fields["flag"].widget == "checkbox" and fields["flag"].checked({}, posted=False)
    assert not fields["flag"].checked({}, posted=True)  # an unticked box is not sent
    assert (fields["level"].widget, fields["level"].options) == ("select", ("1", "2", "three"))
    assert (fields["items"].widget, fields["items"].shown({})) == ("json", '["a"]')
    assert fields["n"].shown({"n": "7"}) == "7"  # what was posted wins over the default


def test_posted_text_comes_back_typed():
    posted = {"text": "hi", "n": "4", "x": "0.25", "level": "2", "items": '["a", "b"]', "flag": "true"}
    assert read_form(SCHEMA, posted) == {
        "text": "hi",
        "n": 4,
        "x": 0.25,
        "flag": True,
        "level": 2,
        "items": ["a", "b"],
    }


def test_what_does_not_convert_is_left_for_the_schema_check_to_name():
    posted = {"text": "", "n": "four", "x": "1e999", "level": "9", "items": "[not json"}
    assert read_form(SCHEMA, posted) == {"n": "four", "x": "1e999", "flag": False, "level": "9", "items": "[not json"}
