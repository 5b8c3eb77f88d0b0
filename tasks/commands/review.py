"""``python -m tasks review``: what a reviewer needs for one video, and the round trip through a
labeling tool (issue 15).

* ``review show --video-id ID`` (also ``review --video-id ID``): the review package -- flags with
  links to their crops, the checker's comments, the preview and the labels;
* ``review export --video-id ID [--run R] --format cvat|labelstudio --out DIR``;
* ``review import FILE --video-id ID [--run R]``: CVAT XML or a release JSON; checked, stored
  under ``corrections/{video_id}/``, re-followed, re-checked: prints the new run.
"""

from __future__ import annotations

from tasks.commands._common import (
    add_action,
    add_group,
    add_store_arg,
    expires_hours,
    path_arg,
    print_json,
    store_from_args,
)


def register(sub, fmt) -> None:
    p, actions = add_group(
        sub, fmt, "review", required=False, metavar="{show,export,import}",
        help="review a video: package, export to CVAT/Label Studio, import corrections",
        description="Without a subcommand (or with `show`): print what a reviewer needs for one video as JSON -- "
                    "every QA flag with the checker's comment and a link to its crop, the preview and the labels. "
                    "On an S3/MinIO store the links are presigned GETs minted now; on a local store they are "
                    "paths. `export` writes a task for CVAT or Label Studio; `import` brings corrections back as "
                    "a new run.")
    _show_args(p, required=False)
    add_store_arg(p)
    p.set_defaults(handler=_cmd_show)
    _show_args(add_action(actions, fmt, "show", _cmd_show, help="the review package of one video (flags, comments, links)"),
               required=True)

    e = add_action(actions, fmt, "export", _cmd_export,
                   help="a labeling tool's task: CVAT for video 1.1 XML or Label Studio brush tasks",
                   description="Writes DIR/annotations.xml (CVAT for video 1.1: mask tracks, every shape a keyframe, "
                               "track ids and the checker's comments as attributes), DIR/images/ (the frames), "
                               "DIR/release.json and DIR/comments.json; or, with --format labelstudio, "
                               "DIR/tasks.json (one task per frame, brush masks) and DIR/images/.")
    e.add_argument("--video-id", required=True)
    e.add_argument("--run", help="config hash (default: the newest run with QA output)")
    e.add_argument("--format", choices=("cvat", "labelstudio"), default="cvat")
    e.add_argument("--out", type=path_arg, required=True, help="output folder")

    i = add_action(actions, fmt, "import", _cmd_import,
                   help="corrections (CVAT XML or release JSON) -> a new, re-followed run",
                   description="Checks the file against the video and the run it was exported from (same video, "
                               "sizes, frame range, classes in the vocabulary, no overlapping masks, ids existing "
                               "or new, masks only, keyframes only), lists every problem (exit 2), stores it under "
                               "corrections/{video_id}/ with who and when, re-follows the corrected objects forward "
                               "and backward keeping their ids, and re-runs qa and validate on the new run.")
    i.add_argument("file", type=path_arg, help="annotations.xml from CVAT, or a release JSON document")
    i.add_argument("--video-id", required=True)
    i.add_argument("--run", help="the run the file was exported from (default: the one the file names, else the newest)")
    i.add_argument("--author", help="who made the corrections (default: $LEADER360V_REVIEWER or the OS user)")


def _show_args(p, *, required: bool) -> None:
    p.add_argument("--video-id", required=required)
    p.add_argument("--run", help="config hash (default: the newest run with QA output)")
    # checked by its argparse type: finite, over 0, at most 168 (issue 12 §7: nan/inf/0/-1 got through)
    p.add_argument("--expires-hours", type=expires_hours, default=48.0,
                   help="validity of presigned links, over 0 and at most 168 hours")


def _cmd_show(args) -> int:
    from tasks.errors import UsageError
    from tasks.status import review_package

    if not args.video_id:
        raise UsageError("review needs --video-id (or a subcommand: show, export, import; see --help)")
    store = store_from_args(args)
    pkg = review_package(store, args.video_id, args.run, args.expires_hours)
    from tasks.review.checker import check_run
    from tasks.stages.runner import load_run_config

    pkg["checker"] = check_run(store, args.video_id, pkg["run"], load_run_config(store, args.video_id, pkg["run"]))
    print_json(pkg)
    return 0


def _cmd_export(args) -> int:
    from tasks.review.revise import latest_run_with_qa

    store = store_from_args(args)
    run = args.run or latest_run_with_qa(store, args.video_id)
    if args.format == "cvat":
        from tasks.review.export import export_cvat
        from tasks.stages.runner import load_run_config

        print_json(export_cvat(store, args.video_id, run, args.out, config=load_run_config(store, args.video_id, run)))
    else:
        from tasks.review.labelstudio import export_labelstudio
        from tasks.stages.runner import load_run_config

        print_json(export_labelstudio(store, args.video_id, run, args.out, config=load_run_config(store, args.video_id, run)))
    return 0


def _cmd_import(args) -> int:
    from tasks.errors import UsageError
    from tasks.review.revise import import_corrections

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from exc
    result = import_corrections(store_from_args(args), args.video_id, data, source_name=args.file.name,
                                run=args.run, author=args.author)
    print_json(result.to_json())
    return 0
