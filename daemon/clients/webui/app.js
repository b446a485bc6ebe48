// dfwatch dashboard: one snapshot (/api/state), then server-sent events (/api/events).
"use strict";
const HISTORY_S = 600;
const state = { status: null, last: {}, alerts: new Map(), rates: {}, prev: null, threshold: null, reachable: false };
const charts = {};   // stream -> {plot, data}
window.dfwatch = { charts, state };

const $ = (sel) => document.querySelector(sel);
// a time with its zone (the browser's), so a time read off a screenshot means one instant
const WHEN = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
               hour12: false, timeZoneName: "short" };
const when = (t) => new Date(t * 1000).toLocaleString(undefined, WHEN);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

const COLOURS = ["#06c", "#d62", "#393", "#93c", "#c93", "#099", "#c39", "#666"];
const colour = (track) => COLOURS[Math.abs(track) % COLOURS.length];

// One chart per stream, one line per face track (a person): data[0] time, data[1] threshold,
// data[2 + k] the score of the chart's k-th track (null where the point is another track's, or no face).
function chart(stream) {
  if (charts[stream]) return charts[stream];
  const box = document.createElement("div");
  box.className = "timeline";
  box.dataset.stream = stream;
  box.innerHTML = `<h3>${esc(stream)}</h3><div class="tracks"></div>`;
  $("#timelines").appendChild(box);
  const data = [[], []];
  const plot = new uPlot({
    width: 560, height: 200,
    scales: { x: { time: true }, y: { range: [0, 1] } },
    series: [{}, { label: "threshold", stroke: "#c00", dash: [6, 4], points: { show: false } }],
  }, data, box);
  charts[stream] = { plot, data, box, tracks: [] };
  return charts[stream];
}

function trackLine(c, track) {  // the track's series, added the first time it has a point
  let k = c.tracks.indexOf(track);
  if (k >= 0) return k;
  c.tracks.push(track);
  k = c.tracks.length - 1;
  c.data.push(new Array(c.data[0].length).fill(null));
  c.plot.addSeries({ label: `track ${track}`, stroke: colour(track), width: 2, spanGaps: true,
                     points: { show: true } }, 2 + k);
  const tag = document.createElement("span");
  tag.className = "track"; tag.dataset.track = track; tag.style.borderColor = colour(track);
  tag.innerHTML = `<img alt="face of track ${track}" hidden> track ${track}`;
  c.box.querySelector(".tracks").appendChild(tag);
  return k;
}

function setThumbnail(stream, track, url) {
  const tag = chart(stream).box.querySelector(`.track[data-track="${track}"] img`);
  if (tag && url) { tag.src = url; tag.hidden = false; }
}

function addPoint(stream, t, score, threshold, track) {
  const c = chart(stream);
  const k = track === null || track === undefined ? -1 : trackLine(c, track);
  c.data[0].push(t); c.data[1].push(threshold);
  c.tracks.forEach((_, j) => c.data[2 + j].push(j === k ? score : null));
  let shifted = false;
  while (c.data[0].length && c.data[0][0] < t - HISTORY_S) { c.data.forEach((s) => s.shift()); shifted = true; }
  for (let j = c.tracks.length - 1; shifted && j >= 0; j--) {  // a track with no point left: its line goes
    if (c.data[2 + j].every((x) => x === null)) {
      c.plot.delSeries(2 + j); c.data.splice(2 + j, 1);
      const tag = c.box.querySelector(`.track[data-track="${c.tracks[j]}"]`);
      if (tag) tag.remove();
      c.tracks.splice(j, 1);
    }
  }
  c.plot.setData(c.data);
}

// what the threshold is worth: a site calibration says how many false alerts a camera-day it vouches for
function calibrationText(v) {
  if (!v.calibrated) return " uncalibrated";
  if (v.false_alerts_per_day == null) return " calibrated";
  const n = v.false_alerts_per_day, weak = n > 10;
  return ` calibrated: <span class="${weak ? "weak" : ""}" title="95 % upper bound from the calibration's footage` +
    `${weak ? ": too little footage for a tighter bound, record more and calibrate again" : ""}">` +
    `≤ ${n < 10 ? n.toFixed(2) : Math.round(n)} false alerts/camera-day${weak ? " (weak)" : ""}</span>`;
}

function renderStreams() {
  const s = state.status;
  const live = (state.reachable && s && s.streams) || {};
  const names = new Set([...Object.keys(state.last), ...Object.keys((s && s.streams) || {}),
                         ...[...state.alerts.values()].map((a) => a.stream)]);
  const rows = [...names].sort().map((name) => {
    // a stream the running daemon does not report (or any, while it is unreachable) is stopped
    const st = live[name] || { state: "stopped", dropped: (s && s.streams[name] && s.streams[name].dropped) || {} };
    const v = state.last[name];
    const dropped = Object.values(st.dropped || {}).reduce((a, b) => a + b, 0);
    const rate = state.rates[name] === undefined ? "" : state.rates[name].toFixed(1);
    const label = v ? v.label + (v.untrained ? "*" : "") : "";
    return `<tr data-stream="${esc(name)}"><td>${esc(name)}</td><td class="state-${esc(st.state || "")}">${esc(st.state || "")}` +
      `${st.detail ? " (" + esc(st.detail) + ")" : ""}</td><td>${rate}</td><td>${dropped}</td>` +
      `<td class="${v && v.label === "fake" ? "fake" : ""}">${esc(label)}</td><td>${v && v.score !== null ? v.score.toFixed(3) : ""}</td>` +
      `<td class="threshold">${v ? v.threshold.toFixed(3) + calibrationText(v) : ""}</td>` +
      `<td>${st.tracks === undefined ? "" : st.tracks}</td><td>${v ? v.faces + "/" + v.frames : ""}</td><td>${v ? esc(v.model) + (v.untrained ? " (untrained)" : "") : ""}</td></tr>`;
  });
  $("#streams tbody").innerHTML = rows.join("");
}

function renderAlerts() {
  const all = [...state.alerts.values()].sort((a, b) => (a.state === "end") - (b.state === "end") || b.t_start - a.t_start);
  if (!all.length) { $("#alerts").innerHTML = '<li class="none">none</li>'; return; }
  $("#alerts").innerHTML = all.map((a) => {
    const files = a.evidence || [];
    const sheet = files.find((f) => f.endsWith(".jpg"));
    const clip = files.find((f) => f.endsWith(".webm"));
    const ended = a.state !== "end" ? "OPEN since " + when(a.t_start)
      : `${when(a.t_start)} to ${a.t_end ? when(a.t_end) : "an unrecorded end (the daemon stopped)"}`;
    const who = a.track === null || a.track === undefined ? "" : ` track ${esc(a.track)}`;
    const review = a.review ? `<span class="review review-${esc(a.review)}">${a.review === "false_alarm" ? "false alarm" : "confirmed"}</span>` : "";
    const buttons = state.reviews ? `<span class="review-buttons"><button data-review="false_alarm">false alarm</button>` +
      `<button data-review="confirmed">confirmed</button></span>` : "";
    return `<li class="${a.state === "end" ? "ended" : "open"}" data-alert="${esc(a.alert_id)}" data-stream="${esc(a.stream)}">` +
      `<div><b>${esc(a.stream)}${who}</b> ` +
      `<span class="when">${esc(ended)}</span>: ${a.windows} fake window(s), peak ${a.peak_score.toFixed(3)}` +
      `${a.untrained ? " (untrained bundle)" : ""} ${review}<br><small>${esc(a.alert_id)}</small>${buttons}</div>` +
      (sheet ? `<img alt="faces" src="evidence/${sheet.split("/").map(encodeURIComponent).join("/")}">` : "") +
      (clip ? `<video controls muted preload="metadata" src="evidence/${clip.split("/").map(encodeURIComponent).join("/")}"></video>` : "") +
      `</li>`;
  }).join("");
}

function onStatus(s) {
  if (state.prev) {  // analysed frames/s from two successive status messages
    const dt = s.t - state.prev.t;
    for (const [name, st] of Object.entries(s.streams)) {
      const before = state.prev.streams[name];
      if (before && dt > 0) state.rates[name] = (st.analysed - before.analysed) / dt;
    }
  }
  state.prev = s; state.status = s; state.reachable = true;
  $("#model").textContent = `model ${s.model} (${s.backend}), up ${Math.round(s.uptime_s)} s`;
  $("#untrained").hidden = !(s.model.startsWith("demo-") || Object.values(state.last).some((v) => v.untrained));
  renderStreams();
}

function onVerdict(v) {
  state.last[v.stream] = v;
  addPoint(v.stream, v.t_last, v.score, v.threshold, v.track);
  if (v.thumbnail) setThumbnail(v.stream, v.track, v.thumbnail);
  if (v.untrained) $("#untrained").hidden = false;
  renderStreams();
}

function onAlert(a) { state.alerts.set(a.alert_id, a); renderAlerts(); }

// a person's review of an alert (only when the dashboard's token allows reviews)
document.addEventListener("click", async (e) => {
  const button = e.target.closest("button[data-review]");
  if (!button) return;
  const item = button.closest("li[data-alert]");
  const r = await fetch("api/reviews", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ alert_id: item.dataset.alert, stream: item.dataset.stream, review: button.dataset.review }) });
  if (r.ok) { const a = state.alerts.get(item.dataset.alert); if (a) { a.review = button.dataset.review; renderAlerts(); } }
});
function onDaemon(d) { state.reachable = d.reachable; $("#unreachable").hidden = d.reachable; renderStreams(); }

async function start() {
  const snap = await (await fetch("api/state")).json();
  state.reviews = Boolean(snap.reviews);
  onDaemon(snap);
  for (const [stream, points] of Object.entries(snap.history)) {
    const threshold = snap.last[stream] ? snap.last[stream].threshold : null;
    for (const p of points) addPoint(stream, p.t, p.score, threshold, p.track);
    for (const [track, url] of Object.entries((snap.thumbnails || {})[stream] || {})) setThumbnail(stream, track, url);
  }
  Object.assign(state.last, snap.last);
  for (const a of snap.alerts) state.alerts.set(a.alert_id, a);
  if (snap.status) onStatus(snap.status);
  renderStreams(); renderAlerts();
  const events = new EventSource("api/events");
  events.addEventListener("status", (e) => onStatus(JSON.parse(e.data)));
  events.addEventListener("verdict", (e) => onVerdict(JSON.parse(e.data)));
  events.addEventListener("alert", (e) => onAlert(JSON.parse(e.data)));
  events.addEventListener("daemon", (e) => onDaemon(JSON.parse(e.data)));
  events.onerror = () => { onDaemon({ reachable: false }); };
}
start();
