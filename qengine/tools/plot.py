"""The chart of a benchmark result: per-image latency of every engine per (threads, batch), and
qengine's speed-up over each. matplotlib is an optional extra (pip install qengine[plot])."""
from __future__ import annotations

__all__ = ["require_matplotlib", "plot_result"]


def require_matplotlib():
    """matplotlib.pyplot on the Agg backend (no display needed), or a clear error."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'qengine[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def plot_result(result: dict, path: str) -> None:
    """Write a two-panel PNG: latency per image (bars, quartile whiskers) and speed-up of
    qengine over each other engine (1.0 = same speed)."""
    plt = require_matplotlib()
    results = result["results"]
    engines = result["settings"]["engines"]
    labels = [f"{r['threads']}t b{r['batch']}" for r in results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(results) + 4), 4.5))
    width = 0.8 / max(1, len(engines))
    for j, name in enumerate(engines):
        xs = [i + (j - (len(engines) - 1) / 2) * width for i in range(len(results))]
        med = [r["engines"][name]["per_image_ms"] for r in results]
        lo = [(r["engines"][name]["median_ms"] - r["engines"][name]["q1_ms"]) / r["batch"]
              for r in results]
        hi = [(r["engines"][name]["q3_ms"] - r["engines"][name]["median_ms"]) / r["batch"]
              for r in results]
        ax1.bar(xs, med, width, yerr=[lo, hi], capsize=2, label=name)
    ax1.set_xticks(range(len(results)), labels)
    ax1.set_ylabel("ms per image (median, quartiles)")
    ax1.set_yscale("log")
    ax1.set_title("latency (lower is better)")
    ax1.legend(fontsize=8)
    others = [n for n in engines if n != "qengine"]
    width = 0.8 / max(1, len(others))
    for j, name in enumerate(others):
        xs = [i + (j - (len(others) - 1) / 2) * width for i in range(len(results))]
        ups = [r["ratios"][name]["speedup"] for r in results]
        ax2.bar(xs, ups, width, label=f"vs {name}", color=f"C{engines.index(name)}")
        for x, u in zip(xs, ups):
            ax2.annotate(f"{u:.2f}x", (x, u), ha="center", va="bottom", fontsize=7)
    ax2.axhline(1.0, color="black", linewidth=0.8)
    ax2.set_yscale("log")                 # 0.5x and 2x sit symmetrically around 1
    ax2.set_xticks(range(len(results)), labels)
    ax2.set_ylabel("speed-up of qengine (x)")
    ax2.set_title("qengine speed-up (higher is better)")
    if others:
        ax2.legend(fontsize=8)
    m = result["model"]
    from matplotlib.ticker import FuncFormatter
    plain = FuncFormatter(lambda v, _: f"{v:g}")      # 0.5, 2, 20 rather than 2x10^0
    for ax in (ax1, ax2):
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)
    fig.suptitle(f"{m['name']} on {result['machine']['cpu']} ({result['machine']['isa']})",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
