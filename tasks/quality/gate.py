"""Great Expectations suites that gate a release (GX core 1.x, ephemeral context, in-task).

The GX Airflow provider's dataframe operator loads its data at DAG-parse time
(airflow3_notes.md §0.2), so the gate is a plain function called from a task: it builds the
suites in code, validates pandas tables and returns a report. :func:`require_pass` raises
:class:`QualityGateFailed` listing every failed expectation, which is what the task log shows.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import pandas as pd

from tasks.errors import QualityGateFailed

log = logging.getLogger(__name__)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@dataclass
class Check:
    table: str
    expectation: object  # a gx.expectations.Expectation


def _gx():
    import great_expectations as gx

    return gx


def video_checks(length: int, vocab_ids: set[int], min_cov: float, min_cov_mostly: float) -> list[Check]:
    E = _gx().expectations
    ids = sorted(vocab_ids)
    return [
        # row counts equal frame counts
        Check("frames", E.ExpectTableRowCountToEqual(value=length)),
        Check("frames", E.ExpectColumnValuesToBeUnique(column="frame")),
        Check("frames", E.ExpectColumnValuesToBeBetween(column="frame", min_value=0, max_value=max(length - 1, 0))),
        Check("frames", E.ExpectColumnValuesToBeInSet(column="has_file_name", value_set=[True])),
        # every frame labeled or explicitly empty
        Check("frames", E.ExpectColumnValuesToBeInSet(column="status", value_set=["labeled", "empty"])),
        # masks of one frame never overlap
        Check("frames", E.ExpectColumnValuesToBeBetween(column="overlap_px", min_value=0, max_value=0)),
        # coverage above its threshold (on most frames: a frame may legitimately be sparse)
        Check("frames", E.ExpectColumnValuesToBeBetween(column="coverage_sphere", min_value=min_cov,
                                                        mostly=min_cov_mostly)),
        # areas positive and equal to the RLE areas
        Check("masks", E.ExpectColumnValuesToBeBetween(column="rle_area", min_value=1)),
        Check("masks", E.ExpectColumnPairValuesToBeEqual(column_A="area", column_B="rle_area")),
        Check("masks", E.ExpectColumnValuesToBeBetween(column="sphere_area", min_value=0, strict_min=True)),
        Check("masks", E.ExpectColumnValuesToBeBetween(column="frame", min_value=0, max_value=max(length - 1, 0))),
        # classes in the vocabulary; one class per track (one annotation per track id)
        Check("tracks", E.ExpectColumnValuesToBeInSet(column="category_id", value_set=ids)),
        Check("tracks", E.ExpectColumnValuesToBeUnique(column="track_id")),
        Check("tracks", E.ExpectColumnPairValuesToBeEqual(column_A="segmentations_len", column_B="video_length")),
        Check("tracks", E.ExpectColumnValuesToBeBetween(column="present_frames", min_value=1)),
    ]


def release_checks(n_videos: int, vocab_ids: set[int]) -> list[Check]:
    E = _gx().expectations
    return [
        Check("videos", E.ExpectTableRowCountToEqual(value=n_videos)),
        Check("videos", E.ExpectColumnValuesToBeUnique(column="video_uid")),
        Check("videos", E.ExpectColumnValuesToBeUnique(column="video_id")),
        Check("videos", E.ExpectColumnPairValuesToBeEqual(column_A="file_names", column_B="length")),
        Check("videos", E.ExpectColumnValuesToBeInSet(column="is_erp", value_set=[True])),
        Check("videos", E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"])),
        Check("videos", E.ExpectColumnValuesToBeBetween(column="length", min_value=1)),
        Check("annotations", E.ExpectColumnValuesToBeUnique(column="annotation_id")),
        Check("annotations", E.ExpectColumnValuesToBeInSet(column="category_id", value_set=sorted(vocab_ids))),
    ]


def run_suite(name: str, tables: dict[str, pd.DataFrame], checks: list[Check]) -> dict:
    """Validate each table with its checks; a JSON-able report with every failed expectation."""
    gx = _gx()
    ctx = gx.get_context(mode="ephemeral")
    try:
        ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
    except Exception:  # noqa: BLE001 - cosmetic only: the bars go to stderr
        log.debug("could not switch GX progress bars off", exc_info=True)
    source = ctx.data_sources.add_pandas(name=f"{name}_source")
    report = {"suite": name, "success": True, "tables": {}, "failures": []}
    for table in sorted({c.table for c in checks}):
        df = tables[table]
        asset = source.add_dataframe_asset(name=table)
        batch_def = asset.add_batch_definition_whole_dataframe(f"{table}_batch")
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"{name}.{table}"))
        for c in checks:
            if c.table == table:
                suite.add_expectation(c.expectation)
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"{name}.{table}.vd", data=batch_def, suite=suite))
        res = vd.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
        stats = dict(res.statistics)
        report["tables"][table] = {"rows": len(df), "success": bool(res.success),
                                   "evaluated": int(stats.get("evaluated_expectations", 0)),
                                   "successful": int(stats.get("successful_expectations", 0))}
        for r in res.results:
            if not r.success:
                cfg = r.expectation_config
                result = r.result or {}
                report["failures"].append({
                    "table": table, "expectation": cfg.type,
                    "kwargs": {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)},
                    "observed": _jsonable(result.get("observed_value")),
                    "unexpected_count": result.get("unexpected_count"),
                    "unexpected_sample": _jsonable(result.get("partial_unexpected_list", [])[:10]),
                })
        report["success"] = report["success"] and bool(res.success)
    return report


def require_pass(reports: list[dict]) -> None:
    failures = [dict(f, suite=r["suite"]) for r in reports for f in r["failures"]]
    if not failures:
        return
    lines = [f"{len(failures)} expectation(s) failed; nothing was published:"]
    for f in failures:
        lines.append(f"  [{f['suite']}/{f['table']}] {f['expectation']} {f['kwargs']} "
                     f"observed={f['observed']} unexpected={f['unexpected_count']} sample={f['unexpected_sample']}")
    raise QualityGateFailed("\n".join(lines), failures)


def _jsonable(v):
    import json

    try:
        json.dumps(v)
        return v
    except TypeError:
        return str(v)
