"""Draw captured terminal text (tmux capture-pane) as a PNG, for the README's live-view picture."""

from __future__ import annotations

from pathlib import Path

COLORS = {"good": "#5fd75f", "yes": "#5fd75f", "stale": "#ffd75f", "NO": "#ff5f5f", "offline": "#ff5f5f",
          "initial": "#8a8a8a"}


def render_terminal(text: str, out: Path, cols: int | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    lines = text.rstrip("\n").splitlines()
    cols = cols or max(len(ln) for ln in lines)
    cw, lh = 0.0835, 0.19  # inches per column / line at 11 pt monospace
    fig = plt.figure(figsize=(cols * cw + 0.4, len(lines) * lh + 0.4), dpi=110)
    fig.patch.set_facecolor("#1c1c1c")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, cols * cw + 0.4)
    ax.set_ylim(len(lines) * lh + 0.4, 0)
    for i, ln in enumerate(lines):
        y = 0.2 + (i + 0.75) * lh
        ax.text(0.2, y, ln, family="monospace", fontsize=11, color="#d0d0d0")
        # colour the words an operator looks for, over the plain text
        pos = 0
        for word in ln.split(" "):
            if word in COLORS or word in ("C", "D"):
                color = COLORS.get(word, "#ffd75f" if word == "C" else "#ff5f5f")
                ax.text(0.2 + pos * cw, y, word, family="monospace", fontsize=11, color=color, fontweight="bold")
            pos += len(word) + 1
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=fig.get_facecolor())
    plt.close(fig)
    return out
