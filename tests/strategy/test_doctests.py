"""The worked examples in the rank-mapping docstrings are executed."""

import doctest

import meshplan.strategy.mesh as mesh


def test_mesh_docstring_examples():
    result = doctest.testmod(mesh)
    assert result.attempted >= 5 and result.failed == 0
