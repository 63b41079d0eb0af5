"""Search strategies: which candidates to measure next. Pluggable: subclass Strategy, register_strategy().

    exhaustive     every legal point, the templates' defaults first (for small spaces)
    random         uniform over legal points, defaults first
    evolutionary   mutation + crossover of the best points so far, ranked by a cost model (ridge regression
                   on knob features and their pairwise products, fitted to log throughput of the points
                   measured so far); a share of each batch stays random so the model keeps learning
    auto           exhaustive when the space has no more legal points than the trial budget, else evolutionary

A strategy sees the measured history (Result objects with .candidate, .ok, .rate) and must never propose a
point already measured or in flight (`taken`).
"""
from __future__ import annotations

import math
import random

import numpy as np

from ..errors import ConvschedError
from .space import Candidate, SearchSpace


class Strategy:
    name = "base"

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space = space
        self.rng = random.Random(seed)

    def propose(self, n: int, taken: set, history: list) -> list[Candidate]:
        """Up to n new candidates (none in `taken`, the keys measured or in flight). [] = space exhausted."""
        raise NotImplementedError

    def _defaults_first(self, n, taken):
        return [c for c in self.space.defaults() if c.key not in taken][:n]


class Exhaustive(Strategy):
    name = "exhaustive"

    def __init__(self, space, seed=0):
        super().__init__(space, seed)
        pts = space.all_legal()
        if pts is None:
            raise ConvschedError(f"space too big to enumerate ({space.raw_size()} raw points); "
                                 f"use --strategy random or evolutionary")
        self.order = list(pts)
        # a random order, so a run stopped early has sampled the space evenly
        self.rng.shuffle(self.order)

    def propose(self, n, taken, history):
        out = self._defaults_first(n, taken)
        keys = {c.key for c in out}
        for c in self.order:
            if len(out) >= n:
                break
            if c.key not in taken and c.key not in keys:
                out.append(c)
                keys.add(c.key)
        return out


class RandomSearch(Strategy):
    name = "random"

    def propose(self, n, taken, history):
        out = self._defaults_first(n, taken)
        keys = {c.key for c in out} | set(taken)
        misses = 0
        while len(out) < n and misses < 200:
            c = self.space.random(self.rng)
            if c is None or c.key in keys:
                misses += 1
                continue
            out.append(c)
            keys.add(c.key)
        if len(out) < n and self.space.all_legal() is not None:   # small space: fill from the rest
            rest = [c for c in self.space.all_legal() if c.key not in keys]
            self.rng.shuffle(rest)
            out += rest[: n - len(out)]
        return out


class CostModel:
    """Ridge regression of log(throughput) on features x and their pairwise products (numpy only)."""

    def __init__(self, space: SearchSpace, l2: float = 1e-2):
        self.space, self.l2, self.w = space, l2, None

    def _phi(self, X):
        n = X.shape[1]
        iu = np.triu_indices(n)
        quad = (X[:, :, None] * X[:, None, :])[:, iu[0], iu[1]]
        return np.hstack([np.ones((X.shape[0], 1)), X, quad])

    def fit(self, cands, ys):
        X = np.array([self.space.features(c) for c in cands])
        P = self._phi(X)
        self.mu = float(np.mean(ys))
        A = P.T @ P + self.l2 * len(ys) * np.eye(P.shape[1])
        self.w = np.linalg.solve(A, P.T @ (np.asarray(ys) - self.mu))

    def predict(self, cands) -> np.ndarray:
        X = np.array([self.space.features(c) for c in cands])
        return self._phi(X) @ self.w + self.mu


class Evolutionary(Strategy):
    name = "evolutionary"
    explore = 0.25          # share of each batch drawn at random rather than by the model
    parents = 8
    pool_per_slot = 24

    def propose(self, n, taken, history):
        out = self._defaults_first(n, taken)
        keys = {c.key for c in out} | set(taken)
        ok = [r for r in history if r.ok and r.rate]
        if len(ok) < 4:                       # too little to fit a model: random
            return out + RandomSearch.propose(self, n - len(out), keys, history) if n > len(out) else out
        # failures teach the model too: they sit below the slowest success
        floor = math.log(min(r.rate for r in ok)) - 1.0
        cands = [r.candidate for r in history]
        ys = [math.log(r.rate) if (r.ok and r.rate) else floor for r in history]
        model = CostModel(self.space)
        model.fit(cands, ys)
        best = sorted(ok, key=lambda r: -r.rate)[: self.parents]
        parents = [r.candidate for r in best]
        pool, pkeys = [], set()
        want = max(1, n - len(out)) * self.pool_per_slot
        for _ in range(want * 4):
            if len(pool) >= want:
                break
            u = self.rng.random()
            if u < 0.6:
                c = self.space.mutate(self.rng.choice(parents), self.rng)
            elif u < 0.85:
                c = self.space.crossover(self.rng.choice(parents), self.rng.choice(parents), self.rng)
                c = self.space.mutate(c, self.rng) if self.rng.random() < 0.5 else c
            else:
                c = self.space.random(self.rng)
            if c is None or c.key in keys or c.key in pkeys or not self.space.is_legal(c):
                continue
            pool.append(c)
            pkeys.add(c.key)
        if not pool:
            return out + RandomSearch.propose(self, n - len(out), keys, history)
        scores = model.predict(pool)
        order = list(np.argsort(-scores))
        slots = n - len(out)
        n_explore = min(len(pool), int(round(slots * self.explore)))
        picked = [pool[i] for i in order[: slots - n_explore]]
        rest = [pool[i] for i in order[slots - n_explore:]]
        picked += self.rng.sample(rest, min(n_explore, len(rest)))
        out += picked
        if len(out) < n:
            keys |= {c.key for c in out}
            out += RandomSearch.propose(self, n - len(out), keys, history)
        return out


STRATEGIES: dict = {"exhaustive": Exhaustive, "random": RandomSearch, "evolutionary": Evolutionary}


def register_strategy(name: str, cls) -> None:
    """Make `cls` (a Strategy subclass) available as tune(strategy=name) and `--strategy name`."""
    STRATEGIES[name] = cls


def make_strategy(strategy, space: SearchSpace, trials: int, seed: int = 0) -> Strategy:
    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, type) and issubclass(strategy, Strategy):
        return strategy(space, seed)
    if strategy in (None, "auto"):
        legal = space.all_legal()
        return (Exhaustive if legal is not None and len(legal) <= trials else Evolutionary)(space, seed)
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ConvschedError(f"unknown strategy {strategy!r}; known: auto, {', '.join(STRATEGIES)}")
    return STRATEGIES[strategy](space, seed)
