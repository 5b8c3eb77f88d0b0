"""Matching, ID and seam bookkeeping on hand-made overlap tables and label maps."""

from __future__ import annotations

import numpy as np

from tasks.metrics.tracking import (
    assigned_ids,
    id_switches,
    iou_tables,
    match_tracks,
    overlap_table,
    seam_crossing_labels,
    split_ids,
)


def test_overlap_table_counts_pairs_per_row():
    gt = np.array([[1, 1, 0, 2], [0, 1, 2, 2]])
    pred = np.array([[1, 0, 0, 1], [3, 1, 1, 0]])
    rows = overlap_table(gt, pred, 2, 3)
    assert rows.shape == (2, 3, 4)
    total = rows.sum(axis=0)
    assert total[1, 1] == 2 and total[1, 0] == 1
    assert total[2, 1] == 2 and total[2, 0] == 1
    assert total[0, 0] == 1 and total[0, 3] == 1
    assert total.sum() == gt.size
    assert rows[1, 2, 1] == 1  # row 1: gt 2 / pred 1 at x = 2


def test_iou_tables():
    inter = np.zeros((2, 3, 3), np.int64)
    inter[0, 1, 1] = 10  # frame 0: GT 1 == pred 1
    inter[0, 2, 2] = 9  # GT 2 (10 px) holds all 9 px of pred 2
    inter[0, 2, 0] = 1
    inter[1, 1, 2] = 8  # frame 1: pred 2 covers 8 of GT 1's 10 px and 4 px outside it
    inter[1, 1, 0] = 2
    inter[1, 0, 2] = 4
    ious = iou_tables(inter)
    assert ious.shape == (2, 2, 2)
    assert ious[0, 0, 0] == 1.0
    assert ious[0, 1, 1] == 0.9
    assert ious[1, 0, 1] == 8 / 14
    assert ious[1, 1, 0] == 0.0  # both absent: no contribution to the matching score
    assert ious[0, 0, 1] == 0.0


def test_hungarian_maximises_the_total_not_the_best_pair():
    # greedy would give GT 0 its best prediction (1.0) and leave GT 1 without any
    score = np.array([[1.0, 0.9], [0.8, 0.0]])
    assert match_tracks(score) == {0: 1, 1: 0}
    # a pair the assignment makes without any overlap is no match
    assert match_tracks(np.array([[0.0, 0.0], [0.0, 2.0]])) == {1: 1}
    assert match_tracks(np.zeros((0, 3))) == {}


def test_id_switches_five_then_seven():
    inter = np.zeros((6, 2, 8), np.int64)
    for f in range(6):
        inter[f, 1, 5 if f < 3 else 7] = 100
    ids = assigned_ids(inter)
    assert ids[:, 0].tolist() == [5, 5, 5, 7, 7, 7]
    assert id_switches(ids[:, 0]) == 1


def test_id_switches_skip_frames_without_an_id():
    inter = np.zeros((5, 2, 4), np.int64)
    inter[0, 1, 2] = 60
    inter[1, 1, 2] = 40  # below half of 100: no id in this frame
    inter[1, 1, 0] = 60
    inter[3, 1, 3] = 50  # exactly half is enough
    inter[3, 1, 0] = 50
    inter[4, 1, 2] = 100  # frame 2 is empty: skipped too
    ids = assigned_ids(inter)[:, 0]
    assert ids.tolist() == [2, 0, 0, 3, 2]
    assert id_switches(ids) == 2
    assert id_switches(np.array([2, 0, 0, 2])) == 0


def test_seam_crossing_labels_need_contact_across_the_seam():
    lab = np.zeros((6, 10), np.int32)
    lab[1:3, 8:10] = 1
    lab[1:3, 0:2] = 1  # 1 continues across the seam
    lab[4, 9] = 2
    lab[5, 0] = 2  # 2 touches it diagonally
    lab[0, 9] = 3
    lab[3, 0] = 3  # 3 is at both borders but far apart: not across the seam
    lab[2:4, 4:6] = 4  # 4 is nowhere near
    assert seam_crossing_labels(lab).tolist() == [1, 2]


def test_split_ids_counts_predictions_over_ten_percent():
    assert split_ids(np.array([0, 50, 50, 0])) == 2
    assert split_ids(np.array([5, 86, 9, 0])) == 1  # 9 % is not an id of the object
    assert split_ids(np.array([0, 0, 0])) == 0
    # prediction 2 is another object's match: its overlap is that object's leak, not an id
    assert split_ids(np.array([0, 50, 50, 0]), others=[2]) == 1
