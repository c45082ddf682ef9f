// Shared by the EOFusion pages (annotation page, map viewer): JSON calls to the server's own APIs and
// the error box. Plain JS, no dependency; loaded before the page's script, exposes window.EOFusion.
"use strict";

(() => {
  class ServerError extends Error {
    constructor(message, status) {
      super(message);
      this.name = "ServerError";
      this.status = status;
    }
  }

  // A JSON request; a server error becomes a ServerError carrying the API's own description
  // (STAC and OGC API answer {description}, FastAPI {detail}).
  async function api(path, { method = "GET", body, apiKey = "" } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (apiKey) headers["X-API-Key"] = apiKey;
    let resp;
    try {
      resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      throw new ServerError(`${method} ${path}: the server did not answer (${err.message})`, 0);
    }
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!resp.ok) {
      let what = data && (data.description || data.detail || data.message);
      if (what && typeof what !== "string") what = JSON.stringify(what);
      what = what || text.slice(0, 500) || resp.statusText || "no description";
      throw new ServerError(`${resp.status}${resp.statusText ? " " + resp.statusText : ""}: ${what}`, resp.status);
    }
    if (data === null) throw new ServerError(`${method} ${path}: the answer is not JSON`, resp.status);
    return data;
  }

  function clearError(box) {
    box.hidden = true;
    box.replaceChildren();
  }

  // Show an error in the page's message box, with a button that dismisses it.
  function showError(box, err) {
    const strong = document.createElement("strong");
    strong.textContent = "Error: ";
    const text = document.createElement("span");
    text.className = "message-text";
    text.textContent = err && err.message ? err.message : String(err);
    const close = document.createElement("button");
    close.type = "button";
    close.className = "dismiss";
    close.textContent = "Dismiss";
    close.addEventListener("click", () => clearError(box));
    box.replaceChildren(strong, text, close);
    box.hidden = false;
  }

  // Run work() with the button disabled and relabelled, restored whatever happens.
  async function busy(button, label, work) {
    const original = button.textContent;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = label;
    try {
      return await work();
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      button.textContent = original;
    }
  }

  window.EOFusion = Object.freeze({ ServerError, api, showError, clearError, busy });
})();
