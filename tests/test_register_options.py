"""A register operation's options, built from the config's [proposer] options: overrides
checked by name, and built once (they were rebuilt per ``set``/``get``, at a cost of
msgspec evaluating the classes' annotations each time: more than the rest of a set's
Python)."""

from __future__ import annotations

import pytest

from zpaxos.protocol.core import ProposerOptions
from zpaxos.protocol.wiretypes import key_problem
from zpaxos.runtime.register_client import options_with, register_options


def test_overrides_apply_and_unknown_ones_are_refused() -> None:
    p = ProposerOptions(max_rounds=7)
    o = options_with(p, False, {"read_quorum_first": True, "timeout_s": None})
    assert o.max_rounds == 7 and not o.one_rtt and o.read_quorum_first
    assert o.timeout_s == p.timeout_s  # None keeps
    with pytest.raises(TypeError, match="no register option 'colour'"):
        options_with(p, True, {"colour": 1})


def test_the_options_of_one_proposer_config_are_built_once() -> None:
    p = ProposerOptions(max_rounds=9)
    assert options_with(p, True, {}) is options_with(ProposerOptions(max_rounds=9), True, {})
    assert register_options(p, False) is not register_options(p, True)
    assert register_options(p, False).one_rtt is False
    assert options_with(p, True, {"max_rounds": 3}).max_rounds == 3
    assert register_options(p, True).max_rounds == 9  # the kept one is not changed


def test_a_key_of_the_wrong_type_is_said_not_raised() -> None:
    assert key_problem(b"k") == "a key is a str, not bytes"  # type: ignore[arg-type]
