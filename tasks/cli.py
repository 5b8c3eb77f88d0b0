"""``python -m tasks``: the one command-line entry point of the labeling engine.

Exit codes: 0 done; 1 unexpected or transient error (worth a retry); 2 bad usage or
configuration; 3 input rejected (quarantined); 4 duplicate upload (skipped); 5 quality gate
failed; 6 a stage ran before its upstream; 7 any other permanent error (a retry cannot help).
A pod's exit code is what tells Airflow whether to retry, so every permanent error has one. A GPU pod runs ``python -m tasks <stage> ...`` and its manifest is printed as JSON
(and written to ``--xcom-file`` for Airflow's KubernetesPodOperator).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from tasks import __version__

# The exit codes belong to the error classes (tasks/errors.py); re-exported for callers of the CLI.
from tasks.errors import (  # noqa: F401
    EXIT_CODES,
    EXIT_DUPLICATE,
    EXIT_ERROR,
    EXIT_GATE,
    EXIT_OK,
    EXIT_PERMANENT,
    EXIT_REJECTED,
    EXIT_UPSTREAM,
    EXIT_USAGE,
)


def _formatter():
    try:
        from rich_argparse import RawDescriptionRichHelpFormatter

        return RawDescriptionRichHelpFormatter
    except ImportError:  # pragma: no cover - rich-argparse is pinned, but help must never fail
        return argparse.RawDescriptionHelpFormatter


from tasks.commands._common import add_config_args as _add_config_args  # noqa: E402
from tasks.commands._common import add_store_arg as _add_store_arg  # noqa: E402
from tasks.commands._common import config_from_args as _config  # noqa: E402
from tasks.commands._common import hex_id as _hex_id  # noqa: E402
from tasks.commands._common import path_arg  # noqa: E402
from tasks.commands._common import print_json as _print_json  # noqa: E402
from tasks.commands._common import store_from_args as _store  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    from tasks.stages.runner import STAGES

    fmt = _formatter()
    parser = argparse.ArgumentParser(
        prog="python -m tasks", formatter_class=fmt,
        description="360° video auto-labeling (Leader360V method): instance segmentation + tracking on ERP video.",
        epilog="Exit codes: 0 ok, 1 error (retry may help), 2 usage/config, 3 input rejected, 4 duplicate, "
               "5 quality gate failed, 6 upstream stage missing, 7 other permanent error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv: debug, and the traceback of an error)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="render a synthetic 360° clip with ground truth", formatter_class=fmt,
                       description="Render clip.mp4 and gt.json (release format): textured objects moving on the "
                                   "sphere over a textured background, through a true spherical projection. "
                                   "With the defaults every clip has a seam crossing, a pole passage, an object "
                                   "appearing mid-clip and an occlusion. Deterministic per seed.")
    p.add_argument("--out", type=path_arg, required=True, help="output folder")
    p.add_argument("--seconds", type=float, default=4.0, help="clip length (default 4)")
    p.add_argument("--fps", type=float, default=15.0, help="frame rate (default 15)")
    p.add_argument("--width", type=int, default=1024, help="ERP width, even; height is width/2 (default 1024)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--objects", type=int, default=5, help="number of moving objects (default 5)")
    p.add_argument("--camera", choices=("still", "pan", "handheld", "vehicle"), default="handheld",
                   help="camera motion (default handheld); a moving camera also gives multi-coloured objects, "
                        "changing light and compression; 'still' gives the plain clips of earlier versions")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("label", help="label one video in-process (every stage, no Airflow)", formatter_class=fmt,
                       description="Run every stage on VIDEO with a local store and write OUT/annotations.json "
                                   "(release format), OUT/idmaps/NNNNN.png (uint16 id maps), OUT/preview.mp4, "
                                   "OUT/flags.json and OUT/review/. Re-running into the same OUT reuses every "
                                   "committed stage.")
    p.add_argument("video", type=path_arg, help="an equirectangular (2:1) video, or top-bottom stereo with spherical metadata")
    p.add_argument("--out", type=path_arg, required=True, help="output folder")
    p.add_argument("--prompts", type=path_arg, help="release-format JSON with masks and track ids for some frames; "
                                                "those objects are followed from the given masks")
    p.add_argument("--fps", type=float, help="frames per second to label (default: every input frame)")
    p.add_argument("--width", type=int, help="processing width (default: min(input width, 2048))")
    _add_config_args(p)
    _add_store_arg(p, default="OUT/.store")
    p.add_argument("--force", action="store_true", help="re-run stages even if committed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("evaluate", help="J, F, J&F (planar and spherical), ID switches, seam splits, coverage",
                       formatter_class=fmt,
                       description="Compare a prediction with ground truth (both release format). Prints a table "
                                   "and writes the numbers as JSON.")
    p.add_argument("--pred", type=path_arg, required=True, help="predicted annotations.json")
    p.add_argument("--gt", type=path_arg, required=True, help="ground-truth annotations (e.g. synth's gt.json)")
    p.add_argument("--out", type=path_arg, help="where to write the JSON (default: evaluation.json next to --pred)")
    p.add_argument("--video-uid", help="which video, when the files hold several")

    p = sub.add_parser("release", help="build, quality-gate and publish a dataset release", formatter_class=fmt,
                       description="Collect every ready video, run the Great Expectations suites, and publish "
                                   "releases/vN/ only if all pass.")
    p.add_argument("--config-hash", type=_hex_id("--config-hash", 12),
                   help="release only the runs of this configuration hash")
    _add_config_args(p)
    _add_store_arg(p)

    p = sub.add_parser("upload", help="put a local file into the store (e.g. under raw/)", formatter_class=fmt)
    p.add_argument("file", type=path_arg)
    p.add_argument("--key", required=True, help="object key under raw/ (videos) or models/ (checkpoints), "
                                                 "e.g. raw/2026-11-24/clip.mp4")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing object (a different video under a used raw/ key is a new video: "
                        "ingest gives it a new id, and the old id's decode refuses the changed object)")
    p.add_argument("--uploaded-at", type=_utc_time, metavar="TIME",
                   help="upload time to record for a raw/ key (ISO 8601, UTC if no zone; default now): the "
                        "nightly DAG labels a data interval's uploads by this time, so a backfill over TIME's "
                        "date finds a file imported late")
    _add_store_arg(p)

    p = sub.add_parser("status", help="videos, runs, quarantine and releases in the store", formatter_class=fmt,
                       description="Show how far each video got, what was quarantined and why, and where the "
                                   "releases, previews and quality reports are.")
    _add_store_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--gt", type=path_arg, help="also evaluate the newest labels against this ground truth (e.g. synth gt.json)")

    p = sub.add_parser("config", help="print the effective configuration and its hash", formatter_class=fmt)
    _add_config_args(p)

    from tasks.commands import register_all

    register_all(sub, fmt)  # command groups in their own module (tasks/commands/)

    for name, spec in STAGES.items():
        p = sub.add_parser(name, help=f"stage: {spec.doc}", formatter_class=fmt,
                           description=f"Run the {name} stage for one video and print its manifest as JSON "
                                       "(what a GPU pod runs). Skipped if already committed, unless --force.")
        if name == "ingest":
            p.add_argument("--key", required=True, help="object key of the uploaded video (e.g. raw/clip.mp4)")
        else:
            p.add_argument("--video-id", required=True, type=_hex_id("--video-id", 16),
                           help="16-hex content id printed by ingest")
            p.add_argument("--run", type=_hex_id("--run", 12),
                           help="config hash naming the run (its configuration is read from the store); "
                                "default: the hash of --config/--set")
        _add_config_args(p)
        _add_store_arg(p)
        p.add_argument("--force", action="store_true", help="re-run even if committed")
        p.add_argument("--xcom-file", type=path_arg, help="also write the result JSON here (/airflow/xcom/return.json in a pod)")
        p.add_argument("--progress", action="store_true", help="show progress bars")
    return parser


def _cmd_synth(args) -> int:
    from tasks.synth import render_clip

    try:
        summary = render_clip(args.out, seconds=args.seconds, fps=args.fps, width=args.width, seed=args.seed,
                              objects=args.objects, camera=args.camera, progress=not args.no_progress)
    except ValueError as exc:  # bad arguments (odd width, negative duration...)
        print(f"synth: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print_json(summary)
    return 0


def _cmd_label(args) -> int:
    from tasks.label import label_video
    from tasks.storage import open_store

    cfg = _config(args)
    over = {}
    if args.fps is not None:
        over["video.fps"] = args.fps
    if args.width is not None:
        over["video.width"] = args.width
    cfg = cfg.with_overrides(over)
    store = open_store(args.store) if args.store else None
    res = label_video(args.video, args.out, config=cfg, prompts_file=args.prompts, store=store, force=args.force,
                      progress=not args.no_progress)
    _print_json(res.to_json())
    print(f"\nannotations: {res.out_dir / 'annotations.json'}\npreview:     {res.out_dir / 'preview.mp4'}\n"
          f"flags:       {res.out_dir / 'flags.json'}", file=sys.stderr)
    if not res.validation_passed:
        print(res.validation_error, file=sys.stderr)
        return EXIT_GATE
    return 0


def _cmd_evaluate(args) -> int:
    from tasks.errors import UsageError
    from tasks.metrics import evaluate, format_report

    out = args.out or args.pred.parent / "evaluation.json"   # with_name fails on "." (fuzz)
    if out.is_dir():   # checked before the work, as everything that can be (issue 12)
        raise UsageError(f"--out {out} is a folder; give the path of the JSON file to write")
    result = evaluate(args.pred, args.gt, video_uid=args.video_uid)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, out)
    except OSError as exc:
        raise UsageError(f"cannot write {out} ({exc.strerror or exc}); pass --out with a writable path") from None
    print(format_report(result))
    print(f"\nwritten: {out}", file=sys.stderr)
    return 0


def _cmd_release(args) -> int:
    from tasks.stages.release import release

    _print_json(release(_store(args), _config(args), config_hash=args.config_hash))
    return 0


def _cmd_upload(args) -> int:
    store = _store(args)
    if not args.file.is_file():
        print(f"no such file: {args.file}", file=sys.stderr)
        return EXIT_USAGE
    from tasks import layout
    from tasks.discovery import record_upload

    if args.uploaded_at is not None and not args.key.startswith(layout.RAW):
        print(f"--uploaded-at is for uploads under {layout.RAW}; {args.key!r} is not one", file=sys.stderr)
        return EXIT_USAGE
    # issue 12: upload wrote anything anywhere (releases/v3/annotations.json, an ingested raw/ key)
    from tasks.storage.base import check_key

    try:
        check_key(args.key)
    except ValueError as exc:
        print(f"upload: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.key.startswith((layout.RAW, "models/")) or args.key in (layout.RAW, "models/"):
        print(f"upload: {args.key!r} is outside raw/ (videos) and models/ (checkpoints); everything else in the "
              "store is written by the pipeline", file=sys.stderr)
        return EXIT_USAGE
    if store.exists(args.key) and not args.overwrite and not _same_content(store, args.key, args.file):
        print(f"upload: {args.key!r} already exists in {store.uri()}; upload under a new key, or pass --overwrite "
              "(a different video under a used key is a new video to ingest)", file=sys.stderr)
        return EXIT_USAGE
    store.put_file(args.key, args.file)
    out = {"key": args.key, "uri": store.uri(args.key), "size": args.file.stat().st_size}
    if args.key.startswith(layout.RAW):
        # the upload time the nightly DAG's data interval is matched against (tasks/discovery.py)
        out["uploaded"] = record_upload(store, args.key, uploaded=args.uploaded_at)["uploaded"]
    _print_json(out)
    return 0


def _same_content(store, key: str, path: Path) -> bool:
    """Re-uploading the very same bytes (a re-run of `make demo`) is not an overwrite."""
    import hashlib

    with store.local_file(key) as existing, open(existing, "rb") as a, open(path, "rb") as b:
        return hashlib.file_digest(a, "sha256").digest() == hashlib.file_digest(b, "sha256").digest()


def _utc_time(text: str):
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-24T08:00:00Z)") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _cmd_status(args) -> int:
    from tasks.status import collect, format_status

    s = collect(_store(args))
    if args.json:
        _print_json(s)
    else:
        print(format_status(s))
    if args.gt:
        from tasks.formats import ytvis
        from tasks.metrics import evaluate, format_report

        uid = ytvis.load(args.gt)["videos"][0].get("video_uid")
        runs = [r for v in s["videos"] if v["video_id"] == uid for r in v["runs"] if "annotations" in r]
        if not runs:
            print(f"\nno labels yet for the ground truth's video {uid}", file=sys.stderr)
            return EXIT_ERROR
        print(f"\nlabels vs ground truth ({args.gt}):")
        print(format_report(evaluate(runs[-1]["annotations"], args.gt)))
    return 0


def _cmd_config(args) -> int:
    cfg = _config(args)
    _print_json({"hash": cfg.hash, "config": cfg.model_dump(mode="json")})
    return 0


def _cmd_stage(args) -> int:
    from tasks.errors import ConfigError
    from tasks.stages.runner import execute, load_run_config

    if args.xcom_file is not None and args.xcom_file.is_dir():   # before the work, not after it
        from tasks.errors import UsageError

        raise UsageError(f"--xcom-file {args.xcom_file} is a folder; give the path of the JSON file to write")
    store = _store(args)
    if args.command == "ingest":
        res = execute("ingest", store=store, config=_config(args), params={"key": args.key}, force=args.force)
    else:
        cfg = _config(args)
        if args.run and not (args.config or args.set):
            cfg = load_run_config(store, args.video_id, args.run)
        elif args.run and args.run != cfg.hash:
            raise ConfigError(f"--run {args.run} does not match the hash {cfg.hash} of the given configuration")
        res = execute(args.command, store=store, config=cfg, video_id=args.video_id, force=args.force,
                      params={"progress": args.progress})
    out = res.to_json()
    if args.xcom_file:
        args.xcom_file.parent.mkdir(parents=True, exist_ok=True)
        args.xcom_file.write_text(json.dumps(out))
    _print_json(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    from tasks.errors import PipelineError
    from tasks.stages.runner import STAGES

    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    handlers = {"synth": _cmd_synth, "label": _cmd_label, "evaluate": _cmd_evaluate, "release": _cmd_release,
                "upload": _cmd_upload, "config": _cmd_config, "status": _cmd_status}
    handler = getattr(args, "handler", None) or handlers.get(args.command, _cmd_stage if args.command in STAGES else None)
    try:
        return handler(args)
    except PipelineError as exc:
        # Each error class carries its exit code (tasks/errors.py): one line for the user, the
        # traceback only with -vv (issue 12; a retry decision never depends on the message).
        if args.verbose >= 2:
            logging.exception("%s failed", args.command)
        print(f"{exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        # a path given on the command line that is not there, or not writable: a usage mistake,
        # not a crash. In a stage (a pod) it is the deployment's fault (a missing binary, a
        # read-only volume): keep the traceback, exit 1.
        if args.command in STAGES or not exc.filename:
            raise
        if args.verbose >= 2:
            logging.exception("%s failed", args.command)
        print(f"error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return EXIT_USAGE
