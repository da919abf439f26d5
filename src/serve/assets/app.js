// imgvec's search page: talks to the JSON API of `imgvec serve` (see README). No framework, no build
// step. Every text that comes from the index (labels, paths, file names) is set with textContent or
// as an attribute value, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const page = {
  example: null,      // the query image (a File or Blob), if any
  exampleUrl: null,
  hits: [],
  current: -1,        // the hit shown in the viewer
  last: null,         // how to run the last query again: {kind: "search"} or {kind: "similar", id, name}
  inflight: null,     // AbortController of the request in progress
};

async function api(url, options = {}) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new Error("The server did not answer: is imgvec serve still running?");
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
  }
  return body;
}

function showMessage(text, kind = "error") {
  const m = $("message");
  m.textContent = text;
  m.className = `message ${kind}`;
  m.hidden = !text;
}

const fileName = (path) => path.split(/[\\/]/).pop() || path;
const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;

// The index's facts in the header line.
function showFacts(info) {
  const parts = [info.backend === "elasticsearch" ? "Elasticsearch" : "embedded store",
    `index ${info.index}`];
  if (info.model) parts.push(`${info.model}${info.dims ? ` (${info.dims}-d)` : ""}`);
  if (info.documents !== null) parts.push(plural(info.documents, "image"));
  $("facts").textContent = parts.join(" · ");
}

// The index's facts, and what is wrong with the server's set-up, if anything.
async function loadInfo() {
  try {
    const info = await api("/api/info");
    showFacts(info);
    const problems = [];
    if (info.model_error) problems.push(`No model, so no search by text or image: ${info.model_error}`);
    if (info.store_error) problems.push(info.store_error);
    else if (info.documents === 0) {
      problems.push(info.backend === "elasticsearch"
        ? `The index is empty: add images with "imgvec ingest DIR --label-from-dir".`
        : `The index is empty: add images with "imgvec ingest DIR --label-from-dir" (they show here as they are indexed).`);
    }
    if (problems.length) showMessage(problems.join(" "), "error");
    if (!info.text_search && !info.model_error) $("q").placeholder = "This model has no tokenizer: search by image";
  } catch (e) {
    $("facts").textContent = "";
    showMessage(e.message);
  }
}

async function loadLabels() {
  const select = $("label");
  const chosen = select.value;
  try {
    const labels = await api("/api/labels");
    const total = labels.reduce((n, l) => n + l.count, 0);
    select.replaceChildren(new Option(`all labels (${total.toLocaleString()})`, ""));
    for (const l of labels) select.add(new Option(`${l.label} (${l.count.toLocaleString()})`, l.label));
    select.value = labels.some((l) => l.label === chosen) ? chosen : "";
  } catch (_) { /* loadInfo says what is wrong */ }
}

// Runs a query, shows its hits; a newer query cancels an older one.
async function run(fetcher, describe) {
  if (page.inflight) page.inflight.abort();
  const controller = new AbortController();
  page.inflight = controller;
  document.body.classList.add("busy");
  try {
    const body = await fetcher(controller.signal);
    showMessage("");
    render(body.hits, body.took_ms, describe);
  } catch (e) {
    if (e.name !== "AbortError") showMessage(e.message);
  } finally {
    if (page.inflight === controller) {
      page.inflight = null;
      document.body.classList.remove("busy");
    }
  }
}

function options() {
  return { k: $("k").value || "24", label: $("label").value };
}

function search() {
  const q = $("q").value.trim();
  if (!q && !page.example) {
    showMessage("Type what to look for, or pick, drop or paste an image.", "info");
    $("q").focus();
    return;
  }
  const { k, label } = options();
  const form = new FormData();
  if (q) form.append("q", q);
  if (page.example) form.append("image", page.example, page.example.name || "pasted-image");
  form.append("k", k);
  if (label) form.append("label", label);
  page.last = { kind: "search" };
  if (!page.example) remember({ q, label, k });
  const what = [q ? `“${q}”` : "", page.example ? "the query image" : ""].filter(Boolean).join(" + ");
  run((signal) => api("/api/search", { method: "POST", body: form, signal }), what);
}

function similar(id, name) {
  const { k, label } = options();
  const params = new URLSearchParams({ k });
  if (label) params.set("label", label);
  page.last = { kind: "similar", id, name };
  remember({ like: id, label, k });
  run((signal) => api(`/api/similar/${encodeURIComponent(id)}?${params}`, { signal }), `more like ${name}`);
}

function again() {
  if (page.last && page.last.kind === "similar") similar(page.last.id, page.last.name);
  else if (page.last) search();
}

// Keeps text and "more like this" queries in the address, so reload and back work.
function remember(fields) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(fields)) if (value) params.set(key, value);
  history.replaceState(null, "", `?${params}`);
}

function render(hits, took, describe) {
  page.hits = hits;
  $("help").hidden = true;
  const label = $("label").value;
  const scope = label ? ` with label ${label}` : "";
  $("summary").textContent = hits.length
    ? `${plural(hits.length, "result")} for ${describe}${scope} · ${took} ms`
    : `No images${scope} found for ${describe}.`;
  $("results").replaceChildren(...hits.map(tile));
}

function tile(hit, index) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tile";
  button.dataset.index = index;
  button.dataset.id = hit.id;
  button.title = hit.path;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = fileName(hit.path);
  img.src = `/thumb/${encodeURIComponent(hit.id)}`;
  img.addEventListener("error", () => thumbFailed(button, img.src), { once: true });
  const caption = document.createElement("span");
  caption.className = "caption";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = fileName(hit.path);
  const meta = document.createElement("span");
  meta.className = "meta";
  const lab = document.createElement("span");
  lab.className = "label";
  lab.textContent = hit.label;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  score.title = `score ${hit.score.toFixed(4)}, distance ${hit.distance.toFixed(4)}`;
  meta.append(lab, score);
  caption.append(name, meta);
  button.append(img, caption);
  button.addEventListener("click", () => openViewer(index));
  li.append(button);
  return li;
}

// A thumbnail that did not load: ask the server why (the file may be gone) and show it.
async function thumbFailed(button, url) {
  button.classList.add("broken");
  let why = "no preview";
  try {
    const r = await fetch(url);
    const body = await r.json();
    if (body && body.error) why = body.error;
  } catch (_) { /* keep the short reason */ }
  const note = document.createElement("span");
  note.className = "why";
  note.textContent = why;
  button.prepend(note);
}

function openViewer(index) {
  const hit = page.hits[index];
  if (!hit) return;
  page.current = index;
  const img = $("viewer-img");
  img.src = `/thumb/${encodeURIComponent(hit.id)}`;
  img.alt = fileName(hit.path);
  const full = new Image();
  full.onload = () => { if (page.current === index) img.src = full.src; };
  full.src = `/image/${encodeURIComponent(hit.id)}`;
  $("viewer-name").textContent = fileName(hit.path);
  $("viewer-label").textContent = hit.label;
  $("viewer-score").textContent = hit.score.toFixed(4);
  $("viewer-distance").textContent = hit.distance.toFixed(4);
  $("viewer-path").textContent = hit.path;
  $("viewer-open").href = `/image/${encodeURIComponent(hit.id)}`;
  $("prev").disabled = index === 0;
  $("next").disabled = index === page.hits.length - 1;
  const viewer = $("viewer");
  if (!viewer.open) viewer.showModal();
  $("more").focus();
}

function step(delta) {
  const next = page.current + delta;
  if (next >= 0 && next < page.hits.length) openViewer(next);
}

function moreLikeThis() {
  const hit = page.hits[page.current];
  if (!hit) return;
  $("viewer").close();
  similar(hit.id, fileName(hit.path));
}

function setExample(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showMessage(`${file.name || "That file"} is not an image.`);
    return;
  }
  if (page.exampleUrl) URL.revokeObjectURL(page.exampleUrl);
  page.example = file;
  page.exampleUrl = URL.createObjectURL(file);
  $("example-img").src = page.exampleUrl;
  $("example").hidden = false;
  search();
}

function clearExample() {
  if (page.exampleUrl) URL.revokeObjectURL(page.exampleUrl);
  page.example = null;
  page.exampleUrl = null;
  $("example").hidden = true;
  $("example-img").removeAttribute("src");
  $("q").focus();
}

function wireDropAndPaste() {
  const drop = $("drop");
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types).includes("Files");
  document.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    drop.hidden = false;
  });
  document.addEventListener("dragleave", (e) => {
    if (e.relatedTarget === null) drop.hidden = true;
  });
  document.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    drop.hidden = true;
    setExample(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const file = Array.from(e.clipboardData ? e.clipboardData.files : []).find((f) => f.type.startsWith("image/"));
    if (!file) return; // text pastes into the search box as usual
    e.preventDefault();
    setExample(file);
  });
}

function wireKeys() {
  document.addEventListener("keydown", (e) => {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
    if ($("viewer").open) {
      if (e.key === "ArrowLeft") { step(-1); e.preventDefault(); }
      else if (e.key === "ArrowRight") { step(1); e.preventDefault(); }
      else if (e.key === "m" || e.key === "M") { moreLikeThis(); e.preventDefault(); }
    } else if (e.key === "/" && !typing) {
      e.preventDefault();
      $("q").focus();
      $("q").select();
    }
  });
}

function start() {
  $("search").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("file").addEventListener("change", (e) => { setExample(e.target.files[0]); e.target.value = ""; });
  $("example-clear").addEventListener("click", clearExample);
  $("label").addEventListener("change", again);
  $("more").addEventListener("click", moreLikeThis);
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("close").addEventListener("click", () => $("viewer").close());
  $("viewer").addEventListener("click", (e) => { if (e.target === $("viewer")) $("viewer").close(); });
  $("viewer").addEventListener("close", () => {
    const t = document.querySelector(`.tile[data-index="${page.current}"]`);
    if (t) t.focus();
  });
  wireDropAndPaste();
  wireKeys();

  const params = new URLSearchParams(location.search);
  if (params.get("k")) $("k").value = params.get("k");
  $("q").value = params.get("q") || "";
  // The counts follow the index while the page is in view: what an ingest or a watch adds, or a
  // prune removes, shows within seconds without a reload.
  setInterval(async () => {
    if (document.visibilityState !== "visible") return;
    try { showFacts(await api("/api/info")); } catch (_) { return; }
    loadLabels();
  }, 5000);
  Promise.all([loadInfo(), loadLabels()]).then(() => {
    if (params.get("label")) $("label").value = params.get("label");
    if (params.get("like")) similar(params.get("like"), "that image");
    else if ($("q").value) search();
  });
}

start();
