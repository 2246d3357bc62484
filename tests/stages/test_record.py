"""A stage's run record: its config digest is that of the section file the workflow writes."""

from __future__ import annotations

import pytest

from dlforge.core.config import compose
from dlforge.core.record import text_digest
from dlforge.stages.config import stage_overrides
from dlforge.stages.record import UPSTREAM, stage_record
from dlforge.stages.sections import READS, section, section_text


@pytest.mark.parametrize("stage", sorted(READS))
def test_a_stage_records_the_digest_of_its_section_file(stage):
    cfg = compose(stage, stage_overrides(stage, ["experiment=intent"]))
    made = stage_record(cfg, stage, snapshot="s1")
    assert made["config"] == text_digest(section_text(section("intent", stage)))
    assert made["snapshot"] == "s1" and set(made["upstream"]) <= set(UPSTREAM[stage])
