"""The track table that travels with the id maps: what each id is, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Track:
    category: str
    isthing: bool
    provenance: dict = field(default_factory=dict)
    born: int = 0                 # first frame
    origin: str = "sdr"           # "sdr" | "prompt" | "refine"
    merged_into: int | None = None  # a piece of another track: its id was replaced by that one

    @property
    def active(self) -> bool:
        return self.merged_into is None

    def to_json(self) -> dict:
        d = {"category": self.category, "isthing": self.isthing, "provenance": self.provenance,
             "born": self.born, "origin": self.origin}
        if self.merged_into is not None:
            d["merged_into"] = self.merged_into
        return d

    @classmethod
    def from_json(cls, d: dict) -> Track:
        merged = d.get("merged_into")
        return cls(d["category"], bool(d["isthing"]), d.get("provenance", {}), int(d.get("born", 0)),
                   d.get("origin", "sdr"), None if merged is None else int(merged))


def tracks_to_json(tracks: dict[int, Track]) -> dict:
    return {"tracks": {str(k): t.to_json() for k, t in sorted(tracks.items())},
            "next_id": max(tracks, default=0) + 1}


def tracks_from_json(d: dict) -> dict[int, Track]:
    return {int(k): Track.from_json(v) for k, v in d["tracks"].items()}
