"""pytest set-up for checking the notebooks with nbval.

CI runs ``PSFT_EDU_PRESET=tiny HF_HUB_OFFLINE=1 python -m pytest -q --nbval-lax -p no:randomly notebooks``.
With ``--nbval-lax`` every cell must run without an error, and the cells whose source starts with
``# NBVAL_CHECK_OUTPUT`` must print what the saved notebook shows. This file makes that comparison
robust to things that change without meaning anything:

* the rules in ``nbval_sanitize.cfg`` (figure sizes, memory addresses, timings, progress bars) are
  applied unless ``--nbval-sanitize-with`` names another file;
* the repository's absolute path is replaced by ``<repo>`` (it differs from machine to machine);
* stderr (warnings, progress bars) and widget outputs (their model ids and state change on every run)
  are left out of the comparison;
* the kernel is the Python running pytest (``--nbval-current-env``), so the notebooks use this
  environment's packages whatever kernel name they were saved with;
* ``MPLBACKEND=Agg`` (set by ``make test-notebooks``) is dropped so the kernel uses the inline
  backend, as when the notebooks were executed; otherwise every ``plt.show()`` warns on stderr.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
SANITIZE_FILE = HERE / "nbval_sanitize.cfg"

# Outputs carrying one of these MIME types are widgets: never compared.
WIDGET_MIME_TYPES = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json")


def _nbval_active(config) -> bool:
    return bool(getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False))


def comparable_outputs(outputs: list) -> list:
    """The outputs nbval should compare: everything except stderr streams and widget displays."""
    kept = []
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            continue
        data = output.get("data") or {}
        if any(mime in data for mime in WIDGET_MIME_TYPES):
            continue
        kept.append(output)
    return kept


def _patch_nbval() -> None:
    """Make nbval's cell comparison ignore stderr and widget outputs (idempotent)."""
    from nbval.plugin import IPyNbCell

    original = IPyNbCell.compare_outputs
    if getattr(original, "_psft_edu_patched", False):
        return

    def compare_outputs(self, test, ref, skip_compare=None):
        return original(self, comparable_outputs(test), comparable_outputs(ref), skip_compare)

    compare_outputs._psft_edu_patched = True  # type: ignore[attr-defined]
    IPyNbCell.compare_outputs = compare_outputs


def pytest_configure(config) -> None:
    if not _nbval_active(config):
        return
    if not getattr(config.option, "nbval_sanitize_with", None):
        config.option.nbval_sanitize_with = str(SANITIZE_FILE)
    if not getattr(config.option, "nbval_kernel_name", None):
        config.option.nbval_current_env = True
    if os.environ.get("MPLBACKEND", "").lower() == "agg":
        del os.environ["MPLBACKEND"]
    _patch_nbval()


def pytest_collectstart(collector) -> None:
    if not _nbval_active(collector.config):
        return
    from nbval.plugin import IPyNbFile

    if isinstance(collector, IPyNbFile):
        # Runs before nbval reads the sanitize file, so these rules come first.
        collector.sanitize_patterns[re.escape(str(REPO_ROOT))] = "<repo>"
