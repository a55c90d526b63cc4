"""Interactive controls for the notebooks (ipywidgets). Each function returns a widget to display."""

from __future__ import annotations

# ---------------------------------------------------------------- 01 token-by-token explorer

# ---------------------------------------------------------------- 04 clipped surrogate explorer

# ---------------------------------------------------------------- 05 PSFT: epsilon and K

# ---------------------------------------------------------------- 06-08 result selectors
