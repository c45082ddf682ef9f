/* EOFusion map viewer: scene imagery from /tiles, patch outlines from STAC search and fused posts
   from the OGC process late-fusion-search, on a Leaflet map (Leaflet bundled by deploy/setup.sh). */
(() => {
  "use strict";

  const FUSION_URL = "/ogc/processes/late-fusion-search/execution";
  const PATCH_LIMIT = 250; // patch outlines fetched for one view
  const MIN_PATCH_ZOOM = 8; // below this zoom a view holds too many patches to outline
  const KIND = "eofusion:kind";
  const TRUE_COLOUR = { s2: { bidx: "3,2,1", rescale: "0,3000", what: "true colour B04/B03/B02" },
                        s1: { bidx: "1", rescale: "0,0.3", what: "Sentinel-1 first polarisation" } };

  const $ = (id) => document.getElementById(id);
  const el = {
    message: $("message"), sceneForm: $("scene-form"), sceneCollection: $("scene-collection"),
    sceneItem: $("scene-item"), sceneNote: $("scene-note"), query: $("query"), text: $("q-text"),
    datetime: $("q-datetime"), lon: $("q-lon"), lat: $("q-lat"), method: $("q-method"),
    postsCollection: $("q-collection"), limit: $("q-limit"), run: $("q-run"), clear: $("q-clear"),
    results: $("results"), summary: $("results-summary"), patchNote: $("patch-note"),
  };

  const state = {
    scenes: new Map(), // collection id -> [scene feature]
    imagery: null, // the tile layer of the shown scene
    imageryName: null,
    patchSeq: 0,
    patchTimer: null,
    markers: new Map(), // post id -> circle marker
  };

  // ---------------------------------------------------------------- server calls and messages

  const { ServerError, api, busy } = window.EOFusion;
  const showError = (err) => window.EOFusion.showError(el.message, err);
  const clearError = () => window.EOFusion.clearError(el.message);

  // A <dl> of [term, value] rows, leaving out rows without a value.
  function definitionList(rows) {
    const dl = document.createElement("dl");
    for (const [k, v] of rows) {
      if (!v) continue;
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dl.append(dt, dd);
    }
    return dl;
  }

  const kindFilter = (kind) => ({ "filter-lang": "cql2-json", filter: { op: "=", args: [{ property: KIND }, kind] } });

  function bboxOf(feature) {
    let b = feature.bbox;
    if (b && b.length === 6) b = [b[0], b[1], b[3], b[4]];
    if (b) return b;
    const layer = L.geoJSON(feature.geometry);
    const bounds = layer.getBounds();
    return [bounds.getWest(), bounds.getSouth(), bounds.getEast(), bounds.getNorth()];
  }

  const toBounds = (b) => L.latLngBounds([b[1], b[0]], [b[3], b[2]]);

  // ---------------------------------------------------------------- the map and its layers

  const map = L.map("map", { zoomControl: true, keyboard: true, worldCopyJump: false }).setView([30, -40], 3);
  map.createPane("posts");
  map.getPane("posts").style.zIndex = 450; // above patch outlines (400), below markers and popups
  map.createPane("query");
  map.getPane("query").style.zIndex = 440; // the query place never hides the posts around it
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');

  const footprints = L.geoJSON(null, {
    interactive: false,
    style: () => ({ color: "#495057", weight: 1.5, dashArray: "6 4", fill: false }),
  });
  const patches = L.geoJSON(null, {
    style: (f) => {
      const level = (f.properties || {})["eofusion:grid_level"];
      return { color: "#1971c2", weight: level >= 480 ? 2.2 : level >= 240 ? 1.4 : 0.8, opacity: 0.85,
               fill: false, bubblingMouseEvents: false };
    },
    onEachFeature: (f, layer) => layer.bindPopup(() => patchPopup(f)),
  });
  const posts = L.featureGroup();
  const query = L.layerGroup();
  footprints.addTo(map);
  patches.addTo(map);
  posts.addTo(map);
  query.addTo(map);

  // Leaflet writes a layer name with innerHTML; this control writes it as text, or appends the DOM node given,
  // so a scene id never becomes markup.
  const TextLayers = L.Control.Layers.extend({
    _addItem(obj) {
      const item = L.Control.Layers.prototype._addItem.call(this, { ...obj, name: "" });
      const name = item.querySelector("span > span") || item;
      name.replaceChildren(" ", obj.name instanceof Node ? obj.name.cloneNode(true) : String(obj.name));
      return item;
    },
  });

  // A layer name as a DOM node (text only).
  function layerName(text) {
    const span = document.createElement("span");
    span.textContent = text;
    return span;
  }

  const layers = new TextLayers(null, null, { collapsed: false, position: "topright" }).addTo(map);
  layers.addOverlay(footprints, layerName("Scene footprints"));
  layers.addOverlay(patches, layerName("Patch outlines (current view)"));
  layers.addOverlay(posts, layerName("Fused posts"));
  layers.addOverlay(query, layerName("Query place"));
  L.control.scale({ imperial: false }).addTo(map);

  function patchPopup(f) {
    const p = f.properties || {};
    const div = document.createElement("div");
    div.className = "patch-popup";
    const title = document.createElement("strong");
    title.textContent = f.id;
    const rows = [["Collection", f.collection], ["Grid level", p["eofusion:grid_level"] && `${p["eofusion:grid_level"]} px`],
                  ["Scene", p["eofusion:scene"]],
                  ["Labels", (p["eofusion:source_labels"] || p["eofusion:ground_truth"] || []).join(", ")]];
    const dl = definitionList(rows);
    div.append(title, dl);
    return div;
  }

  // ---------------------------------------------------------------- scenes and imagery

  function imageryLayer(scene) {
    const assets = scene.assets || {};
    const key = assets.s2 ? "s2" : assets.s1 ? "s1" : null;
    if (!key) throw new ServerError(`scene ${scene.id} has neither an s2 nor an s1 asset`);
    const look = TRUE_COLOUR[key];
    const params = new URLSearchParams({ collection: scene.collection, item: scene.id,
                                         assets: `${key}|bidx=${look.bidx}`, rescale: look.rescale });
    const layer = L.tileLayer(`/tiles/stac/tiles/WebMercatorQuad/{z}/{x}/{y}.png?${params}`, {
      bounds: toBounds(bboxOf(scene)), maxZoom: 19, minZoom: 0, opacity: 1,
      attribution: "Contains modified Copernicus Sentinel data",
    });
    layer.on("tileerror", (e) => {
      el.sceneNote.textContent = `Some imagery tiles failed to load (${e.tile && e.tile.src ? "tile " + e.coords.z + "/"
        + e.coords.x + "/" + e.coords.y : "tile"}).`;
    });
    return { layer, what: look.what };
  }

  function fillSceneItems() {
    const list = state.scenes.get(el.sceneCollection.value) || [];
    el.sceneItem.replaceChildren(...list.map((s) => new Option(s.id, s.id)));
  }

  function currentScene() {
    const list = state.scenes.get(el.sceneCollection.value) || [];
    return list.find((s) => s.id === el.sceneItem.value) || null;
  }

  function showScene(zoom) {
    const scene = currentScene();
    if (!scene) return;
    if (state.imagery) {
      layers.removeLayer(state.imagery);
      map.removeLayer(state.imagery);
    }
    const { layer, what } = imageryLayer(scene);
    state.imagery = layer;
    state.imageryName = `Imagery: ${scene.id}`;
    layer.addTo(map);
    layer.bringToBack();
    layers.addOverlay(layer, layerName(state.imageryName));
    el.sceneNote.textContent = `${scene.collection} / ${scene.id}: ${what}, rescaled 0–3000.`;
    if (zoom) map.fitBounds(toBounds(bboxOf(scene)));
  }

  async function loadScenes() {
    const data = await api("/stac/search", { method: "POST", body: { ...kindFilter("scene"), limit: 200 } });
    state.scenes.clear();
    for (const f of data.features || []) {
      if (!state.scenes.has(f.collection)) state.scenes.set(f.collection, []);
      state.scenes.get(f.collection).push(f);
    }
    for (const list of state.scenes.values()) list.sort((a, b) => a.id.localeCompare(b.id));
    footprints.clearLayers();
    footprints.addData(data.features || []);
    const ids = [...state.scenes.keys()].sort();
    if (!ids.length) {
      el.sceneCollection.replaceChildren(new Option("No scene in the catalogue", ""));
      el.sceneNote.textContent = "Publish a scene (eofusion ingest scene …) to see imagery.";
      return;
    }
    el.sceneCollection.replaceChildren(...ids.map((c) => new Option(`${c} (${state.scenes.get(c).length})`, c)));
    fillSceneItems();
    showScene(true);
  }

  el.sceneCollection.addEventListener("change", fillSceneItems);
  el.sceneForm.addEventListener("submit", (e) => {
    e.preventDefault();
    try {
      showScene(true);
    } catch (err) {
      showError(err);
    }
  });

  // ---------------------------------------------------------------- patch outlines of the view

  function viewBbox() {
    const b = map.getBounds();
    const clamp = (v, lim) => Math.max(-lim, Math.min(lim, v));
    let w = b.getWest(), e = b.getEast();
    if (e - w >= 360) { w = -180; e = 180; }
    w = clamp(L.Util.wrapNum(w, [-180, 180], true), 180);
    e = clamp(L.Util.wrapNum(e, [-180, 180], true), 180);
    if (e < w) { w = -180; e = 180; } // a view across the antimeridian: search all longitudes
    return [w, clamp(b.getSouth(), 90), e, clamp(b.getNorth(), 90)].map((v) => Number(v.toFixed(6)));
  }

  async function loadPatches() {
    const seq = ++state.patchSeq;
    if (!map.hasLayer(patches)) return;
    if (map.getZoom() < MIN_PATCH_ZOOM) {
      patches.clearLayers();
      el.patchNote.textContent = `Zoom in (level ${MIN_PATCH_ZOOM} or more) to outline the patches in view.`;
      return;
    }
    try {
      const data = await api("/stac/search", {
        method: "POST", body: { ...kindFilter("patch"), bbox: viewBbox(), limit: PATCH_LIMIT },
      });
      if (seq !== state.patchSeq) return; // a newer view answered first
      const feats = data.features || [];
      patches.clearLayers();
      patches.addData(feats);
      const more = (data.links || []).some((l) => l.rel === "next");
      el.patchNote.textContent = feats.length
        ? `${feats.length} patch outline${feats.length === 1 ? "" : "s"} in view${more ? " (the first " + PATCH_LIMIT
          + "; zoom in for all)" : ""}.`
        : "No patch in view.";
    } catch (err) {
      if (seq === state.patchSeq) showError(err);
    }
  }

  function schedulePatches() {
    clearTimeout(state.patchTimer);
    state.patchTimer = setTimeout(loadPatches, 250);
  }

  map.on("moveend", schedulePatches);
  map.on("overlayadd", (e) => { if (e.layer === patches) schedulePatches(); });

  // ---------------------------------------------------------------- the query place

  const placeMode = () => el.query.querySelector("input[name=place]:checked").value;
  let queryMarker = null;

  function setPlaceInputs(latlng) {
    const p = latlng.wrap();
    el.lon.value = p.lng.toFixed(5);
    el.lat.value = p.lat.toFixed(5);
  }

  function showQueryPlace(lat, lon) {
    if (queryMarker) query.removeLayer(queryMarker);
    queryMarker = null;
    if (lat === null) return;
    queryMarker = L.marker([lat, lon], { alt: "Query place", title: "Query place (drag to move)", draggable: true,
                                         keyboard: true, pane: "query", shadowPane: "query" });
    queryMarker.on("dragend", () => {
      setMode("point");
      setPlaceInputs(queryMarker.getLatLng());
    });
    queryMarker.addTo(query);
  }

  function setMode(mode) {
    const radio = el.query.querySelector(`input[name=place][value=${mode}]`);
    radio.checked = true;
    syncPlace();
  }

  function syncPlace() {
    const mode = placeMode();
    el.lon.disabled = el.lat.disabled = mode !== "point";
    if (mode === "centre") setPlaceInputs(map.getCenter());
    if (mode === "none") { el.lon.value = ""; el.lat.value = ""; showQueryPlace(null); }
  }

  function placeFromInputs() {
    const lon = Number.parseFloat(el.lon.value), lat = Number.parseFloat(el.lat.value);
    if (!Number.isFinite(lon) || !Number.isFinite(lat) || Math.abs(lon) > 180 || Math.abs(lat) > 90) return null;
    return { lon, lat };
  }

  el.query.querySelectorAll("input[name=place]").forEach((r) => r.addEventListener("change", syncPlace));
  map.on("move", () => { if (placeMode() === "centre") setPlaceInputs(map.getCenter()); });
  map.on("click", (e) => {
    setMode("point");
    setPlaceInputs(e.latlng);
    showQueryPlace(e.latlng.lat, e.latlng.wrap().lng);
  });
  for (const input of [el.lon, el.lat]) {
    input.addEventListener("change", () => {
      const p = placeFromInputs();
      if (p) showQueryPlace(p.lat, p.lon);
    });
  }

  // ---------------------------------------------------------------- fused posts

  async function loadPostCollections() {
    const data = await api("/viewer/posts-collections");
    const list = data.collections || [];
    if (!list.length) {
      el.postsCollection.replaceChildren(new Option("No posts collection (ingest posts first)", ""));
      return;
    }
    el.postsCollection.replaceChildren(...list.map((c) => new Option(
      `${c.id}${c.embedded ? "" : " (no embeddings)"}`, c.id)));
  }

  function formatScore(v) {
    return typeof v === "number" ? (Math.abs(v) >= 0.01 ? v.toFixed(4) : v.toPrecision(3)) : String(v);
  }

  function postPopup(r, position, modalities, sameSpot) {
    const div = document.createElement("div");
    div.className = "post-popup";
    div.dataset.postId = r.id;
    const text = document.createElement("p");
    text.className = "post-text";
    text.textContent = r.text || "(no text)";
    const rows = [["Time", r.datetime ? r.datetime.replace("+00:00", "Z") : "unknown"],
                  ["Fused score", formatScore(r.score)], ["Fused rank", `#${position}`], ["Event", r.event],
                  ["Place", `lat ${r.lat.toFixed(4)}, lon ${r.lon.toFixed(4)}${r.location_source ? " (" + r.location_source
                    + ")" : ""}`], ["Post id", r.id]];
    const dl = definitionList(rows);
    const head = document.createElement("p");
    head.textContent = "Rank in each modality:";
    head.className = "hint";
    const ranks = document.createElement("ul");
    ranks.className = "ranks";
    const names = [...new Set([...modalities, ...Object.keys(r.ranks || {})])];
    for (const m of names) {
      const li = document.createElement("li");
      const rank = (r.ranks || {})[m];
      li.textContent = rank === undefined || rank === null ? `${m}: not among its top results` : `${m}: rank ${rank}`;
      li.dataset.modality = m;
      ranks.append(li);
    }
    div.append(text, dl, head, ranks);
    if (sameSpot > 1) {
      const note = document.createElement("p");
      note.className = "hint";
      note.textContent = `${sameSpot - 1} more post${sameSpot > 2 ? "s" : ""} at this place: see the list.`;
      div.append(note);
    }
    return div;
  }

  // The tooltip of a post's marker: its rank and the start of its text, as a text node (Leaflet writes strings as HTML).
  function postTooltip(r, position) {
    const span = document.createElement("span");
    span.className = "post-tooltip";
    span.textContent = `#${position} ${(r.text || "").slice(0, 60)}`;
    return span;
  }

  function clearPosts() {
    posts.clearLayers();
    state.markers.clear();
    el.results.replaceChildren();
  }

  function showPosts(body) {
    clearPosts();
    const results = body.results || [];
    const modalities = body.modalities || [];
    const spots = new Map();
    for (const r of results) {
      if (typeof r.lon === "number" && typeof r.lat === "number") {
        const k = `${r.lon.toFixed(5)},${r.lat.toFixed(5)}`;
        spots.set(k, (spots.get(k) || 0) + 1);
      }
    }
    let placed = 0;
    // Worst first, so the best post of a place is drawn on top.
    for (let i = results.length - 1; i >= 0; i--) {
      const r = results[i];
      if (typeof r.lon !== "number" || typeof r.lat !== "number") continue;
      placed++;
      const top = i < Math.max(3, results.length / 5);
      const marker = L.circleMarker([r.lat, r.lon], {
        pane: "posts", radius: top ? 9 : 6, color: "#7a2a06", weight: 1.5, fillColor: top ? "#e8590c" : "#fd7e14",
        fillOpacity: 0.85, className: "post-marker", bubblingMouseEvents: false,
      });
      const sameSpot = spots.get(`${r.lon.toFixed(5)},${r.lat.toFixed(5)}`);
      marker.bindPopup(() => postPopup(r, i + 1, modalities, sameSpot), { maxWidth: 320 });
      marker.bindTooltip(() => postTooltip(r, i + 1), { direction: "top" });
      marker.addTo(posts);
      state.markers.set(r.id, marker);
    }
    results.forEach((r, i) => {
      const li = document.createElement("li");
      const marker = state.markers.get(r.id);
      if (marker) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = r.text || r.id;
        b.title = r.text || r.id;
        b.setAttribute("aria-label", `Result ${i + 1}: ${r.text || r.id}. Show on the map.`);
        b.addEventListener("click", () => {
          map.setView(marker.getLatLng(), Math.max(map.getZoom(), 10));
          marker.openPopup();
        });
        li.append(b);
      } else {
        const span = document.createElement("span");
        span.className = "unplaced";
        span.textContent = `${r.text || r.id} (no place)`;
        li.append(span);
      }
      el.results.append(li);
    });
    const unplaced = results.length - placed;
    el.summary.textContent = results.length
      ? `${results.length} post${results.length === 1 ? "" : "s"} fused with ${body.method || "?"} over `
        + `${modalities.join(", ") || "no modality"}; ${placed} on the map${unplaced ? `, ${unplaced} without a place` : ""}.`
      : "No post matches this query.";
    if (placed) {
      const bounds = posts.getBounds();
      if (queryMarker) bounds.extend(queryMarker.getLatLng());
      map.fitBounds(bounds.pad(0.2), { maxZoom: 12 });
    }
  }

  el.query.addEventListener("submit", (e) => {
    e.preventDefault();
    const inputs = { method: el.method.value };
    if (el.postsCollection.value) inputs.collection = el.postsCollection.value;
    const limit = Number.parseInt(el.limit.value, 10);
    if (Number.isFinite(limit)) inputs.limit = limit;
    const text = el.text.value.trim();
    if (text) inputs.text = text;
    const when = el.datetime.value.trim();
    if (when) inputs.datetime = when;
    if (placeMode() !== "none") {
      if (placeMode() === "centre") setPlaceInputs(map.getCenter());
      const p = placeFromInputs();
      if (!p) {
        showError(new Error("Longitude must be a number in [-180, 180] and latitude in [-90, 90]."));
        (el.lon.disabled ? el.run : el.lon).focus();
        return;
      }
      inputs.lon = p.lon;
      inputs.lat = p.lat;
      showQueryPlace(p.lat, p.lon);
    }
    busy(el.run, "Searching…", async () => {
      try {
        const data = await api(FUSION_URL, { method: "POST", body: { inputs } });
        const body = data.results ? data : (data.ranking || data);
        clearError();
        showPosts(body);
        if (!map.hasLayer(posts)) posts.addTo(map);
      } catch (err) {
        el.summary.textContent = "The search failed: see the message above.";
        showError(err);
      }
    });
  });

  el.clear.addEventListener("click", () => {
    clearPosts();
    el.summary.textContent = "No search yet.";
  });

  // ---------------------------------------------------------------- start

  syncPlace();
  Promise.allSettled([loadScenes(), loadPostCollections()]).then((outcomes) => {
    const failed = outcomes.filter((o) => o.status === "rejected");
    if (failed.length) showError(failed[0].reason);
    schedulePatches();
    document.body.dataset.ready = "true";
  });
})();
