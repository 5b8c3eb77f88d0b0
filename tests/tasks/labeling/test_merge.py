import numpy as np
import pytest

from tasks.labeling.merge import Contacts, merge_lut, touching_pairs
from tasks.labeling.tracks import Track


def test_touching_pairs_wrap_around_the_seam_and_ignore_unlabeled():
    m = np.zeros((6, 10), np.uint16)
    m[1:3, 0:2] = 1
    m[1:3, 8:10] = 2      # touches 1 through the seam only
    m[4, 4] = 3
    m[4, 6] = 4           # 3 and 4 are two pixels apart, 0 between them
    m[5, 4] = 5           # under 3
    assert touching_pairs(m) == {(1, 2), (3, 5)}
    assert touching_pairs(np.zeros((4, 8), np.uint16)) == set()


def test_contacts_remember_tracks_that_were_ever_apart():
    tracks = {1: Track("sky", False), 2: Track("ball", True), 3: Track("ball", True), 4: Track("car", True)}
    m = np.ones((8, 16), np.uint16)
    m[2:5, 2:4], m[2:5, 4:6], m[2:5, 10:12] = 2, 3, 4
    c = Contacts()
    c.observe(m, tracks)
    assert c.may_merge(2, 3) and c.may_merge(3, 2)
    assert not c.may_merge(2, 4) and not c.may_merge(4, 3)
    m[2:5, 4:6] = 1
    m[2:5, 7:9] = 3       # 3 moved off 2: they were two objects after all
    c.observe(m, tracks)
    assert not c.may_merge(2, 3)
    assert c.may_merge(1, 2)   # the sky around the ball always touched it
    m[:, :] = 1
    m[2:5, 2:4], m[6:8, 10:12] = 2, 5
    c.observe(m, {**tracks, 5: Track("tree", False)})
    assert not c.may_merge(2, 5)   # stuff is judged too: a tree apart from a ball is not a piece of it


def test_merge_lut_follows_chains_and_refuses_cycles():
    tracks = {1: Track("sky", False), 2: Track("ball", True), 3: Track("ball", True, merged_into=2),
              4: Track("ball", True, merged_into=3)}
    lut = merge_lut(tracks)
    assert lut.tolist() == [0, 1, 2, 2, 2]
    assert merge_lut({1: Track("sky", False)}) is None
    tracks[2].merged_into = 4
    with pytest.raises(ValueError, match="merged into itself"):
        merge_lut(tracks)
