/* sensorpipe dashboard: plain JavaScript, no build step.

   Reads the JSON API with the operator's API key (X-API-Key, kept in localStorage) and follows
   the live stream at /api/v1/stream. EventSource cannot send headers, so the stream is read with
   fetch() and parsed here; it reconnects with jittered exponential backoff.

   Test hooks: #sensor-table[data-count|data-shown], #chart[data-readings|data-forecast|data-band|
   data-anomalies|data-markers|data-drawn|data-bucket], #alert-rows tr[data-event-id|data-state|
   data-value], #alert-table[data-count|data-open] and body[data-view|data-stream|data-batches|
   data-batch-ms-mean|data-batch-ms-max|data-lag-ms] expose what is drawn and how fast, so a
   browser test or benchmark can check the page's state without reading pixels. */
(() => {
  "use strict";

  const KEY_STORAGE = "sensorpipe.apiKey";
  const STREAM_URL = "api/v1/stream";
  // Raw readings up to an hour; longer ranges read buckets built from the 1-minute rollups,
  // sized so a range is at most ~1500 points.
  const BUCKET_FOR_RANGE = { 900: null, 3600: null, 21600: "1m", 86400: "1m", 604800: "15m" };
  const PAGE_LIMIT = 10000;
  const MAX_PAGES = 8;
  const FORECAST_REFRESH_MAX_MS = 30000;
  const FORECAST_REFRESH_MIN_MS = 5000;
  const ROLLUP_REFRESH_MS = 60000;
  const MAX_SERIES_POINTS = 20000;
  const MAX_ALERTS = 200;
  const COLORS = {
    readings: "#0b5cad", forecast: "#7b3fb5", band80: "rgba(123,63,181,0.30)",
    band95: "rgba(123,63,181,0.13)", bound: "rgba(123,63,181,0.45)", anomaly: "#c4160a",
    now: "#4a5059",
  };
  const STATUS_TEXT = { ok: "OK", alerting: "Alerting", silent: "Silent" };
  const STATUS_ICON = { ok: "●", alerting: "▲", silent: "○" };
  const STATUS_RANK = { alerting: 0, silent: 1, ok: 2 };

  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    Object.assign(node, props);
    for (const c of children) node.append(c);
    return node;
  };

  const S = {
    key: null,
    skewS: 0, // server clock minus browser clock
    sensors: new Map(), // id -> sensor record (see sensorRecord)
    rows: new Map(), // id -> {tr, cells}
    order: [],
    selected: null,
    rangeS: 3600,
    bucket: null,
    series: { t: [], v: [] },
    forecast: [],
    forecastModel: null,
    forecastIntervalS: null,
    maxHorizon: 288,
    predictForbidden: false,
    alerts: new Map(), // event_id -> event of the selected sensor
    plot: null,
    drawn: 0,
    streamCtl: null,
    streamGen: 0,
    batches: 0,
    batchMsMax: 0,
    batchMsTotal: 0,
    loadGen: 0,
    timers: [],
    overviewDirty: true,
  };

  // ------------------------------------------------------------------ time and formatting

  const nowS = () => Date.now() / 1000 + S.skewS;
  const toEpoch = (x) => (typeof x === "number" ? x : Date.parse(x) / 1000);
  const isoOf = (s) => new Date(s * 1000).toISOString();

  function fmtAge(s) {
    if (s == null || !isFinite(s)) return "never";
    s = Math.max(0, s);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function fmtNum(v) {
    if (v == null || !isFinite(v)) return "—";
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
    return v.toFixed(a >= 100 ? 1 : a >= 10 ? 2 : 3);
  }

  const fmtTime = (s) => new Date(s * 1000).toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });

  // ------------------------------------------------------------------ API client

  class ApiError extends Error {
    constructor(status, code, message, extra = {}) {
      super(message);
      this.status = status;
      this.code = code;
      this.extra = extra;
    }
  }

  async function api(path, { method = "GET", body, signal } = {}) {
    const headers = { "X-API-Key": S.key, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, signal, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "network", "the API cannot be reached");
    }
    let doc = null;
    try { doc = await resp.json(); } catch { doc = null; }
    if (!resp.ok) {
      const e = (doc && doc.error) || {};
      throw new ApiError(resp.status, e.code || `http_${resp.status}`,
        e.message || (doc && typeof doc.detail === "string" ? doc.detail : resp.statusText), e);
    }
    return doc;
  }

  function authProblem(err) {
    if (!(err instanceof ApiError)) return null;
    if (err.status === 401) return `The API key was refused (401): ${err.message}. Enter a valid key.`;
    if (err.status === 403) {
      return `This API key is not allowed to read the dashboard data (403): ${err.message}. ` +
        "Use a key with the reports:read scope.";
    }
    return null;
  }

  function describe(err) {
    if (err instanceof ApiError) {
      if (err.status === 0) return "The API cannot be reached; retrying.";
      return `${err.message} (${err.status} ${err.code})`;
    }
    return String(err && err.message ? err.message : err);
  }

  // ------------------------------------------------------------------ response adapters
  // The API's JSON is read in these few functions only.

  const listOf = (doc, ...names) => {
    if (Array.isArray(doc)) return doc;
    for (const n of names) if (doc && Array.isArray(doc[n])) return doc[n];
    return [];
  };

  function sensorRecord(raw, old) {
    const r = old || { id: raw.sensor_id, openAlerts: new Map(), lastT: null, lastValue: null };
    r.type = raw.sensor_type ?? r.type ?? null;
    r.unit = raw.unit ?? r.unit ?? null;
    r.location = raw.location ?? r.location ?? null;
    r.description = raw.description ?? r.description ?? null;
    r.expectedIntervalS = raw.expected_interval_s ?? r.expectedIntervalS ?? null;
    const seen = raw.last_reading_time ?? raw.last_seen_at;
    const value = raw.last_reading_value;
    if (seen != null && (r.lastT == null || toEpoch(seen) >= r.lastT)) {
      r.lastT = toEpoch(seen);
      if (value != null) r.lastValue = value;
    }
    return r;
  }

  /** Raw items are {time, value}; bucketed ones {time, n, mean, min, max, stddev}. */
  function readingPoints(items) {
    const t = [], v = [];
    for (const p of items) {
      const value = p.value ?? p.mean;
      if (p.time == null || value == null) continue;
      t.push(toEpoch(p.time));
      v.push(value);
    }
    return { t, v };
  }

  const forecastPoints = (doc) => listOf(doc, "points").map((p) => ({
    t: toEpoch(p.timestamp), mean: p.mean,
    lo80: p.lower_80, hi80: p.upper_80, lo95: p.lower_95, hi95: p.upper_95,
  }));

  // A stored incident has opened_at; a live event has the time of the reading that raised it.
  const eventTime = (ev) => toEpoch(ev.timestamp ?? ev.opened_at ?? ev.emitted_at);

  /** Every item of a cursor-paged list endpoint, up to MAX_PAGES pages. */
  async function allPages(path, params) {
    const items = [];
    const q = new URLSearchParams(params);
    for (let page = 0; page < MAX_PAGES; page++) {
      const doc = await api(`${path}?${q}`);
      items.push(...listOf(doc, "items"));
      if (!doc.next_cursor) break;
      q.set("cursor", doc.next_cursor);
    }
    return items;
  }

  // ------------------------------------------------------------------ views

  function setView(view) {
    document.body.dataset.view = view;
    $("key-panel").hidden = view !== "key";
    $("workspace").hidden = view === "key";
    $("sensor-view").hidden = view !== "sensor";
    $("change-key").hidden = view === "key";
  }

  function setConn(state, text) {
    $("conn").dataset.state = state;
    $("conn-text").textContent = text;
    document.body.dataset.stream = state;
  }

  function askForKey(message) {
    stopStream();
    S.key = null;
    setConn("idle", "Not connected");
    setView("key");
    $("key-error").textContent = message || "";
    $("key-input").value = "";
    $("key-input").focus();
  }

  async function useKey(key) {
    S.key = key;
    S.predictForbidden = false;
    $("key-error").textContent = "";
    try {
      await loadSensors();
    } catch (err) {
      const problem = authProblem(err);
      if (problem) {
        localStorage.removeItem(KEY_STORAGE);
        askForKey(problem);
        return;
      }
      $("overview-error").textContent = `Sensors could not be loaded: ${describe(err)}`;
    }
    localStorage.setItem(KEY_STORAGE, key);
    startStream();
    route();
  }

  // ------------------------------------------------------------------ overview

  async function loadSensors() {
    // Both requests settle before either's error is reported: a refused key then has no request
    // of its own still in flight when the key form asks again (its late 401 would otherwise
    // land after the form, and be logged against the next key).
    const settled = await Promise.allSettled([
      allPages("api/v1/sensors", { limit: "1000" }),
      // Open incidents may be old: look back as far as the API allows.
      allPages("api/v1/anomalies", {
        state: "open", limit: "1000", from: isoOf(nowS() - 365 * 86400),
      }),
    ]);
    const failed = settled.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    const [sensors, open] = settled.map((r) => r.value);
    const seen = new Set();
    for (const raw of sensors) {
      seen.add(raw.sensor_id);
      S.sensors.set(raw.sensor_id, sensorRecord(raw, S.sensors.get(raw.sensor_id)));
    }
    for (const id of [...S.sensors.keys()]) {
      if (!seen.has(id) && S.sensors.get(id).lastT == null) S.sensors.delete(id);
    }
    for (const s of S.sensors.values()) s.openAlerts.clear();
    for (const ev of open) applyAlertToSensor(ev);
    $("overview-error").textContent = "";
    setView(S.selected ? "sensor" : "overview");
    S.overviewDirty = true;
    renderOverview();
  }

  function statusOf(s, now) {
    let anomaly = false, deadman = false;
    for (const a of s.openAlerts.values()) {
      if (a.kind === "deadman") deadman = true; else anomaly = true;
    }
    if (anomaly) return "alerting";
    if (deadman || s.lastT == null) return "silent";
    const silentAfter = Math.max(30, 5 * (s.expectedIntervalS || 12));
    return now - s.lastT > silentAfter ? "silent" : "ok";
  }

  function badge(node, status) {
    node.className = `badge badge-${status}`;
    node.textContent = `${STATUS_ICON[status]} ${STATUS_TEXT[status]}`;
    node.setAttribute("aria-label", `Status: ${STATUS_TEXT[status]}`);
  }

  function rowFor(s) {
    let row = S.rows.get(s.id);
    if (row) return row;
    const link = el("a", { href: `#/sensor/${encodeURIComponent(s.id)}`, textContent: s.id });
    const cells = {
      status: el("span"), link, type: el("td"), unit: el("td"),
      value: el("td", { className: "num" }), age: el("td", { className: "num" }),
    };
    const tr = el("tr", {}, el("td", {}, cells.status), el("td", {}, link),
      cells.type, cells.unit, cells.value, cells.age);
    tr.dataset.sensor = s.id;
    row = { tr, cells, status: null, value: undefined, age: null };
    S.rows.set(s.id, row);
    return row;
  }

  function matches(s, status, query, wanted) {
    if (wanted && status !== wanted) return false;
    if (!query) return true;
    return [s.id, s.type, s.unit, s.location, s.description]
      .some((f) => f && String(f).toLowerCase().includes(query));
  }

  function renderOverview() {
    const now = nowS();
    const query = $("search").value.trim().toLowerCase();
    const wanted = $("status-filter").value;
    const counts = { ok: 0, alerting: 0, silent: 0 };
    const visible = [];
    for (const s of S.sensors.values()) {
      const status = statusOf(s, now);
      counts[status] += 1;
      const row = rowFor(s);
      updateRow(row, s, status, now);
      if (matches(s, status, query, wanted)) visible.push([STATUS_RANK[status], s.id, row]);
    }
    visible.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    const order = visible.map((v) => v[1]);
    if (S.overviewDirty || order.join("\n") !== S.order.join("\n")) {
      $("sensor-rows").replaceChildren(...visible.map((v) => v[2].tr));
      S.order = order;
      S.overviewDirty = false;
    }
    const total = S.sensors.size;
    $("sensor-table").dataset.count = String(total);
    $("sensor-table").dataset.shown = String(visible.length);
    $("overview-empty").hidden = visible.length > 0 || total === 0;
    $("summary").textContent = total === 0
      ? "No sensors yet: they appear with their first reading."
      : `${total} sensors: ${counts.alerting} alerting, ${counts.silent} silent, ${counts.ok} OK` +
        (visible.length !== total ? ` (${visible.length} shown)` : "");
  }

  function updateRow(row, s, status, now) {
    const c = row.cells;
    if (row.status !== status) {
      badge(c.status, status);
      row.status = status;
    }
    const unit = s.unit || "";
    if (c.type.textContent !== (s.type || "—")) c.type.textContent = s.type || "—";
    if (c.unit.textContent !== (unit || "—")) c.unit.textContent = unit || "—";
    if (row.value !== s.lastValue) {
      c.value.textContent = fmtNum(s.lastValue);
      row.value = s.lastValue;
    }
    const age = s.lastT == null ? "never" : fmtAge(now - s.lastT);
    if (row.age !== age) {
      c.age.textContent = age;
      c.age.classList.toggle("age-stale", status === "silent");
      row.age = age;
    }
    row.tr.setAttribute("aria-current", s.id === S.selected ? "true" : "false");
  }

  // ------------------------------------------------------------------ alerts

  function applyAlertToSensor(ev) {
    let s = S.sensors.get(ev.sensor_id);
    if (!s) {
      s = sensorRecord({ sensor_id: ev.sensor_id });
      S.sensors.set(ev.sensor_id, s);
    }
    if (ev.state === "resolved") s.openAlerts.delete(ev.event_id);
    else s.openAlerts.set(ev.event_id, ev);
  }

  function mergeAlert(ev) {
    const old = S.alerts.get(ev.event_id);
    // Keep the first time and value of the incident as its marker; later updates refresh the rest.
    const markers = old ? old._markers : [];
    const t = eventTime(ev);
    // A stored incident (it has updated_at) marks where it opened, even once resolved; a live
    // "resolved" event carries the calm reading that closed the incident, not an anomaly.
    const anomalous = ev.updated_at !== undefined || ev.state !== "resolved";
    if (ev.value != null && anomalous && !markers.some((m) => m.t === t)) {
      markers.push({ t, value: ev.value, score: ev.score });
    }
    S.alerts.set(ev.event_id, { ...(old || {}), ...ev, _markers: markers });
    if (S.alerts.size > MAX_ALERTS) {
      const oldest = [...S.alerts.values()].sort((a, b) => eventTime(a) - eventTime(b))[0];
      S.alerts.delete(oldest.event_id);
    }
  }

  function renderAlerts() {
    const list = [...S.alerts.values()].sort((a, b) =>
      (a.state === "resolved") - (b.state === "resolved") || eventTime(b) - eventTime(a));
    const rows = list.map((ev) => {
      const sev = el("span");
      sev.className = `badge badge-${ev.severity === "critical" ? "critical" : "warning"}`;
      sev.textContent = ev.severity === "critical" ? "▲ Critical" : "△ Warning";
      const state = el("span");
      state.className = `badge badge-${ev.state === "resolved" ? "resolved" : "alerting"}`;
      state.textContent = ev.state === "resolved" ? "Resolved" : "Open";
      const det = el("ul", { className: "detectors" });
      for (const [name, score] of Object.entries(ev.detectors || {})) {
        det.append(el("li", { textContent: `${name}: ${fmtNum(score)}` }));
      }
      const band = ev.lower != null && ev.upper != null
        ? `${fmtNum(ev.lower)} – ${fmtNum(ev.upper)}` : "—";
      const kind = ev.kind === "deadman" ? " (no data)" : "";
      const tr = el("tr", { className: ev.state === "resolved" ? "resolved" : "open" },
        el("td", {}, state), el("td", {}, sev),
        el("td", { textContent: fmtTime(eventTime(ev)) + kind }),
        el("td", { className: "num", textContent: fmtNum(ev.value) }),
        el("td", { className: "num", textContent: fmtNum(ev.expected) }),
        el("td", { textContent: band }),
        el("td", { className: "num", textContent: fmtNum(ev.score) }),
        el("td", {}, det));
      tr.dataset.eventId = ev.event_id;
      tr.dataset.state = ev.state;
      if (ev.value != null) tr.dataset.value = String(ev.value);
      return tr;
    });
    $("alert-rows").replaceChildren(...rows);
    $("alert-table").dataset.count = String(list.length);
    $("alert-table").dataset.open = String(list.filter((a) => a.state !== "resolved").length);
    $("alerts-empty").hidden = list.length > 0;
  }

  // ------------------------------------------------------------------ sensor view

  function route() {
    const m = /^#\/sensor\/(.+)$/.exec(location.hash);
    let id = null;
    try { id = m ? decodeURIComponent(m[1]) : null; } catch { id = null; } // a mangled link
    if (!S.key) return;
    if (id !== S.selected) {
      const was = S.selected;
      S.selected = id;
      if (id) openSensor(id); else closeSensor(was);
    }
  }

  function closeSensor(was) {
    S.selected = null;
    S.loadGen += 1;
    clearTimers();
    destroyPlot();
    setView("overview");
    renderOverview();
    // Keyboard users land back on the sensor they came from.
    const row = was && S.rows.get(was);
    if (row) row.cells.link.focus();
  }

  function clearTimers() {
    for (const t of S.timers) { clearInterval(t); clearTimeout(t); }
    S.timers = [];
  }

  async function openSensor(id) {
    setView("sensor");
    clearTimers();
    destroyPlot();
    S.series = { t: [], v: [] };
    S.forecast = [];
    S.alerts = new Map();
    renderAlerts();
    const s = S.sensors.get(id);
    $("sensor-title").textContent = id;
    renderSensorHead();
    $("sensor-meta").textContent = s
      ? [s.type, s.unit && `unit ${s.unit}`, s.location, s.description].filter(Boolean).join(" · ")
      : "Unknown sensor";
    $("sensor-title").focus();
    renderOverview();
    await reloadSensor();
  }

  /** (Re)load the selected sensor's data for the chosen range and restart its refresh timers. */
  async function reloadSensor() {
    clearTimers();
    await loadSensorData();
    const gen = S.loadGen;
    scheduleForecast(gen);
    // Rollup buckets are not fed by the stream; re-read them once a minute.
    S.timers.push(setInterval(() => {
      if (S.bucket && gen === S.loadGen) loadReadings(gen).then(redraw);
    }, ROLLUP_REFRESH_MS));
  }

  function renderSensorHead() {
    const s = S.sensors.get(S.selected);
    if (s) badge($("sensor-status"), statusOf(s, nowS()));
  }

  async function loadSensorData() {
    const gen = ++S.loadGen;
    S.rangeS = Number($("range").value);
    $("sensor-error").textContent = "";
    await Promise.all([loadReadings(gen), loadAlerts(gen)]);
    // After the readings: the horizon is sized from the sensor's observed reporting interval.
    await loadForecast(gen, false);
    if (gen === S.loadGen) redraw();
  }

  async function guarded(gen, work) {
    try {
      await work();
    } catch (err) {
      if (gen !== S.loadGen || err.name === "AbortError") return;
      const problem = authProblem(err);
      if (problem && err.status === 401) { askForKey(problem); return; }
      $("sensor-error").textContent = `Could not load data: ${describe(err)}`;
    }
  }

  function loadReadings(gen) {
    return guarded(gen, async () => {
      const to = nowS(), from = to - S.rangeS;
      const bucket = BUCKET_FOR_RANGE[S.rangeS] ?? null;
      // `to` a little ahead: readings stamped by a device clock slightly ahead are still shown.
      const items = await allPages(`api/v1/sensors/${encodeURIComponent(S.selected)}/readings`, {
        from: isoOf(from), to: isoOf(to + 60), bucket: bucket || "raw", limit: String(PAGE_LIMIT),
      });
      if (gen !== S.loadGen) return;
      S.bucket = bucket;
      S.series = readingPoints(items);
      const s = S.sensors.get(S.selected);
      const n = S.series.t.length;
      if (s && n && !bucket && (s.lastT == null || S.series.t[n - 1] >= s.lastT)) {
        s.lastT = S.series.t[n - 1];
        s.lastValue = S.series.v[n - 1];
      }
    });
  }

  function loadAlerts(gen) {
    return guarded(gen, async () => {
      const q = new URLSearchParams({
        sensor_id: S.selected, from: isoOf(nowS() - Math.max(S.rangeS, 86400)),
        limit: String(MAX_ALERTS),
      });
      const doc = await api(`api/v1/anomalies?${q}`);
      if (gen !== S.loadGen) return;
      for (const ev of listOf(doc, "items")) mergeAlert(ev);
      renderAlerts();
    });
  }

  /** Steps ahead: about a tenth of the shown range, at the sensor's reporting interval. */
  function forecastHorizon() {
    return Math.max(12, Math.min(S.maxHorizon, Math.round((S.rangeS / 10) / reportingInterval())));
  }

  /** Seconds between readings: registered, else the forecaster's, else the median observed. */
  function reportingInterval() {
    const s = S.sensors.get(S.selected);
    if (s && s.expectedIntervalS) return s.expectedIntervalS;
    if (S.forecastIntervalS) return S.forecastIntervalS;
    const t = S.series.t;
    if (!S.bucket && t.length > 2) {
      const d = [];
      for (let i = Math.max(1, t.length - 100); i < t.length; i++) d.push(t[i] - t[i - 1]);
      d.sort((a, b) => a - b);
      if (d[d.length >> 1] > 0) return d[d.length >> 1];
    }
    return 60;
  }

  /** Refresh the forecast before "now" runs past a third of it (every 5 to 30 s). */
  function scheduleForecast(gen) {
    const span = forecastHorizon() * reportingInterval() * 1000;
    const wait = Math.max(FORECAST_REFRESH_MIN_MS, Math.min(FORECAST_REFRESH_MAX_MS, span / 3));
    S.timers.push(setTimeout(async () => {
      if (gen !== S.loadGen) return;
      await loadForecast(gen);
      scheduleForecast(gen);
    }, wait));
  }

  async function loadForecast(gen, draw = true) {
    const note = $("forecast-note");
    // Asking again with a key that lacks ml:predict would only repeat the same refusal.
    if (S.predictForbidden) return;
    try {
      const doc = await api("api/v1/predict", {
        method: "POST", body: { sensor_id: S.selected, horizon: forecastHorizon() },
      });
      if (gen !== S.loadGen) return;
      S.forecast = forecastPoints(doc);
      S.forecastModel = doc.model_version || null;
      if (doc.interval_s) S.forecastIntervalS = doc.interval_s;
      note.textContent = S.forecast.length
        ? `Forecast of ${S.forecast.length} points by ${S.forecastModel || "the active model"}.`
        : "The model returned no forecast.";
    } catch (err) {
      if (gen !== S.loadGen || err.name === "AbortError") return;
      S.forecast = [];
      if (err instanceof ApiError && err.code === "horizon_too_large" && err.extra.max_horizon) {
        // This API allows fewer steps: remember its limit, the next refresh asks for that many.
        S.maxHorizon = err.extra.max_horizon;
        note.textContent = "Forecast horizon reduced to the API's limit; refreshing.";
      } else if (err instanceof ApiError && err.status === 403) {
        S.predictForbidden = true;
        note.textContent = "Forecast hidden: this API key lacks the ml:predict scope.";
      } else if (err instanceof ApiError && err.status === 401) {
        askForKey(authProblem(err));
        return;
      } else {
        note.textContent = `No forecast: ${describe(err)}`;
      }
    }
    if (draw) redraw();
  }

  // ------------------------------------------------------------------ chart

  function destroyPlot() {
    if (S.plot) { S.plot.destroy(); S.plot = null; }
    const chart = $("chart");
    for (const k of ["readings", "forecast", "band", "anomalies", "drawn"]) chart.dataset[k] = "0";
  }

  function markers() {
    const out = [];
    for (const ev of S.alerts.values()) for (const m of ev._markers || []) out.push(m);
    return out;
  }

  /** uPlot wants one x array with every series aligned to it; missing values are null. */
  function alignedData() {
    const from = nowS() - S.rangeS;
    const xs = new Map();
    const add = (t) => { if (!xs.has(t)) xs.set(t, xs.size); };
    const { t, v } = S.series;
    for (let i = 0; i < t.length; i++) if (t[i] >= from) add(t[i]);
    for (const f of S.forecast) add(f.t);
    const ms = markers().filter((m) => m.t >= from);
    for (const m of ms) add(m.t);
    const x = [...xs.keys()].sort((a, b) => a - b);
    const idx = new Map(x.map((tt, i) => [tt, i]));
    const col = () => new Array(x.length).fill(null);
    const cols = [x, col(), col(), col(), col(), col(), col(), col()];
    for (let i = 0; i < t.length; i++) if (t[i] >= from) cols[1][idx.get(t[i])] = v[i];
    for (const f of S.forecast) {
      const i = idx.get(f.t);
      cols[2][i] = f.mean ?? null;
      cols[3][i] = f.lo95 ?? null; cols[4][i] = f.hi95 ?? null;
      cols[5][i] = f.lo80 ?? null; cols[6][i] = f.hi80 ?? null;
    }
    // Join the forecast to the last reading so the line continues from "now".
    if (S.forecast.length && t.length) {
      const last = idx.get(t[t.length - 1]);
      if (last !== undefined && cols[2][last] == null) cols[2][last] = v[v.length - 1];
    }
    const scores = new Map();
    for (const m of ms) { cols[7][idx.get(m.t)] = m.value; scores.set(m.t, m.score); }
    return { data: cols, scores };
  }

  function plotOptions(width, unit) {
    const hidden = { show: false };
    const line = (label, stroke, extra = {}) => ({
      label, stroke, width: 1.5, spanGaps: true, points: hidden, ...extra,
    });
    return {
      width, height: 320,
      scales: { x: { time: true } },
      cursor: { focus: { prox: 24 } },
      series: [
        { label: "Time" },
        line("Reading", COLORS.readings),
        line("Forecast", COLORS.forecast, { dash: [6, 4] }),
        line("95% low", COLORS.bound, { width: 1 }),
        line("95% high", COLORS.bound, { width: 1 }),
        line("80% low", COLORS.bound, { width: 1 }),
        line("80% high", COLORS.bound, { width: 1 }),
        {
          label: "Anomaly", stroke: COLORS.anomaly, width: 0, paths: () => null,
          points: { show: true, size: 12, space: 0, width: 2, fill: COLORS.anomaly, stroke: "#fff" },
        },
      ],
      bands: [
        { series: [4, 3], fill: COLORS.band95 },
        { series: [6, 5], fill: COLORS.band80 },
      ],
      axes: [{}, { label: unit || "value", size: 70 }],
      hooks: { draw: [drawOverlay] },
    };
  }

  /** "now" line and the score printed beside each anomaly marker. */
  function drawOverlay(u) {
    const ctx = u.ctx, dpr = window.devicePixelRatio || 1;
    ctx.save();
    const nx = u.valToPos(nowS(), "x", true);
    if (nx >= u.bbox.left && nx <= u.bbox.left + u.bbox.width) {
      ctx.strokeStyle = COLORS.now;
      ctx.setLineDash([3 * dpr, 3 * dpr]);
      ctx.lineWidth = dpr;
      ctx.beginPath();
      ctx.moveTo(nx, u.bbox.top);
      ctx.lineTo(nx, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = COLORS.now;
      ctx.font = `${11 * dpr}px system-ui, sans-serif`;
      ctx.fillText("now", nx + 4 * dpr, u.bbox.top + 12 * dpr);
    }
    ctx.fillStyle = COLORS.anomaly;
    ctx.font = `bold ${11 * dpr}px system-ui, sans-serif`;
    const [x, , , , , , , marks] = u.data;
    for (let i = 0; i < x.length; i++) {
      if (marks[i] == null) continue;
      const score = u._scores && u._scores.get(x[i]);
      if (score == null) continue;
      ctx.fillText(`score ${score.toFixed(2)}`, u.valToPos(x[i], "x", true) + 8 * dpr,
        u.valToPos(marks[i], "y", true) - 8 * dpr);
    }
    ctx.restore();
    S.drawn += 1;
    $("chart").dataset.drawn = String(S.drawn);
  }

  function redraw() {
    if (!S.selected || $("sensor-view").hidden || typeof uPlot === "undefined") return;
    const chart = $("chart");
    const { data, scores } = alignedData();
    const [x, reads, , lo95, hi95, lo80, hi80, marks] = data;
    const count = (a) => a.reduce((n, y) => n + (y == null ? 0 : 1), 0);
    let band = 0;
    for (let i = 0; i < x.length; i++) {
      if (lo95[i] != null && hi95[i] != null && lo80[i] != null && hi80[i] != null) band += 1;
    }
    const width = Math.max(300, chart.clientWidth);
    if (!S.plot) {
      const s = S.sensors.get(S.selected);
      S.plot = new uPlot(plotOptions(width, s && s.unit), data, chart);
    }
    S.plot._scores = scores;
    // The x range follows the data; a fixed window keeps "now" and the forecast in view.
    S.plot.setData(data, true);
    chart.dataset.readings = String(count(reads));
    chart.dataset.forecast = String(S.forecast.length);
    chart.dataset.band = String(band);
    chart.dataset.anomalies = String(count(marks));
    chart.dataset.bucket = S.bucket || "raw";
    chart.dataset.markers = JSON.stringify(
      x.flatMap((tt, i) => (marks[i] == null ? [] : [[tt, marks[i], scores.get(tt) ?? null]])));
    const s = S.sensors.get(S.selected);
    const unit = (s && s.unit) || "";
    $("chart-caption").textContent = x.length === 0
      ? "No readings in this range yet."
      : `${count(reads)} ${S.bucket ? "one-minute averages" : "readings"}` +
        (reads.length ? `, last ${fmtNum(S.series.v[S.series.v.length - 1])} ${unit}` : "") +
        `; forecast of ${S.forecast.length} points with 80% and 95% bands; ` +
        `${count(marks)} anomaly markers.`;
  }

  // ------------------------------------------------------------------ live stream

  function stopStream() {
    S.streamGen += 1;
    if (S.streamCtl) S.streamCtl.abort();
    S.streamCtl = null;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function startStream() {
    stopStream();
    const gen = S.streamGen;
    let backoffMs = 1000;
    while (gen === S.streamGen) {
      const ctl = new AbortController();
      S.streamCtl = ctl;
      try {
        const resp = await fetch(STREAM_URL, {
          headers: { "X-API-Key": S.key, Accept: "text/event-stream" },
          signal: ctl.signal, cache: "no-store",
        });
        if (resp.status === 401 || resp.status === 403) {
          let message = resp.statusText;
          try { message = (await resp.json()).error.message; } catch { /* keep statusText */ }
          askForKey(authProblem(new ApiError(resp.status, "auth", message)));
          return;
        }
        if (!resp.ok || !resp.body) throw new Error(`stream answered ${resp.status}`);
        setConn("live", "Live");
        backoffMs = 1000;
        await readEvents(resp.body, gen);
      } catch (err) {
        if (gen !== S.streamGen) return;
        void err;
      }
      if (gen !== S.streamGen) return;
      const wait = backoffMs * (0.5 + Math.random() / 2);
      setConn("reconnecting", `Reconnecting in ${Math.round(wait / 1000)} s`);
      await sleep(wait);
      backoffMs = Math.min(backoffMs * 2, 30000);
      // Catch up on what the stream missed while it was away.
      if (gen === S.streamGen) {
        try { await loadSensors(); } catch { /* the next attempt retries */ }
      }
    }
  }

  async function readEvents(body, gen) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    while (gen === S.streamGen) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        handleEvent(block);
      }
    }
  }

  function handleEvent(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (!data.length) return;
    const doc = JSON.parse(data.join("\n"));
    if (event === "hello") onHello(doc);
    else if (event === "batch") onBatch(doc);
  }

  function onHello(doc) {
    S.skewS = Date.parse(doc.server_time) / 1000 - Date.now() / 1000;
    applyLatest(doc.latest || {});
    renderOverview();
  }

  function applyLatest(latest) {
    for (const [id, p] of Object.entries(latest)) {
      let s = S.sensors.get(id);
      if (!s) {
        s = sensorRecord({ sensor_id: id });
        S.sensors.set(id, s);
      }
      if (s.lastT == null || p.t >= s.lastT) { s.lastT = p.t; s.lastValue = p.value; }
      if (p.sensor_type && !s.type) s.type = p.sensor_type;
      if (p.unit && !s.unit) s.unit = p.unit;
    }
  }

  function onBatch(doc) {
    const started = performance.now();
    S.batches += 1;
    document.body.dataset.batches = String(S.batches);
    if (doc.dropped) document.body.dataset.droppedBatches = String(doc.dropped);
    applyLatest(doc.latest || {});
    // Age of the newest reading in the batch, device clock to this browser's clock (the
    // benchmark runs both on one machine; elsewhere it includes their skew).
    let newest = 0;
    for (const p of Object.values(doc.latest || {})) newest = Math.max(newest, p.t);
    if (newest) document.body.dataset.lagMs = String(Math.round(Date.now() - newest * 1000));
    let chartChanged = false;
    for (const ev of doc.alerts || []) {
      applyAlertToSensor(ev);
      if (ev.sensor_id === S.selected) { mergeAlert(ev); chartChanged = true; }
    }
    if (chartChanged) renderAlerts();
    const pts = S.selected && doc.points ? doc.points[S.selected] : null;
    if (pts && pts.length && !S.bucket && $("follow").checked) {
      appendPoints(pts);
      chartChanged = true;
    }
    renderOverview();
    if (S.selected) renderSensorHead();
    if (chartChanged) redraw();
    // How long one batch took to apply, for the benchmark and a curious operator's devtools.
    const ms = performance.now() - started;
    S.batchMsMax = Math.max(S.batchMsMax, ms);
    S.batchMsTotal += ms;
    document.body.dataset.batchMsMax = S.batchMsMax.toFixed(2);
    document.body.dataset.batchMsMean = (S.batchMsTotal / S.batches).toFixed(2);
  }

  function appendPoints(pts) {
    const { t, v } = S.series;
    for (const [tt, vv] of pts) {
      if (t.length && tt <= t[t.length - 1]) {
        if (tt === t[t.length - 1]) continue; // a redelivery
        // Out of order (a backlog): insert in place to keep x sorted.
        let i = t.length - 1;
        while (i > 0 && t[i - 1] > tt) i--;
        if (t[i - 1] === tt) continue;
        t.splice(i, 0, tt); v.splice(i, 0, vv);
      } else {
        t.push(tt); v.push(vv);
      }
    }
    const from = nowS() - S.rangeS;
    let drop = 0;
    while (drop < t.length && (t[drop] < from || t.length - drop > MAX_SERIES_POINTS)) drop++;
    if (drop) { t.splice(0, drop); v.splice(0, drop); }
  }

  // ------------------------------------------------------------------ wiring

  function tick() {
    $("clock").textContent = new Date((nowS()) * 1000).toLocaleTimeString();
    if (!S.key || $("workspace").hidden) return;
    renderOverview();
    if (S.selected) renderSensorHead();
  }

  function init() {
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const key = $("key-input").value.trim();
      if (key) useKey(key);
    });
    $("change-key").addEventListener("click", () => {
      localStorage.removeItem(KEY_STORAGE);
      askForKey("");
    });
    $("search").addEventListener("input", () => renderOverview());
    $("status-filter").addEventListener("change", () => renderOverview());
    $("range").addEventListener("change", () => { if (S.selected) reloadSensor(); });
    // Back to live after a pause: re-read the range so the gap is filled from the database.
    $("follow").addEventListener("change", (e) => {
      if (S.selected && e.target.checked) reloadSensor();
    });
    window.addEventListener("hashchange", route);
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && S.selected && !e.target.closest("input, select")) {
        location.hash = "#/";
      }
    });
    const chart = $("chart");
    new ResizeObserver(() => {
      if (S.plot) S.plot.setSize({ width: Math.max(300, chart.clientWidth), height: 320 });
    }).observe(chart);
    setInterval(tick, 1000);
    tick();
    const stored = localStorage.getItem(KEY_STORAGE);
    if (stored) useKey(stored); else askForKey("");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
