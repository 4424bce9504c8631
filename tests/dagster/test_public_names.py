"""The top level is the Dagster face: a short list of names, and the first release's others still resolve."""

from __future__ import annotations

import importlib

import pytest

import trackstar_dagster


def test_the_top_level_is_short_and_every_name_resolves() -> None:
    assert len(trackstar_dagster.__all__) <= 26
    for name in trackstar_dagster.__all__:
        assert getattr(trackstar_dagster, name) is not None
    assert "suggest_mapping" in trackstar_dagster.__all__  # issue 13: a suggested mapping, from the top level


@pytest.mark.parametrize("name", sorted(trackstar_dagster._MOVED))
def test_a_moved_name_still_resolves_and_says_where_it_lives(name: str) -> None:
    home = trackstar_dagster._MOVED[name]
    with pytest.warns(DeprecationWarning, match=f"import it from {home}"):
        value = getattr(trackstar_dagster, name)
    assert value is getattr(importlib.import_module(home), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        trackstar_dagster.nope  # noqa: B018
