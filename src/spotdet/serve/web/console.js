// spotdet console: "Try it" (POST /predict or /predict/batch, boxes drawn here from the JSON) and the
// dashboard (polls GET /stats). Plain browser JavaScript, no build step, nothing loaded from elsewhere.
// URLs are relative, so the page also works behind a path prefix. The API key lives in this page's memory
// only and goes out as X-API-Key with every API call.
"use strict";

const TIMING_KEYS = ["decode_ms", "preprocess_ms", "infer_ms", "postprocess_ms", "queue_ms", "total_ms"];
const POLL_VISIBLE_MS = 1000;   // dashboard open
const POLL_HIDDEN_MS = 5000;    // only the header's model and state
const CHART_SPAN_S = 300;       // the charts show the last five minutes
const KEEP_POINTS = 900;

const state = {
  key: null,            // the API key typed in the page (never stored anywhere else)
  needsKey: false,
  files: [],
  lastBody: null,       // the last detection answer, for "Download JSON"
  series: [],           // dashboard points, oldest first
  lastPoint: null,      // "t" of the newest point held
  pollTimer: null,
};

const $ = (sel) => document.querySelector(sel);
const stat = (name) => document.querySelectorAll(`[data-stat="${name}"]`);

// ---- API calls ---------------------------------------------------------------------------------------
function headers() {
  return state.key ? { "X-API-Key": state.key } : {};
}

// The message of an error answer: the service sends {"error": "...", "status": N}; anything else (a proxy's
// HTML page, an {"error": {"message": ...}} body) is shown as best it can be.
async function errorMessage(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    const err = body.error !== undefined ? body.error : body.detail;
    if (typeof err === "string") return err;
    if (err && typeof err.message === "string") return err.message;
    return JSON.stringify(body);
  } catch (e) {
    return text.trim().slice(0, 300) || res.statusText;
  }
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!res.ok) {
    const message = await errorMessage(res);
    if (res.status === 401) askForKey(message);
    throw new ApiError(res.status, message);
  }
  return res.json();
}

function askForKey(message) {
  state.needsKey = true;
  $("#key-form").hidden = false;
  showBanner(state.key ? `The API key was refused: ${message}` : `This server needs an API key: ${message}`);
  $("#api-key").focus();
}

function showBanner(text) {
  const banner = $("#banner");
  banner.textContent = text || "";
  banner.hidden = !text;
}

// ---- tabs ---------------------------------------------------------------------------------------------
function currentTab() {
  return location.hash === "#dashboard" ? "dashboard" : "try";
}

function showTab() {
  const tab = currentTab();
  for (const section of document.querySelectorAll("section.tab")) section.hidden = section.id !== tab;
  for (const link of document.querySelectorAll("nav a[data-tab]")) {
    link.classList.toggle("active", link.dataset.tab === tab);
  }
  if (tab === "dashboard") drawCharts();
  schedulePoll(0);
}

// ---- Try it -------------------------------------------------------------------------------------------
function setFiles(list) {
  state.files = Array.from(list).filter((f) => f.size >= 0);
  $("#picked").textContent = state.files.length
    ? state.files.map((f) => `${f.name} (${(f.size / 1024).toFixed(0)} KB)`).join(", ")
    : "no image yet";
  $("#run").disabled = state.files.length === 0;
  if (state.files.length) detect();
}

function queryString() {
  const params = new URLSearchParams();
  const conf = $("#conf").value.trim();
  const classes = $("#classes").value.trim();
  const imgsz = $("#imgsz").value.trim();
  if (conf) params.set("conf", conf);
  if (classes) params.set("classes", classes);
  if (imgsz) params.set("imgsz", imgsz);
  if ($("#tile").checked) params.set("tile", "true");
  const text = params.toString();
  return text ? `?${text}` : "";
}

async function detect() {
  const files = state.files;
  if (!files.length) return;
  const one = files.length === 1;
  const form = new FormData();
  for (const f of files) form.append(one ? "image" : "images", f, f.name);
  const path = (one ? "predict" : "predict/batch") + queryString();
  $("#try-error").hidden = true;
  $("#request-summary").hidden = true;
  $("#results").replaceChildren();
  $("#results").dataset.state = "running";
  $("#download").disabled = true;
  $("#try-status").textContent = `detecting in ${files.length} image${one ? "" : "s"}…`;
  const started = performance.now();
  try {
    const body = await api(path, { method: "POST", body: form });
    const roundTrip = performance.now() - started;
    state.lastBody = body;
    const results = one ? [body] : body.results;
    $("#try-status").textContent = "";
    showSummary(body, results, roundTrip, path);
    await Promise.all(results.map((r, i) => showResult(r, files[i], i)));
    $("#download").disabled = false;
    $("#results").dataset.state = "done";
  } catch (err) {
    $("#try-status").textContent = "";
    const box = $("#try-error");
    box.textContent = err instanceof ApiError ? `HTTP ${err.status}: ${err.message}` : `Request failed: ${err.message}`;
    box.dataset.status = err instanceof ApiError ? String(err.status) : "network";
    box.hidden = false;
    $("#results").dataset.state = "error";
  }
  schedulePoll(0);
}

function showSummary(body, results, roundTrip, path) {
  const count = results.reduce((n, r) => n + r.detections.length, 0);
  const cost = body.cost_usd;
  const box = $("#request-summary");
  box.replaceChildren();
  box.append(
    el("strong", {}, `POST /${path.split("?")[0]}`), " · ",
    `${results.length} image${results.length === 1 ? "" : "s"}, ${count} detection${count === 1 ? "" : "s"} · `,
    el("span", { "data-field": "cost" }, `cost ${formatUsd(cost)}`), " · ",
    `round trip ${roundTrip.toFixed(0)} ms in the browser · model ${results[0] ? results[0].model : "?"}`,
    results[0] && results[0].precision ? ` (${results[0].precision})` : "",
  );
  box.hidden = false;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

// A class's colour chip. The colour goes in through the CSSOM (node.style), which the page's
// Content-Security-Policy allows; a style="..." attribute is inline style, which it refuses.
function swatch(color) {
  const node = el("span", { class: "swatch" });
  node.style.background = color;
  return node;
}

function classColor(id) {
  return `hsl(${(id * 137.508) % 360}, 80%, 48%)`;
}

async function showResult(result, file, index) {
  const labels = result.detections.map((d) => d.class_name);
  const card = el("article", {
    class: "result", "data-index": String(index), "data-count": String(result.detections.length),
    "data-labels": labels.join(","),
  });
  const canvas = el("canvas", { width: String(result.width), height: String(result.height) });
  const list = el("ul", { class: "detections" });
  for (const d of result.detections) {
    const b = d.box;
    list.append(el("li", {
      "data-class": d.class_name, "data-class-id": String(d.class_id), "data-score": String(d.confidence),
      "data-box": [b.x1, b.y1, b.x2, b.y2].join(","),
    },
      swatch(classColor(d.class_id)),
      `${d.class_name} ${d.confidence.toFixed(2)}`,
      el("span", { class: "box" }, `[${[b.x1, b.y1, b.x2, b.y2].map((v) => Math.round(v)).join(", ")}]`)));
  }
  if (!result.detections.length) list.append(el("li", { class: "muted" }, "no detections"));
  const inputs = (result.input_sizes && result.input_sizes.length > 1)
    ? `${result.input_sizes.length} passes` : (result.input_size ? result.input_size.join("×") : "?");
  card.append(
    el("h3", {}, `${file ? file.name : result.path || "image"} — ${result.width}×${result.height}, ` +
      `${result.detections.length} detection${result.detections.length === 1 ? "" : "s"}`),
    canvas,
    el("div", { class: "row" }, list, timingsTable(result)),
    el("div", { class: "muted small" },
      `network input ${inputs} · batch of ${result.batch_size} · cost ${formatUsd(result.cost_usd)}` +
      (result.notes && result.notes.length ? ` · ${result.notes.join("; ")}` : "")),
  );
  $("#results").append(card);
  await drawDetections(canvas, file, result);
  card.dataset.drawn = "true";
}

function timingsTable(result) {
  const table = el("table", { class: "timings" });
  for (const key of TIMING_KEYS) {
    const value = result.timings ? result.timings[key] : undefined;
    if (value === undefined) continue;
    const text = `${value.toFixed(value < 10 ? 2 : 1)} ms`;
    table.append(el("tr", { "data-timing": key }, el("td", {}, key), el("td", {}, text)));
  }
  return table;
}

async function drawDetections(canvas, file, result) {
  const ctx = canvas.getContext("2d");
  try {
    const bitmap = await createImageBitmap(file);  // EXIF orientation applied, as the server does
    ctx.drawImage(bitmap, 0, 0, result.width, result.height);
    bitmap.close();
  } catch (e) {  // the browser cannot decode it (the server could): boxes on a plain background
    ctx.fillStyle = "#333";
    ctx.fillRect(0, 0, result.width, result.height);
  }
  const scale = Math.max(result.width, result.height) / 640;
  const line = Math.max(2, Math.round(2 * scale));
  const font = Math.max(12, Math.round(14 * scale));
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  for (const d of result.detections) {
    const { x1, y1, x2, y2 } = d.box;
    const color = classColor(d.class_id);
    ctx.strokeStyle = color;
    ctx.lineWidth = line;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${d.class_name} ${d.confidence.toFixed(2)}`;
    const w = ctx.measureText(text).width + 8;
    const h = font + 6;
    const ty = y1 - h >= 0 ? y1 - h : y1;  // above the box, or inside it at the top edge
    ctx.fillStyle = color;
    ctx.fillRect(x1, ty, w, h);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x1 + 4, ty + 3);
  }
}

function download() {
  if (!state.lastBody) return;
  const blob = new Blob([JSON.stringify(state.lastBody, null, 2)], { type: "application/json" });
  const a = el("a", { href: URL.createObjectURL(blob), download: "spotdet-detections.json" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// ---- dashboard ----------------------------------------------------------------------------------------
function schedulePoll(delay) {
  clearTimeout(state.pollTimer);
  state.pollTimer = setTimeout(pollStats, delay);
}

async function pollStats() {
  if (state.needsKey && !state.key) return;  // wait for the key form
  const since = state.lastPoint !== null ? `?since=${state.lastPoint}` : "";
  try {
    const stats = await api(`stats${since}`);
    state.needsKey = false;
    if ($("#banner").textContent.startsWith("Cannot reach") || !$("#key-form").hidden) showBanner("");
    $("#key-form").hidden = !state.key;
    showStats(stats);
    schedulePoll(currentTab() === "dashboard" ? POLL_VISIBLE_MS : POLL_HIDDEN_MS);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;  // askForKey showed the form
    showBanner(`Cannot reach the service (${err.message}); retrying`);
    schedulePoll(POLL_HIDDEN_MS);
  }
}

function fmt(value, digits = 1, empty = "–") {
  return value === null || value === undefined || Number.isNaN(value) ? empty : Number(value).toFixed(digits);
}

function formatUsd(value) {
  if (value === null || value === undefined) return "–";
  if (value === 0) return "$0";
  return value < 0.01 ? `$${value.toPrecision(3)}` : `$${value.toFixed(4)}`;
}

function formatDuration(seconds) {
  if (seconds < 90) return `${seconds.toFixed(0)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function setStat(name, text, cls) {
  for (const node of stat(name)) {
    node.textContent = text;
    if (cls !== undefined) {
      node.classList.remove("warm", "loading", "cold");
      node.classList.add(cls);
    }
  }
}

function showStats(s) {
  const m = s.model;
  const now = s.now;
  const totals = s.totals;
  setStat("model-name", `${m.model} · ${m.precision}`);
  setStat("header-state", m.state, m.state);
  setStat("model", m.model);
  setStat("precision", m.precision);
  setStat("backend", m.backend || "not loaded");
  if (m.engine === "ray") {
    setStat("device", `Ray Serve: ${m.replicas} of ${m.replicas_target} replica(s) running ` +
      `(${m.min_replicas}-${m.max_replicas})`);
  } else {
    setStat("device", m.device ? `${m.device} · ${m.model_workers} worker(s)`
      : (m.last_error || "loads on the next request"));
  }
  setStat("state", s.draining ? `${m.state} (draining)` : m.state, m.state);
  setStat("cold-starts", fmt(s.cold_starts.count, 0));
  setStat("unloads", fmt(s.cold_starts.unloads, 0));
  setStat("last-cold-start", s.cold_starts.last_s === null ? "–" : `${s.cold_starts.last_s.toFixed(2)} s`);
  setStat("mean-cold-start", s.cold_starts.mean_s === null ? "–" : `${s.cold_starts.mean_s.toFixed(2)} s`);
  setStat("rps", fmt(now.rps, 2));
  setStat("images-per-s", fmt(now.images_per_s, 2));
  setStat("requests", fmt(totals.requests, 0));
  setStat("requests-ok", fmt(totals.requests_by_status["2xx"], 0));
  setStat("requests-4xx", fmt(totals.requests_by_status["4xx"], 0));
  setStat("requests-5xx", fmt(totals.requests_by_status["5xx"], 0));
  setStat("p50", fmt(now.p50_ms, 1));
  setStat("p95", fmt(now.p95_ms, 1));
  setStat("p50-total", fmt(totals.p50_ms, 1));
  setStat("p95-total", fmt(totals.p95_ms, 1));
  setStat("latency-window", fmt(s.windows_s.latency, 0));
  setStat("rate-window", fmt(s.windows_s.rate, 0));
  setStat("queue-depth", String(now.queue_depth));
  setStat("mean-batch", fmt(totals.mean_batch_size, 2));
  setStat("batches", fmt(totals.batches, 0));
  setStat("inflight-mb", fmt(now.inflight_mb, 1));
  setStat("rss-mb", fmt(totals.rss_mb, 0));
  setStat("busy-pct", fmt(now.busy_pct, 1));
  setStat("cpu-pct", fmt(now.cpu_pct, 1));
  setStat("cores", String(s.cpu_cores));
  setStat("gpu-pct", now.gpu_pct === null ? "none" : `${fmt(now.gpu_pct, 0)} %`);
  setStat("busy-s", fmt(totals.busy_s, 2));
  setStat("uptime", formatDuration(s.uptime_s));
  const priced = s.price.per_hour_usd > 0;
  setStat("cost-busy", priced ? formatUsd(s.cost.busy_usd) : "no price set");
  setStat("cost-reserved", s.cost.reserved_usd === null ? "–" : formatUsd(s.cost.reserved_usd));
  setStat("idle-share", s.cost.idle_share === null ? "–" : `${fmt(100 * s.cost.idle_share, 1)} %`);
  setStat("price", priced ? `price ${s.price.source || `$${s.price.per_hour_usd}/h`}`
    : "no price: start with --price-per-hour or --instance");
  state.batchSizes = s.batch_sizes;
  for (const p of s.series) state.series.push(p);
  if (state.series.length > KEEP_POINTS) state.series.splice(0, state.series.length - KEEP_POINTS);
  if (s.series.length) state.lastPoint = s.series[s.series.length - 1].t;
  document.body.dataset.statsAt = String(s.time);
  if (currentTab() === "dashboard") drawCharts();
}

// ---- charts (hand-drawn on canvas) --------------------------------------------------------------------
function prepareCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, w, h };
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 4, 8, 10]) if (value <= m * step) return m * step;  // quarters stay round
  return 10 * step;
}

// lines: [{key, label, color}]; fixedMax: e.g. 100 for percentages
function lineChart(canvas, points, lines, fixedMax) {
  const { ctx, w, h } = prepareCanvas(canvas);
  const pad = { l: 40, r: 10, t: 18, b: 18 };
  const end = points.length ? points[points.length - 1].t : Date.now() / 1000;
  // The last five minutes at most; a young history fills the width from one minute on.
  const span = points.length ? Math.min(CHART_SPAN_S, Math.max(60, end - points[0].t)) : CHART_SPAN_S;
  const start = end - span;
  const shown = points.filter((p) => p.t >= start);
  let top = 0;
  for (const p of shown) for (const line of lines) if (p[line.key] > top) top = p[line.key];
  const yMax = fixedMax || niceMax(top);
  const x = (t) => pad.l + (w - pad.l - pad.r) * (t - start) / span;
  const y = (v) => h - pad.b - (h - pad.t - pad.b) * Math.min(v, yMax) / yMax;
  ctx.strokeStyle = "#e6e9ef";
  ctx.fillStyle = "#6b7385";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = yMax * i / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(w - pad.r, y(v)); ctx.stroke();
    ctx.fillText(Number(v.toPrecision(3)).toString(), 4, y(v) - 6);
  }
  const tick = span > 150 ? 60 : span > 90 ? 30 : 15;
  for (let s = 0; s <= span; s += tick) {
    const label = s === 0 ? "now" : s % 60 === 0 ? `-${s / 60} min` : `-${s} s`;
    ctx.fillText(label, x(end - s) - ctx.measureText(label).width / 2 - (s === 0 ? 8 : 0), h - 4);
  }
  if (!shown.length) {
    ctx.fillText("no samples yet", w / 2 - 30, h / 2);
    return;
  }
  let legendX = pad.l + 4;
  for (const line of lines) {
    ctx.strokeStyle = line.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let prev = null;
    for (const p of shown) {
      const v = p[line.key];
      const gap = prev === null || v === null || v === undefined || p.t - prev > 3 * POLL_HIDDEN_MS / 1000;
      if (v === null || v === undefined) { prev = null; continue; }
      if (gap) ctx.moveTo(x(p.t), y(v)); else ctx.lineTo(x(p.t), y(v));
      prev = p.t;
    }
    ctx.stroke();
    const last = [...shown].reverse().find((p) => p[line.key] !== null && p[line.key] !== undefined);
    const text = `${line.label} ${last ? Number(last[line.key].toPrecision(3)) : "–"}`;
    ctx.fillStyle = line.color;
    ctx.fillRect(legendX, 5, 10, 3);
    ctx.fillStyle = "#1d2330";
    ctx.fillText(text, legendX + 14, 11);
    legendX += ctx.measureText(text).width + 30;
  }
}

function barChart(canvas, bars) {
  const { ctx, w, h } = prepareCanvas(canvas);
  const pad = { l: 40, r: 10, t: 10, b: 20 };
  if (!bars || !bars.length || bars.every((b) => !b.count)) {
    ctx.fillStyle = "#6b7385";
    ctx.fillText("no batches yet", w / 2 - 30, h / 2);
    return;
  }
  const yMax = niceMax(Math.max(...bars.map((b) => b.count)));
  const slot = (w - pad.l - pad.r) / bars.length;
  ctx.fillStyle = "#6b7385";
  ctx.strokeStyle = "#e6e9ef";
  for (let i = 0; i <= 4; i++) {
    const v = yMax * i / 4;
    const yy = h - pad.b - (h - pad.t - pad.b) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
    ctx.fillText(Number(v.toPrecision(3)).toString(), 4, yy + 4);
  }
  bars.forEach((b, i) => {
    const bh = (h - pad.t - pad.b) * b.count / yMax;
    ctx.fillStyle = "#2f6fde";
    ctx.fillRect(pad.l + i * slot + slot * 0.15, h - pad.b - bh, slot * 0.7, bh);
    ctx.fillStyle = "#1d2330";
    ctx.fillText(b.sizes, pad.l + i * slot + slot / 2 - ctx.measureText(b.sizes).width / 2, h - 6);
    if (b.count) {
      const label = String(b.count);
      ctx.fillText(label, pad.l + i * slot + slot / 2 - ctx.measureText(label).width / 2, h - pad.b - bh - 3);
    }
  });
}

function drawCharts() {
  const points = state.series;
  lineChart($("#chart-rate"), points, [
    { key: "rps", label: "requests/s", color: "#2f6fde" },
    { key: "images_per_s", label: "images/s", color: "#1e9e57" }]);
  lineChart($("#chart-latency"), points, [
    { key: "p50_ms", label: "p50", color: "#2f6fde" },
    { key: "p95_ms", label: "p95", color: "#d0452f" }]);
  const util = [{ key: "busy_pct", label: "model busy", color: "#8a3ffc" },
    { key: "cpu_pct", label: "CPU", color: "#d08a00" }];
  if (points.some((p) => p.gpu_pct !== null)) util.push({ key: "gpu_pct", label: "GPU", color: "#1e9e57" });
  lineChart($("#chart-util"), points, util, 100);
  lineChart($("#chart-queue"), points, [{ key: "queue_depth", label: "queued", color: "#d0452f" }]);
  barChart($("#chart-batches"), state.batchSizes);
}

// ---- wiring -------------------------------------------------------------------------------------------
function wire() {
  const drop = $("#drop");
  $("#files").addEventListener("change", (e) => {
    setFiles(e.target.files);
    e.target.value = "";  // picking the same file again is a new pick
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => setFiles(e.dataTransfer.files));
  $("#try-form").addEventListener("submit", (e) => { e.preventDefault(); detect(); });
  $("#download").addEventListener("click", download);
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("#api-key").value.trim() || null;
    state.needsKey = false;
    showBanner("");
    schedulePoll(0);
  });
  window.addEventListener("hashchange", showTab);
  window.addEventListener("resize", () => { if (currentTab() === "dashboard") drawCharts(); });
  showTab();
}

wire();
