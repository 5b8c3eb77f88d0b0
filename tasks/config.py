"""The one typed configuration object of the pipeline.

Every threshold has the method's default and, in a comment, where it comes from:
``[M §x]`` refers to ``docs/reference/leader360v_pipeline.md`` (the Leader360V code release),
``[ours]`` marks a choice of this project where the method is silent or weak.

The hash of the configuration names the run folder (``videos/{id}/runs/{config_hash}/``), so a
backfill with a changed threshold writes beside the old outputs instead of over them. For that to
hold, every number that changes labels is a field here (issue 12 §10: ~25 lived as module
constants and a retuned one silently reused old outputs); tests/tasks/test_thresholds.py fails on
a new numeric module constant in label-making code. The ``code_version`` a manifest records is
provenance only (which package wrote it), deliberately not part of the hash: the scheduler and the
pods must name a run from its configuration alone, whatever image each of them runs.

Every float is finite (``allow_inf_nan=False``), and every problem is a :class:`ConfigError`
(exit 2) naming the setting, whatever the input's structure (tests/fuzz/test_fuzz_config.py).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.errors import ConfigError


class _Section(BaseModel):
    # allow_inf_nan=False: Infinity/NaN are refused in every float field, tuples included (issue 12:
    # refine.tau=Infinity and release.split_ratios=[NaN, 0, 1] were accepted; NaN fails every
    # comparison, so a NaN threshold silently disables its check).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Smallest processing width every stage supports (ERP 64x32).
_MIN_WIDTH = 64


class VideoConfig(_Section):
    # Frames per second to label. None = every input frame [issue #2: "by default every input
    # frame is labeled"].
    fps: float | None = Field(default=None, gt=0, le=120)
    # Processing width. None = min(input width, max_width) [issue #2].
    width: int | None = Field(default=None, ge=_MIN_WIDTH, le=8192)
    # ERP normalised to 2048x1024 for processing [M §1.1, §6 row 11].
    max_width: int = Field(default=2048, ge=64, le=8192)
    # JPEG quality of decoded frames (SAM2 reads a folder of JPEGs) [ours].
    jpeg_quality: int = Field(default=95, ge=50, le=100)
    # Longest accepted video; protects the workers from a mislabeled multi-hour upload [ours].
    max_seconds: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _even_width(self) -> VideoConfig:
        # A multiple of 4, so the height (width / 2) is even too: H.264 in yuv420p (the preview,
        # tasks/video/frames.Mp4Writer) needs both sides even, and ERP frames are exactly 2:1.
        # Checked here, before any work (issue 12: `--width 66` failed in qa, after the whole run).
        if self.width is not None and self.width % 4:
            raise ValueError(f"video.width must be even and a multiple of 4 (ERP frames are exactly 2:1 and the "
                             f"height {self.width / 2:g} must be even for the preview encoder); "
                             f"try {self.width - self.width % 4}")
        if self.max_width % 4:
            raise ValueError(f"video.max_width must be a multiple of 4 (even width and height); try "
                             f"{self.max_width - self.max_width % 4}")
        return self


class TilingConfig(_Section):
    # Wrap-pad 12.5% per side, three overlapping square tiles [M §1.2(a)].
    pad_ratio: float = Field(default=0.125, gt=0, lt=0.5)
    tiles: int = Field(default=3, ge=1, le=8)


class ProposeConfig(_Section):
    # Class-agnostic entity proposer (CropFormer in the method [M §1.2(b)]; classical on CPU).
    # "sam2_amg": SAM2 automatic masks on the tiles and polar views, with the propagation
    # checkpoint (propagate.sam2_*: one model, two roles) [issue 13 §1]; needs layout "tiles".
    entity_backend: Literal["superpixel", "sam2_amg"] = "superpixel"
    # Independent panoptic/semantic voters (OneFormer x3 in the method [M §1.2(b)]).
    panoptic_backends: tuple[str, ...] = ("color_prior", "cluster_prior")
    # Tile-merge IoU inside the overlap strip and across the seam [M §1.2(b) fuse_instances].
    tile_merge_iou: float = Field(default=0.5, gt=0, le=1)
    # Entity masks under 100 px at 2048 width are dropped, scaled with area [M §1.2(b)].
    min_area_px_at_2048: int = Field(default=100, ge=0)
    # Superpixel proposer: number of SLIC segments per 1024^2 tile, and the colour distance
    # (CIELAB) under which adjacent regions merge [ours: tuned on tasks.synth clips].
    superpixels_per_tile: int = Field(default=600, ge=16)
    merge_threshold: float = Field(default=14.0, gt=0)
    # Proposals are computed at this ERP width and upsampled (nearest) to the processing width;
    # the CPU segmentors gain little from more pixels and cost 4x per doubling [ours].
    work_width: int = Field(default=1024, ge=64)
    # Distortion-aware proposals at the poles: the ERP tiles stretch the polar caps tens of
    # times, so the proposers also run on perspective views looking up and down, whose masks are
    # projected back and fused on the sphere (spherical IoU) [ours, issue #3 §3]. Tiles layout
    # only: the sphere layout's region graph crosses the poles itself.
    polar_views: bool = True
    # Half-angle of the cap each polar view covers is fov/2; 120 deg covers |lat| >= 30 deg.
    polar_view_fov_deg: float = Field(default=120.0, gt=30, lt=170)
    # Where entities are proposed [issue 10]: "sphere" segments the whole frame once and merges
    # regions on the sphere's adjacency (seam and poles included), so the result does not depend
    # on where the seam falls (a real panorama rolled by W/2 agreed at ~0.75 with the tiles);
    # "tiles" is the method's seam-anchored tiling [M §1.2(b)] (+ polar views, above).
    layout: Literal["sphere", "tiles"] = "sphere"
    # Proposals are made with the frame rolled so that its quietest meridian (least gradient,
    # smoothed over +-90 deg) is the seam, then rolled back: a yawed copy of a frame gets the same
    # proposals, yawed, and the seam cuts as little as possible [issue 10].
    canonical_seam: bool = True
    # A refresh of the tracking pass proposes on its frame turned back to frame 0's orientation
    # (the accumulated camera rotation) and turns the result forward, so a still scene seen
    # through a moving camera is re-cut as frame 0 was, not anew under every pitch/roll [issue 10:
    # auto rotation consistency 0.84-0.90 on 360vot_0030]. Rotations under derotate_min_deg
    # (a still camera, estimator noise; under 1 deg the frame moves by < 3 px at 1024) are not
    # applied: the resampled frame's SDR differs, and at 0.05 deg the still-camera synthetic auto
    # J&F fell 0.952 -> 0.929 (seed 1; derotate off: 0.952) [issue 10].
    derotate: bool = True
    derotate_min_deg: float = Field(default=1.0, ge=0)
    # ...and with the previous keyframe's entities (in that same orientation) as a prior of the
    # sphere layout's region merge: a merge inside one earlier region costs (1 - h) times its
    # cost, one across two earlier regions (1 + h) times. One real frame and a re-encoded,
    # resampled copy of it agreed at 0.54 without (360vot_0030, frame 0 vs frame 20 turned back),
    # 0.93 / 0.95 / 0.97 at h = 0.15 / 0.3 / 0.5 [issue 10]; 0 turns it off.
    prior_hysteresis: float = Field(default=0.3, ge=0, lt=1)
    # ...except where the content changed: a superpixel further than prior_change_de (CIELAB)
    # plus prior_change_texture x the prior entity's lightness std from that entity's mean colour
    # on the frame it was cut on is not that entity any more (an object moved onto it or off it)
    # and the entity's (1 +- h) does not apply to it. Without this a moving flower lying over the
    # old sky and the old grass stayed cut in two at every refresh (still synthetic seed 2: J&F
    # 0.942 -> 0.899, one object split at the seam) [issue 10]. On unchanged real panoramas 20 + 2
    # std leaves <= 0.1% of the sphere out of the prior (20 + 0 std: 4-26%).
    prior_change_de: float = Field(default=20.0, gt=0)
    prior_change_texture: float = Field(default=2.0, ge=0)
    # Sphere layout: SLIC at this ERP width, superpixels on the whole sphere, and the region-merge
    # cost under which neighbours join [ours, issue 10: at 512 SLIC costs 0.2 s instead of 0.5 s
    # but its outlines, upsampled, cost bench_proposals 0.93 -> 0.87 mean IoU; a threshold of 14
    # split more (precision 1.0 -> 0.85 on seed 0) and left most real frames at the cap].
    slic_width: int = Field(default=1024, ge=64)
    sphere_superpixels: int = Field(default=1500, ge=16)
    # SLIC compactness: regular superpixels outline smooth objects better once merged (pole
    # objects in bench_proposals, seed 0: mean IoU 0.954 at 12, 0.990 at 45) [issue 10].
    slic_compactness: float = Field(default=45.0, gt=0)
    sphere_merge_threshold: float = Field(default=20.0, gt=0)
    # A superpixel straddling a colour edge (an outline, the horizon) is cut in two along it
    # before the merge when its two sides' means are at least this far apart (CIELAB; 0 = off):
    # such superpixels cut flat synthetic objects in two on frame 0 (seed 0 kite, seed 2 flower:
    # best-region IoU 0.73 / 0.60 -> 0.97 / 0.94), bench_proposals (sphere, 6 seeds) mean IoU
    # pole / seam / elsewhere 0.980 / 0.978 / 0.950 -> 0.995 / 0.991 / 0.976, thing precision
    # 0.914 -> 1.000. At 30 real textures were cut too: more tracks (360VOT 0030: 27 -> 32) and
    # lower rotation consistency (0.993 -> 0.975) and congo roll equivariance (0.973 -> 0.950);
    # at 60 the real rows are unchanged (bench_real auto, 0030/andes, congo) [issue 10].
    split_mixed_de: float = Field(default=60.0, ge=0)
    # A flat region (colour std under texture_floor) and a textured one at least this many times
    # as varied cost one merge threshold more (0 = off): a textured object coloured like the sky
    # differs from it by texture alone. Handheld synthetic seed 1: the blue third of a
    # photo-textured bird near the pole (std 13.3 vs the sky's 2.8, CIELAB 9.6 away) joined the
    # sky at cost 15.4 < 20 and 35% of the bird was sky for 28 frames. Off: at 3 handheld auto seed
    # 1 went 0.9227 -> 0.9342 but seed 2 0.9264 -> 0.9174 (a sky+petal strip cut loose from the
    # sky joined the seam flower, precision 0.98 -> 0.80), and the real pannellum frame was re-cut
    # (9 -> 11 entities, a "sky" piece by the horizon detached as an object) [issue 10].
    flat_textured_ratio: float = Field(default=0.0, ge=0)
    # Colour spread (CIELAB std) under which a region counts as flat: textured
    # surfaces may differ more between their own fragments [issue 10: "fragments of one
    # surface are one track"].
    texture_floor: float = Field(default=8.0, gt=0)
    # Smallest entity, as a share of the sphere (2e-4 ~ a 3 deg disc: smaller cannot be
    # followed), and the most entities one frame may propose (each costs per-frame work in
    # propagate/refine/QA; real frames gave ~150 tracks per clip before) [issue 10].
    min_object_fraction: float = Field(default=2e-4, ge=0, lt=0.1)
    max_objects: int = Field(default=48, ge=1)
    # Tiles layout with polar views: a tile entity with at least this share of its solid angle
    # inside a polar-view entity is a strip the tiles cut that object into, and joins it [ours,
    # issue #3 §3]. (Was proposals._STRIP_INSIDE; issue 12 point 10.)
    polar_strip_inside: float = Field(default=0.7, gt=0, le=1)
    # Canonical seam (above): the column score is computed at this ERP width (every work width is
    # a multiple, so a frame rolled by whole blocks gives exactly rolled scores); without a clear
    # first harmonic (under seam_min_harmonic of the total: a gradient spread evenly over
    # longitude) the seam is the minimum of the score averaged over +-seam_smooth_deg. +-22.5 deg
    # let the meridian jump between frames as objects moved: auto J&F on a still synthetic clip
    # 0.951 -> 0.887 (seed 1; +-90 deg: 0.924) [issue 10]. (Were proposals._SEAM_*.)
    seam_width: int = Field(default=256, ge=8)
    seam_smooth_deg: float = Field(default=90.0, gt=0, le=180)
    seam_min_harmonic: float = Field(default=0.01, ge=0, lt=1)
    # -- learned proposers (issue 13) --------------------------------------------------------
    # Where the learned proposers (sam2_amg, mask2former_*/oneformer_* voters) run: "cuda" on a
    # GPU pod fails the stage (exit 2) when torch sees no GPU instead of crawling on the CPU.
    device: Literal["auto", "cuda", "cpu"] = "auto"
    # Mixed precision on CUDA only (ignored on the CPU): "fp16"/"bf16" autocast of the forward
    # passes; "off" keeps float32 (labels identical to a CPU run up to float noise) [issue 13].
    autocast: Literal["off", "fp16", "bf16"] = "off"
    # SAM2 automatic masks: a points_per_side^2 grid per tile, masks kept with predicted IoU >
    # pred_iou_thresh and stability >= stability_thresh (IoU of the masks thresholded at +-offset
    # of the logit threshold), box NMS at box_nms_iou, holes and islands under min_region_px
    # removed (px at a 1024^2 tile, scaled with the tile's area) [defaults of SAM2's
    # SAM2AutomaticMaskGenerator; min region = the method's 100 px at 2048 per 1024^2 tile, M §1.2(b)].
    amg_points_per_side: int = Field(default=32, ge=1, le=256)
    # Prompts decoded per batch; halved on CUDA out of memory [issue 13: retry with smaller batches].
    amg_points_per_batch: int = Field(default=64, ge=1)
    amg_pred_iou_thresh: float = Field(default=0.8, ge=0, le=1)
    amg_stability_thresh: float = Field(default=0.95, ge=0, le=1)
    amg_stability_offset: float = Field(default=1.0, gt=0)
    amg_box_nms_iou: float = Field(default=0.7, gt=0, le=1)
    amg_min_region_px_at_1024: int = Field(default=100, ge=0)
    # Panoptic voters (mask2former_*/oneformer_*): each tile is resized to this width before the
    # model's own test-time resize, and the masks brought back to the tile with nearest
    # neighbour [M §1.2(b)]; a query counts when its class score > score_thresh, and its
    # segment when it keeps >= overlap_thresh of its own mask after the pixel-wise argmax
    # (OneFormer's TEST.OBJECT_MASK_THRESHOLD / OVERLAP_THRESHOLD, 0.8 / 0.8).
    panoptic_input_width: int = Field(default=640, ge=32)
    panoptic_score_thresh: float = Field(default=0.8, ge=0, lt=1)
    panoptic_overlap_thresh: float = Field(default=0.8, ge=0, le=1)
    # Tiles per forward pass of a voter (3 = a frame's tiles at once); halved on CUDA OOM.
    panoptic_batch_tiles: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _even(self) -> ProposeConfig:
        if self.work_width % 2 or self.slic_width % 2:
            raise ValueError("propose.work_width and propose.slic_width must be even")
        if self.entity_backend == "sam2_amg" and self.layout != "tiles":
            # SAM2 squashes its input to a square: on the whole 2:1 frame it would see objects
            # at half their width and cut the ones on the seam; the tiles are the method's input
            raise ValueError("propose.entity_backend sam2_amg runs on the seam-aware tiles: set propose.layout "
                             "to tiles (the sphere layout is the superpixel proposer's)")
        return self


class VerifyConfig(_Section):
    # A voter matches an entity mask when one of its masks overlaps with IoU > 0.5
    # (match_iou_threshold in the method's config; code default 0.6) [M §1.2(c)].
    vote_iou: float = Field(default=0.5, gt=0, le=1)
    # Label accepted when >= 2 voters matched and all agree [M §1.2(c)].
    min_votes: int = Field(default=2, ge=1)
    # A voter's segment is a candidate label shown to the verifier when it matches the entity
    # (IoU > vote_iou) or covers at least this share of it (a voter segment larger than the
    # entity still names it) [ours]. (Was the literal 0.5 in vote.py; issue 12 point 10.)
    candidate_cover: float = Field(default=0.5, gt=0, le=1)
    # At a refresh of the tracking pass, a fresh entity that is an entity of the previous
    # keyframe again (spherical IoU >= this, in one orientation) keeps its label unless the fresh
    # vote agreed on another: the vote/verifier flipped a 0.29-of-the-sphere region from sky to
    # water on a re-encoded copy of the same still scene (360VOT 0098 re-shot) [issue 10].
    keep_label_iou: float = Field(default=0.8, gt=0, le=1)
    # Label verifier for everything the vote did not settle [M §1.2(d)]: "embedding" (CPU, maps
    # the voters' free-text labels by meaning), "openai" (a VLM behind an OpenAI-compatible chat
    # endpoint, vLLM/Ollama-style; the 2026 fork serves Qwen3-VL-8B this way), or "none".
    verifier: Literal["embedding", "openai", "none"] = "embedding"
    # Cosine similarity under which a free-text label is not trusted -> "unknown" [ours].
    embedding_min_similarity: float = Field(default=0.5, ge=-1, le=1)
    # OpenAI-compatible endpoint (".../v1"). None = the deployment's ($LEADER360V_LLM_BASE_URL).
    # A value must be one the deployment allows ($LEADER360V_LLM_BASE_URL or
    # $LEADER360V_LLM_ALLOWED_ENDPOINTS): the API key is sent there, and a configuration comes from
    # people who do not hold the key (issue 12; tasks/deployment.py). Kept here, not only in the
    # environment, because the endpoint (its model server) changes labels: it names the run.
    llm_base_url: str | None = None
    llm_model: str = "Qwen3-VL-8B-Instruct"
    # Fixed: the key is always read from $LEADER360V_LLM_API_KEY, which the deployment fills from
    # a Secret. Any other value is refused (issue 12: a setting pointed it at the store's secret
    # key). Kept as a one-value field so run hashes recorded before stay the same.
    llm_api_key_env: Literal["LEADER360V_LLM_API_KEY"] = "LEADER360V_LLM_API_KEY"
    # temperature 0.2 and JSON answers as the method's code [M §1.2(d)]; bounded time and retries
    # so a slow or failing endpoint degrades to "unknown" + a QA flag instead of stalling a run.
    llm_temperature: float = Field(default=0.2, ge=0, le=2)
    llm_timeout_s: float = Field(default=30.0, gt=0)
    llm_max_retries: int = Field(default=3, ge=0, le=10)
    llm_max_workers: int = Field(default=8, ge=1, le=64)
    # Distortion-corrected view sent to the verifier: perspective centred on the mask's spherical
    # centroid, 100 deg horizontal FoV, 640x480 (the 2026 fork's choice) [M §1.2(d), §6 row 4].
    view_fov_deg: float = Field(default=100.0, gt=10, lt=180)
    view_width: int = Field(default=640, ge=64)
    view_height: int = Field(default=480, ge=64)

    @field_validator("llm_api_key_env", mode="before")
    @classmethod
    def _fixed_key_env(cls, value: Any) -> Any:
        from tasks.deployment import LLM_API_KEY_ENV

        if value != LLM_API_KEY_ENV:
            raise ValueError(
                f"the API key is always read from ${LLM_API_KEY_ENV}, set by the deployment (a Secret); "
                f"a configuration cannot name another variable (got {value!r})")
        return value

    @field_validator("llm_base_url")
    @classmethod
    def _allowed_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from tasks.deployment import check_llm_endpoint

        try:
            return check_llm_endpoint(value)
        except ConfigError as exc:  # reported with the setting's name by _explain
            raise ValueError(str(exc)) from None


class SdrConfig(_Section):
    # Overlapping pixels go to the smaller mask [M §1.2(b), §6 row 8].
    exclusive: Literal["smaller_wins"] = "smaller_wins"
    # Stuff classes are OR-merged into one object per class [M §1.2(b)].
    merge_stuff: bool = True
    # An entity nobody could name that covers more than this share of the sphere is split: the
    # pixels where the voters agree on a stuff class join that class, the rest stays one
    # "unknown" object flagged for review (it is still something to track). Dropping the whole
    # region made coverage flip with the vote's IoU on real video: congo frame 0, one region of
    # 0.90 of the sphere, IoU just under 0.5 -> coverage 0.10, the next keyframe 0.78 [issue 10].
    max_unknown_fraction: float = Field(default=0.05, ge=0, le=1)
    # ...unless the rest has no texture (std of CIELAB lightness, OpenCV units 0-255, under this):
    # a flat black/grey area (a lens cap, a masked nadir) is nameless background, dropped [issue 10].
    nameless_max_texture: float = Field(default=3.0, ge=0)
    # An "unknown" entity joins the larger entity around it (a cloud in the sky, a darker patch
    # of grass, a lobe the segmentor cut off) when that one holds at least absorb_border of its
    # border and their mean colours are within absorb_color (CIELAB, OpenCV units) [ours]. (Were
    # fuse._ABSORB_*; issue 12 point 10.)
    absorb_border: float = Field(default=0.6, gt=0, le=1)
    absorb_color: float = Field(default=20.0, ge=0)
    # An automatic object with at least this share of its area inside a prompted mask is the
    # prompted object as the proposers saw it, and is dropped [ours]. (Was
    # stages/sdr._COVERED_BY_PROMPT; issue 12 point 10.)
    covered_by_prompt: float = Field(default=0.5, ge=0, le=1)
    # A connected group of entities of one stuff class covering less than this share of the
    # sphere is an object the voters named by its colour (a "tree" person alone in the sky), not
    # background: its own thing, class unknown (tasks.labeling.fuse.stuff_islands; 0 = off).
    # Synthetic things are <= 1.2% of the sphere; real stuff comes in groups > 2% (360VOT, congo,
    # pannellum, andes frame 0) except lone trees (0.06-0.4%). Handheld synthetic seeds 2/3: the
    # two seam splits started from such objects merged into "tree"/"water" [issue 10].
    island_max_fraction: float = Field(default=0.015, ge=0, le=1)
    # ... and at least this share (0.03%: ~160 px at the equator at 1024 px): a smaller island is a
    # speck of its class, not an object (bench_proposals seed 5 at 85 deg: a 78-px "tree" sliver on
    # the horizon counted as a false thing; the smallest real lone tree, 0115, is 0.06%) [issue 10].
    island_min_fraction: float = Field(default=3e-4, ge=0, le=1)
    # Small nameless entities (and islands) that touch are one object when their group is under
    # island_max_fraction (tasks.labeling.fuse.unknown_groups): the colour merge cut multi-coloured
    # objects in two, each half a track for the whole clip (handheld synthetic seed 3: a person
    # J 0.50 + 0.49, an appearing bird 0.49 + 0.44) [issue 10].
    join_touching_unknown: bool = True
    # ... when both pieces are textured (std of CIELAB lightness, OpenCV units, at least this; an
    # island counts its most textured entity): flat pieces touching are two objects meeting at
    # their outlines far more often (bench_proposals' flat synthetic objects 4.5-11.3, 15-17 once
    # resampled to 85 deg latitude; the photo-textured pieces of the handheld clips 19-55). Joining
    # flat ones cut bench_proposals sphere mean IoU elsewhere 0.976 -> 0.838 (at 14: 0.973).
    join_min_texture: float = Field(default=18.0, ge=0)
    # A thing-sized entity given a stuff class by the verifier alone (no voter segment matches it
    # whole) that looks unlike the vote-agreed entities of its class is no part of that expanse
    # even where it touches it, and may be an island (tasks.labeling.fuse.unlike_their_class):
    # mean colour further than detach_color (CIELAB, OpenCV units) and lightness std at least
    # detach_texture_ratio times theirs (and join_min_texture). Handheld synthetic seed 0: a
    # photo-textured kite lying on the grass was named "grass" (CIELAB 30 / 112 away, std 37 / 27
    # against 16) and lost for the clip [issue 10]; 0 turns it off.
    detach_color: float = Field(default=20.0, ge=0)
    detach_texture_ratio: float = Field(default=2.0, ge=0)
    # ... and one unlike its class by at least unlike_join_color (under the texture ratio) that
    # shares at least unlike_join_border of its border with textured pieces of an object (islands,
    # nameless entities; join_min_texture) is more of that object (tasks.labeling.fuse.unlike_pieces;
    # a border share over 1 turns it off). A photo-textured object's white or dark part is named
    # "sky" by the verifier (seed 3 frisbee on the decoded frame: CIELAB 76 from the sky, std 1.8 x
    # its, 40% of its border on the frisbee's other part); handheld auto seed 2 0.9264 -> 0.9316
    # (the appearing clock kept its piece at refreshes), prompts seed 2 0.9508 -> 0.9554, the other
    # seeds unchanged; horizon strips (CIELAB 69 / 33, 18% / 49% of the border) stay stuff [issue 10].
    unlike_join_color: float = Field(default=60.0, ge=0)
    unlike_join_border: float = Field(default=0.3, ge=0)
    # The voters whose stuff classes are guesses from colour and latitude (tasks.backends.scene_prior):
    # the island and detach rules above apply only when every voter of the frame is one of these.
    # Learned panoptic voters name the things themselves, and there a lone real tree the vote
    # called "tree" is a tree, not an "unknown" object [issue 10].
    colour_voters: tuple[str, ...] = ("color_prior", "cluster_prior")


class FlowTuning(_Section):
    """Thresholds of the CPU propagator (tasks/backends/flow.py) that change labels [ours, issue 10 §2;
    issue 12 point 10: every such number lives here]. CIELAB distances are in OpenCV's 8-bit Lab units."""

    # An object whose visible area is under this share of its last full view is looked for
    # (its hidden part is predicted from memory).
    occluded: float = Field(default=0.6, gt=0, le=1)
    # A visible area over this share of the recent maximum counts as a full view (memory refreshed).
    full_view: float = Field(default=0.85, gt=0, le=1)
    # The recent maximum area fades by this factor per frame, so an object that recedes may shrink.
    area_decay: float = Field(default=0.98, gt=0, le=1)
    # An object out of full view since the previous frame whose visible area falls under this share
    # of its recent maximum is hidden: its last pixels go to the label around them and it coasts in
    # memory (0: never). A sliver kept while the object is wholly behind its occluder is a false
    # label on every frame the object is out of sight (synthetic handheld seeds 0/2/3: 35-70 px on
    # 2/5/7 frames with no object there, each a J&F of 0) [issue 10].
    vanish: float = Field(default=0.1, ge=0, lt=1)
    # ... unless its visible area grew by this share since the previous frame (or, hidden, it was
    # found back on at least `reacquire` of its view):
    # an object coming out again shows a growing sliver, and hiding it re-hid the object for
    # frames (synthetic handheld seed 1, animal J&F 0.860 -> 0.830 with vanish alone) [issue 10].
    vanish_growth: float = Field(default=0.2, ge=0)
    # While an object touches another object (on at least contact_share of its outline ring), a view
    # is full only at contact_full_view of its solid angle before the contact (held while hidden):
    # the recent maximum fades 2%/frame and an object going behind another loses 2-7%/frame, so by
    # full_view alone a partial view counted as full for 3-7 frames, refreshing its memory with less
    # of it and giving it a false own motion from its occluder (synthetic handheld, propagator
    # alone: seeds 2/3 0.1 px/frame objects coasted at 3.2/0.9 px/frame, back 30-40 px off after
    # 20 hidden frames) [issue 10]. Only objects not touching when either was first seen count
    # (pieces of one object touch for good: still seed 3 auto kept a seam split). 0 disables.
    contact_full_view: float = Field(default=0.95, ge=0, le=1)
    contact_share: float = Field(default=0.02, gt=0, le=1)
    # Share of a wholly hidden object's predicted view whose colours must match again for it to be back
    # (half of it for a partly visible one).
    reacquire: float = Field(default=0.5, gt=0, le=1)
    # An object out of sight is also back where its colours match significantly (FlowPropagator.
    # _significant_match): on at least this share of its remembered view ...
    reacquire_min_share: float = Field(default=0.02, gt=0, le=1)
    # ... and this many pixels (at 1024 columns, area-scaled) ...
    reacquire_min_px: float = Field(default=20.0, ge=0)
    # ... this many times the median share over the places searched (chance level; 0 disables).
    # Synthetic handheld seeds 0-3, propagator alone: the occluded object, out again on 2-30% of its
    # view, was lost for up to 8 frames waiting for `reacquire` (issue 10).
    reacquire_contrast: float = Field(default=4.0, ge=0)
    # The place it is back at is the best share matching weighted by a Gaussian of its distance from
    # the prediction, sigma this share of the search reach (0: the best share anywhere). The reach
    # grows with the frames out of full view (to ~50 px) and the best of ~50 places was a sliver of
    # matching colours 25 px off: the object came back there (synthetic handheld seed 3) [issue 10].
    reacquire_prior: float = Field(default=0.5, ge=0)
    # The search scans shifts this many px apart (at 1024 columns, scaled; 0: a third of the reach, as
    # before), on at most reacquire_scan_points of the remembered view's points, then refines at 1 px.
    # A third of the reach was up to 17 px, and a photo-textured object's match falls off within a few
    # px: the animal coming out from behind the signboard 20 px off its prediction (synthetic handheld
    # seed 2) scored as chance at the grid's places and stayed lost for 7 frames [issue 10].
    reacquire_scan_px: float = Field(default=0.0, ge=0)
    reacquire_scan_points: int = Field(default=400, ge=16)
    # Points count as matching only where the object can show: unlabeled, background (stuff), the
    # object itself or pixels the motion is unsure of -- not another object's sure pixels (it is in
    # front there: the occluder's colours matched a textured object's on ~10% of its points at the
    # predicted place, as much as the real sliver coming out 20 px away). The chance level of the
    # significance test stays the share matching on any pixel [issue 10].
    # Both off by default (scan_px 0, open_only False: the earlier search, unchanged). With scan_px 3
    # and open_only true: synthetic handheld auto 4 seeds 0.9249 -> 0.9272 (seed 2 0.9264 -> 0.9350,
    # seed 0 0.9291 -> 0.9259), prompts 0.9441 -> 0.9472, real prompted (pannellum, 360vot_0115)
    # unchanged; but still-camera seed 3 auto gets a seam split again (flower, 0 -> 1), so not on yet.
    reacquire_open_only: bool = False
    # CIELAB distance under which a pixel matches the remembered colour at that point.
    color_match: float = Field(default=18.0, gt=0)
    # Points kept of an object's full view (subsampled: enough to re-find it, bounded memory).
    memory_points: int = Field(default=8000, ge=16)
    # CIELAB distance between the previous frame moved by the estimated motion and the current
    # one over which the motion is unsure at that pixel (its outline is re-decided by colour).
    photo_mismatch: float = Field(default=8.0, gt=0)
    # CIELAB: how much closer another label's local colour must be to take an outline pixel the
    # motion is sure of (texture noise must not flip labels).
    switch_margin: float = Field(default=6.0, ge=0)
    # Flow range (working px) within a 5x5 window over which a pixel is on a motion boundary.
    motion_edge_px: float = Field(default=1.0, gt=0)
    # CIELAB: an outline pixel this far from the moved previous frame has moved (own-motion
    # evidence), and a patch this far is unexplained (something appeared).
    moved_mismatch: float = Field(default=30.0, gt=0)
    # Frames without evidence of own motion before an object counts as still again.
    quiet_frames: int = Field(default=10, ge=1)
    # Share of an object's outline that must have moved to call it moving on its own.
    moved_share: float = Field(default=0.3, gt=0, le=1)
    # Own motion over which an object moves on its own: how far it moves the object's pixels (RMS,
    # px/frame at the equator, working size; not the rotation's angle, which a small object's fit
    # pins loosely about its own centre: real 0115 barn, a 0.20 px angle moved it 0.02 px; issue 10) ...
    own_motion_px: float = Field(default=0.2, ge=0)
    # ... and more than this many standard errors of the fit (its residuals' RMS over the root of the
    # supporting pixels counted in own_motion_patch_px-sided patches: DIS (medium preset, patch 8 at
    # half the working size) gives neighbouring pixels one shared estimate). FlowPropagator._moves_on_its_own.
    own_motion_z: float = Field(default=3.0, ge=0)
    own_motion_patch_px: float = Field(default=8.0, ge=1)
    # A piece of a moving object under this share of its area, apart from it, is a speck (dropped).
    fragment: float = Field(default=0.1, ge=0, le=1)
    # An unexplained patch of at least this share of the frame is something that appeared
    # (left unlabeled so the tracking pass proposes it) ...
    appear_share: float = Field(default=5e-4, gt=0, le=1)
    # ... unless unexplained patches cover more than this share (a global change: flash, cut).
    appear_max_share: float = Field(default=0.05, gt=0, le=1)
    # CIELAB: an object's own motion keeps a pixel unless the flow explains its colour better by this.
    motion_tie: float = Field(default=3.0, ge=0)
    # Labels over this share of the frame are background (stuff), not objects with a motion and memory.
    object_max_fraction: float = Field(default=0.05, gt=0, le=1)
    # Frames an object stays remembered while out of sight.
    max_hidden_frames: int = Field(default=30, ge=0)
    # Outline band (px at 1024 width, scaled; at least 3) where labels may be re-decided by colour.
    review_radius_px_at_1024: float = Field(default=6.0, gt=0)
    # CIELAB: in those re-decisions an object whose full view's colours spread more than this (RMS)
    # has its colour distances scaled down by this / its local spread, so a photo-textured
    # object's pixels are not given away to the flat background beside it. Synthetic clips with
    # photo-textured objects, propagator alone, 30 frames: mean J 0.735 -> 0.807 (still camera),
    # 0.716 -> 0.784 (handheld); flat-look clips (object spreads 9-16) unchanged. 0 disables.
    texture_spread: float = Field(default=25.0, ge=0)
    # Static anchoring (FlowPropagator._anchor_static): a pixel whose composed flow field is within
    # this many pixels (equator, full size) of where the camera rotation since the key frame puts it,
    # and where the key frame read through that rotation matches the frame at least as well, reads
    # the key through the rotation, so the residual flow's noise does not accumulate (real re-shot
    # panoramas, prompted, 30 frames: 0098 fish pan J 0.925 -> 0.989; issue 10). 0 disables.
    anchor_px: float = Field(default=3.0, ge=0)
    # An object flagged as moving on its own whose outline (static anchoring) the camera rotation
    # alone explains better on at least this share is still: the flag was residual-flow noise
    # (real re-shot panorama 0098, handheld: a still fish moved 0.48 px/frame, J 0.94; issue 10).
    still_share: float = Field(default=0.6, gt=0, le=1)
    # ... if its own motion is under this many px/frame (equator, full size): the noise measured
    # 0.95 px/frame at 1024 (that fish); a faster own motion is real (a synthetic occluder, slow, was
    # taken for still without this bound and its occluded object smeared: test_flow_propagator).
    still_max_px: float = Field(default=1.5, ge=0)
    # ... on this many consecutive frames (an object that starts moving is, for a frame or two, better
    # explained by the rotation than by its lagging motion estimate: synthetic occlusion tests).
    still_frames: int = Field(default=3, ge=1)
    # Static anchoring stays off within this many pixels (at 1024 columns, scaled) of an object
    # moving on its own, and only there (it was off for the whole frame while any object moved:
    # real re-shot 0030 handheld, prompted, a still lantern J 0.935; issue 10).
    anchor_mover_margin_px: float = Field(default=16.0, ge=0)
    # Objects' own motion from feature tracks at full size (FlowPropagator._track_objects; issue 10:
    # DIS at 512 px underestimated photo-textured objects' motion by ~20%). An object needs this many
    # forward-backward consistent LK tracks (0 disables) ...
    track_min_points: int = Field(default=12, ge=0)
    # ... of at most this many corners per object, taken this far (px at 1024, scaled) inside its outline,
    track_max_points: int = Field(default=200, ge=1)
    track_erode_px_at_1024: float = Field(default=3.0, ge=0)
    # ... and, for an object touching another (contact_share), no nearer than this (px) to the other
    # object: an LK window (track_window_px = 21) holding the object in front follows it (synthetic
    # handheld seed 2: 3.2 px/frame of false own motion; issue 10). 0 disables.
    track_contact_px: int = Field(default=10, ge=0)
    # ... only in textured objects: mean 5x5 grey-level deviation inside over this (flat synthetic
    # objects 1.2-3.2, photo-textured 7.5-42; FlowPropagator._track_objects).
    track_texture_std: float = Field(default=5.0, ge=0)
    # ... with this LK window (px), forward-backward error under this (px), fit residual under this
    # (px at the equator) for this share of the tracks.
    track_window_px: int = Field(default=21, ge=5)
    track_fb_px: float = Field(default=1.0, gt=0)
    track_fit_px: float = Field(default=1.5, gt=0)
    track_inliers: float = Field(default=0.5, gt=0, le=1)
    # A tracked object is drawn from its key view moved by the composed measured rotations
    # (FlowPropagator._place_rigid); without tracks for this many frames it goes back to the flow.
    rigid_coast: int = Field(default=2, ge=0)
    # Own motion (px/frame at the equator, full width) under which a tracked object moves with the
    # camera's rotation rather than its tracks' fit, and is not drawn from a key view.
    track_own_px: float = Field(default=0.5, ge=0)
    # CIELAB: a pixel of another object goes to the drawn object only this close to its key colour there.
    rigid_color: float = Field(default=20.0, gt=0)
    # Margin (px at 1024, scaled) around a drawn object's previous and current pixels where it is drawn.
    rigid_margin_px_at_1024: float = Field(default=16.0, gt=0)


class RelinkTuning(_Section):
    """Thresholds of re-linking a fresh SDR to the followed tracks (tasks/labeling/relink.py)
    [ours, beyond the method's IoU > 0.3 of M §1.3; issue 12 point 10]."""

    # A matched thing this close (IoU) to its fresh mask keeps its own, temporally consistent mask.
    keep_iou: float = Field(default=0.7, gt=0, le=1)
    # ... plus, unless prompted, its fresh mask's pixels where no thing was before the refresh
    # (stuff or unlabeled): the propagator never grows a mask, so an object coming into view or
    # eroded stayed at its track's size (synthetic handheld seed 2, auto: the clock kept 2902 px,
    # its fresh mask had 357 px more of it on the sky) [issue 10]. Each piece of that is kept when
    # its colour is nearer the object's around it than the backdrop's (fresh masks bleed: seed 1,
    # 718 px of sky around the bird at the pole). False: its own mask only.
    keep_grows: bool = True
    # A new thing on the backdrop (part_of of it where no object was) bordering, on part_touch of
    # its outline, the fresh mask of a track found mid-video that no refresh has seen yet is the
    # rest of that arriving object, not a new one: the segmentor cut a multi-coloured object where
    # its colours change (synthetic handheld seed 2: the clock's light lower third became a second
    # track, the clock's kept 3/4 of it, J&F 0.71) [issue 10]. False: a new track, as before.
    join_arriving: bool = True
    # A track found mid-video is arriving until this many refreshes have seen it: with refreshes
    # 3 frames apart (area-drop, appearance) the clock found at frame 21 was seen at 24 and its
    # light third cut off at 30 (synthetic handheld seed 2, JF sphere prompts/auto 0.934/0.910 at
    # 1, 0.951/0.927 at 2) [issue 10].
    arriving_refreshes: int = Field(default=2, ge=1)
    # Share of a new mask inside one track that makes it a piece of that track.
    part_of: float = Field(default=0.7, gt=0, le=1)
    # ... or this share, when the piece is smaller than the track and looks like it or borders it.
    part_touch: float = Field(default=0.2, gt=0, le=1)
    # CIELAB distance under which a piece "looks like" the track.
    part_color: float = Field(default=15.0, gt=0)
    # Share of an unmatched track inside another track's fresh mask that makes it a piece of it.
    absorbed: float = Field(default=0.8, gt=0, le=1)
    # An unmatched thing track lying (absorbed) inside the fresh mask of a track it was seen apart
    # from keeps its current mask over that fresh mask (an occluder and the object passing behind
    # it, seen as one by the SDR); False: re-added only where the fresh SDR left room, as before.
    # Still synthetic seed 0 (auto, with sdr.join_touching_unknown): umbrella J&F 0.41 -> 0.97,
    # clip 0.880 -> 0.940 [issue 10].
    keep_swallowed: bool = True
    # Re-identification of a lost thing: mean-colour CIELAB distance and angular distance (in
    # units of the lost track's angular radius) at most, within reid_max_lost_s of losing it.
    reid_color: float = Field(default=18.0, gt=0)
    reid_angle: float = Field(default=2.5, gt=0)
    reid_max_lost_s: float = Field(default=3.0, ge=0)


class McrTuning(_Section):
    """Thresholds of Motion-Continuity Refinement's routing (tasks/labeling/mcr.py) [M §1.3, §6 row 6;
    the numbers are ours]."""

    # Share of a blank region that must lie on one track at t-1 for the "existing" branch.
    existing_share: float = Field(default=0.3, gt=0, le=1)
    # CIELAB distance under which a blank pixel still looks like that track.
    same_color: float = Field(default=20.0, gt=0)
    # Share of an entity's labeled pixels on one track that joins it to that track.
    join_share: float = Field(default=0.3, gt=0, le=1)


class CheckTuning(_Section):
    """Sizes used by the tracking pass's checks (tasks/labeling/follow.py) [ours]."""

    # The per-object area-drop trigger watches objects of at least this many times the
    # propagate.min_area_px_at_2048 area ...
    watch_min_area_factor: float = Field(default=4.0, ge=0)
    # ... and at least this share of the frame: slivers come and go by themselves.
    watch_min_share: float = Field(default=5e-4, ge=0, le=1)
    # The appearance trigger (refine.appear_trigger) fires on unlabeled pixels that were labeled
    # at the previous check (moved by the camera rotation since) once they make a piece of at
    # least this many times the watched size (the max of the two above: 262 px at 1024 px, so
    # 786 px, 0.15% of the frame). 3, not 1 or 2: an object caught as it comes into view is
    # followed badly while it grows and later refreshes keep its small track's mask (synthetic
    # seed 2 still, prompts: the clock proposed at frame 21 from 687 px gave J&F 0.81, born at 24
    # 0.92; handheld seed 0: the boat from 412 px at 21 0.68, from 1358 px at 24 0.80, by the
    # coverage rule at 27 0.73).
    # The previous check's blank pixels, moved, are widened by appear_margin_px_at_1024 first so
    # that a hole the last refresh left open does not fire again as the rotation estimate and
    # resampling shift its rim by a pixel [ours, issue 10].
    appear_area_factor: float = Field(default=3.0, gt=0)
    appear_margin_px_at_1024: float = Field(default=2.0, ge=0)
    # How far an object found at a refresh may have moved on its own in one frame when its track
    # is carried back over the held frames (refine.backfill_s) [ours, issue 10].
    backfill_margin_px_at_1024: float = Field(default=4.0, ge=0)
    # ... and it stops at the first frame where the object would be under backfill_min_share of
    # its size on the frame after (it appears within a frame or two: synthetic handheld 0.3-0.4
    # of the next frame's size on its first frame), so blank specks near where it will be are
    # not taken for it.
    backfill_min_share: float = Field(default=0.1, ge=0, le=1)
    # Of the pixels a stuff region holds there, those OpenCV's GrabCut gives the object (its
    # pixels there unlabeled: sure; the stuff's: probably; a crop widened by
    # backfill_ring_px_at_1024 around it: background) go to it too, after backfill_grabcut_iters
    # iterations on the crop scaled to backfill_grabcut_max_side px at most (a few ms). Carried
    # back from the track's first mask against the true object, synthetic handheld, J per frame:
    # blank pixels alone 0.81-0.97 (seeds 0, 2), 0 (seed 1 auto, seed 3: the background's label
    # covered it); with GrabCut 0.83-0.98. 0 iterations: unlabeled pixels only.
    backfill_grabcut_iters: int = Field(default=4, ge=0)
    backfill_ring_px_at_1024: float = Field(default=12.0, gt=0)
    backfill_grabcut_max_side: int = Field(default=160, ge=16)
    # Only an object that appeared within the held frames is carried back: on the oldest one at
    # least backfill_change_share of its pixels (moved back by the camera rotations since) had a
    # colour more than backfill_change_lab (CIELAB) away; a piece of a still scene a refresh names
    # afresh looks the same (real andes, vehicle path: two pieces of the prompted wall carried
    # back over it, wall J 0.959 -> 0.947, under the 0.95 floor). 0 carries every new track back.
    backfill_change_lab: float = Field(default=20.0, ge=0)
    backfill_change_share: float = Field(default=0.5, ge=0, le=1)
    # A thing track a refresh grew by at least this share of its mask, taken from the background
    # (stuff or unlabeled), is carried back too (synthetic handheld seed 3: the bird born at 27
    # from ~730 of its 1463 px, whole at the keyframe of 30); 1 turns it off [ours, issue 10].
    backfill_grow_share: float = Field(default=0.2, gt=0, le=1)
    # A thing track a refresh found at most decay_young_s ago that lost more than decay_share of
    # its area (solid angle) since the last refresh (or its largest since) triggers a refresh
    # ("area_decay"): the flow propagator gives a just-found object's rim to the background a few
    # pixels a frame (synthetic handheld seed 3 bird: 0.054 -> 0.039 of the sphere from the
    # keyframe of 30 to frame 59, J 0.97 -> 0.71, never half in one check); 1 turns it off
    # [ours, issue 10].
    decay_share: float = Field(default=0.15, gt=0, le=1)
    decay_young_s: float = Field(default=2.0, ge=0)
    # When the refresh's SDR does not find it (relink keeps its followed mask), the background
    # pixels within this distance of it that GrabCut gives it go back to it (synthetic handheld
    # seed 3 bird at 42: inside the fresh sky region; GrabCut gave back 280 px, the same at 4,
    # 8 or 12 px) [ours, issue 10].
    decay_regrow_px_at_1024: float = Field(default=8.0, gt=0)
    # ... not when that leaves it larger than this times its area at the last refresh (or its
    # largest since): then the band's background went to it too (an object's own size changes
    # little in 2 s; 1.1 also absorbs the rounding of the areas) [ours].
    decay_regrow_max_growth: float = Field(default=1.1, ge=1)


class PropagateTuning(_Section):
    flow: FlowTuning = FlowTuning()
    relink: RelinkTuning = RelinkTuning()
    mcr: McrTuning = McrTuning()
    checks: CheckTuning = CheckTuning()


class PropagateConfig(_Section):
    # "flow": the CPU propagator (default without a GPU); "sam2": SAM2's video predictor with
    # mask prompts [M §1.2(e)], streamed in bounded memory and wrap-padded at the seam; "warp":
    # the plain per-pixel wrap-aware DIS backward warp, the baseline of every benchmark [issue 10].
    backend: Literal["flow", "sam2", "warp"] = "flow"
    # SAM2.1 model size; the method uses Hiera-Large [M §1.2(e)].
    sam2_model: Literal["tiny", "small", "base_plus", "large"] = "large"
    # Checkpoint: a local path or a store key under models/; its sha256 is checked before loading.
    # Never downloaded from a hub at run time.
    sam2_checkpoint: str | None = None
    sam2_checkpoint_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # SAM2's input resolution (its configs use 1024) and where it runs.
    sam2_image_size: int = Field(default=1024, ge=64)
    sam2_device: Literal["auto", "cuda", "cpu"] = "auto"
    # Frames decoded and fed per chunk; memory holds one chunk plus the model's own memory bank
    # (the conditioning frames and the last num_maskmem outputs) whatever the video length [ours].
    sam2_chunk_frames: int = Field(default=16, ge=1, le=1024)
    # De-rotate every frame to the first prompted frame's orientation before SAM2 sees it (camera
    # rotation from tasks.geometry.camera_motion, < 0.1 deg error on the real panoramas) and
    # rotate its masks back, so SAM2's memory sees a still camera [ours, issue #10 §2]. A still
    # camera is left untouched (rotations under 0.01 deg are not applied).
    sam2_derotate: bool = True

    @model_validator(mode="after")
    def _sam2_size(self) -> PropagateConfig:
        if self.sam2_image_size % 32:
            raise ValueError("propagate.sam2_image_size must be a multiple of 32 (Hiera's patch grid)")
        return self
    # Dense optical flow is computed at this width (the id maps are warped at full size) [ours].
    flow_width: int = Field(default=512, ge=64)
    # Columns of wrap padding on each side, as a fraction of the width, so that flow sees the
    # seam as continuous [ours; M §6 row 5 suggests 12.5%].
    wrap_pad_ratio: float = Field(default=0.125, ge=0, lt=0.5)
    # A track whose area falls under this many pixels (at 2048 width, area-scaled) is absent.
    min_area_px_at_2048: int = Field(default=100, ge=0)
    # Treat the left/right border as continuous (wrap-padded flow, wrapping samples). False is the
    # method's behaviour (nothing handles the seam during propagation [M §1.2(e)]); kept for the
    # baseline benchmark [ours].
    seam_aware: bool = True
    # Every other threshold of tracking that changes labels (propagator, re-linking, MCR, checks),
    # with its default and why [issue 12 point 10]; the defaults are the values measured so far.
    tuning: PropagateTuning = PropagateTuning()


class RefineConfig(_Section):
    # Coverage checked at refine_hz on the frame grid, frame_idx % ceil(fps / refine_hz) == 0 [M §1.1].
    refine_hz: float = Field(default=5.0, gt=0)
    # rho = r0 - tau * ceil(fps/5) [M §1.3, covered_iou_tolerance].
    tau: float = Field(default=0.002, ge=0)
    # Re-SDR masks inherit an existing id at IoU > 0.3 [M §1.3].
    reid_iou: float = Field(default=0.3, gt=0, le=1)
    # Per-object trigger: area drop by more than half between two checks [M §6 row 2].
    area_drop: float = Field(default=0.5, gt=0, lt=1)
    # Coverage measured on the sphere (solid angle) or as the method does (pixels) [ours].
    coverage: Literal["sphere", "pixel"] = "sphere"
    # Also re-run the SDR every this many seconds, even without a coverage drop, so that objects
    # that appear in front of labeled background are found [ours: the method's coverage rule
    # cannot see them]. 0 disables.
    keyframe_interval_s: float = Field(default=2.0, ge=0)
    # Re-annotate at a check frame when pixels labeled at the previous check became unlabeled
    # (the propagator leaves what no label's motion explains unlabeled: something appeared in
    # front of labeled background), however small the coverage drop: the coverage rule waits for
    # rho = r0 - 0.6% of the sphere at 15 fps, and synthetic handheld seed 0's appearing boat
    # (0.8% of the sphere when whole) left at most 0.58% unlabeled: found at frame 27 by an
    # unrelated trigger, 6 frames after it appeared. Size: propagate.tuning.checks.appear_*
    # [ours, issue 10].
    appear_trigger: bool = True
    # An object a refresh finds (a new thing track) was mostly there for a few frames already:
    # the propagator leaves what no label's motion explains unlabeled until a check proposes it
    # (synthetic handheld seeds 0-2: the appearing object unlabeled 2-3 frames before its track,
    # each frame a J&F of 0 for it; proposing it sooner catches it half-grown and the rest of
    # its growth goes to the background). The id maps of the last backfill_s seconds are held
    # back, and on them the new track takes the unlabeled pixels where its mask, moved back by
    # the camera rotation and widened by propagate.tuning.checks.backfill_margin_px_at_1024, was,
    # and those of the stuff's there that GrabCut gives it (checks.backfill_grabcut_*): labels
    # are made offline. Handheld seeds 0-3, no extra SDR: prompts 0.9283 -> 0.9387, auto
    # 0.8624 -> 0.8743. 0 writes every frame as soon as it is followed [ours, issue 10].
    backfill_s: float = Field(default=0.4, ge=0)
    # Re-add every track the fresh SDR did not find again, from its current mask. False is the
    # method's code: such objects lose their track [M §1.3, §6 row 7].
    keep_unmatched_tracks: bool = True
    # When a re-SDR sees whole what two touching tracks followed as pieces (one track lies
    # mostly inside the fresh mask another track took), the piece's id becomes the object's id
    # on every frame since the piece was born, not only from then on: the labels are made
    # offline, so a split the segmentor made on frame 0 need not stay in the release [ours].
    merge_split_tracks: bool = True
    # Motion-Continuity Refinement with geometric routing for coverage drops: each blank region
    # goes to the border branch (touches the seam), the existing branch (where a track was at
    # t-1) or the new branch (SDR) [M §1.3, §6 row 6]. False: a full re-SDR, as the method's code.
    mcr: bool = True


class QaConfig(_Section):
    # Tracks shorter than this are flagged for review [ours].
    min_track_seconds: float = Field(default=0.3, ge=0)
    # Width of the preview video [ours]; rounded down to a multiple of 4 (even height for H.264).
    preview_width: int = Field(default=1024, ge=64)
    # seam_discontinuity flag: a row "continues" across the left/right border when the mean RGB
    # difference of its two border pixels is under seam_color_tol (0-255 units; JPEG noise on the
    # synthetic clips stays under ~6), and the flag is raised when more than seam_rows_flag of
    # those rows change id there [ours; were qa.py constants until issue 12 §10].
    seam_color_tol: float = Field(default=12.0, gt=0, le=255)
    seam_rows_flag: float = Field(default=0.05, ge=0, lt=1)
    # fragmented flag: a thing whose second seam-aware piece holds at least this share of its
    # area [ours; issue 12 §10].
    fragment_share: float = Field(default=0.1, gt=0, le=0.5)
    # At most this many review crops per video (one per flagged track, worst frame) [ours].
    max_review_crops: int = Field(default=50, ge=0)


class ReleaseConfig(_Section):
    # Per-frame coverage (solid-angle fraction) a released frame must reach; mostly=share of
    # frames that must pass [ours].
    min_frame_coverage: float = Field(default=0.2, ge=0, le=1)
    min_frame_coverage_mostly: float = Field(default=0.95, gt=0, le=1)
    # Deterministic split by video id hash [ours].
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)

    @model_validator(mode="after")
    def _ratios(self) -> ReleaseConfig:
        if abs(sum(self.split_ratios) - 1.0) > 1e-6 or min(self.split_ratios) < 0:
            raise ValueError("release.split_ratios must be three non-negative numbers summing to 1")
        return self


class ReviewConfig(_Section):
    """Manual revision (issue 15): the human gate and re-following from corrections."""

    # A video whose QA flags number more than this waits at the nightly DAG's human gate
    # (approve -> ready, reject -> waits for corrections). None: no gate, every validated video
    # is ready (the default, so unattended runs and `make demo` never wait on a person) [ours, issue 15 §4].
    # Not part of the run hash (_NOT_IN_RUN_IDENTITY): it changes no label, so the gate reads it
    # from the configuration the nightly DAG run uses (tasks/review/approval.py apply_gate).
    gate_max_flags: int | None = Field(default=None, ge=0)
    # Re-following a correction (tasks/review/refollow.py) goes forward and backward from the
    # corrected frame and stops, in each direction, at the first frame where every corrected
    # track's re-followed mask agrees with the earlier run's mask of the same id at IoU >= this
    # (the earlier labels were right from there on), or at the next corrected frame. 0.5: the
    # same object under the same id; at 0.8 a swap corrected on frame 10 of a 256 px synthetic
    # clip was carried back over frames 0-5 that were right (flow drift on 150 px objects
    # drops the IoU to ~0.6-0.8), lowering their J from 1.0 to 0.86 [ours, issue 15 §3].
    refollow_agree_iou: float = Field(default=0.5, gt=0, le=1)
    # The earlier run a revision was made from and the corrections it applies (content ids under
    # corrections/{video_id}/): part of the configuration so a revised run gets its own hash [issue 15 §3].
    revision_of: str | None = Field(default=None, pattern=r"^[0-9a-f]{12}$")
    corrections: tuple[str, ...] = ()


# (section, field) of the settings that change no label, left out of a run's identity
# (PipelineConfig.canonical_json): a new setting goes here only if no stage reads it.
_NOT_IN_RUN_IDENTITY: tuple[tuple[str, str], ...] = (("review", "gate_max_flags"),)


class PipelineConfig(_Section):
    video: VideoConfig = VideoConfig()
    tiling: TilingConfig = TilingConfig()
    propose: ProposeConfig = ProposeConfig()
    verify: VerifyConfig = VerifyConfig()
    sdr: SdrConfig = SdrConfig()
    propagate: PropagateConfig = PropagateConfig()
    refine: RefineConfig = RefineConfig()
    qa: QaConfig = QaConfig()
    release: ReleaseConfig = ReleaseConfig()
    review: ReviewConfig = ReviewConfig()
    # Content hash (16 hex) of a prompts document stored under videos/{id}/prompts/: masks and
    # ids a person gave for some frames; those objects are followed from the given masks.
    # Part of the configuration because it changes the outputs (so it names a new run) [ours].
    prompts: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")

    # -- identity -------------------------------------------------------------------------
    def canonical_json(self) -> str:
        """The run's identity: every setting that changes labels, as sorted compact JSON. This is
        what the hash covers and what ``config.json`` records beside a run's outputs.

        Settings in :data:`_NOT_IN_RUN_IDENTITY` decide what happens *to* finished labels, never
        the labels, so they are written at their defaults here: ``review.gate_max_flags`` (the
        human gate) was part of the hash, and turning the gate on named new runs, a full relabel
        of everything that changed no label (noticed at stop 17). Writing the default rather than
        dropping the key keeps every run hash made with the gate off (the default) unchanged. The
        gate reads its limit from the configuration the nightly DAG run uses
        (tasks/review/approval.py)."""
        data = self.model_dump(mode="json")
        for section, name in _NOT_IN_RUN_IDENTITY:
            data[section][name] = type(self).model_fields[section].default.model_dump(mode="json")[name]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """12 hex digits of sha256 over the canonical JSON: names the run folder."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PipelineConfig:
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from exc

    @classmethod
    def from_file(cls, path: str | Path) -> PipelineConfig:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except ValueError as exc:  # a path with a NUL byte (found by tests/fuzz): not a file name at all
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from exc
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = json.loads(text)
        except Exception as exc:  # json/yaml syntax errors carry line numbers in str(exc)
            raise ConfigError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        return cls.from_dict(data)

    def with_overrides(self, overrides: dict[str, Any] | None) -> PipelineConfig:
        """Deep-merge ``overrides`` (nested dict, or dotted keys like ``refine.tau``)."""
        if not overrides:
            return self
        merged = self.model_dump(mode="json")
        for key, value in _expand_dotted(overrides).items():
            _deep_set(merged, key, value)
        return PipelineConfig.from_dict(merged)

    # -- derived values -------------------------------------------------------------------
    def processing_width(self, input_width: int) -> int:
        """The width frames are labeled at: a multiple of 4, so width and height are both even
        (see VideoConfig._even_width)."""
        w = self.video.width or min(input_width, self.video.max_width)
        w -= w % 4
        if w < _MIN_WIDTH:
            # the content, not the configuration: permanent for this video (quarantined with the
            # reason). Every stage works down to 64x32 (VideoConfig.width's minimum); a 32 px wide
            # source crashed the camera-motion step of propagate with a traceback (issue 12 §7).
            from tasks.errors import InputRejected

            raise InputRejected("too_small", f"the video is {input_width} px wide; labeling needs an ERP frame at "
                                f"least {_MIN_WIDTH}x{_MIN_WIDTH // 2} (or set video.width to upscale it)",
                                details={"width": input_width})
        return w

    def refine_step(self, fps: float) -> int:
        """Frames between coverage checks: ceil(fps / refine_hz) [M §1.1]."""
        return max(1, math.ceil(fps / self.refine.refine_hz))

    def min_area(self, width: int, at_2048: int) -> int:
        """An area threshold given at 2048 px width, scaled with image area."""
        return int(round(at_2048 * (width / 2048.0) ** 2))


def _expand_dotted(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        parts = str(k).split(".")
        cur = out
        for i, p in enumerate(parts[:-1]):
            cur = cur.setdefault(p, {})
            if not isinstance(cur, dict):   # `refine=1` and `refine.tau=2` in one request
                raise ConfigError(f"override {k!r} conflicts with the value given for {'.'.join(parts[:i + 1])!r}")
        if isinstance(v, dict):
            v = _expand_dotted(v)
            if isinstance(cur.get(parts[-1]), dict):   # `refine.tau=..` and `refine={..}`: both apply
                _deep_set(cur, parts[-1], v)
                continue
        elif isinstance(cur.get(parts[-1]), dict):
            raise ConfigError(f"override {k!r} conflicts with the settings given under it")
        cur[parts[-1]] = v
    return out


def _deep_set(target: dict, key: str, value: Any) -> None:
    if isinstance(value, dict) and isinstance(target.get(key), dict):
        for k, v in value.items():
            _deep_set(target[key], k, v)
    else:
        target[key] = value


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = _unknown_key_hint(err["loc"]) if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{loc}: {msg}")
    return "invalid pipeline configuration:\n  " + "\n  ".join(lines)


def _unknown_key_hint(loc: tuple) -> str:
    """'unknown setting; did you mean refine.tau?' -- a typo in an override names its fix (issue 11)."""
    import difflib

    model: Any = PipelineConfig
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(str(part))
        model = field.annotation if field is not None else None
    names = sorted(getattr(model, "model_fields", {}) or {})
    where = ".".join(str(p) for p in loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    if close:
        return f"unknown setting; did you mean {where + '.' if where else ''}{close[0]}?"
    return f"unknown setting; {where or 'the configuration'} has: {', '.join(names)}"
