// EOFusion home page: what is loaded, where, and how to start. Filled from /?f=json; every value the
// server sends goes into text nodes or attributes, never into HTML. Leaflet (vendored) draws the extents.
"use strict";

(() => {
  const COLORS = ["#1f5fbf", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5c940d"];
  const POSTS_COLOR = "#495057";
  const $ = (id) => document.getElementById(id);
  const box = $("message");

  function text(tag, value, className) {
    const node = document.createElement(tag);
    node.textContent = value;
    if (className) node.className = className;
    return node;
  }

  function link(href, label) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = label;
    return a;
  }

  const number = (n) => Number(n).toLocaleString("en");

  function renderTasks(doc) {
    const list = $("tasks");
    list.replaceChildren();
    for (const t of doc.tasks) {
      const li = document.createElement("li");
      li.className = "task";
      li.dataset.task = t.id;
      const a = link(t.href, t.title);
      a.className = "task-link";
      li.append(a, text("p", t.description, "task-text"));
      list.append(li);
    }
    $("qgis-url").textContent = doc.start.qgis.url;
    $("qgis-layers").textContent = doc.start.qgis.layers.join(", ");
  }

  function renderCollections(doc, colorOf, zoomTo) {
    const body = $("collections").querySelector("tbody");
    body.replaceChildren();
    if (!doc.collections.length) {
      const tr = document.createElement("tr");
      const td = text("td", "No collection yet: run `eofusion demo` or an `eofusion ingest` command.");
      td.colSpan = 5;
      tr.append(td);
      body.append(tr);
    }
    for (const c of doc.collections) {
      const tr = document.createElement("tr");
      tr.dataset.collection = c.id;
      const name = document.createElement("td");
      const swatch = text("span", "", "swatch");
      swatch.style.backgroundColor = colorOf(c.id) || "transparent";
      name.append(swatch, link(c.href, c.id));
      if (c.title && c.title !== c.id) name.append(text("span", c.title, "title"));
      if (c.bbox) {
        const show = text("button", "show on map", "show");
        show.type = "button";
        show.addEventListener("click", () => zoomTo(c.id));
        name.append(show);
      }
      const kinds = Object.entries(c.descriptors).map(([k, n]) => `${k} ${number(n)}`).join(", ");
      const items = text("td", number(c.items), "num");
      items.dataset.items = String(c.items);
      tr.append(name, items, text("td", kinds || "none"), text("td", c.ground_truth ? number(c.ground_truth) : "none"),
        text("td", c.annotated ? number(c.annotated) : "none"));
      body.append(tr);
    }
    const posts = $("posts").querySelector("tbody");
    posts.replaceChildren();
    if (!doc.posts.length) {
      const tr = document.createElement("tr");
      const td = text("td", "No posts: start the demo with --tweets PATH (a CrisisLex folder) or run " +
        "`eofusion ingest tweets crisislex PATH`.");
      td.colSpan = 3;
      tr.append(td);
      posts.append(tr);
    }
    for (const p of doc.posts) {
      const tr = document.createElement("tr");
      tr.dataset.posts = p.id;
      tr.append(text("td", p.id), text("td", number(p.posts), "num"), text("td", number(p.located), "num"));
      posts.append(tr);
    }
  }

  function renderStart(doc) {
    $("curl-lines").textContent = doc.start.curl.join("\n");
    $("pystac-lines").textContent = doc.start.pystac_client;
    const list = $("links");
    list.replaceChildren();
    for (const l of doc.links) {
      const li = document.createElement("li");
      li.append(link(l.href, l.title));
      if (l.description) li.append(" ", text("small", l.description));
      list.append(li);
    }
  }

  // The map: one rectangle per extent, and a dot at its centre so that small extents show at world zoom.
  function buildMap(doc) {
    const summary = $("map-summary");
    const colors = new Map();
    doc.collections.filter((c) => c.bbox).forEach((c, i) => colors.set(c.id, COLORS[i % COLORS.length]));
    const colorOf = (id) => colors.get(id);
    if (!window.L) {
      summary.textContent = "The map library (Leaflet) is not bundled yet: run deploy/setup.sh.";
      return { colorOf, zoomTo: () => {} };
    }
    const L = window.L;
    const map = L.map("map", { worldCopyJump: false, attributionControl: false }).setView([20, 0], 1);
    // No base map (nothing is fetched from elsewhere): a 30° graticule gives the extents their place.
    const graticule = { color: "#9aa5b1", weight: 1, opacity: 0.6, interactive: false };
    for (let lon = -180; lon <= 180; lon += 30) L.polyline([[-85, lon], [85, lon]], graticule).addTo(map);
    for (let lat = -60; lat <= 60; lat += 30) L.polyline([[lat, -180], [lat, 180]], graticule).addTo(map);
    const layers = new Map();
    const all = [];
    const add = (id, bbox, color, label, dashed) => {
      const bounds = L.latLngBounds([bbox[1], bbox[0]], [bbox[3], bbox[2]]);
      const tip = text("span", label);
      const rect = L.rectangle(bounds, { color, weight: 2, fillOpacity: 0.15, dashArray: dashed ? "4 4" : null,
        className: "extent" });
      const dot = L.circleMarker(bounds.getCenter(), { radius: 6, color, fillColor: color, fillOpacity: 0.8,
        className: "extent-dot" });
      rect.bindTooltip(tip.cloneNode(true), { sticky: true });
      dot.bindTooltip(tip, { permanent: true, direction: "top", offset: [0, -6], className: "extent-label" });
      const group = L.featureGroup([rect, dot]).addTo(map);
      rect.getElement().dataset.extent = id;
      dot.getElement().dataset.extent = id;
      layers.set(id, bounds);
      all.push(bounds);
      return group;
    };
    for (const c of doc.collections) {
      if (c.bbox) add(c.id, c.bbox, colors.get(c.id), `${c.id}: ${number(c.items)} items`, false);
    }
    for (const p of doc.posts) {
      if (p.bbox) add(`posts:${p.id}`, p.bbox, POSTS_COLOR, `posts ${p.id}: ${number(p.located)} located`, true);
    }
    L.control.scale({ imperial: false }).addTo(map);
    if (all.length) {
      const union = L.latLngBounds(all.flatMap((b) => [b.getSouthWest(), b.getNorthEast()]));
      map.fitBounds(union.pad(0.2), { maxZoom: 9 });
      summary.textContent = `${all.length} extent${all.length === 1 ? "" : "s"}: ` +
        `${doc.collections.filter((c) => c.bbox).length} collection(s), ${doc.posts.filter((p) => p.bbox).length} ` +
        "posts collection(s). Use “show on map” to zoom to one.";
    } else {
      summary.textContent = "Nothing with a footprint is loaded yet.";
    }
    const zoomTo = (id) => {
      const bounds = layers.get(id);
      if (bounds) map.fitBounds(bounds.pad(0.3), { maxZoom: 12 });
      $("map").scrollIntoView({ block: "nearest" });
    };
    return { colorOf, zoomTo };
  }

  async function init() {
    try {
      const doc = await window.EOFusion.api("/?f=json");
      renderTasks(doc);
      const { colorOf, zoomTo } = buildMap(doc);
      renderCollections(doc, colorOf, zoomTo);
      renderStart(doc);
      document.body.setAttribute("data-ready", "true");
    } catch (err) {
      window.EOFusion.showError(box, err);
    }
  }

  init();
})();
