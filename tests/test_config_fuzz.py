"""A property test of the config (issue 31): random valid and invalid values for every schema key either
pass the parse-time check or fail it with one ``UserError`` line, never a traceback (``actlas.configcheck``:
size and alias limit, schema, settings' limits, names)."""

from __future__ import annotations

import copy
import math

import pytest
import yaml
from conftest import CARD, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actlas import limits
from actlas.configcheck import check_config, check_names, load_schema
from actlas.errors import UserError
from actlas.settings import Atlas, Collect, Grid, Layout, Render, Run

SCHEMA = load_schema(ROOT / "config" / "schema.yaml")
DEFAULTS = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
SECTIONS = [k for k, v in SCHEMA["properties"].items() if v.get("type") == "object" and "properties" in v]
KEYS = [(None, k) for k in SCHEMA["properties"]] + [
    (s, k) for s in SECTIONS for k in SCHEMA["properties"][s]["properties"]
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 0.5, 1e-300, 1e300, -1, 65504, 2**31, math.inf, -math.inf, math.nan]),
    st.text(max_size=30),
    st.sampled_from(["cosine", "cosin", "auto", "fft", "../../x", "", "crane", "crane (517)", "tench", "0"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
items = {
    "class_atlases": st.lists(st.fixed_dictionaries({"class": scalars}, optional={"grid": scalars}), max_size=2),
    "comparisons": st.lists(st.fixed_dictionaries({"classes": st.lists(scalars, max_size=3)}), max_size=2),
    "patches": st.lists(st.fixed_dictionaries({"target": scalars}, optional={"name": scalars}), max_size=2),
}


CLASSES = {"collect": Collect, "layout": Layout, "grid": Grid, "render": Render, "atlas": Atlas, None: Run}


def valid(section, key):
    """Values the schema and the limits take for ``section.key`` (its default when unsure)."""
    default = DEFAULTS[key] if section is None else DEFAULTS[section][key]
    lim = limits.limits(CLASSES[section], key) if section in CLASSES else None
    enum = (SCHEMA["properties"][key] if section is None else SCHEMA["properties"][section]["properties"][key]).get(
        "enum"
    )
    if isinstance(default, bool):
        return st.booleans()
    if enum:
        return st.sampled_from(enum)
    if lim and isinstance(default, int):
        return st.integers(int(lim[0]) + (lim[2] == "low"), min(int(lim[1]), 64))
    if lim and isinstance(default, float):
        return st.floats(lim[0], lim[1], exclude_min=lim[2] == "low", exclude_max=lim[2] == "high")
    return st.just(default)


@st.composite
def configs(draw):
    cfg = copy.deepcopy(DEFAULTS)
    for _ in range(draw(st.integers(1, 4))):
        section, key = draw(st.sampled_from(KEYS))
        if draw(st.booleans()) and not (section is None and key in items):
            value = draw(valid(section, key))
        else:
            value = draw(items[key] if section is None and key in items else values)
        if section is None:
            cfg[key] = value
        elif isinstance(cfg.get(section), dict):
            cfg[section][key] = value
    if draw(st.integers(0, 3)) == 0:
        cfg[draw(st.text(min_size=1, max_size=8))] = draw(values)  # an unknown key
    return cfg


@pytest.mark.skipif(not CARD.exists(), reason="shared assets (the default model's card) not found")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_any_config_passes_or_fails_at_parse_time_in_one_line(cfg):
    try:
        check_names(check_config(cfg, SCHEMA))
    except UserError as err:
        text = str(err)
        assert text and "\n" not in text and len(text) < 600, text
