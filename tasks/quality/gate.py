"""Great Expectations suites that gate a release (GX core 1.x, ephemeral context, in-task).

The GX Airflow provider's dataframe operator loads its data at DAG-parse time
(docs/reference/airflow3_notes.md §0.2), so the gate is a plain function called from a task: it builds the
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


# GX's own loggers print ~200 INFO lines per validation (decorator registration at import, data
# sources, stores, the docs site); the gate's log says "N of M expectations passed" and lists the
# failures instead (issue 11). Some GX modules set their logger's level themselves, so every GX
# logger is set, before the import (for import-time messages) and after it. Warnings still show.
def _quiet_gx_loggers() -> None:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("great_expectations.") and isinstance(logger, logging.Logger):
            logger.setLevel(logging.WARNING)


def _gx():
    _quiet_gx_loggers()
    import great_expectations as gx

    _quiet_gx_loggers()
    return gx


DOCS_SITE = "leader360v"


def context(docs_dir: str | os.PathLike | None = None):
    """An ephemeral GX context (nothing persists but what the caller copies out), progress bars
    off; with ``docs_dir`` it has a Data Docs site there that :func:`build_data_docs` renders
    with GX's own site builder (index, one page per suite and per validation)."""
    gx = _gx()
    ctx = gx.get_context(mode="ephemeral")
    try:
        ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
    except Exception:  # noqa: BLE001 - cosmetic only: the bars go to stderr
        log.debug("could not switch GX progress bars off", exc_info=True)
    if docs_dir is not None:
        ctx.add_data_docs_site(DOCS_SITE, {
            "class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    _quiet_gx_loggers()  # loggers of modules the context loaded lazily
    return ctx


def build_data_docs(ctx, docs_dir: str | os.PathLike) -> list[str]:
    """Render the Data Docs of every validation run in ``ctx`` into ``docs_dir``; the relative
    paths of the files a reader needs (every page, and the static files the pages or their
    styles refer to -- GX ships ~3 MB of tutorial GIFs no page of a validation shows)."""
    import re
    from pathlib import Path

    ctx.build_data_docs(site_names=[DOCS_SITE])
    root = Path(docs_dir)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    texts = " ".join((root / f).read_text(errors="ignore") for f in files if f.endswith((".html", ".css")))
    referenced = set(re.findall(r"[\w.-]+\.\w{2,5}", texts))
    return [f for f in files if not f.startswith("static/") or f.rsplit("/", 1)[-1] in referenced]


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


def run_suite(name: str, tables: dict[str, pd.DataFrame], checks: list[Check], ctx=None) -> dict:
    """Validate each table with its checks; a JSON-able report with every failed expectation.
    Several suites can share one ``ctx`` (:func:`context`), so one Data Docs site shows them all."""
    gx = _gx()
    ctx = ctx if ctx is not None else context()
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


def describe(reports: list[dict]) -> tuple[str, list[str]]:
    """("N of M expectations passed", one line per failed expectation) for a log."""
    evaluated = sum(t["evaluated"] for r in reports for t in r["tables"].values())
    passed = sum(t["successful"] for r in reports for t in r["tables"].values())
    lines = [f"[{r['suite']}/{f['table']}] {f['expectation']} {f['kwargs']} observed={f['observed']} "
             f"unexpected={f['unexpected_count']} sample={f['unexpected_sample']}"
             for r in reports for f in r["failures"]]
    return f"{passed} of {evaluated} expectations passed", lines


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
