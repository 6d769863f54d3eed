"""Cosine similarity of embedding vectors."""

from __future__ import annotations

import pytest

from engines.errors import BadRequest
from engines.similarity import cosine_matrix


def test_cosine_matrix() -> None:
    m = cosine_matrix([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [-2.0, 0.0]])
    assert m[0][0] == 1.0 and m[0][1] == pytest.approx(0.70710678) and m[1][0] == m[0][1]
    assert m[0][2] == 0.0 and m[2][2] == 1.0  # a zero vector is like nothing, but itself
    assert m[0][3] == -1.0


def test_vectors_of_different_sizes_are_refused() -> None:
    with pytest.raises(BadRequest, match="same number of dimensions"):
        cosine_matrix([[1.0], [1.0, 2.0]])
