"""Proposer defaults are declared once, in ProposerOptions: the docs' configuration
table and the shipped configs/cluster.ini say the same names and values."""

from __future__ import annotations

import configparser
import re

from msgspec.structs import fields

from tests.harness import ROOT
from tests.test_readme import section
from zpaxos.protocol.core import ProposerOptions
from zpaxos.runtime.config import PROPOSER_KEYS

DEFAULTS = ProposerOptions()
CLI_ONLY = {"first_round"}  # staging: `zpaxos propose --first-round`, never in a config


def readme_proposer_rows() -> dict[str, str]:
    """{key: default} of the [proposer] rows of the docs' configuration table."""
    rows: dict[str, str] = {}
    current = None
    for line in section("Configuration reference").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not line.startswith("|") or cells[0].startswith("---"):
            continue
        if cells[0]:
            current = cells[0]
        if current == "`[proposer]`":
            rows[cells[1].strip("`")] = cells[2].strip("`")
    return rows


def test_the_config_keys_are_the_options_fields():
    assert set(PROPOSER_KEYS) == {f.name for f in fields(ProposerOptions)} - CLI_ONLY


def test_the_readme_table_has_the_options_names_and_defaults():
    rows = readme_proposer_rows()
    assert list(rows) == list(PROPOSER_KEYS)
    for key, text in rows.items():
        assert re.fullmatch(r"[0-9.]+", text), (key, text)
        assert float(text) == getattr(DEFAULTS, key), key


def test_cluster_ini_says_the_defaults():
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    parser.read(ROOT / "configs" / "cluster.ini")
    section_ = parser["proposer"]
    for key in section_:
        assert float(section_[key]) == getattr(DEFAULTS, key), key
