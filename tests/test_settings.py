"""One home for every default: config/config.yaml and config/schema.yaml are held equal to actlas.settings."""

import dataclasses

import pytest
import yaml
from conftest import ROOT

from actlas import settings

CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
SCHEMA = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())


def test_config_yaml_holds_exactly_the_settings_defaults():
    assert settings.defaults() == CONFIG


def test_schema_lists_every_setting_with_a_description():
    props = SCHEMA["properties"]
    assert set(props) == set(settings.defaults())
    for section, cls in settings.SECTIONS.items():
        want = set(settings.as_config(cls()))
        assert set(props[section]["properties"]) == want, section
    for name, cls in settings.ITEMS.items():
        assert set(props[name]["items"]["properties"]) == set(settings.as_config(cls())), name

    def walk(node, where):
        for key, value in node.get("properties", {}).items():
            assert value.get("description"), f"{where}.{key} has no description"
            walk(value, f"{where}.{key}")
            if "items" in value:
                walk(value["items"], f"{where}.{key}[]")

    walk(SCHEMA, "config")


def test_fill_gives_list_items_their_defaults():
    filled = settings.fill({"class_atlases": [{"class": "ibex"}], "patches": [{"target": "wok"}]})
    assert filled["class_atlases"][0] == {**settings.as_config(settings.ClassAtlas()), "class": "ibex"}
    assert filled["patches"][0]["max_images"] == settings.Patch.max_images
    assert filled["render"]["power"] == settings.RenderParams.power


def test_unknown_setting_names_the_closest():
    with pytest.raises(ValueError, match="did you mean 'n_neighbors'"):
        settings.fill({"layout": {"n_neighbours": 5}})


def test_render_defaults_are_one():
    """The workflow's render settings and RenderParams (the library and CLI default) are the same."""
    fields = {f.name for f in dataclasses.fields(settings.RenderParams)} - {"seed"}
    for name in fields:
        assert CONFIG["render"][name] == getattr(settings.RenderParams(), name), name


def test_schema_enums_are_the_settings_choices():
    """A setting with a fixed set of values: the schema's enum, the CLI's choice and the settings agree."""
    props = SCHEMA["properties"]
    places = [(props, settings.Run)]
    places += [(props[section]["properties"], cls) for section, cls in settings.SECTIONS.items()]
    places += [(props[name]["items"]["properties"], cls) for name, cls in settings.ITEMS.items()]
    seen = 0
    for schema, cls in places:
        for field in dataclasses.fields(cls):
            choices = settings.choices(cls, field.name)
            if choices and field.name in schema:
                assert tuple(schema[field.name]["enum"]) == choices, (cls.__name__, field.name)
                seen += 1
    assert seen >= 8
