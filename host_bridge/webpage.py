"""The status page's static files (kept as strings so they ship inside the Python package).

Plain HTML, CSS and JavaScript, no CDN and no build step: the page polls /api/status and draws
one SVG trend per node from /api/trend, with the node's ISO 10816-3 zone bands behind it.
Data is only ever put into the page through textContent / SVG attributes, never as HTML.
"""

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vibekit bridge</title>
<link rel="stylesheet" href="style.css">
</head>
<body>
<header>
  <h1>vibekit bridge</h1>
  <span id="summary">loading&hellip;</span>
  <span id="conn" class="conn"></span>
</header>
<main>
  <table id="nodes">
    <thead><tr>
      <th>node</th><th>asset</th><th>online</th><th>quality</th><th>age s</th><th>seq</th>
      <th>temp &deg;C</th><th>v<sub>rms</sub> x</th><th>v<sub>rms</sub> y</th><th>v<sub>rms</sub> z</th>
      <th>zone</th><th>backlog</th><th>drops</th><th>gaps</th>
    </tr></thead>
    <tbody></tbody>
  </table>
  <p class="units">velocity RMS in mm/s (10&ndash;1000 Hz); zone = ISO 10816-3 A..D of the worst axis;
  backlog = records in the node's flash journal not yet acknowledged; drops = records the node
  dropped by its flash quota; gaps = missing sequence numbers.</p>
  <div id="trends"></div>
</main>
<footer><a href="metrics">/metrics</a> &middot; <a href="api/status">/api/status</a></footer>
<script src="app.js"></script>
</body>
</html>
"""

STYLE_CSS = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d232b; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1em; background: #1d232b; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
.conn.bad { color: #ff8a80; font-weight: bold; }
main { padding: 1em; }
table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
th, td { padding: .3em .6em; border-bottom: 1px solid #e3e6ea; text-align: right; }
th:nth-child(-n+4), td:nth-child(-n+4) { text-align: left; }
.q-good { color: #1b7f3b; } .q-stale { color: #b26a00; } .q-offline { color: #c62828; font-weight: bold; }
.q-initial { color: #777; }
.zone { font-weight: bold; text-align: center; border-radius: 3px; }
.zone-A { background: #c8e6c9; } .zone-B { background: #fff59d; } .zone-C { background: #ffcc80; }
.zone-D { background: #ef9a9a; }
.units { color: #555; font-size: .85em; max-width: 60em; }
#trends { display: flex; flex-wrap: wrap; gap: 1em; }
.card { background: #fff; border: 1px solid #e3e6ea; border-radius: 4px; padding: .5em; }
.card h2 { font-size: 1em; margin: 0 0 .3em 0; }
svg text { font-size: 11px; fill: #444; }
footer { padding: 1em; font-size: .85em; }
"""

APP_JS = r"""
"use strict";
const params = new URLSearchParams(location.search);
const REFRESH_S = Math.max(0.2, parseFloat(params.get("refresh") || "2"));
const MINUTES = Math.max(1, parseFloat(params.get("minutes") || "60"));
const TREND_EVERY_MS = 10000;
const SVGNS = "http://www.w3.org/2000/svg";
const AXES = [["x", "#1565c0"], ["y", "#2e7d32"], ["z", "#6a1b9a"]];
const ZONE_FILL = ["#e8f5e9", "#fffde7", "#fff3e0", "#ffebee"];
const trendState = {};  // node id -> {seq, at}

function fmt(v, digits) {
  return (v === null || v === undefined) ? "-" : Number(v).toFixed(digits);
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function renderTable(snap) {
  const tbody = document.querySelector("#nodes tbody");
  const rows = [];
  for (const n of snap.nodes) {
    const tr = document.createElement("tr");
    tr.id = "node-" + n.id;
    tr.dataset.node = n.id;
    cell(tr, n.id);
    cell(tr, [n.site, n.area, n.asset].filter(Boolean).join(" / "));
    cell(tr, n.online === null ? "?" : (n.online ? "yes" : "NO"), n.online === false ? "q-offline" : "");
    cell(tr, n.quality, "q-" + n.quality);
    cell(tr, fmt(n.age_s, 1));
    cell(tr, String(n.last_seq));
    cell(tr, fmt(n.values.temperature, 2));
    for (const [a] of AXES) cell(tr, fmt(n.values["vel_rms_" + a], 3), "vel");
    cell(tr, n.zone || "-", "zone" + (n.zone ? " zone-" + n.zone : ""));
    cell(tr, n.backlog === null ? "-" : String(n.backlog));
    cell(tr, n.drops === null ? "-" : String(n.drops));
    cell(tr, String(n.gaps));
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  const c = snap.bridge.counters;
  let rejected = 0;
  for (const k in c) if (k.startsWith("rejected_")) rejected += c[k];
  document.getElementById("summary").textContent =
    snap.nodes.length + " nodes, " + snap.nodes.filter(n => n.online).length + " online; " +
    (c.records_stored || 0) + " records stored, " + (c.records_duplicate || 0) + " duplicates, " +
    rejected + " rejected; bridge " + snap.bridge.version + ", updated " +
    new Date(snap.bridge.now_ms).toLocaleTimeString();
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVGNS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

function drawTrend(svg, tr) {
  const W = 520, H = 220, L = 44, R = 10, T = 10, B = 26;
  svg.replaceChildren();
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  const lim = tr.iso_limits || [2.8, 4.5, 7.1];
  let ymax = lim[2] * 1.3;
  for (const [a] of AXES) for (const v of tr.series["vel_rms_" + a] || []) if (v !== null && v * 1.1 > ymax) ymax = v * 1.1;
  const x0 = tr.start_ms, x1 = tr.end_ms;
  const sx = t => L + (t - x0) / Math.max(1, x1 - x0) * (W - L - R);
  const sy = v => T + (1 - v / ymax) * (H - T - B);
  const edges = [0, lim[0], lim[1], lim[2], ymax];
  for (let i = 0; i < 4; i++) {
    const lo = Math.min(edges[i], ymax), hi = Math.min(edges[i + 1], ymax);
    if (hi <= lo) continue;
    el("rect", {x: L, y: sy(hi), width: W - L - R, height: sy(lo) - sy(hi), fill: ZONE_FILL[i], class: "band"}, svg);
    const t = el("text", {x: W - R - 4, y: sy(hi) + 12, "text-anchor": "end"}, svg);
    t.textContent = "ABCD"[i];
  }
  for (let k = 0; k <= 4; k++) {
    const v = ymax * k / 4;
    el("line", {x1: L - 3, x2: L, y1: sy(v), y2: sy(v), stroke: "#888"}, svg);
    const t = el("text", {x: L - 5, y: sy(v) + 4, "text-anchor": "end"}, svg);
    t.textContent = v.toFixed(1);
  }
  for (let k = 0; k <= 4; k++) {
    const tm = x0 + (x1 - x0) * k / 4;
    const t = el("text", {x: sx(tm), y: H - 8, "text-anchor": k === 0 ? "start" : (k === 4 ? "end" : "middle")}, svg);
    t.textContent = new Date(tm).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  }
  el("rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#bbb"}, svg);
  for (const [a, color] of AXES) {
    const ys = tr.series["vel_rms_" + a] || [];
    let d = "", pen = false;
    for (let i = 0; i < ys.length; i++) {
      if (ys[i] === null) { pen = false; continue; }
      d += (pen ? "L" : "M") + sx(tr.t[i]).toFixed(1) + "," + sy(ys[i]).toFixed(1);
      pen = true;
    }
    if (d) el("path", {d: d, fill: "none", stroke: color, "stroke-width": 1.5, class: "series-" + a}, svg);
  }
  const lg = el("text", {x: L + 6, y: T + 12}, svg);
  lg.textContent = "velocity RMS mm/s  x y z (" + tr.records + " records, " + MINUTES + " min)";
}

function trendCard(n) {
  let card = document.getElementById("trend-" + n.id);
  if (!card) {  // created in table order, so the cards keep the nodes' order
    card = document.createElement("div");
    card.className = "card";
    card.id = "trend-" + n.id;
    card.appendChild(document.createElement("h2"));
    card.appendChild(document.createElementNS(SVGNS, "svg"));
    document.getElementById("trends").appendChild(card);
  }
  card.querySelector("h2").textContent = n.id + (n.asset ? " - " + n.asset : "");
  return card;
}

async function refreshTrend(n, card) {
  const r = await fetch("api/trend?node=" + encodeURIComponent(n.id) + "&minutes=" + MINUTES, {cache: "no-store"});
  if (!r.ok) return;
  drawTrend(card.querySelector("svg"), await r.json());
}

async function tick() {
  const conn = document.getElementById("conn");
  try {
    const r = await fetch("api/status", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    const snap = await r.json();
    renderTable(snap);
    conn.textContent = "";
    conn.className = "conn";
    const now = Date.now();
    for (const n of snap.nodes) {
      const st = trendState[n.id];
      if (!st || (st.seq !== n.last_seq && now - st.at > 2000) || now - st.at > TREND_EVERY_MS) {
        trendState[n.id] = {seq: n.last_seq, at: now};
        refreshTrend(n, trendCard(n)).catch(() => {});
      }
    }
    document.body.dataset.updated = String(snap.bridge.now_ms);
  } catch (e) {
    conn.textContent = "bridge unreachable (" + e.message + ")";
    conn.className = "conn bad";
  }
  setTimeout(tick, REFRESH_S * 1000);
}

tick();
"""
