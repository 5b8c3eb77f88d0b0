"""Manual revision (issue 15): the annotation checker, exports to labeling tools, corrections
imported back and re-followed, and the approval record the release reads."""
