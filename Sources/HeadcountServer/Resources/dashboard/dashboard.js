// Headcount's live dashboard: loads the current state over the JSON API, then follows
// /api/stream. No framework and no build step; every name from the server goes in as text.
"use strict";

const HOURS = 6;
const state = { rooms: new Map(), sensors: new Map(), events: new Map(), places: [], alerts: new Map() };
let stream = null;

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

async function getJSON(url, headers = {}) {
  const response = await fetch(url, { headers });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function replaceChildren(container, nodes, emptyText) {
  container.replaceChildren(...(nodes.length ? nodes : [el("p", { class: "empty" }, emptyText)]));
}

// Sensors: the number now and a line of the last hours, drawn as SVG.
async function loadSensors() {
  const { sensors } = await getJSON("/api/sensors");
  const to = new Date(), from = new Date(to - HOURS * 3600e3);
  state.sensors = new Map();
  await Promise.all(sensors.map(async (name) => {
    const path = `/api/sensors/${encodeURIComponent(name)}`;
    const [now, series] = await Promise.all([
      getJSON(`${path}/occupancy`),
      getJSON(`${path}/occupancy/series?from=${from.toISOString()}&to=${to.toISOString()}&bucket=5m`),
    ]);
    const points = series.series.map((b) => ({ t: Date.parse(b.start), v: b.last }));
    state.sensors.set(name, { inside: now.inside, points });
  }));
  renderSensors();
  fillUtilisationChoices();
}

function chart(points) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const end = Date.now(), start = end - HOURS * 3600e3;
  const visible = points.filter((p) => p.t >= start);
  const max = Math.max(1, ...visible.map((p) => p.v));
  const y = (v) => (46 - Math.max(0, v) / max * 44).toFixed(1);
  svg.setAttribute("viewBox", "0 0 300 48");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `occupancy over the last ${HOURS} hours`);
  const line = document.createElementNS(svg.namespaceURI, "polyline");
  line.setAttribute("points", visible.map((p) => `${((p.t - start) / (end - start) * 300).toFixed(1)},${y(p.v)}`).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2563eb");
  line.setAttribute("stroke-width", "2");
  svg.append(line);
  return svg;
}

function renderSensors() {
  const cards = [...state.sensors.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, s]) =>
    el("article", { class: "card", "data-sensor": name },
      // A count below zero shows as 0 (a sensor missed entries); the figure itself stays visible.
      el("h3", {}, name), el("div", { class: "big" }, Math.max(0, s.inside)),
      el("div", { class: "muted" }, s.inside < 0 ? `inside (counted ${s.inside}: needs a reset)` : "inside"), chart(s.points)));
  replaceChildren(document.getElementById("sensors"), cards, "No sensor has posted yet.");
}

// Rooms: who is inside, in order of arrival.
async function loadRooms() {
  const { rooms } = await getJSON("/api/rooms");
  state.rooms = new Map(rooms.map((r) => [r.room, r.occupants]));
  renderRooms();
}

function renderRooms() {
  const cards = [...state.rooms.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([room, people]) =>
    el("article", { class: "card", "data-room": room },
      el("h3", {}, room), el("div", { class: "big" }, people.length), el("div", { class: "muted" }, "inside"),
      el("ul", {}, ...people.map((name) => el("li", {}, name)))));
  replaceChildren(document.getElementById("rooms"), cards, "Nobody has registered in a room yet.");
}

// Events: seats taken of capacity, and the waitlist.
async function loadEvents() {
  const events = await getJSON("/events");
  state.events = new Map(events.map((e) => [e.eventId, e]));
  renderEvents();
}

function renderEvents() {
  const cards = [...state.events.values()].map((e) => {
    const share = Math.min(100, Math.round(e.confirmedCount / e.capacity * 100));
    return el("article", { class: "card", "data-event": e.eventId },
      el("h3", {}, e.title),
      el("div", { class: "muted" }, `${e.date} · ${e.location}`),
      el("div", { class: "bar" }, el("span", { class: share >= 100 ? "full" : "", style: `width:${share}%` })),
      el("div", {}, `${e.confirmedCount} of ${e.capacity} seats`, e.hasWaitlist ? ` · ${e.waitlistCount} waiting` : "",
        e.checkedInCount ? ` · ${e.checkedInCount} checked in` : ""));
  });
  replaceChildren(document.getElementById("events"), cards, "No events yet.");
}

// Places: the tree, each place with its doorway count and, with the admin key, the people the
// families name there and the difference. Reloaded (at most every half second) when anything
// that moves people changes.
async function loadPlaces() {
  const key = sessionStorage.getItem("adminKey");
  const { places } = await getJSON("/api/places");
  state.places = await Promise.all(places.slice(0, 200).map(async (place) => {
    const id = encodeURIComponent(place.id);
    const figures = key
      ? await getJSON(`/api/places/${id}/presence`, { "X-Admin-Token": key }).catch(() => getJSON(`/api/places/${id}/occupancy`))
      : await getJSON(`/api/places/${id}/occupancy`);
    return { ...place, ...figures, id: place.id };
  }));
  renderPlaces();
  fillUtilisationChoices();
}

let placesTimer = null;
function reloadPlaces() {
  clearTimeout(placesTimer);
  placesTimer = setTimeout(() => loadPlaces().catch((e) => console.error(e)), 500);
}

function renderPlaces() {
  const children = new Map();
  for (const place of state.places) children.set(place.parent_id, [...(children.get(place.parent_id) || []), place]);
  const row = (place, depth) => el("tr", { "data-place": place.id },
    el("td", { style: `padding-left:${8 + depth * 16}px` }, place.name),
    el("td", { class: "counted" }, place.counted ?? ""),
    el("td", { class: "named", title: (place.named || []).map((p) => p.name).join(", ") }, place.named ? place.named.length : "–"),
    el("td", { class: place.unaccounted ? "unaccounted off" : "unaccounted" },
      place.unaccounted === undefined ? "–" : place.unaccounted > 0 ? `+${place.unaccounted}` : place.unaccounted),
    el("td", {}, place.capacity ?? ""));
  const rows = [];
  const walk = (place, depth) => {
    rows.push(row(place, depth));
    for (const child of children.get(place.id) || []) walk(child, depth + 1);
  };
  // Roots first; a place whose parent is not listed (past the first 200) shows as a root.
  const ids = new Set(state.places.map((p) => p.id));
  for (const root of state.places.filter((p) => !p.parent_id || !ids.has(p.parent_id))) walk(root, 0);
  const head = el("tr", {}, ...["place", "counted", "named", "unaccounted", "capacity"].map((h) => el("th", {}, h)));
  document.getElementById("places").replaceChildren(rows.length
    ? el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows))
    : el("p", { class: "empty" }, "No places yet."));
}

// Utilisation: the hour-of-week heatmap and the daily averages of a sensor or a place over the
// last four weeks, in the browser's time zone. Reloaded when the choice changes.
function fillUtilisationChoices() {
  const select = document.getElementById("utilisation-subject");
  const chosen = select.value;
  const options = [...[...state.sensors.keys()].sort().map((s) => ["sensor:" + s, "sensor " + s]), ...state.places.map((p) => ["place:" + p.id, "place " + p.name])];
  select.replaceChildren(...options.map(([value, label]) => el("option", { value }, label)));
  if (options.some(([value]) => value === chosen)) select.value = chosen;
  if (select.value && select.value !== chosen) loadUtilisation().catch((e) => console.error(e));
}

async function loadUtilisation() {
  const choice = document.getElementById("utilisation-subject").value;
  if (!choice) return;
  const [kind, ...rest] = choice.split(":");
  const id = encodeURIComponent(rest.join(":"));
  const base = kind === "sensor" ? `/api/sensors/${id}` : `/api/places/${id}`;
  const to = new Date(), from = new Date(to - 28 * 864e5);
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const query = `from=${from.toISOString()}&to=${to.toISOString()}&tz=${encodeURIComponent(tz)}`;
  const [heatmap, daily] = await Promise.all([getJSON(`${base}/utilisation/heatmap?${query}`), getJSON(`${base}/utilisation?${query}&bucket=1d`)]);
  renderHeatmap(heatmap);
  renderDaily(daily);
}

const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

function renderHeatmap(heatmap) {
  const max = Math.max(1, ...heatmap.cells.map((c) => c.avg ?? 0));
  const grid = el("div", { class: "heatmap" }, el("span"), ...Array.from({ length: 24 }, (_, h) => el("span", { class: "hour" }, h % 3 ? "" : h)));
  for (let day = 1; day <= 7; day++) {
    grid.append(el("span", { class: "weekday" }, WEEKDAYS[day - 1]));
    for (const cell of heatmap.cells.filter((c) => c.weekday === day)) {
      const shade = cell.avg === null ? "transparent" : `rgba(37, 99, 235, ${(0.08 + 0.92 * Math.max(0, cell.avg) / max).toFixed(2)})`;
      const title = cell.suppressed ? "withheld (too few people)" : cell.avg === null ? "no data" : `avg ${cell.avg}, peak ${cell.peak}`;
      grid.append(el("span", { class: "cell", style: `background:${shade}`, title: `${WEEKDAYS[day - 1]} ${cell.hour}:00 — ${title}`,
        "data-weekday": cell.weekday, "data-hour": cell.hour, "data-avg": cell.avg ?? "" }));
    }
  }
  document.getElementById("heatmap").replaceChildren(grid);
}

function renderDaily(report) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const days = report.buckets;
  const max = Math.max(1, ...days.map((d) => d.peak ?? 0), report.capacity ?? 0);
  const width = 10;
  svg.setAttribute("viewBox", `0 0 ${days.length * width} 60`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "average (bar) and peak (tick) occupancy per day");
  days.forEach((day, i) => {
    if (day.avg === null) return;
    const bar = document.createElementNS(svg.namespaceURI, "rect");
    const height = Math.max(0, day.avg) / max * 56;
    for (const [k, v] of Object.entries({ x: i * width + 1, y: 58 - height, width: width - 2, height, fill: "#2563eb", "data-avg": day.avg, "data-start": day.start })) bar.setAttribute(k, v);
    const label = document.createElementNS(svg.namespaceURI, "title");
    label.textContent = `${day.start.slice(0, 10)}: avg ${day.avg}, peak ${day.peak}` + (day.avg_percent === null ? "" : ` (${day.avg_percent} % of capacity)`);
    bar.append(label);
    const tick = document.createElementNS(svg.namespaceURI, "rect");
    for (const [k, v] of Object.entries({ x: i * width + 1, y: 58 - Math.max(0, day.peak) / max * 56, width: width - 2, height: 1.5, fill: "#d97706" })) tick.setAttribute(k, v);
    svg.append(bar, tick);
  });
  document.getElementById("daily").replaceChildren(svg);
}

// Alerts: a banner listing what is active (a threshold crossed, a silent sensor, a count below zero).
async function loadAlerts() {
  const { alerts } = await getJSON("/api/alerts?active=true");
  state.alerts = new Map(alerts.map((a) => [a.id, a]));
  renderAlerts();
}

function renderAlerts() {
  const banner = document.getElementById("alerts");
  const active = [...state.alerts.values()].sort((a, b) => b.id - a.id);
  banner.hidden = active.length === 0;
  const describe = (a) => a.kind === "silent" ? `${a.subject} ${a.subject_id}: silent for ${a.value} min`
    : a.kind === "negative" ? `${a.subject} ${a.subject_id}: count below zero (${a.value})`
    : `${a.subject} ${a.subject_id}: ${a.kind}, ${a.value} of ${a.threshold}`;
  banner.replaceChildren(el("strong", {}, `${active.length} active alert${active.length === 1 ? "" : "s"}`),
    el("ul", {}, ...active.slice(0, 10).map((a) => el("li", { "data-alert": a.id }, describe(a), a.acked_by ? ` · acknowledged by ${a.acked_by}` : ""))));
}

// Devices: an admin's view of one tenant, with the key kept for this tab only.
async function loadDevices() {
  const key = sessionStorage.getItem("adminKey"), tenant = sessionStorage.getItem("tenant");
  const container = document.getElementById("devices");
  if (!key || !tenant) return;
  try {
    const { devices } = await getJSON(`/api/admin/devices?tenant_id=${encodeURIComponent(tenant)}`, { "X-Admin-Token": key });
    const rows = devices.map((d) => el("tr", {},
      el("td", {}, d.device_id), el("td", {}, d.is_active ? "active" : "deactivated"),
      el("td", {}, d.last_sync_at ? new Date(d.last_sync_at).toLocaleString() : "never synced")));
    container.replaceChildren(rows.length
      ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "device"), el("th", {}, "status"), el("th", {}, "last sync"))), el("tbody", {}, ...rows))
      : el("p", { class: "empty" }, `Tenant ${tenant} has no devices.`));
  } catch (error) {
    container.replaceChildren(el("p", { class: "empty" }, `Could not load devices (${error.message}).`));
  }
}

// The stream: each change updates the state it concerns.
const handlers = {
  "sensor.occupancy"(d) {
    const sensor = state.sensors.get(d.sensor) || { inside: 0, points: [] };
    sensor.inside = d.inside;
    sensor.points.push({ t: Date.now(), v: d.inside });
    state.sensors.set(d.sensor, sensor);
    renderSensors();
    flash(`[data-sensor="${CSS.escape(d.sensor)}"]`);
  },
  "room.register"(d) {
    const people = state.rooms.get(d.room) || [];
    if (!people.includes(d.name)) people.push(d.name);
    state.rooms.set(d.room, people);
    renderRooms();
    reloadPlaces();
  },
  "room.unregister"(d) {
    state.rooms.set(d.room, (state.rooms.get(d.room) || []).filter((name) => name !== d.name));
    renderRooms();
    reloadPlaces();
  },
  "event.created"(d) { state.events.set(d.eventId, d); renderEvents(); },
  "event.updated"(d) { state.events.set(d.eventId, d); renderEvents(); },
  "event.deleted"(d) { state.events.delete(d.eventId); renderEvents(); },
  "event.registration"(d) { updateCounts(d); },
  "event.check_in"(d) { updateCounts({ ...d.checkIn, checkedInCount: d.checkedInCount }); reloadPlaces(); },
  "event.cancellation"(d) { updateCounts(d); },
  "reservation.set": reloadPlaces,
  "alert.raised"(d) { state.alerts.set(d.id, d); renderAlerts(); },
  "alert.cleared"(d) { state.alerts.delete(d.id); renderAlerts(); },
  "alert.acknowledged"(d) { if (state.alerts.has(d.id)) { state.alerts.set(d.id, d); renderAlerts(); } },
  "device.registered": loadDevices,
  "device.deactivated": loadDevices,
  "attendance.sync"() { loadDevices(); reloadPlaces(); },
  "place.created": reloadPlaces,
  "place.updated": reloadPlaces,
  "place.deleted": reloadPlaces,
  "place.linked": reloadPlaces,
  "place.unlinked": reloadPlaces,
  "place.occupancy": reloadPlaces,
  reset: loadAll,
};

function updateCounts(d) {
  const event = state.events.get(d.eventId);
  if (!event) return;
  for (const key of ["capacity", "confirmedCount", "waitlistCount", "checkedInCount"]) if (d[key] !== undefined) event[key] = d[key];
  renderEvents();
}

function flash(selector) {
  const node = document.querySelector(selector);
  if (node) node.classList.add("flash");
}

function logChange(type, data) {
  const feed = document.getElementById("feed");
  feed.prepend(el("li", {}, new Date().toLocaleTimeString(), " ", el("code", {}, type), " ", data.slice(0, 120)));
  while (feed.children.length > 20) feed.lastChild.remove();
}

function connect() {
  if (stream) stream.close();
  const key = sessionStorage.getItem("adminKey");
  const topics = "rooms,sensors,events,reservations,places,alerts" + (key ? ",attendance" : "");
  stream = new EventSource(`/api/stream?topics=${topics}` + (key ? `&admin_key=${encodeURIComponent(key)}` : ""));
  const status = document.getElementById("connection");
  stream.onopen = () => { status.dataset.state = "live"; status.textContent = "live"; };
  stream.onerror = () => { status.dataset.state = "error"; status.textContent = "reconnecting…"; };
  for (const type of [...Object.keys(handlers), "attendance.deleted", "overflow"]) {
    stream.addEventListener(type, (message) => {
      logChange(type, message.data);
      const handler = handlers[type];
      if (handler) handler(message.data ? JSON.parse(message.data) : {});
    });
  }
}

async function loadAll() {
  await Promise.all([loadAlerts(), loadSensors(), loadPlaces(), loadRooms(), loadEvents(), loadDevices()].map((p) => p.catch((e) => console.error(e))));
}

document.getElementById("devices-form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  sessionStorage.setItem("adminKey", document.getElementById("admin-key").value);
  sessionStorage.setItem("tenant", document.getElementById("tenant").value.trim());
  loadDevices();
  loadPlaces().catch((e) => console.error(e));
  connect();
});

document.getElementById("utilisation-subject").addEventListener("change", () => loadUtilisation().catch((e) => console.error(e)));

// Subscribe first, so nothing that changes while the state loads is missed.
connect();
loadAll();
setInterval(renderSensors, 60e3); // the charts' time axis moves on
