"""Model backends behind small protocols (see :mod:`tasks.backends.protocols`).

:func:`build_backends` is the one place that turns configuration names into instances, so a
stage asks for "the entity segmentor" and never imports a concrete backend.

Production backends (issue 13): entity backend ``sam2_amg`` (SAM2 automatic masks with the
propagation checkpoint, :mod:`tasks.backends.sam2_entities`) and the voters
``{mask2former,oneformer}_{ade20k,coco,cityscapes}`` (:mod:`tasks.backends.panoptic_hf`), whose
weights are the model of the voter's name in the model store. ``store`` is where models are
looked up (None: the deployment's store, ``$LEADER360V_STORE``, or ``$LEADER360V_MODELS_DIR``).
"""

from __future__ import annotations

import threading

from tasks.backends.protocols import EntitySegmentor, LabelVerifier, PanopticSegmentor
from tasks.config import PipelineConfig
from tasks.errors import ConfigError

_UNSET = object()


class Backends:
    """The entity segmentor, the voters and the verifier of one configuration.

    Each is built on first use: ``verify`` needs only the verifier and ``propagate`` the
    segmentors only at a refresh, and a production voter loads a model of several hundred MB
    (issue 13). Values given to the constructor are used as they are."""

    def __init__(self, entity=_UNSET, voters=_UNSET, verifier=_UNSET, *, config: PipelineConfig | None = None,
                 store=None):
        self._values = {k: v for k, v in (("entity", entity), ("voters", voters), ("verifier", verifier))
                        if v is not _UNSET}
        self._config = config
        self._store = store
        self._lock = threading.Lock()

    def _get(self, what: str, build):
        with self._lock:
            if what not in self._values:
                if self._config is None:
                    raise ValueError(f"Backends has no {what} and no configuration to build it from")
                self._values[what] = build()
            return self._values[what]

    @property
    def entity(self) -> EntitySegmentor:
        return self._get("entity", lambda: _entity(self._config, self._store))

    @property
    def voters(self) -> list[PanopticSegmentor]:
        return self._get("voters", lambda: [_voter(n, self._config, self._store)
                                            for n in self._config.propose.panoptic_backends])

    @property
    def verifier(self) -> LabelVerifier | None:
        return self._get("verifier", lambda: _verifier(self._config))


def _entity(config: PipelineConfig, store=None) -> EntitySegmentor:
    pc = config.propose
    name = pc.entity_backend
    if name == "superpixel" and pc.layout == "sphere":
        from tasks.backends.superpixel import SphereRegionSegmentor

        return SphereRegionSegmentor(slic_width=pc.slic_width, n_segments=pc.sphere_superpixels,
                                     compactness=pc.slic_compactness,
                                     threshold=pc.sphere_merge_threshold, texture_floor=pc.texture_floor,
                                     min_fraction=pc.min_object_fraction, max_regions=pc.max_objects,
                                     split_mixed_de=pc.split_mixed_de, flat_textured_ratio=pc.flat_textured_ratio)
    if name == "superpixel":
        from tasks.backends.superpixel import SuperpixelEntitySegmentor

        return SuperpixelEntitySegmentor(pc.superpixels_per_tile, pc.merge_threshold)
    if name == "sam2_amg":
        from tasks.backends.sam2_entities import build_sam2_entities

        return build_sam2_entities(config, store)
    raise ConfigError(f"unknown entity backend {name!r}")


_CPU_VOTERS = ("color_prior", "cluster_prior")


def voter_names() -> list[str]:
    """Every name ``propose.panoptic_backends`` accepts."""
    from tasks.backends.panoptic_hf import VOTERS

    return sorted([*_CPU_VOTERS, *VOTERS])


def _voter(name: str, config: PipelineConfig, store=None) -> PanopticSegmentor:
    if name in _CPU_VOTERS:
        from tasks.backends.scene_prior import ClusterPriorVoter, ColorPriorVoter

        return {"color_prior": ColorPriorVoter, "cluster_prior": ClusterPriorVoter}[name]()
    from tasks.backends.panoptic_hf import VOTERS, HFPanopticVoter

    if name not in VOTERS:
        raise ConfigError(f"unknown panoptic backend {name!r}; available: {', '.join(voter_names())}")
    pc = config.propose
    return HFPanopticVoter(name, store=store, device=pc.device, autocast_mode=pc.autocast,
                           input_width=pc.panoptic_input_width, score_thresh=pc.panoptic_score_thresh,
                           overlap_thresh=pc.panoptic_overlap_thresh, batch_tiles=pc.panoptic_batch_tiles)


def _verifier(config: PipelineConfig) -> LabelVerifier | None:
    if config.verify.verifier == "none":
        return None
    if config.verify.verifier == "openai":
        from tasks.backends.llm_verifier import build_openai_verifier

        return build_openai_verifier(config)
    from tasks.backends.embedding_verifier import EmbeddingVerifier

    return EmbeddingVerifier(min_similarity=config.verify.embedding_min_similarity)


_CACHE: dict[tuple[str, str | None], Backends] = {}


def build_backends(config: PipelineConfig, store=None) -> Backends:
    """Backends for ``config`` (cached per configuration and model store: models load once per
    process). ``store`` resolves model names (the learned backends; see the module doc)."""
    key = (config.canonical_json(), None if store is None else store.uri())
    if key not in _CACHE:
        _CACHE[key] = Backends(config=config, store=store)
    return _CACHE[key]
