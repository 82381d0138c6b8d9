"use strict";
// The tracks are in shard files beside the page (FOLDER), loaded with <script> elements (which
// file:// allows, where fetch() is refused): the table of shards first, then a shard's tasks
// when a page shows them, and for a search each shard's words (every word a search may match),
// its tasks only when the words hold every search word. Every text from the archive is set
// with textContent or as an attribute value: never as markup.
const SHARDS = new Map(); // shard number -> { tasks, lyrics, items }
const WORDS = new Map(); // shard number -> its words, lowercase, space-separated
const loading = new Map(); // file -> the promise of its script run
let TABLE = null, ORDER = []; // the table, and its shards newest first
const VERSIONS = new Map(); // shard number -> its files' version: a changed shard is not cached

window.SUNO = {
  table(table) { TABLE = table; },
  tasks(n, tasks, lyrics) {
    if (!SHARDS.has(n)) SHARDS.set(n, { tasks, lyrics, items: buildItems(n, tasks) });
  },
  words(n, words) { WORDS.set(n, words); },
};

function shardName(n) { return String(n).padStart(5, "0"); }
function tasksFile(n) { return FOLDER + "/t/" + shardName(n) + ".js?v=" + VERSIONS.get(n); }
function wordsFile(n) { return FOLDER + "/s/" + shardName(n) + ".js?v=" + VERSIONS.get(n); }

// Runs the script `file` once; resolves when it has run, rejects when it cannot load (and
// forgets it: a later try may find it).
function load(file) {
  if (!loading.has(file)) {
    loading.set(file, new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = file;
      script.onload = () => { script.remove(); resolve(); };
      script.onerror = () => {
        script.remove();
        loading.delete(file);
        reject(new Error("cannot load " + file.replace(/\?.*/, "")));
      };
      document.head.append(script);
    }));
  }
  return loading.get(file);
}

// A shard's tasks (or its words), loaded: its entry, or an error when the file said nothing.
async function shardOf(n) {
  await load(tasksFile(n));
  if (!SHARDS.has(n)) throw new Error(tasksFile(n).replace(/\?.*/, "") + " holds no tasks");
  return SHARDS.get(n);
}
async function wordsOf(n) {
  await load(wordsFile(n));
  if (!WORDS.has(n)) throw new Error(wordsFile(n).replace(/\?.*/, "") + " holds no words");
  return WORDS.get(n);
}

// One item per track; a task of another kind goes beside the music it was made from (mu: the
// audio ID, pa: the task) when that is in the same shard, else, or when it has nothing to
// show, on its own line.
function buildItems(shard, tasks) {
  const items = [], byAudio = new Map(), byTask = new Map();
  tasks.forEach((task, ti) => {
    for (const track of task.t || []) {
      const item = { shard, task, ti, track, extras: [] };
      items.push(item);
      if (track.a) byAudio.set(track.a, item);
      if (!byTask.has(task.i)) byTask.set(task.i, []);
      byTask.get(task.i).push(item);
    }
  });
  tasks.forEach((task, ti) => {
    if ((task.t || []).length) return;
    const hosts = byAudio.has(task.mu) ? [byAudio.get(task.mu)] : byTask.get(task.pa);
    if (hosts && (task.f || []).length && task.o === "archived") {
      hosts.forEach((host) => host.extras.push(task));
    } else {
      items.push({ shard, task, ti, track: null, extras: [] });
    }
  });
  items.sort((a, b) => a.ti - b.ti); // newest first, as the shard's tasks are; sort is stable
  for (const item of items) {
    const t = item.track || {};
    item.hay = [t.n, t.g, t.m, t.a, item.task.i, item.task.k, item.task.o,
      ...item.extras.flatMap((x) => [x.i, x.k])].join(" ").toLowerCase();
  }
  return items;
}

const list = document.getElementById("list");
const where = document.getElementById("where");
const statusLine = document.getElementById("status");
const prev = document.getElementById("prev"), next = document.getElementById("next");
const more = document.getElementById("more");
const box = document.getElementById("q");

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

function lyricsButton(item, index) {
  const box = el("pre", { class: "lyrics", hidden: "" });
  const button = el("button", { type: "button", "aria-expanded": "false" }, "Lyrics");
  button.addEventListener("click", () => {
    if (!box.textContent) box.textContent = SHARDS.get(item.shard).lyrics[item.ti][index];
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
  if (t.l !== undefined) lyrics = lyricsButton(item, t.l);
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

// What the list shows: every track, newest first (loaded a shard at a time as pages need
// them), or a search's matches (found a shard at a time, newest first).
class Everything {
  constructor() { this.items = []; this.loaded = 0; this.complete = ORDER.length === 0; }
  async fill(count) {
    while (this.items.length < count && this.loaded < ORDER.length) {
      this.items.push(...(await shardOf(ORDER[this.loaded][0])).items);
      this.loaded += 1;
    }
    this.complete = this.loaded >= ORDER.length;
  }
  progress() { return ""; }
}

class Search {
  constructor(words) {
    this.words = words; this.items = []; this.searched = 0; this.complete = false;
    this.stopped = false;
  }
  async fill() {}
  progress() {
    if (this.complete) return "";
    return "Searching… " + this.searched.toLocaleString("en") + " of " +
      ORDER.length.toLocaleString("en") + " parts";
  }
  async run() {
    const ahead = 12; // words files asked for before they are needed
    for (let i = 0; i < ORDER.length && !this.stopped; i++) {
      for (let j = i; j < Math.min(i + ahead, ORDER.length); j++) {
        load(wordsFile(ORDER[j][0])).catch(() => {});
      }
      const n = ORDER[i][0];
      const words = await wordsOf(n);
      if (this.stopped) return;
      if (this.words.every((w) => words.includes(w))) {
        const shard = await shardOf(n);
        if (this.stopped) return;
        const found = shard.items.filter((it) => this.words.every((w) => it.hay.includes(w)));
        const shown = this.items.length <= (page + 1) * PAGE_SIZE;
        this.items.push(...found);
        this.searched = i + 1;
        if (found.length) { if (shown) show(); else counts(); continue; }
      }
      this.searched = i + 1;
      if (i % 20 === 0) counts();
    }
    this.complete = true;
    show();
  }
}

let source = null, page = 0, shows = 0;

function counts() {
  const start = page * PAGE_SIZE, end = Math.min(source.items.length, start + PAGE_SIZE);
  // The list's entries are tracks and other kinds' tasks: their number is known once every
  // shard is loaded; until then the summary line above gives the archive's tracks and tasks.
  const total = source.items.length.toLocaleString("en") + (source.complete ? "" : "+");
  where.textContent = (end > start ? (start + 1) + "–" + end : "0") + " of " + total +
    (source instanceof Search ? " found" : "");
  statusLine.textContent = source.progress();
}

async function show() {
  const mine = ++shows;
  list.setAttribute("aria-busy", "true");
  try {
    await source.fill((page + 1) * PAGE_SIZE + 1); // one more: is there a next page?
  } catch (e) {
    statusLine.textContent = "Could not load part of the archive (" + e.message + ").";
  }
  if (mine !== shows) return; // a later show() runs
  const start = page * PAGE_SIZE, slice = source.items.slice(start, start + PAGE_SIZE);
  list.replaceChildren(...slice.map(render));
  if (!slice.length && source.complete) list.append(el("li", { class: "empty" }, "Nothing matches."));
  counts();
  prev.disabled = page === 0;
  next.disabled = more.disabled = source.items.length <= start + PAGE_SIZE && source.complete;
  list.setAttribute("aria-busy", String(!source.complete && source instanceof Search));
}

function search(text) {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  if (source instanceof Search) source.stopped = true;
  page = 0;
  if (words.length) {
    source = new Search(words);
    const mine = source;
    mine.run().catch((e) => {
      mine.complete = true; // what was found stays shown
      if (source === mine) show().then(() => { statusLine.textContent = "Search stopped: " + e.message + "."; });
    });
  } else {
    source = everything;
  }
  show();
}

// The search is in the address (index.html#q=words), so that it can be bookmarked or shared.
function fromAddress() {
  const hash = location.hash;
  if (!hash.startsWith("#q=")) return "";
  const text = hash.slice(3).replace(/\+/g, " ");
  try {
    return decodeURIComponent(text);
  } catch (e) {
    return text; // a stray "%" typed into the address: searched as it is
  }
}
function toAddress(text) {
  const hash = text.trim() ? "#q=" + encodeURIComponent(text.trim()) : "";
  try {
    history.replaceState(null, "", hash || location.pathname + location.search);
  } catch (e) {
    location.replace(hash || "#");
  }
}

function playlists() {
  const shards = ORDER.map(([n, , , tracks, first, last]) => el("li", {},
    el("a", { href: PLAYLISTS + "/" + shardName(n) + ".m3u8", download: "" }, "Part " + (n + 1)),
    " " + [first, last].filter(Boolean).filter((d, i, a) => a.indexOf(d) === i).join(" to ") +
    " (" + tracks.toLocaleString("en") + " tracks)"));
  document.getElementById("playlists").replaceChildren(...shards);
}

let everything = null;
// Never a cached table: it names the newest files.
load(TABLE_PATH + "?t=" + Date.now()).then(() => {
  if (!TABLE) throw new Error(TABLE_PATH + " holds no table");
  ORDER = TABLE.shards.slice().reverse();
  for (const [n, changes] of ORDER) VERSIONS.set(n, changes);
  document.getElementById("summary").textContent = TABLE.tracks.toLocaleString("en") +
    " tracks in " + TABLE.tasks.toLocaleString("en") + " tasks, listed " + TABLE.generated + ".";
  document.getElementById("parts").addEventListener("toggle", playlists, { once: true });
  everything = source = new Everything();
  box.value = fromAddress();
  box.addEventListener("input", () => { toAddress(box.value); search(box.value); });
  window.addEventListener("hashchange", () => {
    if (fromAddress() !== box.value) { box.value = fromAddress(); search(box.value); }
  });
  search(box.value);
}).catch((e) => { statusLine.textContent = "Could not load the archive (" + e.message + ")."; });

prev.addEventListener("click", () => { page -= 1; show(); });
next.addEventListener("click", () => { page += 1; show(); });
more.addEventListener("click", () => { page += 1; show(); window.scrollTo(0, 0); });
