// pixfind web page, the "Duplicates" view: groups of exact and near copies from
// /api/duplicates, best copy first and marked. It only shows them; nothing is deleted.
"use strict";

const dups = { offset: 0, next: null, loading: false };

function showDuplicates(on) {
  $("dups").hidden = !on;
  $("grid").hidden = on;
  $("dups-button").setAttribute("aria-pressed", String(on));
  if (on) {
    $("more").hidden = true;
    showQueryImage(null);
  }
}

function megabytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.round(bytes / 1e3)} KB`;
}

function dupCopy(copy) {
  const item = document.createElement("figure");
  item.className = copy.best ? "dup-copy best" : "dup-copy";
  item.dataset.id = copy.id;
  const link = thumbLink(copy);
  link.target = "_blank";
  link.rel = "noopener";
  const caption = document.createElement("figcaption");
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = copy.best
    ? "Best copy"
    : copy.same_file ? "Same file" : `${copy.distance} bits apart`;
  const facts = document.createElement("span");
  facts.className = "facts";
  const day = new Date(copy.taken_at * 1000).toLocaleDateString();
  facts.textContent = `${copy.width}×${copy.height} · ${megabytes(copy.size)} · ${day}`;
  const path = document.createElement("span");
  path.className = "path";
  path.textContent = copy.path;
  caption.append(badge, facts, path);
  item.append(link, caption);
  return item;
}

function dupGroup(group, number) {
  const section = document.createElement("section");
  section.className = "dup-group";
  const title = document.createElement("h2");
  const kind = group.kind === "exact" ? "identical files" : "near copies";
  title.textContent = `Group ${number}: ${group.copies.length} photos, ${kind}`;
  const row = document.createElement("div");
  row.className = "dup-row";
  for (const copy of group.copies) row.append(dupCopy(copy));
  section.append(title, row);
  return section;
}

async function loadDuplicates(reset) {
  if (dups.loading) return;
  dups.loading = true;
  if (reset) {
    dups.offset = 0;
    $("dups-list").replaceChildren();
  }
  setMessage("Looking for duplicates…");
  try {
    const data = await api(`/api/duplicates?limit=20&offset=${dups.offset}`);
    data.groups.forEach((g, i) => $("dups-list").append(dupGroup(g, dups.offset + i + 1)));
    dups.next = data.next_offset;
    dups.offset = data.next_offset ?? dups.offset + data.groups.length;
    const spare = data.total_groups
      ? `${data.total_groups} groups of duplicates · ${data.copies} copies besides the best ones`
      : "No duplicates found.";
    const note = data.unhashed ? ` · ${data.unhashed} photos not hashed yet (run pixfind index)` : "";
    setMessage(`${spare} among ${data.photos} photos · best copy: ${data.keep}${note}`);
  } catch (err) {
    setMessage(err.message, true);
  } finally {
    dups.loading = false;
    $("dups-more").hidden = dups.next === null;
  }
}

$("dups-button").addEventListener("click", () => {
  history.replaceState(null, "", "?view=duplicates");
  showDuplicates(true);
  loadDuplicates(true);
});
$("dups-more").addEventListener("click", () => loadDuplicates(false));
// any search leaves the duplicates view
$("search-form").addEventListener("submit", () => showDuplicates(false));
$("file").addEventListener("change", () => showDuplicates(false));
window.addEventListener("drop", () => showDuplicates(false));

if (new URLSearchParams(location.search).get("view") === "duplicates") {
  showDuplicates(true);
  loadDuplicates(true);
}
