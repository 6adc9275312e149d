// pixfind web page: text search, search by image (choose or drop), "more like this",
// infinite scroll. Talks only to this server's /api; no external resources.
"use strict";

const PAGE = 30;
const $ = (id) => document.getElementById(id);
const grid = $("grid");
const state = { kind: null, arg: null, offset: 0, next: null, loading: false, seq: 0 };

function setMessage(text, isError = false) {
  const el = $("message");
  el.hidden = !text;
  el.textContent = text || "";
  el.classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    await askToken();
    return api(path, options);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

function askToken() {
  return new Promise((resolve) => {
    const dialog = $("login");
    const form = $("login-form");
    form.onsubmit = async (event) => {
      event.preventDefault();
      const response = await fetch("/api/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: $("token").value }),
      });
      if (response.ok) {
        dialog.close();
        resolve();
      } else {
        $("login-error").hidden = false;
        $("login-error").textContent = "Wrong token, try again.";
      }
    };
    if (!dialog.open) dialog.showModal();
  });
}

async function loadStatus() {
  try {
    const s = await api("/api/status");
    const when = s.last_update ? new Date(s.last_update).toLocaleString() : "never";
    $("status").textContent = `${s.images.toLocaleString()} photos · model ${s.model} · updated ${when}`;
  } catch (err) {
    $("status").textContent = err.message;
  }
}

// A photo's thumbnail, linked to the original (search results, duplicates view).
function thumbLink(hit) {
  const link = document.createElement("a");
  link.href = hit.image_url;
  link.className = "thumb";
  link.title = hit.path;
  const img = document.createElement("img");
  img.src = hit.thumbnail_url;
  img.alt = hit.path.split("/").pop();
  img.loading = "lazy";
  img.decoding = "async";
  if (hit.width && hit.height) {
    img.width = hit.width;
    img.height = hit.height;
  }
  link.append(img);
  return link;
}

function card(hit) {
  const item = document.createElement("figure");
  item.className = "card";
  item.dataset.id = hit.id;
  const link = thumbLink(hit);
  const img = link.firstChild;
  link.addEventListener("click", (event) => {
    event.preventDefault();
    openViewer(hit);
  });
  const caption = document.createElement("figcaption");
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  score.title = "cosine similarity";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = img.alt;
  name.title = hit.path;
  const similar = document.createElement("button");
  similar.type = "button";
  similar.className = "similar";
  similar.textContent = "More like this";
  similar.addEventListener("click", () => searchSimilar(hit));
  caption.append(score, name, similar);
  item.append(link, caption);
  const words = hit.matched_words || [];
  if (words.length) item.append(matched(hit.matched_fields || [], words));
  return item;
}

// The words the keyword index matched (hybrid and keyword modes), highlighted.
function matched(fields, words) {
  const line = document.createElement("p");
  line.className = "matched";
  line.title = `matched in ${fields.join(", ")}`;
  const label = document.createElement("span");
  label.className = "fields";
  label.textContent = `${fields.join(", ")}: `;
  line.append(label);
  words.forEach((word, i) => {
    if (i) line.append(" ");
    const mark = document.createElement("mark");
    mark.textContent = word;
    line.append(mark);
  });
  return line;
}

function openViewer(hit) {
  $("viewer-img").src = hit.image_url;
  $("viewer-img").alt = hit.path;
  $("viewer-path").textContent = `${hit.path} · ${hit.width}×${hit.height}`;
  $("viewer-open").href = hit.image_url;
  $("viewer-similar").onclick = () => {
    $("viewer").close();
    searchSimilar(hit);
  };
  $("viewer").showModal();
}

function request(kind, arg, offset) {
  const page = `k=${PAGE}&offset=${offset}`;
  if (kind === "text") return api(`/api/search?q=${encodeURIComponent(arg)}&${page}`);
  if (kind === "similar") return api(`/api/search/similar/${arg.id}?${page}`);
  const form = new FormData();
  form.append("file", arg);
  return api(`/api/search/image?${page}`, { method: "POST", body: form });
}

async function run(kind, arg) {
  state.kind = kind;
  state.arg = arg;
  state.offset = 0;
  state.next = null;
  state.seq += 1;
  grid.replaceChildren();
  window.scrollTo(0, 0);
  await loadPage();
}

async function loadPage() {
  if (state.loading || state.kind === null) return;
  const seq = state.seq;
  state.loading = true;
  setMessage("Searching…");
  try {
    const data = await request(state.kind, state.arg, state.offset);
    if (seq !== state.seq) return;
    for (const hit of data.results) grid.append(card(hit));
    state.next = data.next_offset;
    state.offset = data.next_offset ?? state.offset + data.results.length;
    const shown = grid.children.length;
    setMessage(shown ? `${shown} results · ${data.took_ms.toFixed(0)} ms` : "No results.");
  } catch (err) {
    if (seq === state.seq) setMessage(err.message, true);
  } finally {
    state.loading = false;
    $("more").hidden = state.next === null;
  }
}

function showQueryImage(src, label) {
  $("query-image").hidden = !src;
  if (src) $("query-preview").src = src;
  $("query-label").textContent = label || "";
}

function searchSimilar(hit) {
  $("q").value = "";
  showQueryImage(hit.thumbnail_url, `More like ${hit.path.split("/").pop()}`);
  run("similar", hit);
}

function searchFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setMessage(`${file.name} is not an image.`, true);
    return;
  }
  $("q").value = "";
  showQueryImage(URL.createObjectURL(file), `Photos like ${file.name}`);
  run("image", file);
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("q").value.trim();
  if (!q) return;
  showQueryImage(null);
  history.replaceState(null, "", `?q=${encodeURIComponent(q)}`);
  run("text", q);
});
$("file").addEventListener("change", (event) => searchFile(event.target.files[0]));
$("more").addEventListener("click", loadPage);

// infinite scroll: load the next page when the bottom of the grid comes into view
new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting) && state.next !== null) loadPage();
}, { rootMargin: "400px" }).observe($("sentinel"));

// drag and drop an image anywhere on the page
let dragDepth = 0;
window.addEventListener("dragenter", (event) => {
  if (![...event.dataTransfer.types].includes("Files")) return;
  dragDepth += 1;
  $("drop").hidden = false;
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) $("drop").hidden = true;
});
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  $("drop").hidden = true;
  searchFile(event.dataTransfer.files[0]);
});

loadStatus();
const initial = new URLSearchParams(location.search).get("q");
if (initial) {
  $("q").value = initial;
  run("text", initial);
} else {
  setMessage("Type what you are looking for, or drop a photo anywhere on this page.");
}
