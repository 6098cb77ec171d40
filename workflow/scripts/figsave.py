"""Saving a figure: PNG and PDF written atomically, the PDF without a creation date so that a
rebuild from the same runs gives the same bytes. Selects the Agg backend (no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from asge.atomic import atomic_write  # noqa: E402


def save(fig: plt.Figure, png: str, pdf: str) -> None:
    """Write `fig` to `png` and `pdf` (parents created) and close it."""
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(png, lambda p: fig.savefig(p, format="png", dpi=150, bbox_inches="tight"))
    atomic_write(pdf, lambda p: fig.savefig(p, format="pdf", bbox_inches="tight", metadata={"CreationDate": None}))
    plt.close(fig)
