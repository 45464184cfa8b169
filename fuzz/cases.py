"""Case numbering: case i of a run with seed S is fully determined by (S, i, enabled targets,
corpus), so any case can be replayed alone (`python -m fuzz --replay i --seed S`)."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from .seeds import load_manifest
from .targets import TARGETS


@dataclass
class Case:
    index: int
    target: str
    seed_name: str
    payload: object
    desc: list
    rng: random.Random        # continues where case making stopped: the run's randomness


class Corpus:
    """The seed files of a corpus directory, in memory."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.manifest = load_manifest(self.dir)
        self.blobs = {name: (self.dir / name).read_bytes()
                      for names in self.manifest.values() for name in names}

    def seeds(self, kinds) -> list:
        return [n for k in kinds for n in self.manifest.get(k, [])]


def enabled_targets(names=None) -> list[str]:
    """The targets to run (all available ones by default), in table order."""
    out = []
    for name, t in TARGETS.items():
        if names is not None and name not in names:
            continue
        ok, _ = t.available()
        if ok:
            out.append(name)
    return out


def make_case(index: int, seed: int, targets: list[str], corpus: Corpus) -> Case:
    rng = random.Random(f"{seed}:{index}")
    usable = [t for t in targets if corpus.seeds(TARGETS[t].seed_kinds)]
    target = rng.choices(usable, weights=[TARGETS[t].weight for t in usable])[0]
    t = TARGETS[target]
    seed_name = rng.choice(sorted(corpus.seeds(t.seed_kinds)))
    payload, desc = t.make(corpus.blobs[seed_name], rng)
    return Case(index, target, seed_name, payload, list(desc), rng)
