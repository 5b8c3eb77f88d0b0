"""Reliability table (issue 12): inputs tried and faults injected, expected vs observed outcome.

Every row runs the real command line (`python -m tasks ...`) in a fresh process against a local
store in a temporary folder, on tiny inputs made here with ffmpeg / `tasks synth`; the listener for
the credential rows is a real HTTP server on loopback. A row is *ok* when the observed exit code
and store contents are the expected ones. Last output line: JSON {"rows": [...], "summary": {...}}.

    .venv/bin/python tests/bench/bench_reliability.py
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from common import REPO

PY = sys.executable
SECRETS = {"LEADER360V_S3_SECRET_KEY": "s3-secret-d41d8c", "LEADER360V_LLM_API_KEY": "llm-key-9f86d0"}
ROWS: list[dict] = []
TMP = [""]  # the run's temporary folder, shown as $TMP in the commands


def tasks_cmd(*args, env=None, timeout=600, wait=True):
    e = {**os.environ, **(env or {})}
    cmd = [PY, "-m", "tasks", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e, cwd=REPO)
    return subprocess.run(cmd, capture_output=True, text=True, env=e, cwd=REPO, timeout=timeout)


def shown(args) -> str:
    return "python -m tasks " + " ".join(str(a) for a in args)


def row(case, fault, expected, observed, command, ok):
    if TMP[0]:
        command, observed = command.replace(TMP[0], "$TMP"), observed.replace(TMP[0], "$TMP")
    r = {"case": case, "input / fault": fault, "expected": expected, "observed": observed, "command": command,
         "ok": "yes" if ok else "NO"}
    ROWS.append(r)
    print(json.dumps(r), flush=True)


def last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:160] if lines else ""


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def raw_video(path: Path, frames: list[np.ndarray], fps=10.0, pts_ms=None):
    h, w = frames[0].shape[:2]
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
    if pts_ms is not None:
        expr = "+".join(f"eq(N,{i})*{t}" for i, t in enumerate(pts_ms))
        cmd += ["-vf", f"settb=1/1000,setpts='{expr}'", "-fps_mode", "passthrough", "-enc_time_base", "1/1000",
                "-video_track_timescale", "1000"]
    cmd += ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(path)]
    subprocess.run(cmd, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    return path


class Listener:
    def __init__(self):
        self.requests: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append({"auth": self.headers.get("Authorization")})
                data = json.dumps({"choices": [{"message": {"content": '{"label": "car", "confidence": 0.9}'}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def secrets(tmp: Path) -> None:
    lst = Listener()
    env = {**SECRETS, "LEADER360V_LLM_BASE_URL": "http://vllm.internal:8000/v1", "LEADER360V_LLM_ALLOWED_ENDPOINTS": ""}
    clip = tmp / "synth" / "clip.mp4"
    attack = ["--set", "verify.verifier=openai", "--set", f"verify.llm_base_url={lst.url}",
              "--set", "verify.llm_api_key_env=LEADER360V_S3_SECRET_KEY"]
    args = ["label", clip, "--out", tmp / "sec_out", *attack]
    p = tasks_cmd(*args, env=env)
    stored = (tmp / "sec_out" / ".store").exists()
    row("secret via --set", "verify.llm_base_url=<loopback listener>, llm_api_key_env=LEADER360V_S3_SECRET_KEY",
        "exit 2 before any work; listener gets nothing", f"exit {p.returncode}; listener requests {len(lst.requests)}; "
        f"store created: {stored}", shown(args).replace(lst.url, "http://127.0.0.1:PORT/v1"),
        p.returncode == 2 and not lst.requests and not stored)
    cfg = tmp / "attack.json"
    cfg.write_text(json.dumps({"verify": {"verifier": "openai", "llm_base_url": lst.url}}))
    args = ["label", clip, "--out", tmp / "sec_out2", "--config", cfg]
    p = tasks_cmd(*args, env=env)
    row("secret via --config", "config file naming the listener as endpoint", "exit 2; listener gets nothing",
        f"exit {p.returncode}; listener requests {len(lst.requests)}", shown(args), p.returncode == 2 and not lst.requests)
    # the allowed case: the deployment lists the listener -> it gets the LLM key, never the store's
    code = ("from tasks.config import PipelineConfig; from tasks.backends.llm_verifier import build_openai_verifier; "
            "import numpy as np; from tasks.backends.protocols import VerifyRequest; "
            "v = build_openai_verifier(PipelineConfig().with_overrides({'verify.verifier': 'openai'})); "
            "img = np.full((48, 64, 3), 90, np.uint8); print(v.verify([VerifyRequest(1, [], view=img, crop=img)])[0].label)")
    e = {**os.environ, **SECRETS, "LEADER360V_LLM_BASE_URL": lst.url}
    p = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=e, cwd=REPO, timeout=120)
    auths = [r["auth"] for r in lst.requests]
    row("allowed endpoint", "$LEADER360V_LLM_BASE_URL = the listener (deployment)", "listener gets Bearer <LLM key> only",
        f"exit {p.returncode}; answer {p.stdout.strip()!r}; headers seen: "
        f"{sorted({'LLM key' if a == 'Bearer ' + SECRETS['LEADER360V_LLM_API_KEY'] else 'S3 SECRET' if a and SECRETS['LEADER360V_S3_SECRET_KEY'] in a else str(a) for a in auths})}",
        "python -c '<build_openai_verifier + one request>'",
        p.returncode == 0 and auths == ["Bearer " + SECRETS["LEADER360V_LLM_API_KEY"]])
    lst.server.shutdown()


def quadrants(h=32, w=64):
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (230, 30, 30)
    img[: h // 2, w // 2:] = (30, 230, 30)
    img[h // 2:, : w // 2] = (30, 30, 230)
    img[h // 2:, w // 2:] = (230, 230, 30)
    return img


def video_input(tmp: Path) -> None:
    store = tmp / "vstore"
    plain = raw_video(tmp / "plain.mp4", [quadrants()] * 4)
    rot = tmp / "r.mp4"
    ffmpeg("-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", rot)
    tasks_cmd("upload", rot, "--key", "raw/r.mp4", "--store", store)
    args = ["ingest", "--key", "raw/r.mp4", "--store", store]
    p = tasks_cmd(*args)
    q = [json.loads(f.read_text()) for f in (store / "quarantine").glob("*.json")] if (store / "quarantine").exists() else []
    row("rotated 2:1 video", "ffmpeg -i clip.mp4 -c copy -metadata:s:v:0 rotate=90 r.mp4 (shown 32x64)",
        "exit 3, quarantined 'rotated' (was: squashed to 2:1, accepted)",
        f"exit {p.returncode}; quarantine reasons {[r['reason'] for r in q]}; {last_line(p.stderr)[:90]}", shown(args),
        p.returncode == 3 and [r["reason"] for r in q] == ["rotated"])
    side = raw_video(tmp / "side_plain.mp4", [np.ascontiguousarray(np.rot90(quadrants(), k=-1))] * 4)
    sidero = tmp / "side.mp4"
    ffmpeg("-i", side, "-c", "copy", "-metadata:s:v:0", "rotate=90", sidero)
    tasks_cmd("upload", sidero, "--key", "raw/side.mp4", "--store", store)
    p1 = tasks_cmd("ingest", "--key", "raw/side.mp4", "--store", store)
    vid = json.loads(p1.stdout)["video_id"] if p1.returncode == 0 else "?"
    args = ["decode", "--video-id", vid, "--store", store]
    p = tasks_cmd(*args)
    ok, what = False, f"ingest exit {p1.returncode}, decode exit {p.returncode}"
    if p.returncode == 0:
        import cv2

        st = json.loads(p.stdout)["stats"]
        fdir = next((store / "videos" / vid / "frames").iterdir())
        f0 = cv2.imread(str(sorted(fdir.glob("*.jpg"))[0]))[..., ::-1].astype(int)
        err = float(np.abs(f0 - quadrants()).mean())
        ok = (st["width"], st["height"], st["frames"]) == (64, 32, 4) and err < 12
        what += f"; frames {st['frames']} at {st['width']}x{st['height']}, mean abs difference to upright {err:.1f}"
    row("sideways video shown 2:1", "coded 32x64 + rotate=90 (displayed 64x32)", "exit 0, frames 64x32 upright",
        what, shown(args), ok)
    levels = [np.full((32, 64, 3), 10 * i + 5, np.uint8) for i in range(20)]
    vfr = raw_video(tmp / "vfr.mp4", levels, pts_ms=[100 * i for i in range(10)] + [1000 + 20 * i for i in range(10)])
    tasks_cmd("upload", vfr, "--key", "raw/vfr.mp4", "--store", store)
    p1 = tasks_cmd("ingest", "--key", "raw/vfr.mp4", "--store", store)
    vid = json.loads(p1.stdout)["video_id"] if p1.returncode == 0 else "?"
    args = ["decode", "--video-id", vid, "--store", store]
    p = tasks_cmd(*args)
    n = json.loads(p.stdout)["stats"]["frames"] if p.returncode == 0 else None
    row("VFR, fps unset", "20 frames: 10 at 10 fps then 10 at 50 fps (1.28 s)", "exit 0, 20 frames (was 60 with duplicates)",
        f"exit {p.returncode}; {n} frames", shown(args), p.returncode == 0 and n == 20)
    args = ["ingest", "--key", "raw/vfr.mp4", "--store", store, "--set", "video.fps=10"]
    tasks_cmd(*args)
    args = ["decode", "--video-id", vid, "--store", store, "--set", "video.fps=10"]
    p = tasks_cmd(*args)
    n = json.loads(p.stdout)["stats"]["frames"] if p.returncode == 0 else None
    row("VFR, --set video.fps=10", "the same clip", "exit 0, 1.28 s x 10 = 12.8 +- 1 frames", f"exit {p.returncode}; {n} frames",
        shown(args), p.returncode == 0 and n is not None and abs(n - 12.8) <= 1)


def digest_tree(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def store_side(tmp: Path) -> None:
    store = tmp / "sstore"
    a = raw_video(tmp / "a.mp4", [quadrants()] * 5)
    b = raw_video(tmp / "b.mp4", [quadrants()[::-1].copy()] * 7)
    tasks_cmd("upload", a, "--key", "raw/clip.mp4", "--store", store)
    vid = json.loads(tasks_cmd("ingest", "--key", "raw/clip.mp4", "--store", store).stdout)["video_id"]
    args = ["upload", b, "--key", "raw/clip.mp4", "--store", store]
    p = tasks_cmd(*args)
    same = hashlib.sha256((store / "raw/clip.mp4").read_bytes()).hexdigest() == hashlib.sha256(a.read_bytes()).hexdigest()
    row("upload over a used key", "another video under raw/clip.mp4", "exit 2, object unchanged",
        f"exit {p.returncode}; object unchanged: {same}", shown(args), p.returncode == 2 and same)
    before = digest_tree(store / "releases")
    args = ["upload", b, "--key", "releases/v3/annotations.json", "--store", store, "--overwrite"]
    p = tasks_cmd(*args)
    row("upload outside raw/", "--key releases/v3/annotations.json --overwrite", "exit 2, nothing written",
        f"exit {p.returncode}; releases/ unchanged: {digest_tree(store / 'releases') == before}", shown(args),
        p.returncode == 2 and digest_tree(store / "releases") == before)
    tasks_cmd("upload", b, "--key", "raw/clip.mp4", "--store", store, "--overwrite")
    args = ["decode", "--video-id", vid, "--store", store]
    p = tasks_cmd(*args)
    frames = list((store / "videos" / vid / "frames").rglob("*.jpg")) if (store / "videos" / vid / "frames").exists() else []
    row("raw object replaced (--overwrite), then decode", "same key, other bytes, old video id",
        "exit 7 'source changed', no frames under the old id", f"exit {p.returncode}; frames under old id {len(frames)}; "
        f"{last_line(p.stderr)[:70]}", shown(args), p.returncode == 7 and not frames)


def manifests_match(store: Path, vid: str, run: str) -> tuple[int, int]:
    """(files checked, mismatches) over every committed manifest of the run."""
    checked = bad = 0
    for m in (store / "videos" / vid / "runs" / run).glob("*/_MANIFEST.json"):
        for key, meta in json.loads(m.read_text())["files"].items():
            p = store / key
            checked += 1
            if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != meta["sha256"]:
                bad += 1
    return checked, bad


def concurrency(tmp: Path) -> None:
    store = tmp / "cstore"
    clip = tmp / "synth" / "clip.mp4"
    tasks_cmd("upload", clip, "--key", "raw/c.mp4", "--store", store)
    vid = json.loads(tasks_cmd("ingest", "--key", "raw/c.mp4", "--store", store).stdout)["video_id"]
    for st in ("decode", "propose", "verify", "sdr"):
        tasks_cmd(st, "--video-id", vid, "--store", store)
    run = json.loads(tasks_cmd("config").stdout)["hash"]
    lease = store / "leases" / vid / run / "propagate.json"

    def two(wait_s, *extra):
        env = {"LEADER360V_LEASE_WAIT_S": str(wait_s), "LEADER360V_LEASE_TTL_S": "30"}
        args = ["propagate", "--video-id", vid, "--store", store, *extra]
        a = tasks_cmd(*args, env=env, wait=False)
        t = time.monotonic()
        while not lease.exists() and a.poll() is None and time.monotonic() - t < 60:
            time.sleep(0.02)
        time.sleep(1.0)
        b = tasks_cmd(*args, env=env, wait=False)
        oa, ea = a.communicate(timeout=600)
        ob, eb = b.communicate(timeout=600)
        return args, env, (a.returncode, oa, ea), (b.returncode, ob, eb)

    args, env, a, b = two(300)
    checked, bad = manifests_match(store, vid, run)
    status = json.loads(b[1])["status"] if b[0] == 0 else "-"
    row("two runs, one stage, a second apart", "2 x propagate, same video and run, LEADER360V_LEASE_WAIT_S=300",
        "both exit 0, the second waits and skips; every manifest checksum matches",
        f"exits {a[0]}/{b[0]}; second: {status}; {checked} files checked, {bad} mismatches",
        "LEADER360V_LEASE_WAIT_S=300 " + shown(args) + " (x2)", a[0] == 0 and b[0] == 0 and status == "skipped" and checked and not bad)
    args, env, a, b = two(0, "--force")
    checked, bad = manifests_match(store, vid, run)
    row("two forced runs, no wait", "2 x propagate --force, LEADER360V_LEASE_WAIT_S=0",
        "first exit 0; second exit 1 naming the holder; manifests match",
        f"exits {a[0]}/{b[0]}; '{last_line(b[2])[:60]}...'; {checked} files checked, {bad} mismatches",
        "LEADER360V_LEASE_WAIT_S=0 " + shown(args) + " (x2)",
        a[0] == 0 and b[0] == 1 and "busy:" in b[2] and "pid" in b[2] and checked and not bad)
    # SIGKILL the holder mid-stage (an evicted pod): the retry must not wait for the lease to expire
    args = ["propagate", "--video-id", vid, "--store", store, "--force"]
    env = {"LEADER360V_LEASE_WAIT_S": "5", "LEADER360V_LEASE_TTL_S": "600"}
    k = tasks_cmd(*args, env=env, wait=False)
    t = time.monotonic()
    while not lease.exists() and k.poll() is None and time.monotonic() - t < 60:
        time.sleep(0.02)
    time.sleep(0.5)
    k.send_signal(signal.SIGKILL)
    k.wait(30)
    t = time.monotonic()
    p = tasks_cmd(*args, env=env)
    dt = time.monotonic() - t
    checked, bad = manifests_match(store, vid, run)
    row("holder SIGKILLed mid-stage", "propagate killed holding a 600 s lease; rerun with 5 s wait",
        "rerun takes over at once (same host, holder gone), exit 0, manifests match",
        f"exit {p.returncode} in {dt:.1f} s; {checked} files checked, {bad} mismatches",
        "LEADER360V_LEASE_TTL_S=600 " + shown(args), p.returncode == 0 and checked and not bad)


def quarantine_rows(tmp: Path) -> None:
    """Issue 12 points 1 and 8: a settings mistake never quarantines or unpublishes; a quarantine
    can be listed and released; release is idempotent, also when two of them race."""
    store, out = tmp / "qstore", tmp / "q_out"
    clip = tmp / "synth" / "clip.mp4"
    label = ["label", clip, "--out", out, "--store", store, "--no-progress"]
    p = tasks_cmd(*label)
    first = tasks_cmd("release", "--store", store)
    v1 = json.loads(first.stdout)["version"] if first.returncode == 0 else None

    def quarantined() -> list:
        p = tasks_cmd("quarantine", "list", "--json", "--store", store)
        return json.loads(p.stdout) if p.returncode == 0 else ["list failed"]

    for extra, case in ((["--set", "video.max_seconds=1"], "video.max_seconds=1 on a 2 s clip"),
                        (["--fps", "1e-9"], "--fps 1e-9")):
        args = [*label, *extra]
        p = tasks_cmd(*args)
        q = quarantined()
        row(f"settings mistake: {case}", "a good, already published clip", "exit 2 (configuration), nothing quarantined "
            "(was: quarantined under its content id for good)",
            f"exit {p.returncode}; quarantined {len(q)}; {last_line(p.stderr)[:80]}", shown(args),
            p.returncode == 2 and q == [] and "Traceback" not in p.stderr)
    args = ["release", "--store", store]
    p = tasks_cmd(*args)
    d = json.loads(p.stdout) if p.returncode == 0 else {}
    row("release after the mistakes", "v1 published before; nothing changed since",
        "exit 0, names v1, publishes nothing (was: dropped the video, exit 7; or v2..v5 identical)",
        f"exit {p.returncode}; version {d.get('version')}, unchanged {d.get('unchanged')}; first release v{v1}",
        shown(args), p.returncode == 0 and d.get("version") == v1 == 1 and d.get("unchanged") is True)
    tasks_cmd(*label, "--force")
    p = tasks_cmd(*args)
    d = json.loads(p.stdout) if p.returncode == 0 else {}
    row("label --force, then release", "labels rebuilt and passing", "exit 0, the video kept (was: exit 7)",
        f"exit {p.returncode}; version {d.get('version')}, videos {d.get('videos')}", shown(args),
        p.returncode == 0 and d.get("videos") == 1)
    # a content rejection is quarantined; `quarantine release` lets it back in, with an audit record
    notes = tmp / "notes.mp4"
    notes.write_text("definitely not a video")
    tasks_cmd("upload", notes, "--key", "raw/notes.mp4", "--store", store)
    p = tasks_cmd("ingest", "--key", "raw/notes.mp4", "--store", store)
    q = quarantined()
    vid = q[0]["id"] if q and isinstance(q[0], dict) else "?"
    args = ["quarantine", "release", vid, "--by", "bench", "--store", store]
    r = tasks_cmd(*args)
    audit = list((store / "audit" / "quarantine" / vid).glob("*.json")) if vid != "?" else []
    row("quarantine list / release", "a text file uploaded as raw/notes.mp4",
        "ingest exit 3, listed with key and reason; release exit 0, list empty, audit record kept",
        f"ingest exit {p.returncode}; listed {[(x.get('key'), x.get('reason')) for x in q if isinstance(x, dict)]}; "
        f"release exit {r.returncode}; then listed {len(quarantined())}; audit records {len(audit)}", shown(args),
        p.returncode == 3 and [(x["key"], x["reason"]) for x in q] == [("raw/notes.mp4", "not_a_video")]
        and r.returncode == 0 and quarantined() == [] and len(audit) == 1)
    # a stream whose frames cannot be decoded (container whole): content, quarantined by decode
    # under its raw key (issue 12 point 9: the record had "key": null; ffmpeg's exit 69 was exit 1)
    bad = tmp / "damaged.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x64:rate=10", "-frames:v", "20", "-c:v", "mjpeg", "-q:v", "5", bad)
    data = bytearray(bad.read_bytes())
    soi = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    for i in soi[2:17]:
        data[i:i + 400] = bytes(400)
    bad.write_bytes(bytes(data))
    tasks_cmd("upload", bad, "--key", "raw/2026/damaged.mp4", "--store", store)
    p1 = tasks_cmd("ingest", "--key", "raw/2026/damaged.mp4", "--store", store)
    dvid = json.loads(p1.stdout)["video_id"] if p1.returncode == 0 else "?"
    args = ["decode", "--video-id", dvid, "--store", store]
    p = tasks_cmd(*args)
    q = [x for x in quarantined() if isinstance(x, dict) and x.get("id") == dvid]
    row("damaged stream at decode", "MJPEG mp4, 15 of 20 frames without JPEG data (ffprobe sees 20 packets)",
        "ingest exit 0; decode exit 3 'damaged', quarantined under its raw key (was: exit 1, key null)",
        f"ingest exit {p1.returncode}; decode exit {p.returncode}; record {[(x['key'], x['reason'], x['stage']) for x in q]}",
        shown(args), p1.returncode == 0 and p.returncode == 3
        and [(x["key"], x["reason"], x["stage"]) for x in q] == [("raw/2026/damaged.mp4", "damaged", "decode")])
    # two release processes racing on a fresh store holding the same labels
    race = tmp / "rstore"
    shutil.copytree(store, race, ignore=shutil.ignore_patterns("releases", "quarantine", "audit"))
    args = ["release", "--store", race]
    procs = [tasks_cmd(*args, wait=False) for _ in range(2)]
    outs = [pr.communicate(timeout=600) for pr in procs]
    docs = [json.loads(o[0]) if pr.returncode == 0 else {} for pr, o in zip(procs, outs)]
    versions = sorted(pth.name for pth in (race / "releases").glob("v*"))
    row("two releases racing", "2 x release started together, one changed candidate",
        "both exit 0; exactly one new version; both outputs name it",
        f"exits {[pr.returncode for pr in procs]}; versions in store {versions}; outputs name "
        f"{[x.get('version') for x in docs]} (unchanged {[x.get('unchanged') for x in docs]})",
        shown(args) + " (x2, concurrently)",
        [pr.returncode for pr in procs] == [0, 0] and versions == ["v1"] and [x.get("version") for x in docs] == [1, 1])


def user_mistakes(tmp: Path) -> None:
    """Issue 12 §6, §7, §9: each user mistake refused with its exit code, one line, no traceback,
    before any work (helper D's rows)."""
    clip = tmp / "synth" / "clip.mp4"
    gt = json.loads((tmp / "synth" / "gt.json").read_text())
    uid = gt["videos"][0]["video_uid"]
    store = tmp / "mstore"
    ro_out = Path("/sys/kernel/l360-out") if os.geteuid() == 0 else tmp / "ro"
    if os.geteuid() != 0:
        ro_out.mkdir()
        ro_out.chmod(0o555)
    a_file = tmp / "a_file.txt"
    a_file.write_text("x")

    def prompts(name, mutate):
        doc = json.loads(json.dumps(gt))
        doc["annotations"] = doc["annotations"][:2]
        for a in doc["annotations"]:
            a["segmentations"] = [s if f == 0 else None for f, s in enumerate(a["segmentations"])]
        mutate(doc)
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(doc))
        return path

    def same_mask(d):
        d["annotations"][1]["segmentations"][0] = d["annotations"][0]["segmentations"][0]

    def garbage(d):
        d["annotations"][0]["segmentations"][0]["counts"] = "garbage!!"

    other = json.loads(json.dumps(gt))
    other["videos"][0]["video_uid"] = "0123456789abcdef"
    (tmp / "other_gt.json").write_text(json.dumps(other))
    tiny = tmp / "tiny32.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x16:rate=10", "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", tiny)
    label = ["label", clip, "--store", store, "--no-progress", "--out"]
    cases = [
        ("traversal key", "ingest --key raw/../../x.mp4", ["ingest", "--key", "raw/../../x.mp4", "--store", store], 2),
        ("backslash in a key", "upload --key 'raw\\x.mp4'", ["upload", clip, "--key", "raw\\x.mp4", "--store", store], 2),
        ("--width 66", "odd height 33 (preview encoder)", [*label, tmp / "o66", "--width", "66"], 2),
        ("--out is a file", "label --out FILE", [*label, a_file], 2),
        ("read-only --out", "label --out on a read-only folder", [*label, ro_out], 2),
        ("garbage RLE counts in prompts", "counts 'garbage!!'", [*label, tmp / "og", "--prompts", prompts("garbage", garbage)], 7),
        ("two prompted ids, one mask", "tracks with identical masks on frame 0",
         [*label, tmp / "os", "--prompts", prompts("same", same_mask)], 7),
        ("prompts of another video", "video_uid of another video",
         [*label, tmp / "ou", "--prompts", prompts("uid", lambda d: d["videos"][0].update(video_uid="0123456789abcdef"))], 7),
        ("evaluate another video", "--pred of video A, --gt of video B",
         ["evaluate", "--pred", tmp / "other_gt.json", "--gt", tmp / "synth" / "gt.json", "--out", tmp / "ev.json"], 7),
        ("refine.tau=Infinity", "--set refine.tau=Infinity", ["config", "--set", "refine.tau=Infinity"], 2),
        ("split_ratios with NaN", "--set release.split_ratios=[NaN,0,1]", ["config", "--set", "release.split_ratios=[NaN,0,1]"], 2),
        ("--expires-hours nan", "review --expires-hours nan", ["review", "--video-id", uid, "--expires-hours", "nan", "--store", store], 2),
        ("32x16 video", "a source too small for the stages", ["label", tiny, "--store", store, "--no-progress", "--out", tmp / "o32"], 3),
    ]
    for case, fault, args, code in cases:
        t0 = time.perf_counter()
        p = tasks_cmd(*args)
        dt = time.perf_counter() - t0
        tb = "Traceback" in p.stderr
        work = any((store / "videos").rglob("manifest.json")) if (store / "videos").exists() else False
        row(case, fault, f"exit {code}, one line, no traceback, no stage run",
            f"exit {p.returncode} in {dt:.1f} s; traceback: {'yes' if tb else 'no'}; stage run: {'yes' if work and code != 3 else 'no'}; "
            f"{last_line(p.stderr)[:90]}", shown(args), p.returncode == code and not tb and not (work and code != 3))


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="l360-rel-") as d:
        tmp = Path(d)
        TMP[0] = str(tmp)
        p = tasks_cmd("synth", "--out", tmp / "synth", "--seconds", "2", "--fps", "8", "--width", "256", "--seed", "1",
                      "--no-progress")
        if p.returncode:
            raise SystemExit(p.stderr)
        t0 = time.perf_counter()
        for part in (secrets, video_input, store_side, concurrency, quarantine_rows, user_mistakes):
            part(tmp)
        seconds = time.perf_counter() - t0
    ok = sum(r["ok"] == "yes" for r in ROWS)
    return {"rows": ROWS, "summary": {"cases": len(ROWS), "as_expected": ok, "seconds": round(seconds, 1)}}


if __name__ == "__main__":
    print(json.dumps(main()))
