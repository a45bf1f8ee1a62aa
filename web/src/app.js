// The starcompute dashboard: the constellation on a 3-D globe (CesiumJS, served by the
// gateway itself: NaturalEarthII imagery bundled with Cesium, no ion token, no CDN),
// satellites coloured by sunlight, ground stations, ground and laser links while they
// are open, day and night on the globe, each query's path as it travels, and panels of
// recent queries and batteries. Everything it fetches comes from the gateway.
"use strict";

const state = {
  viewer: null, source: null, ready: false, satellites: 0, paths: new Map(),
  plan: null, links: { ground: 0, laser: 0 },
  // the orbit clock as the server keeps it: orbit ms at a server wall ms, the rate, and the
  // server's wall clock less this page's (from the /healthz reading with the shortest trip)
  anchor: null, tickMs: 0,
};
window.starcompute = state;

async function start() {
  Cesium.Ion.defaultAccessToken = "";
  const imagery = await Cesium.TileMapServiceImageryProvider.fromUrl(
    Cesium.buildModuleUrl("Assets/Textures/NaturalEarthII"));
  const viewer = new Cesium.Viewer("globe", {
    baseLayer: new Cesium.ImageryLayer(imagery),
    baseLayerPicker: false, geocoder: false, homeButton: false, sceneModePicker: false,
    navigationHelpButton: false, fullscreenButton: false, infoBox: true, selectionIndicator: true,
    timeline: true, animation: true,
  });
  viewer.scene.globe.enableLighting = true; // day and night from the Sun's position
  state.viewer = viewer;
  state.source = new Cesium.CzmlDataSource();
  await viewer.dataSources.add(state.source);
  await syncClock();
  viewer.camera.flyHome(0);
  state.ready = true;
  setInterval(syncClock, 5000);
  setInterval(refreshQueries, 1000);
  setInterval(refreshBatteries, 10000);
  setInterval(refreshLinks, 2000);
  refreshQueries(); refreshBatteries(); refreshLinks();
}

// The scene's plan (positions, sunlight, links) for the mission plan the server runs now:
// loaded again whenever that plan rolls forward, so the globe never runs off its end.
async function loadPlan(plan) {
  await state.source.load("/api/czml");
  state.plan = plan;
  state.satellites = state.source.entities.values.filter((e) => e.id.startsWith("sat/")).length;
}

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// One clock: the globe's instant is the orbit clock's, computed at every frame from the
// server's clock (orbit = orbit_time + time_scale x wall seconds since), not advanced frame
// by frame, so a stalled frame or a slow reply never puts it ahead or behind. Pausing the
// animation widget frees the globe to be scrubbed; playing returns it to the live instant.
// Every panel reads the globe's instant.
async function syncClock() {
  const sent = Date.now();
  const health = await getJson("/healthz");
  const trip = Date.now() - sent;
  const plan = `${health.plan_start}/${health.plan_end}`;
  const left_s = (Date.parse(health.plan_end) - Date.parse(health.orbit_time)) / 1000;
  const skew = health.wall_time_unix_s * 1000 - (sent + trip / 2);
  if (!state.anchor || trip <= state.anchor.trip || Date.now() - state.anchor.at > 600000) {
    state.anchor = { trip, at: Date.now(), skew }; // the best estimate of the server's clock
  }
  Object.assign(state.anchor, {
    orbitMs: Date.parse(health.orbit_time), wallMs: health.wall_time_unix_s * 1000,
    scale: health.time_scale,
  });
  if (plan !== state.plan || (left_s < 600 && state.rolled !== plan)) {
    state.rolled = left_s < 600 ? plan : null; // near its end: /api/czml rolls the plan on
    await loadPlan(plan);
    const after = await getJson("/healthz");
    state.plan = `${after.plan_start}/${after.plan_end}`;
  }
  const clock = state.viewer.clock;
  if (!state.live) {
    state.live = true;
    clock.clockRange = Cesium.ClockRange.UNBOUNDED; // never loop back to the plan's start
    clock.clockStep = Cesium.ClockStep.SYSTEM_CLOCK_MULTIPLIER;
    clock.shouldAnimate = true;
    clock.onTick.addEventListener(followOrbit);
    followOrbit(clock);
  }
  clock.multiplier = health.time_scale;
  state.inFlight = health.in_flight;
}

function orbitNowMs() {
  const a = state.anchor;
  return a.orbitMs + a.scale * (Date.now() + a.skew - a.wallMs);
}

function followOrbit(clock) {
  if (!clock.shouldAnimate) return; // paused by the user: leave the globe where they put it
  const now = new Date(orbitNowMs());
  clock.currentTime = Cesium.JulianDate.fromDate(now);
  state.tickMs = Date.now();
  const text = `orbit time ${now.toISOString().slice(0, 19)}Z · ×${state.anchor.scale} · ` +
    `${state.inFlight} in flight`;
  if (text !== state.clockText) { // the panel shows the globe's instant
    state.clockText = text;
    document.getElementById("clock").textContent = text;
  }
}

function entityOf(name) {
  const entities = state.source.entities;
  return entities.getById(`sat/${name}`) || entities.getById(`gs/${name}`);
}

// A query's path: its whole planned route dim from the moment it is planned, and in
// orange the part travelled by the globe's instant, hop by hop on the planned hop times
// (the plan's: on the testbed the bundles' own times come back in the trace afterwards).
function drawPath(request) {
  const trace = request.trace;
  if (!trace || state.paths.has(request.id)) return;
  const names = trace.path_up.concat(trace.path_down.slice(1));
  const nodes = names.map(entityOf).filter((e) => e);
  if (nodes.length < 2) return;
  const at = (e, time) => e.position.getValue(time);
  const route = new Cesium.CallbackProperty((time) =>
    nodes.map((e) => at(e, time)).filter((p) => p), false);
  const hops = (trace.hops || []).map((h) => ({
    src: entityOf(h.src), dst: entityOf(h.dst),
    depart: Cesium.JulianDate.fromIso8601(h.depart), arrive: Cesium.JulianDate.fromIso8601(h.arrive),
  })).filter((h) => h.src && h.dst);
  const travelled = new Cesium.CallbackProperty((time) => {
    const points = [];
    for (const h of hops) {
      if (Cesium.JulianDate.lessThan(time, h.depart)) break;
      const a = at(h.src, time), b = at(h.dst, time);
      if (!a || !b) break;
      if (!points.length) points.push(a);
      const span = Cesium.JulianDate.secondsDifference(h.arrive, h.depart);
      const done = span > 0 ? Cesium.JulianDate.secondsDifference(time, h.depart) / span : 1;
      points.push(done >= 1 ? b : Cesium.Cartesian3.lerp(a, b, done, new Cesium.Cartesian3()));
      if (done < 1) break;
    }
    return points;
  }, false);
  const planned = state.viewer.entities.add({
    id: `query/${request.id}`,
    polyline: { positions: route, width: 2, arcType: Cesium.ArcType.NONE,
      material: Cesium.Color.ORANGE.withAlpha(0.35) },
  });
  const moving = state.viewer.entities.add({
    id: `query/${request.id}/travelled`,
    polyline: { positions: travelled, width: 4, arcType: Cesium.ArcType.NONE,
      material: new Cesium.PolylineGlowMaterialProperty({ color: Cesium.Color.ORANGE, glowPower: 0.25 }) },
  });
  state.paths.set(request.id, planned);
  setTimeout(() => {
    state.viewer.entities.remove(planned); state.viewer.entities.remove(moving);
    state.paths.delete(request.id);
  }, 30000);
}

function breakdown(t) {
  const total = t.total || 1;
  const parts = [
    ["wait", t.wait_for_contact + t.model_upload], ["link", t.uplink + t.isl + t.downlink],
    ["queue", t.queue], ["infer", t.inference]];
  return `<div class="bar">${parts.map(([c, v]) =>
    `<span class="${c}" style="width:${(100 * v / total).toFixed(1)}%"></span>`).join("")}</div>`;
}

async function refreshQueries() {
  const { requests } = await getJson("/api/requests?limit=12");
  const rows = requests.map((r) => {
    const t = r.trace ? r.trace.timings_s : null;
    if (r.trace) drawPath(r);
    return `<tr title="${r.status}"><td>${r.id.slice(9, 15)}</td>` +
      `<td>${r.trace ? r.trace.serving_satellite : r.status}</td>` +
      `<td>${t ? t.total.toFixed(1) : "—"}</td><td>${t ? breakdown(t) : ""}</td></tr>`;
  });
  document.querySelector("#queries tbody").innerHTML = rows.join("");
}

// Batteries as the telemetry received on the ground reports them (what the alarms read).
async function refreshBatteries() {
  const { satellites } = await getJson("/api/telemetry");
  const sats = Object.entries(satellites).map(([name, r]) => ({ name, ...r }))
    .filter((s) => typeof s.battery_soc === "number");
  const lit = sats.filter((s) => s.sunlit > 0.5).length;
  const low = [...sats].sort((a, b) => a.battery_soc - b.battery_soc).slice(0, 5);
  const mean = sats.reduce((a, s) => a + s.battery_soc, 0) / Math.max(sats.length, 1);
  document.getElementById("battery").innerHTML = !sats.length ? "no telemetry received yet" :
    `${sats.length} satellites reporting, ${lit} in sunlight; state of charge mean ` +
    `${(100 * mean).toFixed(1)} %, lowest:<br>` + low.map((s) =>
      `${s.name} <span class="soc" style="width:${(60 * s.battery_soc).toFixed(0)}px"></span> ` +
      `${(100 * s.battery_soc).toFixed(1)} % (received ${s.received.slice(11, 19)})`).join("<br>");
}

// The links the globe draws at its own instant (what the panel counts is what is drawn).
function linksDrawn(time) {
  const links = { ground: 0, laser: 0 };
  for (const e of state.source.entities.values) {
    if (!e.polyline || !e.isAvailable(time)) continue;
    if (e.id.startsWith("gl/")) links.ground += 1;
    else if (e.id.startsWith("isl/")) links.laser += 1;
  }
  return links;
}

async function refreshLinks() {
  const { ground } = await getJson("/api/contacts?minutes=30");
  const now = Cesium.JulianDate.clone(state.viewer.clock.currentTime);
  state.links = linksDrawn(now);
  state.linksAt = now; // the instant the panel counted
  const upcoming = ground.filter((g) => Cesium.JulianDate.lessThan(
    now, Cesium.JulianDate.fromIso8601(g.aos)));
  document.getElementById("links").innerHTML =
    `${state.links.ground} ground links open, ${state.links.laser} laser links; next passes:<br>` +
    upcoming.slice(0, 5).map((g) =>
      `${g.satellite} → ${g.station} at ${g.aos.slice(11, 19)}`).join("<br>");
}

start().then(() => window.startConsole()).catch((error) => {
  state.error = String(error);
  document.getElementById("clock").textContent = `dashboard error: ${error}`;
});
