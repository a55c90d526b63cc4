"""Checkers for the notebooks' exercises.

Each ``check_*`` function prints a short, specific message (what is right, or what to
look at next) and returns ``True`` or ``False``. An exercise left as ``None`` gets a
hint instead of an error, so a notebook always runs top to bottom.
"""

from __future__ import annotations

import math
from typing import Any


def _report(ok: bool, message: str) -> bool:
    print(("Correct: " if ok else "Not yet: ") + message)
    return ok


def _not_attempted(answer: Any, hint: str) -> bool:
    if answer is None:
        print("Not attempted yet. Hint: " + hint)
        return True
    return False


def _close(a: float, b: float, tol: float = 1e-4) -> bool:
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)


# ---------------------------------------------------------------- 01 language modelling as an MDP

# ---------------------------------------------------------------- 02 the SFT loss

# ---------------------------------------------------------------- 03 SFT is a policy gradient

# ---------------------------------------------------------------- 04 PPO's clipped objective

# ---------------------------------------------------------------- 05 proximal SFT

# ---------------------------------------------------------------- 06 entropy collapse

# ---------------------------------------------------------------- 07 RL after SFT / PSFT

# ---------------------------------------------------------------- 08 neighbours and ablations
