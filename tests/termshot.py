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
    cw, lh = 11 * 0.6021 / 72, 0.19  # inches per column (DejaVu Sans Mono advance) / per line at 11 pt
    fig = plt.figure(figsize=(cols * cw + 0.4, len(lines) * lh + 0.4), dpi=110)
    fig.patch.set_facecolor("#1c1c1c")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, cols * cw + 0.4)
    ax.set_ylim(len(lines) * lh + 0.4, 0)
    zone_col = None
    for i, ln in enumerate(lines):
        y = 0.2 + (i + 0.75) * lh
        if " zone " in ln and zone_col is None:
            zone_col = ln.index(" zone ") + 4  # right edge of the right-aligned zone column
        # the words an operator looks for get a colour; the rest of the line is drawn plain
        coloured: list[tuple[int, str, str]] = []
        pos = 0
        for word in ln.split(" "):
            color = COLORS.get(word)
            if zone_col is not None and word in ("A", "B", "C", "D") and pos + len(word) == zone_col + 1:
                color = {"A": "#5fd75f", "B": "#5fd75f", "C": "#ffd75f", "D": "#ff5f5f"}[word]
            if color:
                coloured.append((pos, word, color))
            pos += len(word) + 1
        plain = list(ln)
        for p, word, _ in coloured:
            plain[p:p + len(word)] = " " * len(word)
        ax.text(0.2, y, "".join(plain), family="DejaVu Sans Mono", fontsize=11, color="#d0d0d0")
        for p, word, color in coloured:
            ax.text(0.2 + p * cw, y, word, family="DejaVu Sans Mono", fontsize=11, color=color, fontweight="bold")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=fig.get_facecolor())
    plt.close(fig)
    return out
