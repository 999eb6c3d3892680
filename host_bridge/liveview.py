"""A plain-text table of every node's live values, for the demo and `status` (pure)."""

from __future__ import annotations

import math

from host_bridge.tags import NodeState, Quality, TagStore, now_ms

ZONES = {1: "A", 2: "B", 3: "C", 4: "D"}


def _f(v: float | None, fmt: str = "{:7.3f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "   -   "
    return fmt.format(v)


def render_table(tags: TagStore, links: dict[str, str] | None = None, at_ms: int | None = None) -> str:
    t = at_ms if at_ms is not None else now_ms()
    head = (
        f"{'node':<16} {'link':<7} {'online':<7} {'quality':<8} {'age s':>6} {'seq':>7} "
        f"{'temp C':>7} {'a_rms x':>7} {'a_rms y':>7} {'a_rms z':>7} "
        f"{'v_rms x':>7} {'v_rms y':>7} {'v_rms z':>7} {'zone':>4}"
    )
    lines = [head, "-" * len(head)]
    for node_id, st in sorted(tags.snapshot().items()):
        lines.append(_row(node_id, st, tags.quality(st, t), (links or {}).get(node_id, ""), t))
    lines.append("units: g (acceleration RMS), mm/s (velocity RMS 10-1000 Hz), ISO 10816-3 zone")
    return "\n".join(lines)


def _row(node_id: str, st: NodeState, q: Quality, link: str, t: int) -> str:
    v = st.values
    online = {True: "yes", False: "NO", None: "?"}[st.online]
    age = f"{(t - st.server_ms) / 1000:6.1f}" if st.server_ms else "     -"
    zone_v = v.get("iso_zone")
    zone = ZONES.get(int(zone_v), "?") if zone_v is not None and not math.isnan(zone_v) else "-"
    return (
        f"{node_id:<16} {link:<7} {online:<7} {q.name.lower():<8} {age} {st.last_seq:>7} "
        f"{_f(v.get('temperature'), '{:7.2f}')} "
        f"{_f(v.get('acc_rms_x'))} {_f(v.get('acc_rms_y'))} {_f(v.get('acc_rms_z'))} "
        f"{_f(v.get('vel_rms_x'))} {_f(v.get('vel_rms_y'))} {_f(v.get('vel_rms_z'))} {zone:>4}"
    )
