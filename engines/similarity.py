"""Cosine similarity between embedding vectors (small n: a pure-Python matrix is fast enough and exact)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from engines.errors import BadRequest


def cosine_matrix(vectors: Sequence[Sequence[float]]) -> list[list[float]]:
    """matrix[i][j] = cos(vectors[i], vectors[j]); a zero vector is 0.0 to everything (and 1.0 to itself)."""
    if len({len(v) for v in vectors}) > 1:
        raise BadRequest("the vectors do not all have the same number of dimensions")
    norms = [math.sqrt(math.fsum(x * x for x in v)) for v in vectors]
    n = len(vectors)
    out = [[0.0] * n for _ in range(n)]
    for i in range(n):
        out[i][i] = 1.0
        for j in range(i + 1, n):
            if norms[i] and norms[j]:
                dot = math.fsum(a * b for a, b in zip(vectors[i], vectors[j], strict=True))
                out[i][j] = out[j][i] = max(-1.0, min(1.0, dot / (norms[i] * norms[j])))
    return out
