"""Labels of a refresh's entities: an entity found again keeps its earlier label (issue 10)."""

import numpy as np

from tasks.labeling.vote import EntityLabel, inherit_labels


def _maps():
    h, w = 64, 128
    prior = np.zeros((h, w), np.int32)
    prior[:20] = 7                       # a cap of sky
    prior[20:] = 9                       # the ground
    prior[40:50, 10:30] = 4              # a small object
    fresh = np.zeros((h, w), np.int32)
    fresh[:21] = 1                       # the same cap, one row taller (IoU > 0.9)
    fresh[21:] = 2
    fresh[40:50, 10:30] = 3
    fresh[44:50, 10:30] = 5              # the object cut in two: neither half is the old object
    return prior, fresh


def test_an_entity_found_again_keeps_its_label_unless_the_vote_agreed_on_another():
    prior, fresh = _maps()
    old = {7: EntityLabel("sky", "verifier", 0.9), 9: EntityLabel("grass", "verifier", 0.8),
           4: EntityLabel("person", "verifier", 0.7)}
    new = {1: EntityLabel("water", "verifier", 0.6, {"color_prior": {"label": "water"}}),
           2: EntityLabel("dirt", "vote", 1.0), 3: EntityLabel("unknown", "none", 0.0),
           5: EntityLabel("unknown", "none", 0.0)}
    assert inherit_labels(fresh, new, prior, old, 0.8) == 1
    assert new[1].label == "sky" and new[1].how == "kept" and new[1].votes == {"color_prior": {"label": "water"}}
    assert new[2].label == "dirt"        # the fresh vote agreed: the scene changed, the vote wins
    assert new[3].label == new[5].label == "unknown"   # pieces of an old entity are not it


def test_nothing_is_kept_from_a_map_of_another_size_or_without_labels():
    prior, fresh = _maps()
    new = {1: EntityLabel("water", "verifier", 0.6)}
    assert inherit_labels(fresh, new, prior[:, :64], {7: EntityLabel("sky", "verifier", 0.9)}, 0.8) == 0
    assert inherit_labels(fresh, new, prior, {}, 0.8) == 0 and new[1].label == "water"


def test_an_entity_label_carries_the_entitys_look_to_the_next_refresh():
    """The sdr stage writes the keyframe's entity labels and the tracking pass reads them back as
    the prior of its first refresh: the look (mean CIELAB, lightness std) survives the round
    trip, and a kept label takes the fresh entity's look (the prior of the refresh after)."""
    lab = EntityLabel("sky", "verifier", 0.9, color=[180.0, 120.5, 100.0], texture=3.2)
    back = EntityLabel.from_json(lab.to_json())
    assert back.color == [180.0, 120.5, 100.0] and back.texture == 3.2
    assert "color" not in EntityLabel("sky", "vote", 1.0).to_json()      # older files read as before
    assert EntityLabel.from_json({"label": "sky", "how": "vote", "confidence": 1.0}).color is None
    prior, fresh = _maps()
    new = {1: EntityLabel("water", "verifier", 0.6, color=[175.0, 121.0, 101.0], texture=3.0)}
    assert inherit_labels(fresh, new, prior, {7: lab}, 0.8) == 1
    assert new[1].label == "sky" and new[1].color == [175.0, 121.0, 101.0] and new[1].texture == 3.0
