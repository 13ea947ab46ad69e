"""Where ranks sit on nodes, and which link tier each group's traffic uses.

Ranks fill nodes in order (GPU id = rank, node = rank // GPUs per node), so with the axis order
of strategy.mesh the tensor-parallel groups (innermost) stay inside a node whenever tp divides
the node size, and expert-parallel groups span nodes only when a stage is wider than a node.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np


class LinkTier(StrEnum):
    """Scale-up (NVLink inside a node) or scale-out (NIC across nodes)."""

    INTRA = "intra_node"
    INTER = "inter_node"


def contiguous_group_crosses(size, gpus_per_node):
    """A contiguous group of ``size`` ranks leaves its node when it is larger than the node (a
    group that fits, like tp 64 in a 72-GPU NVL72 rack, stays on NVLink). Works on arrays."""
    return np.asarray(np.asarray(size) > gpus_per_node)


def stage_on_node_fraction(gpus_per_stage, gpus_per_node):
    """Share of a stage's GPUs that sit on the same node as a given GPU of that stage:
    1 when the stage fits in (and aligns with) a node, else node size / stage size."""
    g = np.asarray(gpus_per_stage, dtype=float)
    return np.where(gpus_per_node % g == 0, 1.0, np.minimum(1.0, gpus_per_node / g))


def pp_crosses(gpus_per_stage, gpus_per_instance, gpus_per_node):
    """Pipeline send/recv leaves the node unless the whole instance fits in one node."""
    return np.asarray(np.asarray(gpus_per_instance) > gpus_per_node)
