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
  dupes: false,       // whether the duplicates view is shown
  distance: null,     // its max distance; null: the server's default
  debounce: null,
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
const copies = (n) => `+${n.toLocaleString()} ${n === 1 ? "copy" : "copies"}`;

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function humanBytes(n) {
  if (n < 1024) return plural(n, "byte");
  const [v, unit] = n < 1 << 20 ? [n / 1024, "KiB"] : n < 1 << 30 ? [n / (1 << 20), "MiB"] : [n / (1 << 30), "GiB"];
  return `${v.toFixed(v < 10 ? 1 : 0)} ${unit}`;
}

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

// Runs a query, shows its answer; a newer query cancels an older one.
async function run(fetcher, show) {
  if (page.inflight) page.inflight.abort();
  const controller = new AbortController();
  page.inflight = controller;
  document.body.classList.add("busy");
  try {
    const body = await fetcher(controller.signal);
    showMessage("");
    show(body);
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
  return { k: $("k").value || "24", label: $("label").value, max_distance: $("cutoff").value.trim() };
}

function search() {
  const q = $("q").value.trim();
  if (!q && !page.example) {
    showMessage("Type what to look for, or pick, drop or paste an image.", "info");
    $("q").focus();
    return;
  }
  const { k, label, max_distance } = options();
  const form = new FormData();
  if (q) form.append("q", q);
  if (page.example) form.append("image", page.example, page.example.name || "pasted-image");
  form.append("k", k);
  if (label) form.append("label", label);
  if (max_distance) form.append("max_distance", max_distance);
  page.last = { kind: "search" };
  if (!page.example) remember({ q, label, k, max_distance });
  const what = [q ? `“${q}”` : "", page.example ? "the query image" : ""].filter(Boolean).join(" + ");
  run((signal) => api("/api/search", { method: "POST", body: form, signal }), (body) => render(body, what));
}

function similar(id, name) {
  const { k, label, max_distance } = options();
  const params = new URLSearchParams({ k });
  if (label) params.set("label", label);
  if (max_distance) params.set("max_distance", max_distance);
  page.last = { kind: "similar", id, name };
  remember({ like: id, label, k, max_distance });
  run((signal) => api(`/api/similar/${encodeURIComponent(id)}?${params}`, { signal }),
    (body) => render(body, `more like ${name}`));
}

function again() {
  if (page.dupes) loadDupes();
  else if (page.last && page.last.kind === "similar") similar(page.last.id, page.last.name);
  else if (page.last) search();
}

// Keeps text and "more like this" queries in the address, so reload and back work.
function remember(fields) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(fields)) if (value) params.set(key, value);
  history.replaceState(null, "", `?${params}`);
}

function render({ hits, took_ms }, describe) {
  page.hits = hits;
  $("help").hidden = true;
  const { label, max_distance } = options();
  const scope = (label ? ` with label ${label}` : "") + (max_distance ? ` within distance ${max_distance}` : "");
  $("summary").textContent = hits.length
    ? `${plural(hits.length, "result")} for ${describe}${scope} · ${took_ms} ms`
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
  meta.append(lab);
  if (hit.other_paths) {
    const more = el("span", "copies", copies(hit.other_paths.length));
    more.title = `The same bytes also at:\n${hit.other_paths.join("\n")}`;
    meta.append(more);
  }
  meta.append(score);
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
  const others = hit.other_paths || [];
  $("viewer-copies").textContent = others.join("\n");
  $("viewer-copies").hidden = $("viewer-copies-term").hidden = !others.length;
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

// The duplicates view: groups of exact copies and near duplicates, the suggested keeper first.
// It only reads: copying the paths is as far as it goes.
function showDupes(on) {
  page.dupes = on;
  document.body.classList.toggle("dupes-view", on);
  $("dupes-view").setAttribute("aria-pressed", on);
}

function loadDupes() {
  const label = $("label").value;
  const params = new URLSearchParams();
  if (page.distance !== null) params.set("max_distance", page.distance);
  if (label) params.set("label", label);
  remember({ view: "dupes", label, d: page.distance });
  $("dupes-summary").textContent = "Looking for duplicates…";
  const failed = (e) => { if (e.name !== "AbortError") $("dupes-summary").textContent = ""; throw e; };
  run((signal) => api(`/api/dupes?${params}`, { signal }).catch(failed), renderDupes);
}

function showDistance() {
  $("distance-value").textContent = Number($("distance").value).toFixed(2);
}

function renderDupes(body) {
  if (page.distance === null) {
    $("distance").value = body.default_max_distance;
    showDistance();
  }
  const label = $("label").value;
  const where = `within distance ${body.max_distance.toFixed(2)} among ${plural(body.documents, "image")}` +
    (label ? ` with label ${label}` : "");
  const files = body.groups.reduce((n, g) => n + g.members.length, 0);
  $("dupes-summary").textContent = body.groups.length
    ? `${plural(body.groups.length, "group")} of ${plural(files, "file")} ${where} · ${body.took_ms} ms`
    : `No duplicates ${where}`;
  $("groups").replaceChildren(...body.groups.map(dupeGroup));
}

function dupeGroup(group) {
  const li = el("li", "group");
  const seen = {};
  for (const m of group.members) seen[m.id] = (seen[m.id] || 0) + 1;
  const head = el("div", "group-head");
  const kind = group.exact ? "all the same bytes" : `up to distance ${group.spread.toFixed(3)}`;
  const copy = el("button", "copy", "Copy paths");
  copy.type = "button";
  copy.title = "Copy the paths of all but the keeper, one per line";
  const status = el("span", "copied");
  status.setAttribute("role", "status");
  const box = el("textarea", "paths");
  box.readOnly = true;
  box.hidden = true;
  box.setAttribute("aria-label", "The paths of all but the keeper");
  const others = group.members.filter((m) => !m.keep).map((m) => m.path);
  box.rows = Math.min(others.length, 8);
  copy.addEventListener("click", () => copyPaths(others, box, status));
  head.append(el("span", "", `${plural(group.members.length, "file")}, ${kind}`), copy, status);
  const members = el("ol", "members");
  members.append(...group.members.map((m) => dupeMember(m, seen[m.id] > 1)));
  li.append(head, box, members);
  return li;
}

function dupeMember(m, sameBytes) {
  const li = el("li", m.keep ? "member keep" : "member");
  li.dataset.id = m.id;
  const link = el("a", "thumb");
  link.href = `/image/${encodeURIComponent(m.id)}`;
  link.target = "_blank";
  link.rel = "noopener";
  link.title = "Open the original";
  const img = el("img");
  img.loading = "lazy";
  img.alt = fileName(m.path);
  img.src = `/thumb/${encodeURIComponent(m.id)}`;
  img.addEventListener("error", () => thumbFailed(link, img.src), { once: true });
  link.append(img);
  const badges = el("p", "badges");
  if (m.keep) badges.append(el("span", "badge keep", "keep"));
  if (sameBytes) badges.append(el("span", "badge same", "same bytes"));
  if (!m.on_disk) badges.append(el("span", "badge gone", "not on disk"));
  if (!m.keep) badges.append(el("span", "distance", `distance ${m.distance.toFixed(3)}`));
  const date = m.mtime_ms === null ? "date unknown" : new Date(m.mtime_ms).toLocaleString();
  const facts = el("p", "member-facts", `${m.width}×${m.height} · ${humanBytes(m.bytes)} · ${date}`);
  li.append(link, badges, facts, el("p", "path", m.path));
  return li;
}

// To the clipboard where the browser allows it; else the paths are shown selected, to copy by hand.
async function copyPaths(paths, box, status) {
  box.value = paths.join("\n");
  try {
    await navigator.clipboard.writeText(box.value);
    box.hidden = true;
    status.textContent = `Copied ${plural(paths.length, "path")}`;
  } catch (_) {
    box.hidden = false;
    box.focus();
    box.select();
    status.textContent = "Copying was not allowed: the paths are selected below, press Ctrl+C";
  }
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
  $("search").addEventListener("submit", (e) => { e.preventDefault(); showDupes(false); search(); });
  $("dupes-view").addEventListener("click", () => {
    showDupes(!page.dupes);
    if (page.dupes) loadDupes();
    else if (page.last) again();
    else remember({});
  });
  $("distance").addEventListener("input", showDistance);
  $("distance").addEventListener("change", () => {
    page.distance = Number($("distance").value);
    clearTimeout(page.debounce);
    page.debounce = setTimeout(() => { if (page.dupes) loadDupes(); }, 250);
  });
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
  if (params.get("max_distance")) $("cutoff").value = params.get("max_distance");
  if (params.get("d")) {
    page.distance = Number(params.get("d"));
    $("distance").value = page.distance;
    showDistance();
  }
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
    if (params.get("view") === "dupes") { showDupes(true); loadDupes(); }
    else if (params.get("like")) similar(params.get("like"), "that image");
    else if ($("q").value) search();
  });
}

start();
