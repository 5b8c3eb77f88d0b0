"""The closed master vocabulary every label must belong to [M §1.2(b)].

The method lets the LLM append new classes at run time; we do not (M §6 row 3): a label that
is not in the vocabulary becomes ``unknown`` and is flagged for review.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    isthing: bool
    synonyms: tuple[str, ...] = ()


class Vocabulary:
    def __init__(self, categories: list[Category], unknown: Category, maps: dict[str, dict[str, str]]):
        self.categories = list(categories)
        self.unknown = unknown
        self.maps = maps
        self._by_name = {c.name: c for c in self.categories}
        self._by_name[unknown.name] = unknown
        self._by_id = {c.id: c for c in self.categories}
        self._by_id[unknown.id] = unknown
        self._alias = {}
        for c in self.categories:
            for s in (c.name, *c.synonyms):
                self._alias.setdefault(_norm(s), c.name)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self.categories)

    def get(self, name: str) -> Category:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{name!r} is not in the master vocabulary") from None

    def by_id(self, cid: int) -> Category:
        return self._by_id[cid]

    def ids(self) -> set[int]:
        return set(self._by_id)

    def is_stuff(self, name: str) -> bool:
        c = self._by_name.get(name)
        return c is not None and not c.isthing

    def canonical(self, text: str, source: str | None = None) -> str | None:
        """Exact mapping of a label string to a vocabulary name (via ``source``'s map, the
        names and their synonyms); None if there is no exact match."""
        if source is not None:
            mapped = self.maps.get(source, {}).get(text)
            if mapped:
                return mapped
        return self._alias.get(_norm(text))

    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    def to_categories_json(self, used: set[str] | None = None) -> list[dict]:
        """YouTube-VIS ``categories`` (all, or only the used ones), ``unknown`` last."""
        cats = [c for c in self.categories if used is None or c.name in used]
        if used is None or UNKNOWN in used:
            cats.append(self.unknown)
        return [{"id": c.id, "name": c.name, "isthing": int(c.isthing), "supercategory": "thing" if c.isthing else "stuff"} for c in cats]


def _norm(s: str) -> str:
    return " ".join(s.lower().replace("_", " ").replace("-", " ").split())


@lru_cache(maxsize=1)
def master() -> Vocabulary:
    data = json.loads(resources.files("tasks").joinpath("data", "vocabulary.json").read_text("utf-8"))
    cats = [Category(c["id"], c["name"], bool(c["isthing"]), tuple(c.get("synonyms", ()))) for c in data["classes"]]
    u = data["unknown"]
    return Vocabulary(cats, Category(u["id"], u["name"], bool(u["isthing"])), data["maps"])
