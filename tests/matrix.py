"""Generated test matrices: every pair of option values appears in at least one case."""

import itertools


def all_pairs(dimensions, allowed=lambda case: True):
    """A covering array of strength 2 over `dimensions` (name -> values), deterministically.

    Greedy: each new case is chosen among all candidates to cover the most uncovered value
    pairs. Cases failing `allowed` are never chosen, and pairs no allowed case can cover are
    dropped.
    """
    names = list(dimensions)
    candidates = [
        dict(zip(names, values))
        for values in itertools.product(*(dimensions[n] for n in names))
    ]
    candidates = [c for c in candidates if allowed(c)]

    def pairs(case):
        return {
            ((a, repr(case[a])), (b, repr(case[b])))
            for a, b in itertools.combinations(names, 2)
        }

    uncovered = set().union(*(pairs(c) for c in candidates))
    cases = []
    while uncovered:
        best = max(candidates, key=lambda c: len(pairs(c) & uncovered))
        cases.append(best)
        uncovered -= pairs(best)
    return cases


def case_id(case):
    return "-".join(f"{k}={v}" for k, v in case.items())
