"""``python -m tasks review``: what a reviewer needs for one video."""

from __future__ import annotations

from tasks.commands._common import add_store_arg, expires_hours, print_json, store_from_args


def register(sub, fmt) -> None:
    p = sub.add_parser("review", help="a video's review package: flags, crops, preview, with links",
                       formatter_class=fmt,
                       description="Print what a reviewer needs for one video as JSON: every QA flag with a link to "
                                   "its crop, the preview and the labels. On an S3/MinIO store the links are "
                                   "presigned GETs minted now; on a local store they are paths.")
    p.add_argument("--video-id", required=True)
    p.add_argument("--run", help="config hash (default: the newest run with QA output)")
    p.add_argument("--expires-hours", type=expires_hours, default=48.0,
                   help="validity of presigned links, over 0 and at most 168 (issue 12: checked here, exit 2)")
    add_store_arg(p)
    p.set_defaults(handler=_cmd_review)


def _cmd_review(args) -> int:
    from tasks.status import review_package

    print_json(review_package(store_from_args(args), args.video_id, args.run, args.expires_hours))
    return 0
