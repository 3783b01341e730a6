"""Ordering results best first, for one metric or several (Pareto fronts), without a study.

Optuna ranks the trials of a whole study (``study.best_trial``, ``study.best_trials``); hpo
also ranks subsets of them: a warm start's earlier trials that fit the new space, and a study's
own trials without the history a warm start copied in (``hpo.study.summary``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

Values = Sequence[float]


def _as_minimized(values: Values, maximize: Sequence[bool]) -> tuple[float, ...]:
    return tuple(-v if up else v for v, up in zip(values, maximize, strict=True))


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def pareto_front(values: Sequence[Values], maximize: Sequence[bool]) -> list[int]:
    """Indices of the entries no other entry beats on every metric, in input order.

    Entries sorted lexicographically can only be dominated by earlier ones, and by one on
    the front found so far, so this costs O(n log n + n * front size).
    """
    points = [_as_minimized(v, maximize) for v in values]
    order = sorted(range(len(points)), key=lambda i: (points[i], i))
    front: list[int] = []
    for i in order:
        if not any(_dominates(points[j], points[i]) for j in front):
            front.append(i)
    return sorted(front)


def ranked(values: Sequence[Values], maximize: Sequence[bool]) -> Iterator[int]:
    """Indices best first, lazily: for one metric by value; for several the Pareto front,
    then the front of the rest, and so on (each peeled only when asked for), within a front
    by the first metric. Ties keep input order."""
    points = [_as_minimized(v, maximize) for v in values]
    if len(maximize) == 1:
        yield from sorted(range(len(points)), key=lambda i: (points[i], i))
        return
    left = list(range(len(points)))
    while left:
        front = [left[i] for i in pareto_front([values[j] for j in left], maximize)]
        front.sort(key=lambda i: (points[i][0], i))
        yield from front
        taken = set(front)
        left = [i for i in left if i not in taken]
