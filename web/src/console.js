// The operations console beside the globe: telemetry (a plot of any parameter of any
// satellite, at the orbit time each record was received on the ground, with its limits),
// active alarms, operator commands and their history, and the pass timeline (contact
// windows per station, laser-link windows, the planned hops of requests in flight, a
// now-line). Everything comes from the gateway; the instant is the globe's.
"use strict";

const ops = { satellite: null, parameter: "battery_soc", points: 0, alarms: 0, commands: [] };
window.starcomputeConsole = ops;

function esc(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

async function consoleJson(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : `${url}: ${response.status}`);
  return body;
}

function globeMs() {
  const viewer = window.starcompute && window.starcompute.viewer;
  return viewer ? Cesium.JulianDate.toDate(viewer.clock.currentTime).getTime() : Date.now();
}

// ------------------------------------------------------------------ telemetry
async function startConsole() {
  const { satellites } = await consoleJson("/api/constellation");
  const names = satellites.map((s) => s.name);
  for (const id of ["tm-satellite", "tc-satellite"]) {
    document.getElementById(id).innerHTML = names.map((n) => `<option>${esc(n)}</option>`).join("");
  }
  const { parameters } = await consoleJson("/api/telemetry");
  document.getElementById("tm-parameter").innerHTML = Object.entries(parameters).map(
    ([p, unit]) => `<option value="${p}">${p} (${esc(unit)})</option>`).join("");
  ops.satellite = names[0];
  document.getElementById("tm-satellite").onchange = (e) => { ops.satellite = e.target.value; refreshPlot(); };
  document.getElementById("tm-parameter").onchange = (e) => { ops.parameter = e.target.value; refreshPlot(); };
  document.getElementById("tc-send").onclick = sendCommand;
  const viewer = window.starcompute.viewer;
  viewer.selectedEntityChanged.addEventListener((entity) => {
    if (entity && entity.id.startsWith("sat/")) selectSatellite(entity.id.slice(4));
  });
  setInterval(refreshPlot, 3000);
  setInterval(refreshAlarms, 2000);
  setInterval(refreshCommands, 2000);
  setInterval(refreshTimeline, 2000);
  refreshPlot(); refreshAlarms(); refreshCommands(); refreshTimeline();
  ops.ready = true;
}

function selectSatellite(name) {
  ops.satellite = name;
  document.getElementById("tm-satellite").value = name;
  document.getElementById("tc-satellite").value = name;
  refreshPlot();
}

async function refreshPlot() {
  if (!ops.satellite) return;
  const url = `/api/telemetry/${encodeURIComponent(ops.satellite)}?parameter=${ops.parameter}&minutes=180`;
  const series = await consoleJson(url);
  ops.points = series.points.length;
  document.getElementById("tm-plot").innerHTML = plotSvg(series, 320, 130);
  const last = series.points[series.points.length - 1];
  document.getElementById("tm-last").textContent = last
    ? `last: ${last.value.toFixed(3)} ${series.unit}, measured ${last.measured.slice(11, 19)}, ` +
      `received ${last.t.slice(11, 19)} via ${last.station}`
    : "no telemetry received yet";
}

function plotSvg(series, width, height) {
  const pts = series.points;
  const pad = { l: 42, r: 6, t: 6, b: 18 };
  const limits = series.limits.flatMap((l) => [l.low, l.high]).filter((v) => v !== null);
  const values = pts.map((p) => p.value).concat(limits);
  if (!pts.length) return `<svg width="${width}" height="${height}"></svg>`;
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const t0 = Date.parse(pts[0].t), t1 = Math.max(Date.parse(pts[pts.length - 1].t), t0 + 1);
  const x = (t) => pad.l + (width - pad.l - pad.r) * (Date.parse(t) - t0) / (t1 - t0);
  const y = (v) => pad.t + (height - pad.t - pad.b) * (1 - (v - lo) / (hi - lo));
  const line = pts.map((p) => `${x(p.t).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
  const limitLines = series.limits.flatMap((l) => [l.low, l.high].filter((v) => v !== null).map((v) =>
    `<line x1="${pad.l}" x2="${width - pad.r}" y1="${y(v)}" y2="${y(v)}" class="limit ${l.severity}"/>`));
  const dots = pts.map((p) => `<circle cx="${x(p.t).toFixed(1)}" cy="${y(p.value).toFixed(1)}" r="2"/>`);
  return `<svg width="${width}" height="${height}" class="plot">` +
    `<text x="2" y="${pad.t + 8}">${hi.toPrecision(3)}</text>` +
    `<text x="2" y="${height - pad.b}">${lo.toPrecision(3)}</text>` +
    `<text x="${pad.l}" y="${height - 4}">${pts[0].t.slice(11, 16)}</text>` +
    `<text x="${width - 40}" y="${height - 4}">${pts[pts.length - 1].t.slice(11, 16)}</text>` +
    limitLines.join("") + `<polyline points="${line}"/>` + dots.join("") + `</svg>`;
}

async function refreshAlarms() {
  const { alarms } = await consoleJson("/api/alarms?active=true");
  ops.alarms = alarms.length;
  document.getElementById("alarms").innerHTML = alarms.length
    ? alarms.map((a) => `<div class="alarm ${a.severity}">${a.severity.toUpperCase()} ` +
        `${esc(a.satellite)} ${a.parameter} = ${a.last_value.toFixed(3)} ` +
        `(limit ${a.limit.low !== null ? "≥ " + a.limit.low.toFixed(3) : "≤ " + a.limit.high.toFixed(1)}) ` +
        `since ${a.raised.slice(11, 19)}</div>`).join("")
    : "no active alarms";
}

// ------------------------------------------------------------------ commands
async function sendCommand() {
  const status = document.getElementById("tc-status");
  let args;
  try {
    args = JSON.parse(document.getElementById("tc-args").value || "{}");
  } catch (error) {
    status.textContent = `args are not JSON: ${error.message}`;
    return;
  }
  const body = {
    satellite: document.getElementById("tc-satellite").value,
    command: document.getElementById("tc-command").value, args, wait: true,
  };
  try {
    const out = await consoleJson("/api/telecommands", {
      method: "POST", headers: { "Content-Type": "application/json", ...authHeader() },
      body: JSON.stringify(body),
    });
    status.textContent = `sent ${out.command_id}: arrives ${out.arrives.slice(11, 19)}`;
  } catch (error) {
    status.textContent = `refused: ${error.message}`;
  }
  refreshCommands();
}

function authHeader() {
  const key = document.getElementById("tc-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function refreshCommands() {
  const { commands } = await consoleJson("/api/telecommands?limit=8");
  ops.commands = commands;
  document.querySelector("#tc-history tbody").innerHTML = commands.map((c) =>
    `<tr class="${c.state}"><td>${esc(c.command_id || "—")}</td><td>${esc(c.satellite)}</td>` +
    `<td>${esc(c.command)}</td><td>${c.state}${c.reason ? ": " + esc(c.reason) : ""}</td>` +
    `<td>${c.sent.slice(11, 19)}</td></tr>`).join("");
}

// ------------------------------------------------------------------ pass timeline
// Ground passes per station (per antenna with `serve --antennas`: the passes the planner
// allocated to each), laser links open, the planned hops of requests in flight, a now-line.
async function refreshTimeline() {
  const doc = await consoleJson("/api/timeline?minutes=90&before=10");
  const canvas = document.getElementById("timeline");
  const ctx = canvas.getContext("2d");
  const width = canvas.width = canvas.clientWidth, height = canvas.height = canvas.clientHeight;
  // a row per station, or per antenna on a finite ground segment (the planner's allocation)
  const rowOf = (g) => g.antenna === undefined ? g.station : `${g.station} #${g.antenna + 1}`;
  const stations = [...new Set(doc.ground.map(rowOf))].sort();
  const rows = stations.concat(["laser links", "requests"]);
  const from = Date.parse(doc.span.from), to = Date.parse(doc.span.to);
  const left = 92, top = 14, rowH = Math.max(5, Math.floor((height - top) / rows.length));
  const x = (iso) => left + (width - left) * Math.min(Math.max((Date.parse(iso) - from) / (to - from), 0), 1);
  const bar = (a, b, row, minWidth = 1) =>
    ctx.fillRect(x(a), top + row * rowH + 1, Math.max(minWidth, x(b) - x(a)), rowH - 2);
  ctx.fillStyle = "#101317"; ctx.fillRect(0, 0, width, height);
  ctx.font = `${Math.min(10, rowH)}px system-ui`; ctx.textBaseline = "middle";
  rows.forEach((name, i) => {
    ctx.fillStyle = "#9aa"; ctx.fillText(name.slice(0, 15), 2, top + i * rowH + rowH / 2);
  });
  for (const g of doc.ground) {
    ctx.fillStyle = g.open ? "#4fc3f7" : "#2b6f8f";
    bar(g.aos, g.los, stations.indexOf(rowOf(g)));
  }
  // laser links: how many are open, as a step chart over the row
  const laserRow = stations.length, edges = [];
  for (const l of doc.isl) { edges.push([Date.parse(l.start), 1]); edges.push([Date.parse(l.end), -1]); }
  edges.sort((a, b) => a[0] - b[0]);
  let open = 0, last = from, most = 1;
  const steps = [];
  for (const [t, d] of edges) { steps.push([last, t, open]); open += d; most = Math.max(most, open); last = t; }
  steps.push([last, to, open]);
  ctx.fillStyle = "#ffd54f";
  for (const [a, b, n] of steps) {
    if (n <= 0) continue;
    const h = (rowH - 2) * n / most;
    ctx.fillRect(x(new Date(a).toISOString()), top + (laserRow + 1) * rowH - 1 - h,
      Math.max(1, x(new Date(b).toISOString()) - x(new Date(a).toISOString())), h);
  }
  ctx.fillStyle = "#ffb74d";
  for (const r of doc.requests) for (const h of r.hops) bar(h.depart, h.arrive, laserRow + 1, 2);
  const now = x(new Date(globeMs()).toISOString());
  ctx.strokeStyle = "#ff5252"; ctx.beginPath(); ctx.moveTo(now, 0); ctx.lineTo(now, height); ctx.stroke();
  ctx.fillStyle = "#aaa"; ctx.textBaseline = "top";
  ctx.fillText("passes (orbit time)", 2, 1);
  for (let t = Math.ceil(from / 9e5) * 9e5; t < to; t += 9e5) {
    const iso = new Date(t).toISOString();
    if (x(iso) > left + 4) ctx.fillText(iso.slice(11, 16), x(iso) + 2, 1);
  }
  ops.timeline = { passes: doc.ground.length, lasers: doc.isl.length, requests: doc.requests.length };
}

window.startConsole = startConsole;
