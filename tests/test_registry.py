"""Registries populate themselves on first use, and a failed populate import is not remembered."""

from __future__ import annotations

import sys
import textwrap

import pytest

from core.registry import Registry


def test_failed_populate_import_is_retried_not_reported_as_unknown_keys(tmp_path, monkeypatch):
    reg = Registry("gadget", ("vidprune_test_gadgets",))
    module = tmp_path / "vidprune_test_gadgets.py"
    module.write_text("raise ImportError('optional dependency missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("core.registry.GADGETS", reg, raising=False)
    with pytest.raises(ImportError, match="optional dependency missing"):
        reg.get("spring")
    # The import problem is fixed: the next lookup imports again and finds the valid key.
    sys.modules.pop("vidprune_test_gadgets", None)
    module.write_text(
        textwrap.dedent(
            """
            from core.registry import GADGETS
            GADGETS.register("spring")(dict)
            """
        )
    )
    assert reg.get("spring") is dict
    assert reg.names() == ["spring"]
    sys.modules.pop("vidprune_test_gadgets", None)


def test_lookup_during_populate_sees_entries_so_far_without_recursing(tmp_path, monkeypatch):
    reg = Registry("gizmo", ("vidprune_test_gizmos",))
    (tmp_path / "vidprune_test_gizmos.py").write_text(
        textwrap.dedent(
            """
            from core.registry import GIZMOS
            GIZMOS.register("a")(int)
            SEEN = GIZMOS.names()  # a lookup while the registry is being filled
            GIZMOS.register("b")(float)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("core.registry.GIZMOS", reg, raising=False)
    assert reg.names() == ["a", "b"]
    assert sys.modules["vidprune_test_gizmos"].SEEN == ["a"]
    sys.modules.pop("vidprune_test_gizmos", None)
