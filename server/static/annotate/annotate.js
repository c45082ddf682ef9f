// EOFusion annotation page: active learning in the browser, over the server's own APIs.
// Plain JS, no dependency: STAC for pools and patches, OGC API Processes for rounds and
// accepting, /labels for the label catalogue. Every server error is shown in #message.
"use strict";

(() => {
  const OLD_KEY_STORAGE = "eofusion.apiKey"; // where an older version of the page kept the API key
  const SEED_SHOWN = 48;
  const ROUND_URL = "/ogc/processes/active-learning-round/execution";
  const ACCEPT_URL = "/ogc/processes/accept-annotations/execution";
  const MAP_W = 400;
  const MAP_H = 300;
  const MAP_MARGIN = 16;
  const MIN_RECT = 5;

  const $ = (id) => document.getElementById(id);
  const el = {
    pool: $("pool"), descriptor: $("descriptor"), level: $("level"), nQueries: $("n-queries"), nTop: $("n-top"),
    apiKey: $("api-key"), user: $("user"), sessionId: $("session-id"), roundNo: $("round-no"),
    markCounts: $("mark-counts"), newSession: $("new-session"), message: $("message"), notice: $("notice"),
    seedForm: $("seed-form"), seedQuery: $("seed-query"), seedLimit: $("seed-limit"), seedSearch: $("seed-search"),
    seedSummary: $("seed-summary"), seedGrid: $("seed-grid"), runRound: $("run-round"),
    roundSummary: $("round-summary"), queryGrid: $("query-grid"), topGrid: $("top-grid"), map: $("map"),
    mapSummary: $("map-summary"), acceptForm: $("accept-form"), label: $("label"), accept: $("accept"),
    acceptResult: $("accept-result"),
  };
  const SVG_NS = el.map.namespaceURI;

  const state = {
    pool: "",
    session: null,
    round: 0,
    marks: new Map(), // item id -> true (positive) | false (negative)
    sent: new Map(), // item id -> the mark the server has for this session
    items: new Map(), // item id -> {id, bbox, quicklook, labels, level, kind}
    seedIds: [], // patches of the pool fetched for seeding, in STAC order
    seedKey: null, // "pool|limit" the seed list was fetched for
    seedMatched: null,
    shownSeeds: [],
    queries: [],
    top: [],
  };

  // ---------------------------------------------------------------- server access

  function apiKey() {
    return el.apiKey.value.trim();
  }

  // Writes carry the API key typed in the page.
  function api(path, { method = "GET", body, write = false } = {}) {
    return window.EOFusion.api(path, { method, body, apiKey: write ? apiKey() : "" });
  }

  // ---------------------------------------------------------------- messages

  const showError = (err) => window.EOFusion.showError(el.message, err);
  const clearError = () => window.EOFusion.clearError(el.message);

  function notice(text) {
    el.notice.textContent = text;
  }

  const { busy } = window.EOFusion;

  // ---------------------------------------------------------------- items and footprints

  function bboxOf(geometry) {
    if (!geometry || !geometry.coordinates) return null;
    let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
    const walk = (c) => {
      if (typeof c[0] === "number") {
        w = Math.min(w, c[0]); e = Math.max(e, c[0]); s = Math.min(s, c[1]); n = Math.max(n, c[1]);
      } else c.forEach(walk);
    };
    walk(geometry.coordinates);
    return Number.isFinite(w) ? [w, s, e, n] : null;
  }

  function remember(feature) {
    const p = feature.properties || {};
    let bbox = feature.bbox || bboxOf(feature.geometry);
    if (bbox && bbox.length === 6) bbox = [bbox[0], bbox[1], bbox[3], bbox[4]];
    const thumb = feature.assets && feature.assets.thumbnail;
    const info = {
      id: feature.id, bbox, quicklook: thumb ? thumb.href : null,
      labels: p["eofusion:source_labels"] || p["eofusion:ground_truth"] || [],
      level: p["eofusion:grid_level"], kind: p["eofusion:kind"],
    };
    state.items.set(feature.id, info);
    return info;
  }

  async function ensureFootprints(ids) {
    const missing = [...new Set(ids)].filter((id) => !state.items.has(id));
    for (let i = 0; i < missing.length; i += 100) {
      const chunk = missing.slice(i, i + 100);
      const data = await api("/stac/search", {
        method: "POST", body: { collections: [state.pool], ids: chunk, limit: chunk.length },
      });
      (data.features || []).forEach(remember);
    }
  }

  // ---------------------------------------------------------------- tiles

  function markName(mark) {
    return mark === true ? "positive" : mark === false ? "negative" : "unmarked";
  }

  function updateTile(button) {
    const id = button.dataset.item;
    const mark = state.marks.get(id);
    button.dataset.mark = mark === true ? "pos" : mark === false ? "neg" : "none";
    const score = button.dataset.score ? `, score ${button.dataset.score}` : "";
    button.setAttribute("aria-label", `Patch ${id}${score}: ${markName(mark)}. Activate to change the mark.`);
    button.querySelector(".badge").textContent = mark === true ? "+ positive" : mark === false ? "− negative" : "";
  }

  function refreshTiles(id) {
    const selector = id === undefined ? ".tile" : `.tile[data-item="${CSS.escape(id)}"]`;
    document.querySelectorAll(selector).forEach(updateTile);
  }

  function makeTile(id, { score = null, quicklook = null, caption = "" } = {}) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tile";
    button.dataset.item = id;
    if (score !== null && score !== undefined) button.dataset.score = Number(score).toFixed(3);
    const src = quicklook || (state.items.get(id) || {}).quicklook;
    if (src) {
      const img = document.createElement("img");
      img.alt = `Quicklook of patch ${id}`;
      img.width = 96;
      img.height = 96;
      img.decoding = "async";
      img.addEventListener("error", () => button.classList.add("img-failed"));
      img.src = src;
      button.append(img);
    } else {
      const none = document.createElement("span");
      none.className = "no-image";
      none.textContent = "no preview";
      button.append(none);
    }
    const name = document.createElement("span");
    name.className = "tile-id";
    name.textContent = id;
    button.append(name);
    if (button.dataset.score) {
      const s = document.createElement("span");
      s.className = "tile-score";
      s.textContent = `score ${button.dataset.score}`;
      button.append(s);
    }
    if (caption) {
      const c = document.createElement("span");
      c.className = "tile-caption";
      c.textContent = caption;
      button.append(c);
    }
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.setAttribute("aria-hidden", "true");
    button.append(badge);
    button.addEventListener("click", () => cycle(id));
    button.addEventListener("keydown", onTileKey);
    updateTile(button);
    li.append(button);
    return li;
  }

  function setMark(id, mark) {
    if (mark === undefined) state.marks.delete(id);
    else state.marks.set(id, mark);
    refreshTiles(id);
    updateStatus();
    drawMap();
  }

  function cycle(id) {
    const mark = state.marks.get(id);
    setMark(id, mark === undefined ? true : mark === true ? false : undefined);
  }

  function onTileKey(ev) {
    const button = ev.currentTarget;
    const id = button.dataset.item;
    const key = ev.key.toLowerCase();
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    if (key === "p" || key === "+") setMark(id, true);
    else if (key === "n" || key === "-") setMark(id, false);
    else if (key === "u" || key === "0" || key === "delete") setMark(id, undefined);
    else if (["arrowleft", "arrowright", "arrowup", "arrowdown", "home", "end"].includes(key)) {
      const tiles = [...button.closest("ul").querySelectorAll(".tile")];
      const at = tiles.indexOf(button);
      const columns = Math.max(1, tiles.filter((t) => t.offsetTop === tiles[0].offsetTop).length);
      const step = { arrowleft: -1, arrowright: 1, arrowup: -columns, arrowdown: columns }[key];
      const to = key === "home" ? 0 : key === "end" ? tiles.length - 1 : at + step;
      if (to >= 0 && to < tiles.length) tiles[to].focus();
    } else return;
    ev.preventDefault();
  }

  // ---------------------------------------------------------------- grids

  function renderGrid(list, patches, emptyText) {
    list.replaceChildren();
    if (!patches.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = emptyText;
      list.append(li);
      return;
    }
    for (const p of patches) list.append(makeTile(p.item, { score: p.score, quicklook: p.quicklook }));
  }

  function renderResults() {
    renderGrid(el.queryGrid, state.queries, state.round ? "No queries: every patch is marked." : "Run a round to get queries.");
    renderGrid(el.topGrid, state.top, "Run a round to rank the pool.");
  }

  function seedMatches() {
    const tokens = el.seedQuery.value.toLowerCase().split(/\s+/).filter(Boolean);
    const level = levelValue();
    return state.seedIds.filter((id) => {
      const info = state.items.get(id);
      if (level !== null && info.level !== undefined && info.level !== level) return false;
      const text = `${id} ${info.labels.join(" ")}`.toLowerCase();
      return tokens.every((t) => text.includes(t));
    });
  }

  function renderSeeds() {
    const matches = seedMatches();
    state.shownSeeds = matches.slice(0, SEED_SHOWN);
    el.seedGrid.replaceChildren();
    for (const id of state.shownSeeds) {
      const info = state.items.get(id);
      el.seedGrid.append(makeTile(id, { caption: info.labels.join(", ") }));
    }
    const of = state.seedMatched !== null && state.seedMatched !== undefined ? ` of ${state.seedMatched}` : "";
    const more = matches.length > SEED_SHOWN ? ` (first ${SEED_SHOWN} shown: refine the search)` : "";
    el.seedSummary.textContent = `${state.seedIds.length}${of} patches fetched, ${matches.length} match${more}.`;
    drawMap();
  }

  async function findSeeds(ev) {
    ev.preventDefault();
    clearError();
    if (!state.pool) {
      showError(new Error("Choose a pool first."));
      el.pool.focus();
      return;
    }
    const limit = Math.min(10000, Math.max(1, parseInt(el.seedLimit.value, 10) || 500));
    const key = `${state.pool}|${limit}`;
    try {
      await busy(el.seedSearch, "Searching…", async () => {
        if (state.seedKey !== key) {
          const pool = encodeURIComponent(state.pool);
          const data = await api(`/stac/collections/${pool}/items?limit=${limit}`);
          state.seedIds = [];
          for (const f of data.features || []) {
            const info = remember(f);
            if (info.kind !== "scene") state.seedIds.push(f.id);
          }
          state.seedMatched = data.numberMatched ?? (data.context && data.context.matched) ?? null;
          state.seedKey = key;
        }
        renderSeeds();
      });
    } catch (err) {
      showError(err);
    }
  }

  // ---------------------------------------------------------------- session

  function levelValue() {
    const v = el.level.value.trim();
    if (!v) return null;
    const n = Number(v);
    return Number.isInteger(n) ? n : null;
  }

  function intOrUndefined(input) {
    const v = input.value.trim();
    if (!v) return undefined;
    const n = Number(v);
    return Number.isFinite(n) ? n : v; // let the server say what is wrong with it
  }

  function updateStatus() {
    el.sessionId.textContent = state.session || "none";
    el.roundNo.textContent = String(state.round);
    let pos = 0, neg = 0, pending = 0;
    for (const [id, mark] of state.marks) {
      if (mark) pos += 1; else neg += 1;
      if (state.sent.get(id) !== mark) pending += 1;
    }
    el.markCounts.textContent = `${pos} positive, ${neg} negative` + (pending ? ` (${pending} to send)` : "");
    el.accept.disabled = !state.session;
  }

  function resetSession({ keepMarks }) {
    state.session = null;
    state.round = 0;
    state.sent.clear();
    if (!keepMarks) state.marks.clear();
    state.queries = [];
    state.top = [];
    el.roundSummary.textContent = "";
    el.acceptResult.textContent = "";
    renderResults();
    refreshTiles();
    updateStatus();
    drawMap();
  }

  function onPoolChange() {
    state.pool = el.pool.value;
    state.items.clear();
    state.seedIds = [];
    state.seedKey = null;
    state.seedMatched = null;
    state.shownSeeds = [];
    el.seedGrid.replaceChildren();
    el.seedSummary.textContent = state.pool ? "Find patches of the pool to mark the first positives." : "";
    resetSession({ keepMarks: false });
    clearError();
  }

  function onSessionParamChange() {
    if (state.session) notice("Descriptor or level changed: the next round starts a new session with your marks.");
    resetSession({ keepMarks: true });
    if (state.seedIds.length) renderSeeds();
  }

  async function runRound() {
    clearError();
    if (!state.pool) {
      showError(new Error("Choose a pool first."));
      el.pool.focus();
      return;
    }
    const feedback = [];
    for (const [id, mark] of state.marks) if (state.sent.get(id) !== mark) feedback.push({ item: id, positive: mark });
    const inputs = { feedback };
    if (state.session) inputs.session = state.session;
    else {
      inputs.pool = state.pool;
      inputs.descriptor = el.descriptor.value;
      if (levelValue() !== null) inputs.level = levelValue();
    }
    const nTop = intOrUndefined(el.nTop);
    const nQueries = intOrUndefined(el.nQueries);
    if (nTop !== undefined) inputs.n_top = nTop;
    if (nQueries !== undefined) inputs.n_queries = nQueries;
    if (el.user.value.trim()) inputs.user = el.user.value.trim();
    try {
      await busy(el.runRound, "Running round…", async () => {
        const r = await api(ROUND_URL, { method: "POST", body: { inputs }, write: true });
        state.session = r.session;
        state.round = r.round;
        for (const f of feedback) state.sent.set(f.item, f.positive);
        state.queries = r.queries || [];
        state.top = r.top || [];
        const m = r.metrics || {};
        el.roundSummary.textContent = `Round ${r.round}: ${m.positives ?? "?"} positive and ${m.negatives ?? "?"} ` +
          `negative marks; ${m.predicted_positive ?? "?"} of ${m.pool_size ?? "?"} patches predicted positive.`;
        notice(`Round ${r.round} done.`);
        renderResults();
        updateStatus();
        drawMap();
        await ensureFootprints([...state.queries, ...state.top].map((p) => p.item));
        drawMap();
      });
    } catch (err) {
      showError(err);
    }
  }

  async function accept(ev) {
    ev.preventDefault();
    clearError();
    if (!state.session) {
      showError(new Error("Run a round first: accepting needs a session with a model."));
      return;
    }
    if (!el.label.value) {
      showError(new Error("Choose a label."));
      el.label.focus();
      return;
    }
    const inputs = { session: state.session, label: el.label.value };
    if (el.user.value.trim()) inputs.user = el.user.value.trim();
    try {
      await busy(el.accept, "Accepting…", async () => {
        const r = await api(ACCEPT_URL, { method: "POST", body: { inputs }, write: true });
        el.acceptResult.dataset.annotated = String(r.annotated);
        el.acceptResult.textContent = `${r.annotated} annotation${r.annotated === 1 ? "" : "s"} written with ` +
          `label "${r.label}" (session ${r.session}, round ${r.round}).`;
        notice(`Accepted: ${r.annotated} annotations written.`);
      });
    } catch (err) {
      showError(err);
    }
  }

  // ---------------------------------------------------------------- map

  function svg(name, attrs, text) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceStep(span) {
    const raw = span / 4;
    const pow = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * pow >= raw) return m * pow;
    return 10 * pow;
  }

  function drawMap() {
    const queryIds = new Set(state.queries.map((p) => p.item));
    const ids = [...new Set([...state.shownSeeds, ...queryIds, ...state.top.map((p) => p.item), ...state.marks.keys()])];
    const feats = ids.map((id) => state.items.get(id)).filter((f) => f && f.bbox);
    const old = el.map.querySelector("g.layer");
    if (old) old.remove();
    const layer = svg("g", { class: "layer" });
    el.map.append(layer);
    if (!feats.length) {
      layer.append(svg("text", { x: MAP_W / 2, y: MAP_H / 2, "text-anchor": "middle", class: "map-empty" },
        "No patches to show yet"));
      el.mapSummary.textContent = "";
      return;
    }
    let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
    for (const f of feats) {
      w = Math.min(w, f.bbox[0]); s = Math.min(s, f.bbox[1]); e = Math.max(e, f.bbox[2]); n = Math.max(n, f.bbox[3]);
    }
    const padX = Math.max((e - w) * 0.05, 0.005), padY = Math.max((n - s) * 0.05, 0.005);
    w -= padX; e += padX; s -= padY; n += padY;
    const kx = Math.max(0.05, Math.cos(((s + n) / 2) * Math.PI / 180));
    const scale = Math.min((MAP_W - 2 * MAP_MARGIN) / ((e - w) * kx), (MAP_H - 2 * MAP_MARGIN) / (n - s));
    const ox = (MAP_W - (e - w) * kx * scale) / 2, oy = (MAP_H - (n - s) * scale) / 2;
    const X = (lon) => ox + (lon - w) * kx * scale;
    const Y = (lat) => oy + (n - lat) * scale;

    const grid = svg("g", { class: "graticule" });
    const step = niceStep(Math.max(e - w, n - s));
    const digits = Math.max(0, -Math.floor(Math.log10(step)));
    for (let lon = Math.ceil(w / step) * step; lon <= e; lon += step) {
      grid.append(svg("line", { x1: X(lon), x2: X(lon), y1: Y(n), y2: Y(s) }));
      grid.append(svg("text", { x: X(lon) + 2, y: MAP_H - 3 }, `${lon.toFixed(digits)}°`));
    }
    for (let lat = Math.ceil(s / step) * step; lat <= n; lat += step) {
      grid.append(svg("line", { x1: X(w), x2: X(e), y1: Y(lat), y2: Y(lat) }));
      grid.append(svg("text", { x: 2, y: Y(lat) - 2 }, `${lat.toFixed(digits)}°`));
    }
    layer.append(grid);

    const kindOf = (id) => {
      const m = state.marks.get(id);
      return m === true ? "pos" : m === false ? "neg" : queryIds.has(id) ? "query" : "other";
    };
    const order = { other: 0, query: 1, neg: 2, pos: 3 };
    feats.sort((a, b) => order[kindOf(a.id)] - order[kindOf(b.id)]);
    for (const f of feats) {
      const kind = kindOf(f.id);
      let x0 = X(f.bbox[0]), x1 = X(f.bbox[2]), y0 = Y(f.bbox[3]), y1 = Y(f.bbox[1]);
      if (x1 - x0 < MIN_RECT) { const c = (x0 + x1) / 2; x0 = c - MIN_RECT / 2; x1 = c + MIN_RECT / 2; }
      if (y1 - y0 < MIN_RECT) { const c = (y0 + y1) / 2; y0 = c - MIN_RECT / 2; y1 = c + MIN_RECT / 2; }
      const r = svg("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: `fp fp-${kind}`, "data-item": f.id });
      r.append(svg("title", {}, `${f.id} (${kind === "other" ? "not marked" : kind === "query" ? "query" : markName(state.marks.get(f.id))})`));
      layer.append(r);
    }
    const marked = feats.filter((f) => state.marks.has(f.id)).length;
    el.mapSummary.textContent = `${feats.length} footprints, ${marked} marked; ` +
      `lon ${w.toFixed(3)} to ${e.toFixed(3)}, lat ${s.toFixed(3)} to ${n.toFixed(3)}.`;
  }

  // ---------------------------------------------------------------- start

  async function loadCollections() {
    const data = await api("/stac/collections?limit=100");
    const ids = (data.collections || []).map((c) => ({ id: c.id, title: c.title || "" }))
      .filter((c) => c.id !== "annotations")
      .sort((a, b) => a.id.localeCompare(b.id));
    el.pool.replaceChildren(new Option(ids.length ? "Choose a pool…" : "No collection on this server", ""));
    for (const c of ids) el.pool.append(new Option(c.title && c.title !== c.id ? `${c.id} — ${c.title}` : c.id, c.id));
    el.pool.value = "";
  }

  async function loadLabels() {
    const data = await api("/labels");
    const labels = data.labels || [];
    const top = labels.filter((l) => l.level === 1).sort((a, b) => a.path.localeCompare(b.path));
    el.label.replaceChildren(new Option("Choose a label…", ""));
    for (const parent of top) {
      const group = document.createElement("optgroup");
      group.label = parent.path;
      group.append(new Option(parent.path, parent.path));
      labels.filter((l) => l.level === 2 && l.path.split(" / ")[0] === parent.path)
        .sort((a, b) => a.path.localeCompare(b.path))
        .forEach((l) => group.append(new Option(l.path, l.path)));
      el.label.append(group);
    }
  }

  // On the loopback demo the server says so in the page (body[data-demo-key]) and hands its key over: kept in
  // the password field (page memory) only, like a typed key.
  async function loadDemoKey() {
    if (document.body.dataset.demoKey !== "available" || apiKey()) return;
    const data = await api("/annotate/demo-key");
    if (data && typeof data.api_key === "string" && !apiKey()) {
      el.apiKey.value = data.api_key;
      el.apiKey.dataset.source = "demo";
      notice("API key: the demo's own, filled in by this loopback demo server.");
    }
  }

  function init() {
    // The API key lives in the password field only: never in web storage or a cookie, which every other
    // script of this origin could read. An older version of the page kept it in sessionStorage: drop that copy.
    try {
      sessionStorage.removeItem(OLD_KEY_STORAGE);
    } catch {
      // storage can be disabled; there is then nothing to drop
    }
    el.pool.addEventListener("change", onPoolChange);
    el.descriptor.addEventListener("change", onSessionParamChange);
    el.level.addEventListener("change", onSessionParamChange);
    el.seedForm.addEventListener("submit", findSeeds);
    el.runRound.addEventListener("click", runRound);
    el.acceptForm.addEventListener("submit", accept);
    el.newSession.addEventListener("click", () => {
      resetSession({ keepMarks: false });
      notice("New session: mark patches and run a round.");
    });
    renderResults();
    updateStatus();
    drawMap();
    Promise.all([loadCollections(), loadLabels(), loadDemoKey()])
      .then(() => document.body.setAttribute("data-ready", "true"))
      .catch(showError);
  }

  init();
})();
