// The roll-call page, for a phone in the dark: large targets, and marks that survive the network
// going away. Each mark is queued in localStorage with the time it was made and sent until the
// server has it; the server keeps the mark made last, so a late mark never undoes a newer one.
"use strict";

const params = new URLSearchParams(location.search);
const rollCallId = params.get("id");
const queueKey = `headcount-roll-call-${rollCallId}`;
let rollCall = null;

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

const adminKey = () => sessionStorage.getItem("adminKey");
const marker = () => localStorage.getItem("headcount-marker") || "phone";

async function api(method, path, body) {
  const response = await fetch(path, {
    method, headers: { "X-Admin-Token": adminKey() || "", "Content-Type": "application/json" }, body: body && JSON.stringify(body),
  });
  if (!response.ok) {
    const error = new Error(`${method} ${path}: ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.headers.get("Content-Type")?.startsWith("text/csv") ? response.blob() : response.json();
}

function status(state, text) {
  const pill = document.getElementById("connection");
  pill.dataset.state = state;
  pill.textContent = text;
}

// Without an id: the open roll calls, and a roll call to start for any place.
async function showIndex() {
  const [{ roll_calls: open }, { places }] = await Promise.all([api("GET", "/api/roll-calls?open=true"), api("GET", "/api/places")]);
  const start = async (place) => {
    const started = await api("POST", `/api/places/${encodeURIComponent(place.id)}/roll-calls`);
    location.search = `?id=${encodeURIComponent(started.id)}`;
  };
  document.getElementById("content").replaceChildren(
    el("h2", {}, "Open roll calls"),
    open.length ? el("ul", { class: "links" }, ...open.map((r) =>
      el("li", {}, el("a", { href: `?id=${encodeURIComponent(r.id)}` }, `${r.place_name} · ${new Date(r.at).toLocaleTimeString()}`)))) : el("p", { class: "empty" }, "None."),
    el("h2", {}, "Start one"),
    el("div", { class: "choices" }, ...places.map((place) => el("button", { type: "button", class: "big-button", onclick: () => start(place) }, place.name))));
  status("live", "ready");
}

// The queue of marks not yet acknowledged, oldest first.
const queued = () => JSON.parse(localStorage.getItem(queueKey) || "[]");
const saveQueue = (marks) => localStorage.setItem(queueKey, JSON.stringify(marks));

function mark(person, value) {
  const made = { key: person.key, status: value, by: marker(), marked_at: new Date().toISOString() };
  saveQueue([...queued().filter((m) => m.key !== person.key), made]);
  Object.assign(person, { status: value, marked_by: made.by, marked_at: made.marked_at });
  render();
  flush();
}

let flushing = false;
async function flush() {
  if (flushing || !rollCall) return;
  flushing = true;
  const same = (a, b) => a.key === b.key && a.marked_at === b.marked_at;
  try {
    for (const made of queued()) {
      let answer = null;
      try {
        answer = await api("PUT", `/api/roll-calls/${encodeURIComponent(rollCallId)}/people/${encodeURIComponent(made.key)}`, made);
        status("live", "live");
      } catch (error) {
        if (!error.status || error.status >= 500) { status("error", "offline: marks kept"); break; }
      }
      saveQueue(queued().filter((m) => !same(m, made)));
      // The answer is the mark that stands; a refusal (a closed roll call) means reading it again.
      if (answer) Object.assign(person(made.key) || {}, answer); else await load().catch(() => {});
    }
  } finally {
    flushing = false;
    render();
  }
}

const person = (key) => rollCall?.people.find((p) => p.key === key);

function render() {
  if (!rollCall) return;
  const waiting = queued().length;
  const pending = document.getElementById("pending");
  pending.hidden = waiting === 0;
  pending.textContent = `${waiting} mark${waiting === 1 ? "" : "s"} waiting for the network`;
  const safe = rollCall.people.filter((p) => p.status === "safe").length;
  const missing = rollCall.people.filter((p) => p.status === "missing").length;
  const closed = Boolean(rollCall.closed_at);
  const rows = rollCall.people.map((p) => el("li", { class: `person ${p.status}`, "data-key": p.key },
    el("div", { class: "who" }, el("strong", {}, p.name), el("small", {}, `${p.source} · ${p.place_id}`)),
    el("div", { class: "marks" },
      el("button", { type: "button", class: "safe", "aria-pressed": String(p.status === "safe"), onclick: () => mark(p, "safe") }, "Safe"),
      el("button", { type: "button", class: "missing", "aria-pressed": String(p.status === "missing"), onclick: () => mark(p, "missing") }, "Missing"))));
  for (const button of rows.flatMap((r) => [...r.querySelectorAll("button")])) button.disabled = closed;
  const download = async () => {
    const blob = await api("GET", `/api/roll-calls/${encodeURIComponent(rollCallId)}.csv`);
    const link = el("a", { href: URL.createObjectURL(blob), download: `roll-call-${rollCallId}.csv` });
    link.click();
  };
  const close = async () => { rollCall = await api("POST", `/api/roll-calls/${encodeURIComponent(rollCallId)}/close`); render(); };
  document.getElementById("content").replaceChildren(
    el("h2", {}, rollCall.place_name, " ", el("small", {}, closed ? "closed" : `since ${new Date(rollCall.at).toLocaleTimeString()}`)),
    el("p", { class: "tally" }, el("span", { class: "safe" }, `${safe} safe`), " · ", el("span", { class: "missing" }, `${missing} missing`), " · ",
      `${rollCall.people.length - safe - missing} unmarked · sensors counted ${rollCall.counted}`),
    el("ul", { class: "people" }, ...rows),
    el("div", { class: "choices" },
      el("button", { type: "button", class: "big-button", onclick: download }, "Export CSV"),
      closed ? "" : el("button", { type: "button", class: "big-button", onclick: close }, "Close roll call")));
}

async function load() {
  rollCall = await api("GET", `/api/roll-calls/${encodeURIComponent(rollCallId)}`);
  // Marks still queued here are newer than what the server had when they were made.
  for (const made of queued()) Object.assign(person(made.key) || {}, { status: made.status, marked_at: made.marked_at, marked_by: made.by });
  render();
}

function follow() {
  const stream = new EventSource(`/api/stream?topics=rollcalls&admin_key=${encodeURIComponent(adminKey())}`);
  stream.onopen = () => { status("live", "live"); flush(); };
  stream.onerror = () => status("error", "offline: marks kept");
  stream.addEventListener("rollcall.marked", (message) => {
    const change = JSON.parse(message.data);
    const current = change.roll_call_id === rollCallId && person(change.person.key);
    if (current && !(Date.parse(current.marked_at) > Date.parse(change.person.marked_at))) { Object.assign(current, change.person); render(); }
  });
  stream.addEventListener("rollcall.closed", (message) => { if (JSON.parse(message.data).roll_call_id === rollCallId) load(); });
  stream.addEventListener("reset", () => load());
}

async function start() {
  try {
    if (!rollCallId) return await showIndex();
    await load();
    follow();
  } catch (error) {
    if (error.status === 401) { sessionStorage.removeItem("adminKey"); return askKey(); }
    document.getElementById("content").replaceChildren(el("p", { class: "empty" }, `Could not load (${error.message}).`));
  }
}

function askKey() {
  const form = document.getElementById("key-form");
  form.hidden = false;
  document.getElementById("marker").value = localStorage.getItem("headcount-marker") || "";
  document.getElementById("content").replaceChildren();
  status("error", "admin key needed");
  form.onsubmit = (submit) => {
    submit.preventDefault();
    sessionStorage.setItem("adminKey", document.getElementById("admin-key").value);
    localStorage.setItem("headcount-marker", document.getElementById("marker").value.trim() || "phone");
    form.hidden = true;
    start();
  };
}

window.addEventListener("online", flush);
setInterval(flush, 3000);
if (adminKey()) start(); else askKey();
