"""validate: the per-video Great Expectations suite. A video whose suite passes is *ready*
for a release; one that fails stays out of releases with the failed expectations in the log
(and in ``validate/gx_report.json`` beside the uncommitted stage, for inspection)."""

from __future__ import annotations

import logging

from tasks.config import PipelineConfig
from tasks.formats import ytvis
from tasks.quality import gate
from tasks.quality.tables import video_tables
from tasks.stages.contract import StageInputs, StageOutput, StageWriter
from tasks.storage import ObjectStore
from tasks.vocabulary import master

log = logging.getLogger(__name__)


def validate_document(doc: dict, config: PipelineConfig, name: str) -> dict:
    video = doc["videos"][0]
    tables = video_tables(doc)
    checks = gate.video_checks(int(video["length"]), master().ids(), config.release.min_frame_coverage,
                               config.release.min_frame_coverage_mostly)
    return gate.run_suite(name, tables, checks)


def run(inputs: StageInputs, config: PipelineConfig, store: ObjectStore, writer: StageWriter) -> StageOutput:
    doc = ytvis.load(store.get_json(inputs.output_key(store, "qa", "annotations")))
    report = validate_document(doc, config, f"video_{inputs.video_id}")
    key = writer.put_json("gx_report.json", report)
    headline, failures = gate.describe([report])
    # the one INFO line of this stage (issue 11); each failure on its own line
    log.info("video %s: %s", inputs.video_id, headline)
    for line in failures:
        log.error("video %s failed %s", inputs.video_id, line)
    gate.require_pass([report])
    return StageOutput(
        outputs={"report": key, "annotations": inputs.output_key(store, "qa", "annotations")},
        stats={"success": True, "tables": report["tables"]},
    )
