"use strict";
// Every text from the archive is set with textContent or as an attribute value: never as markup.
const TASKS = JSON.parse(document.getElementById("tasks").textContent);
let LYRICS = null; // parsed the first time someone opens lyrics

// One item per track; a task of another kind goes beside the music it was made from (mu: the
// audio ID, pa: the task), else, or when it has nothing to show, on its own line.
function buildItems() {
  const items = [], byAudio = new Map(), byTask = new Map();
  TASKS.forEach((task, ti) => {
    for (const track of task.t || []) {
      const item = { task, ti, track, extras: [] };
      items.push(item);
      if (track.a) byAudio.set(track.a, item);
      if (!byTask.has(task.i)) byTask.set(task.i, []);
      byTask.get(task.i).push(item);
    }
  });
  TASKS.forEach((task, ti) => {
    if ((task.t || []).length) return;
    const hosts = byAudio.has(task.mu) ? [byAudio.get(task.mu)] : byTask.get(task.pa);
    if (hosts && (task.f || []).length && task.o === "archived") {
      hosts.forEach((host) => host.extras.push(task));
    } else {
      items.push({ task, ti, track: null, extras: [] });
    }
  });
  items.sort((a, b) => a.ti - b.ti); // newest first, as TASKS is; sort is stable
  for (const item of items) {
    const t = item.track || {};
    item.hay = [t.n, t.g, t.m, t.a, item.task.i, item.task.k, item.task.o,
      ...item.extras.flatMap((x) => [x.i, x.k])].join(" ").toLowerCase();
  }
  return items;
}

const ITEMS = buildItems();
let shown = ITEMS, page = 0;
const list = document.getElementById("list");
const where = document.getElementById("where");
const prev = document.getElementById("prev"), next = document.getElementById("next");
const more = document.getElementById("more");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function duration(seconds) {
  if (!seconds) return null;
  const s = Math.round(seconds);
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

function fileName(path) { return path.slice(path.lastIndexOf("/") + 1); }

function fileLink(role, path, type) {
  if (/^image\//.test(type || "") || /\.(png|jpe?g)$/i.test(path)) {
    return el("a", { href: path }, el("img", { src: path, alt: role, loading: "lazy" }), " " + role);
  }
  if (/^audio\//.test(type || "") || /\.(mp3|wav)$/i.test(path)) {
    return el("span", {}, role + ": ",
      el("audio", { controls: "", preload: "none", src: path }), el("a", { href: path, download: "" }, fileName(path)));
  }
  if (/^video\//.test(type || "") || /\.mp4$/i.test(path)) {
    return el("span", {}, role + ": ",
      el("video", { controls: "", preload: "none", src: path }), el("a", { href: path, download: "" }, fileName(path)));
  }
  return el("span", {}, role + ": ", el("a", { href: path, download: "" }, fileName(path)));
}

function lyricsButton(ti, index) {
  const box = el("pre", { class: "lyrics", hidden: "" });
  const button = el("button", { type: "button", "aria-expanded": "false" }, "Lyrics");
  button.addEventListener("click", () => {
    if (LYRICS === null) LYRICS = JSON.parse(document.getElementById("lyrics").textContent);
    if (!box.textContent) box.textContent = LYRICS[ti][index];
    box.hidden = !box.hidden;
    button.setAttribute("aria-expanded", String(!box.hidden));
  });
  return [button, box];
}

function render(item) {
  const { task, track } = item;
  const t = track || {};
  const li = el("li", { class: "item " + (task.o || ""), "data-task": task.i, "data-kind": track ? "track" : task.k });
  const image = t.im || (task.f || []).map((f) => f[1]).find((p) => /\.(png|jpe?g)$/i.test(p));
  li.append(image ? el("img", { class: "cover", src: image, alt: "", loading: "lazy", width: 96, height: 96 })
    : el("div", { class: "cover" }));
  const body = el("div", { class: "body" });
  const title = el("h2", { class: "title" }, t.n || (track ? t.a : task.k + " task"));
  if (task.o && task.o !== "archived") title.append(" ", el("span", { class: "badge " + task.o }, task.o));
  body.append(title);
  if (t.g) body.append(el("p", { class: "tags" }, t.g));
  const facts = [duration(t.d), (t.c || task.w || "").slice(0, 10), t.m].filter(Boolean);
  if (facts.length) body.append(el("p", { class: "facts" }, facts.join(" · ")));
  if (task.e) body.append(el("p", { class: "reason" }, task.e));
  if (t.p) body.append(el("audio", { controls: "", preload: "none", src: t.p }));
  const links = el("div", { class: "links" });
  if (t.p) links.append(el("a", { href: t.p, download: fileName(t.p) }, "Download MP3"));
  if (t.pe) links.append(el("span", { class: "reason" }, "No MP3: " + t.pe));
  for (const [role, path] of t.x || []) links.append(fileLink(role, path));
  let lyrics = [];
  if (t.l !== undefined) lyrics = lyricsButton(item.ti, t.l);
  links.append(...lyrics.slice(0, 1));
  body.append(links, ...lyrics.slice(1));
  const extras = [...(track ? [] : [task]), ...item.extras].flatMap(
    (x) => (x.f || []).map(([role, path, type]) => el("li", {}, fileLink(role, path, type))));
  if (extras.length) body.append(el("ul", { class: "extras" }, ...extras));
  const ids = "task " + task.i + (t.a ? " · audio " + t.a : "") +
    item.extras.map((x) => " · " + x.k + " " + x.i).join("");
  body.append(el("p", { class: "ids" }, ids));
  li.append(body);
  return li;
}

function show() {
  const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
  page = Math.min(page, pages - 1);
  const start = page * PAGE_SIZE, slice = shown.slice(start, start + PAGE_SIZE);
  list.replaceChildren(...slice.map(render));
  if (!slice.length) list.append(el("li", { class: "empty" }, "Nothing matches."));
  where.textContent = shown.length
    ? (start + 1) + "–" + (start + slice.length) + " of " + shown.length : "0 of " + ITEMS.length;
  prev.disabled = page === 0;
  next.disabled = more.disabled = page >= pages - 1;
}

document.getElementById("q").addEventListener("input", (event) => {
  const words = event.target.value.toLowerCase().split(/\s+/).filter(Boolean);
  shown = words.length ? ITEMS.filter((item) => words.every((w) => item.hay.includes(w))) : ITEMS;
  page = 0;
  show();
});
prev.addEventListener("click", () => { page -= 1; show(); });
next.addEventListener("click", () => { page += 1; show(); });
more.addEventListener("click", () => { page += 1; show(); window.scrollTo(0, 0); });
show();
