"""``python -m tasks quarantine list|release``: what was quarantined and why, and letting a video back in.

Both subcommands call tasks/quarantine.py (the ops dashboard calls the same two functions).
"""

from __future__ import annotations

import getpass
import os
import sys

from tasks.commands._common import add_action, add_group, print_json, store_from_args


def register(sub, fmt) -> None:
    _, actions = add_group(
        sub, fmt, "quarantine", help="list quarantined videos, or release one so the next run labels it",
        description="A video is quarantined when its content cannot be labeled (not a video, cut off, not 2:1 "
                    "equirectangular ...); the record is kept under its content id and later runs leave the "
                    "upload out. `release ID` removes the record (keeping an audit record of who and when) so "
                    "the next run or discovery labels it again.")
    q = add_action(actions, fmt, "list", _cmd_list, help="every quarantined video with its reason")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q = add_action(actions, fmt, "release", _cmd_release, help="let a quarantined video back in (next run picks it up)")
    q.add_argument("video_id", metavar="ID", help="the video's 16-hex id (or its raw/ key), as `quarantine list` shows")
    q.add_argument("--by", help="who releases it, kept in the audit record (default: $USER)")


def _cmd_list(args) -> int:
    from tasks.quarantine import list_quarantined

    rows = list_quarantined(store_from_args(args))
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("nothing is quarantined")
        return 0
    print(f"{len(rows)} quarantined video{'s' if len(rows) != 1 else ''}:")
    for r in rows:
        print(f"  {r['id']}  {r['key'] or '(key unknown)'}  {r['reason']}  at {r['stage'] or '?'}  {r['time'] or ''}")
        print(f"      {r['detail']}")
    print("\nrelease one with `python -m tasks quarantine release ID`", file=sys.stderr)
    return 0


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return os.environ.get("USER") or f"uid {os.getuid()}"


def _cmd_release(args) -> int:
    from tasks.quarantine import release_quarantine

    out = release_quarantine(store_from_args(args), args.video_id, by=args.by or _who())
    print_json(out)
    print(f"released video {out['video_id']} ({out['record'].get('reason', '?')}); the next run or discovery "
          "picks it up again", file=sys.stderr)
    return 0
