"""The HTML report's style sheet and script, inlined into every report (no file, CDN or network:
the report opens offline as one file).

The script (vanilla JS, no library) makes every `.table-wrap` table sortable (click or Enter on a
header: numbers by value, text after them) and filterable (a search box, and a menu per category
column), and draws the interactive efficiency–accuracy plot in SVG from the JSON block
`#report-data`: one point per done cell, coloured and shaped like the paper figures, hollow for the
base's weights; points that would overlap are drawn side by side; hovering (or focusing) a point
shows its method, protocol, ratio, layer, seed, accuracy and speed-up; clicking opens its W&B run
(online runs) or its cell folder. Errors are collected in `window.reportErrors`.
"""

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em auto;max-width:1280px;
color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
nav a{margin-right:1em;font-size:.9em}
table{border-collapse:collapse;font-size:.82em;margin:.4em 0}
th,td{padding:.25em .55em;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
th{background:#f5f5f5;position:sticky;top:0}
th.sortable{cursor:pointer;user-select:none}th.sortable:hover{background:#e8eef7}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:.75em}
th[aria-sort=descending]::after{content:" \\25BC";font-size:.75em}
tr.warn td{background:#fff4e0}tr.bad td{background:#fde8e8}
.table-wrap{overflow-x:auto;max-height:38em;overflow-y:auto}
.filters{display:flex;flex-wrap:wrap;gap:.4em;align-items:center;margin:.3em 0;font-size:.85em}
.filters input{width:14em}.filters .count{color:#666;margin-left:.5em}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#444;max-width:60em}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}.muted{color:#777}
#plot{position:relative}#plot svg{background:#fff;border:1px solid #eee;max-width:100%}
#plot .controls{font-size:.85em;margin:.3em 0;display:flex;gap:1em;flex-wrap:wrap;align-items:center}
#plot .legend button{font:inherit;border:1px solid #ddd;background:#fff;border-radius:3px;
margin:0 .25em .25em 0;padding:.1em .45em;cursor:pointer}
#plot .legend button.off{opacity:.35;text-decoration:line-through}
#plot .pt{cursor:pointer}#plot .pt:hover,#plot .pt:focus{stroke-width:2.6;outline:none}
#tip{position:absolute;pointer-events:none;background:rgba(255,255,255,.97);border:1px solid #999;
border-radius:4px;padding:.4em .6em;font-size:.8em;box-shadow:0 2px 6px rgba(0,0,0,.15);
white-space:nowrap;z-index:5}
#tip[hidden]{display:none}#tip b{font-size:1.05em}#tip .k{color:#666}
"""

JS = r"""
(function () {
"use strict";
var errors = [];
window.reportErrors = errors;
window.addEventListener("error", function (e) { errors.push(String(e.message)); });
var DATA = JSON.parse(document.getElementById("report-data").textContent);

// ---- tables -------------------------------------------------------------------------------
function asNumber(text) {
  var t = text.replace(/\u2212/g, "-").replace(/^[^0-9+\-.]+/, "");
  var m = t.match(/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?/i);
  return m ? parseFloat(m[0]) : NaN;
}
function cellText(row, col) { return row.cells[col] ? row.cells[col].textContent.trim() : ""; }
function sortTable(table, col, dir) {
  var body = table.tBodies[0];
  var keyed = Array.prototype.map.call(body.rows, function (r, i) {
    var text = cellText(r, col);
    return {r: r, i: i, text: text, num: asNumber(text)};
  });
  keyed.sort(function (a, b) {
    var an = !isNaN(a.num), bn = !isNaN(b.num);
    if (an !== bn) return an ? -1 : 1;  // numbers first, states and dashes last
    if (an && a.num !== b.num) return dir * (a.num - b.num);
    if (!an && a.text !== b.text) return dir * a.text.localeCompare(b.text);
    return a.i - b.i;
  });
  keyed.forEach(function (k) { body.appendChild(k.r); });
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, j) {
    th.setAttribute("aria-sort", j === col ? (dir > 0 ? "ascending" : "descending") : "none");
  });
}
function filterTable(wrap) {
  var table = wrap.querySelector("table");
  var terms = wrap.querySelector("input.search").value.toLowerCase().split(/\s+/)
    .filter(Boolean);
  var selects = wrap.querySelectorAll("select.col-filter");
  var rows = table.tBodies[0].rows, shown = 0;
  Array.prototype.forEach.call(rows, function (r) {
    var text = r.textContent.toLowerCase();
    var ok = terms.every(function (t) { return text.indexOf(t) >= 0; });
    Array.prototype.forEach.call(selects, function (s) {
      if (s.value !== "" && cellText(r, +s.dataset.col) !== s.value) ok = false;
    });
    r.hidden = !ok;
    if (ok) shown++;
  });
  wrap.querySelector(".count").textContent = shown + " of " + rows.length + " rows";
}
function setupTable(wrap) {
  var table = wrap.querySelector("table");
  if (!table || !table.tHead) return;
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  heads.forEach(function (th, col) {
    th.tabIndex = 0;
    th.classList.add("sortable");
    th.setAttribute("aria-sort", "none");
    function go() { sortTable(table, col, th.getAttribute("aria-sort") === "ascending" ? -1 : 1); }
    th.addEventListener("click", go);
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); }
    });
  });
  var bar = document.createElement("div");
  bar.className = "filters";
  var search = document.createElement("input");
  search.type = "search"; search.className = "search"; search.placeholder = "filter rows…";
  search.setAttribute("aria-label", "filter rows");
  bar.appendChild(search);
  heads.forEach(function (th, col) {
    if (!th.classList.contains("cat")) return;
    var seen = {};
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      seen[cellText(r, col)] = true;
    });
    var values = Object.keys(seen).sort(function (a, b) {
      var x = asNumber(a), y = asNumber(b);
      return !isNaN(x) && !isNaN(y) ? x - y : a.localeCompare(b);
    });
    if (values.length < 2) return;
    var sel = document.createElement("select");
    sel.className = "col-filter"; sel.dataset.col = col;
    sel.setAttribute("aria-label", th.textContent);
    sel.appendChild(new Option(th.textContent + ": all", ""));
    values.forEach(function (v) { sel.appendChild(new Option(v, v)); });
    bar.appendChild(sel);
  });
  var count = document.createElement("span");
  count.className = "count";
  bar.appendChild(count);
  wrap.insertBefore(bar, wrap.firstChild);
  bar.addEventListener("input", function () { filterTable(wrap); });
  bar.addEventListener("change", function () { filterTable(wrap); });
  filterTable(wrap);
}
Array.prototype.forEach.call(document.querySelectorAll(".table-wrap"), setupTable);

// ---- the interactive plot -----------------------------------------------------------------
var SVG = "http://www.w3.org/2000/svg";
function el(name, attrs, parent) {
  var e = document.createElementNS(SVG, name);
  Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
  if (parent) parent.appendChild(e);
  return e;
}
function poly(n, r, rot) {
  var p = [];
  for (var i = 0; i < n; i++) {
    var a = rot + 2 * Math.PI * i / n;
    p.push((r * Math.cos(a)).toFixed(2) + "," + (r * Math.sin(a)).toFixed(2));
  }
  return "M" + p.join("L") + "Z";
}
function star(r) {
  var p = [];
  for (var i = 0; i < 10; i++) {
    var a = -Math.PI / 2 + Math.PI * i / 5, q = i % 2 ? r * 0.45 : r * 1.35;
    p.push((q * Math.cos(a)).toFixed(2) + "," + (q * Math.sin(a)).toFixed(2));
  }
  return "M" + p.join("L") + "Z";
}
function cross(r, w, rot) {  // a plus (rot 0) or an x (rot 45°) of arm width w
  var pts = [[-w, -r], [w, -r], [w, -w], [r, -w], [r, w], [w, w], [w, r], [-w, r], [-w, w],
             [-r, w], [-r, -w], [-w, -w]];
  var c = Math.cos(rot), s = Math.sin(rot);
  return "M" + pts.map(function (p) {
    return (p[0] * c - p[1] * s).toFixed(2) + "," + (p[0] * s + p[1] * c).toFixed(2);
  }).join("L") + "Z";
}
function shape(marker, r) {
  switch (marker) {
    case "s": return "M" + -r + "," + -r + "H" + r + "V" + r + "H" + -r + "Z";
    case "D": case "d": return "M0," + -1.3 * r + "L" + 1.05 * r + ",0L0," + 1.3 * r + "L" +
      -1.05 * r + ",0Z";
    case "^": return poly(3, 1.25 * r, -Math.PI / 2);
    case "v": return poly(3, 1.25 * r, Math.PI / 2);
    case "<": return poly(3, 1.25 * r, Math.PI);
    case ">": return poly(3, 1.25 * r, 0);
    case "*": return star(r);
    case "h": return poly(6, 1.1 * r, Math.PI / 2);
    case "p": return poly(5, 1.15 * r, -Math.PI / 2);
    case "8": return poly(8, 1.1 * r, Math.PI / 8);
    case "P": return cross(1.15 * r, 0.42 * r, 0);
    case "X": return cross(1.15 * r, 0.42 * r, Math.PI / 4);
    default: return "M" + -r + ",0a" + r + "," + r + " 0 1,0 " + 2 * r + ",0a" + r + "," + r +
      " 0 1,0 " + -2 * r + ",0Z";
  }
}
function niceTicks(lo, hi, n) {
  var span = hi - lo, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; })
    .filter(function (s) { return span / s <= n; })[0] || 10 * mag;
  var out = [];
  for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-6; v += step) {
    out.push(Math.round(v / step) * step);
  }
  return out;
}
function fmt(v, digits) { return v === null || v === undefined || !isFinite(v) ? "–" :
  Number(v).toFixed(digits); }
function range(values, minSpan, rel) {
  var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
  if (hi - lo < minSpan) { var mid = (hi + lo) / 2; lo = mid - minSpan / 2; hi = mid + minSpan / 2; }
  var pad = rel * (hi - lo);
  return [lo - pad, hi + pad];
}
function spread(points, r) {  // side by side, around each cluster's centre (as the figures do)
  var reach = 2 * r + 2, width = 2 * r + 2;
  for (var round = 0; round < 50; round++) {
    var parent = points.map(function (_, i) { return i; });
    var find = function (i) { while (parent[i] !== i) i = parent[i] = parent[parent[i]]; return i; };
    var touched = false;
    for (var i = 0; i < points.length; i++) {
      for (var j = i + 1; j < points.length; j++) {
        if (Math.abs(points[i].px - points[j].px) < reach &&
            Math.abs(points[i].py - points[j].py) < reach) {
          parent[find(i)] = find(j); touched = true;
        }
      }
    }
    if (!touched) return;
    var groups = {};
    points.forEach(function (p, i) { (groups[find(i)] = groups[find(i)] || []).push(p); });
    Object.keys(groups).forEach(function (k) {
      var g = groups[k];
      if (g.length < 2) return;
      g.sort(function (a, b) { return a.x0 - b.x0 || a.order - b.order; });
      var mid = g.reduce(function (s, p) { return s + p.px; }, 0) / g.length;
      g.forEach(function (p, i) { p.px = mid + (i - (g.length - 1) / 2) * width; });
    });
  }
}
function tipHtml(c) {
  var rows = [
    ["protocol", c.protocol_label], ["arch", c.arch_label], ["ratio", c.ratio],
    ["layer", c.layer === null ? "–" : c.layer], ["seed", c.seed],
    ["accuracy", fmt(100 * c.accuracy, 1) + " %"],
    ["speed-up", fmt(c.speedup, 2) + "× (measured)"],
    ["GFLOPs", fmt(c.gflops, 3)], ["kept", fmt(c.kept_fraction, 2)]
  ];
  var esc = function (s) {
    return String(s).replace(/[&<>"]/g, function (ch) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[ch];
    });
  };
  return "<b>" + esc(c.series_label) + "</b> <span class='k'>" + esc(c.name) + "</span><br>" +
    rows.map(function (r) { return "<span class='k'>" + r[0] + "</span> " + esc(r[1]); })
      .join("<br>") +
    "<br><span class='k'>click: opens</span> " + esc(c.link_label);
}
function setupPlot() {
  var box = document.getElementById("plot");
  if (!box) return;
  var cells = DATA.cells.filter(function (c) { return c.state === "done"; });
  var hidden = {}, select = box.querySelector("select.x-axis"), svgBox = box.querySelector(".svg");
  var tip = document.getElementById("tip");
  var legend = box.querySelector(".legend");
  DATA.series.forEach(function (s) {
    var b = document.createElement("button");
    b.type = "button"; b.dataset.series = s.key; b.title = "show or hide " + s.label;
    var sw = el("svg", {width: 14, height: 14, viewBox: "-7 -7 14 14"});
    el("path", {d: shape(s.marker, 4.5), fill: s.filled ? s.color : "#fff", stroke: s.color,
                "stroke-width": 1.5}, sw);
    b.appendChild(sw);
    b.appendChild(document.createTextNode(" " + s.label));
    b.addEventListener("click", function () {
      hidden[s.key] = !hidden[s.key]; b.classList.toggle("off", !!hidden[s.key]); draw();
    });
    legend.appendChild(b);
  });
  function draw() {
    var xkey = select.value, xlabel = select.options[select.selectedIndex].text;
    var pts = cells.filter(function (c) {
      return !hidden[c.series] && c[xkey] !== null && isFinite(c[xkey]) && c.accuracy !== null;
    });
    var W = 820, H = 430, m = {l: 58, r: 18, t: 14, b: 46};
    svgBox.textContent = "";
    var svg = el("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                         "aria-label": "accuracy vs " + xlabel}, svgBox);
    if (!pts.length) {
      el("text", {x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#777"}, svg)
        .textContent = "no done cells with " + xlabel;
      return;
    }
    var xs = pts.map(function (c) { return c[xkey]; });
    var ys = pts.map(function (c) { return 100 * c.accuracy; });
    if (DATA.chance !== null) ys.push(100 * DATA.chance);
    var xr = range(xs, Math.max(1e-9, 0.1 * Math.abs(Math.max.apply(null, xs))), 0.08);
    var yr = range(ys, 10, 0.08);
    var sx = function (v) { return m.l + (v - xr[0]) / (xr[1] - xr[0]) * (W - m.l - m.r); };
    var sy = function (v) { return H - m.b - (v - yr[0]) / (yr[1] - yr[0]) * (H - m.t - m.b); };
    var axes = el("g", {"font-size": 11, fill: "#333"}, svg);
    niceTicks(xr[0], xr[1], 8).forEach(function (v) {
      el("line", {x1: sx(v), x2: sx(v), y1: m.t, y2: H - m.b, stroke: "#eee"}, axes);
      el("text", {x: sx(v), y: H - m.b + 15, "text-anchor": "middle"}, axes).textContent =
        +v.toPrecision(6);
    });
    niceTicks(yr[0], yr[1], 7).forEach(function (v) {
      el("line", {x1: m.l, x2: W - m.r, y1: sy(v), y2: sy(v), stroke: "#eee"}, axes);
      el("text", {x: m.l - 6, y: sy(v) + 4, "text-anchor": "end"}, axes).textContent =
        +v.toPrecision(6);
    });
    el("rect", {x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: "none",
                stroke: "#999"}, axes);
    el("text", {x: (m.l + W - m.r) / 2, y: H - 8, "text-anchor": "middle"}, axes).textContent =
      xlabel;
    el("text", {x: 14, y: (m.t + H - m.b) / 2, "text-anchor": "middle",
                transform: "rotate(-90 14 " + (m.t + H - m.b) / 2 + ")"}, axes)
      .textContent = "val accuracy (%)";
    if (DATA.chance !== null) {
      var cy = sy(100 * DATA.chance);
      el("line", {x1: m.l, x2: W - m.r, y1: cy, y2: cy, stroke: "#7f7f7f",
                  "stroke-dasharray": "2,3", "stroke-width": 1.3, class: "chance"}, svg);
      el("text", {x: W - m.r - 4, y: cy - 4, "text-anchor": "end", "font-size": 10,
                  fill: "#7f7f7f"}, svg).textContent = "chance";
    }
    var placed = pts.map(function (c, i) {
      return {c: c, x0: sx(c[xkey]), px: sx(c[xkey]), py: sy(100 * c.accuracy), order: i};
    });
    spread(placed, 6);
    var layer = el("g", {}, svg);
    placed.sort(function (a, b) { return b.c.size - a.c.size; }).forEach(function (p) {
      var c = p.c;
      var dot = el("path", {d: shape(c.marker, c.size), class: "pt", tabindex: 0,
        transform: "translate(" + p.px.toFixed(1) + "," + p.py.toFixed(1) + ")",
        fill: c.filled ? c.color : "#fff", stroke: c.color, "stroke-width": 1.6,
        "data-cell": c.cell_id}, layer);
      function show() {
        tip.innerHTML = tipHtml(c);
        tip.hidden = false;
        var left = svg.getBoundingClientRect().left - box.getBoundingClientRect().left;
        var top = svg.getBoundingClientRect().top - box.getBoundingClientRect().top;
        var scale = svg.getBoundingClientRect().width / W;
        var x = left + p.px * scale + 12, y = top + p.py * scale + 12;
        if (x + tip.offsetWidth > box.clientWidth) x = left + p.px * scale - tip.offsetWidth - 12;
        tip.style.left = x + "px"; tip.style.top = y + "px";
      }
      dot.addEventListener("mouseenter", show);
      dot.addEventListener("focus", show);
      dot.addEventListener("mouseleave", function () { tip.hidden = true; });
      dot.addEventListener("blur", function () { tip.hidden = true; });
      function open() { window.open(c.link, "_blank", "noopener"); }
      dot.addEventListener("click", open);
      dot.addEventListener("keydown", function (e) { if (e.key === "Enter") open(); });
    });
  }
  select.addEventListener("change", draw);
  draw();
}
setupPlot();
document.body.dataset.ready = "true";
})();
"""
