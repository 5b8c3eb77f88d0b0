"""Model backends behind small protocols (see :mod:`tasks.backends.protocols`).

:func:`build_backends` is the one place that turns configuration names into instances, so a
stage asks for "the entity segmentor" and never imports a concrete backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.backends.protocols import EntitySegmentor, LabelVerifier, PanopticSegmentor
from tasks.config import PipelineConfig
from tasks.errors import ConfigError


@dataclass
class Backends:
    entity: EntitySegmentor
    voters: list[PanopticSegmentor]
    verifier: LabelVerifier | None


def _entity(config: PipelineConfig) -> EntitySegmentor:
    pc = config.propose
    name = pc.entity_backend
    if name == "superpixel" and pc.layout == "sphere":
        from tasks.backends.superpixel import SphereRegionSegmentor

        return SphereRegionSegmentor(slic_width=pc.slic_width, n_segments=pc.sphere_superpixels,
                                     compactness=pc.slic_compactness,
                                     threshold=pc.sphere_merge_threshold, texture_floor=pc.texture_floor,
                                     min_fraction=pc.min_object_fraction, max_regions=pc.max_objects)
    if name == "superpixel":
        from tasks.backends.superpixel import SuperpixelEntitySegmentor

        return SuperpixelEntitySegmentor(pc.superpixels_per_tile, pc.merge_threshold)
    raise ConfigError(f"unknown entity backend {name!r}")


def _voter(name: str) -> PanopticSegmentor:
    from tasks.backends.scene_prior import ClusterPriorVoter, ColorPriorVoter

    known = {"color_prior": ColorPriorVoter, "cluster_prior": ClusterPriorVoter}
    if name not in known:
        raise ConfigError(f"unknown panoptic backend {name!r}; available: {', '.join(sorted(known))}")
    return known[name]()


def _verifier(config: PipelineConfig) -> LabelVerifier | None:
    if config.verify.verifier == "none":
        return None
    if config.verify.verifier == "openai":
        from tasks.backends.llm_verifier import build_openai_verifier

        return build_openai_verifier(config)
    from tasks.backends.embedding_verifier import EmbeddingVerifier

    return EmbeddingVerifier(min_similarity=config.verify.embedding_min_similarity)


_CACHE: dict[str, Backends] = {}


def build_backends(config: PipelineConfig) -> Backends:
    """Backends for ``config`` (cached per configuration: models load once per process)."""
    key = config.canonical_json()
    if key not in _CACHE:
        _CACHE[key] = Backends(
            entity=_entity(config),
            voters=[_voter(n) for n in config.propose.panoptic_backends],
            verifier=_verifier(config),
        )
    return _CACHE[key]
