"""Figures: the shared way to make and write one (subplots, save), and the ternarization curves (held-out
perplexity against the compute spent, train/text_recipe.Curve points)."""

from __future__ import annotations

from ternary_vlm import atomic


def subplots(*args, **kwargs):
    """matplotlib's subplots on the file-only Agg backend (imported here: only plotting pays for it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(*args, **kwargs)


def save(fig, path: str) -> None:
    """Lays out, writes the PNG atomically and frees the figure."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    with atomic.output_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def plot_curves(curves: dict[str, list[dict]], path: str, x: str = "wall_s") -> None:
    """One panel per held-out text; one line per curve (label -> points), the float model's perplexity dashed.
    Written atomically."""
    texts = sorted({k for points in curves.values() for p in points for k in p if k.startswith("ppl_")})
    fig, axes = subplots(1, len(texts), figsize=(5 * len(texts), 4), squeeze=False)
    for ax, text in zip(axes[0], texts):
        for label, points in curves.items():
            float_point = next((p for p in points if p["stage"] == "float"), None)
            # a point may lack a text (added by a later stage's --data) or CPU time (stages recorded by wall-clock)
            trained = [p for p in points if p["stage"] != "float" and text in p and x in p]
            ax.plot([p[x] / 60 for p in trained], [p[text] for p in trained], marker="o", label=label)
            for p in trained:
                if p["stage"] in ("init", "blockwise"):
                    ax.annotate(p["stage"], (p[x] / 60, p[text]), fontsize=7, textcoords="offset points",
                                xytext=(4, 4))
            if float_point and text in float_point:  # a later stage may add a text (its --data's held-out part)
                ax.axhline(float_point[text], linestyle="--", color="grey", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(f"held-out {text[4:]} (dashed: float)")
        ax.set_xlabel("wall-clock minutes" if x == "wall_s" else "CPU minutes")
        ax.set_ylabel("perplexity")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    save(fig, path)
