"""The type of a cost figure: one float, or an array of floats broadcast over candidates.

The cost model evaluates whole grids of layouts and batch sizes at once (numpy broadcasting), so a
figure such as a step time is a float for one candidate and an array for many; the same formulas
serve both.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np

Floats: TypeAlias = float | np.ndarray
"""A figure in its unit (the field's name says which): a float, or an array of them."""
