"""The annotation checker: rule-based comments on a labeled run, ID switches found in id maps,
and comments written by a VLM endpoint when one is configured (its failures keep the rule's)."""

import json

import httpx
import numpy as np

from tasks.backends.llm_verifier import COMMENT_MAX_CHARS, OpenAIVerifier
from tasks.formats import ytvis
from tasks.review.checker import candidates, check_run, id_switches, rule_comment
from tasks.stages import runner


def test_id_switch_found_at_the_frame_it_happens(tiny_clip):
    gt = list(ytvis.video_idmaps(json.loads((tiny_clip / "gt.json").read_text())))
    maps = []
    for t, g in enumerate(gt):
        m = g.copy()
        if t >= 9:
            m[g == 4], m[g == 7] = 7, 4
        maps.append(m)
    same = {4: "car", 7: "car"}
    found = id_switches(maps, same)
    assert [(c["frames"], c["tracks"]) for c in found] == [([[9, 9]], [4, 7])]
    assert found[0]["text"] == "possible ID switch at frame 9: track 4 and track 7 swap"
    assert id_switches(gt, same) == []                      # the true labels have none
    assert id_switches(maps, {4: "bird", 7: "bus"}) == []    # different classes: not an ID switch
    handoff = [np.where(g == 4, 11, g) if t >= 10 else g for t, g in enumerate(gt)]   # 4 ends, 11 begins
    [c] = id_switches(handoff, {4: "bird", 11: "bird"})
    assert c["text"] == "possible ID switch at frame 10: track 4 (bird) continues as track 11"


def test_rule_comments_name_what_to_do():
    class T:
        category = "unknown"
        provenance = {"parts": [{"votes": {"a": {"label": "bench"}, "b": {"label": "railing"}},
                                 "verdict": {"raw": "bench@0.41; fence@0.30"}}]}

    assert candidates(T.provenance) == ["bench", "railing", "fence"]
    assert rule_comment({"type": "unknown_label", "track": 7, "frames": [[0, 9]]}, {7: T}) == \
        "label unknown for track 7 — candidates: bench, railing, fence"
    assert rule_comment({"type": "seam_discontinuity", "frames": [[80, 95]]}, {}).startswith(
        "object split at the seam on frames 80–95")
    assert rule_comment({"type": "coverage_dip", "frames": [[200, 230]]}, {}).startswith("coverage dip on frames 200–230")
    assert rule_comment({"type": "camera_motion", "reason": "low_inliers", "frames": [[52, 52]]}, {}).startswith(
        "camera rotation could not be estimated on frame 52 (low_inliers)")


def test_every_flag_of_a_run_gets_a_comment(labeled_tiny):
    store, vid, run, _ = labeled_tiny
    out = check_run(store, vid, run)
    flags = store.get_json(runner.output_key(store, runner.load_manifest(store, vid, run, "qa"), "flags"))["flags"]
    assert out["by"] == "rules" and len([c for c in out["comments"] if c["type"] != "id_switch"]) == len(flags)
    assert all(c["text"] and c["by"] == "rules" for c in out["comments"])
    assert out["summary"].startswith(f"{len(out['comments'])} comment(s) on video {vid}")


def _vlm(answers):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        content = answers[min(len(seen), len(answers)) - 1]
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})

    v = OpenAIVerifier("http://vlm.test/v1", "m", api_key="sk-x", backoff_s=0.0, max_retries=0,
                       transport=httpx.MockTransport(handler))
    return v, seen


def test_vlm_writes_the_comments_and_a_bad_answer_keeps_the_rule(labeled_tiny):
    store, vid, run, _ = labeled_tiny
    v, seen = _vlm(['{"comment": "Track 3 looks like a bench; label it bench on frames 0-15."}',
                    "not json", json.dumps({"comment": "x" * (COMMENT_MAX_CHARS + 1)})])
    out = check_run(store, vid, run, verifier=v)
    assert out["by"] == "vlm"
    first, second, third = out["comments"][:3]
    assert first["by"] == "vlm" and first["text"].startswith("Track 3 looks like a bench") and first["rule_text"]
    assert second["by"] == "rules" and second["vlm_error"] == "answer is not the JSON asked for"
    assert third["by"] == "rules" and "characters" in third["vlm_error"]
    req = seen[0]
    assert req["response_format"] == {"type": "json_object"}
    assert any(p.get("type") == "image_url" for p in req["messages"][1]["content"])   # the flag's crop
