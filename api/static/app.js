// regionsearch web page. What is shown comes from the URL, so a link reproduces the view and
// back/forward work:
//   (no query)  browse: indexed images, newest first, paged by cursor (GET /v1/images)
//   ?q=TEXT     regions for a text (POST /v1/search)
//   ?like=ID    regions like an indexed region (GET /v1/regions/{id}/similar)
//   ?qimg=KEY   regions like a picked, pasted or dropped image (POST /v1/search/image); the image
//               itself stays in this browser (memory + sessionStorage), so such a link works here only
//   prefix, area (% of the image), score, one=1: filters · k: page size · n: results loaded
//   image=ID, sel=REGION: the open image and its selected region
//   track=ID, at=FRAME: the open player of a video object track and the frame it is paused on
// The open image shows its regions (masks over the image and a list) and takes SAM 2.1 prompts:
// click / shift-click / right-click / drag on it -> masks live (multimask candidates).
// A track hit shows a strip of its frames with the mask outlined (drawn by the server); a click
// opens the player: server-decoded frames stepped at the sampled times (no browser codec needed),
// the track's outline drawn over them, a time bar; a click on a paused frame tracks what is
// under it (POST /v1/segment/video, NDJSON read as it streams).
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = [[255, 64, 64], [64, 160, 255], [64, 220, 96], [255, 200, 0], [200, 96, 255],
  [0, 220, 220], [255, 128, 0], [255, 64, 200]];
const BROWSE_PAGE_MAX = 200;  // the API's largest page of GET /v1/images

// the viewer (SAM prompts on the open image)
const state = { openId: null, scene: null, relation: null, image: null, points: [], labels: [], box: null, candidates: [], selected: 0, busy: false, pending: false };
// what the URL says
const view = defaultView();
// the result list being shown: which query (key), how far it got, what is on screen
const run = { token: 0, key: null, count: 0, total: null, cursor: null, exhausted: false, shown: new Set(), top: 1, loading: false };
const limits = { max_k: 1000, max_text_chars: 1000, max_upload_bytes: 0 };
const queryImages = new Map();  // qimg key -> { blob, name, url }
let viewerToken = 0, hoverRegion = null, pendingRelation = null;

function defaultView() {
  return { q: "", like: null, qimg: null, prefix: "", area: "", score: "", one: false, k: 24, n: 24, image: null, sel: null, track: null, at: null };
}

function mode(v) { return v.like ? "similar" : v.qimg ? "image" : v.q ? "text" : "browse"; }

async function api(method, url, body) {
  const init = { method, headers: {} };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const resp = await fetch(url, init);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) throw new Error((data && data.error) || `HTTP ${resp.status}`);
  return data;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const baseName = (path) => path.split("/").pop();

// COCO compressed RLE -> row-major Uint8Array (1 = inside)
function decodeRLE(rle) {
  const [h, w] = rle.size, s = rle.counts, counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20; p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  const out = new Uint8Array(h * w);
  let i = 0, v = 0;
  for (const c of counts) {
    if (v) for (let j = i; j < i + c; j++) { const y = j % h, xx = (j - y) / h; out[y * w + xx] = 1; }
    i += c; v ^= 1;
  }
  return out;
}

// blend a mask into the canvas (only inside ``bbox`` XYWH when given: fast on big images)
function paintMask(ctx, mask, w, h, rgb, fillAlpha, edgeAlpha, bbox) {
  let x0 = 0, y0 = 0, x1 = w, y1 = h;
  if (bbox) {
    x0 = Math.max(0, Math.floor(bbox[0]) - 1); y0 = Math.max(0, Math.floor(bbox[1]) - 1);
    x1 = Math.min(w, Math.ceil(bbox[0] + bbox[2]) + 1); y1 = Math.min(h, Math.ceil(bbox[1] + bbox[3]) + 1);
    if (x1 <= x0 || y1 <= y0) return;
  }
  const bw = x1 - x0, img = ctx.getImageData(x0, y0, bw, y1 - y0), d = img.data;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w];
      const a = edge ? edgeAlpha : fillAlpha;
      if (!a) continue;
      const o = ((y - y0) * bw + (x - x0)) * 4, prev = d[o + 3] / 255, na = a + prev * (1 - a);
      for (let c = 0; c < 3; c++) d[o + c] = Math.round((rgb[c] * a + d[o + c] * prev * (1 - a)) / (na || 1));
      d[o + 3] = Math.round(na * 255);
    }
  }
  ctx.putImageData(img, x0, y0);
}

// masks are blended pixel by pixel (getImageData), so the canvases are read often
const context2d = (canvas) => canvas.getContext("2d", { willReadFrequently: true });
const maskOf = (r) => r._mask || (r._mask = decodeRLE(r.mask));

// ---------------------------------------------------------------- URL <-> view
function posInt(s) { const n = Number(s); return Number.isInteger(n) && n > 0 ? n : null; }

function readURL() {
  const p = new URLSearchParams(location.search), v = defaultView();
  v.q = (p.get("q") || "").trim();
  v.like = posInt(p.get("like"));
  const qimg = p.get("qimg");
  v.qimg = qimg && /^[0-9a-f]{1,32}$/.test(qimg) ? qimg : null;
  v.prefix = p.get("prefix") || "";
  v.area = p.get("area") || "";
  v.score = p.get("score") || "";
  v.one = p.get("one") === "1";
  const k = posInt(p.get("k"));
  v.k = k && k <= BROWSE_PAGE_MAX ? k : 24;
  v.n = Math.max(v.k, posInt(p.get("n")) || v.k);
  v.image = posInt(p.get("image"));
  v.sel = posInt(p.get("sel"));
  v.track = v.image ? null : posInt(p.get("track"));
  const at = Number(p.get("at"));
  v.at = v.track && p.get("at") !== null && Number.isInteger(at) && at >= 0 ? at : null;
  return v;
}

function toURL(v) {
  const p = new URLSearchParams();
  if (v.q) p.set("q", v.q);
  if (v.like) p.set("like", v.like);
  if (v.qimg) p.set("qimg", v.qimg);
  if (v.prefix) p.set("prefix", v.prefix);
  if (v.area !== "") p.set("area", v.area);
  if (v.score !== "") p.set("score", v.score);
  if (v.one) p.set("one", "1");
  if (v.k !== 24) p.set("k", v.k);
  if (v.n > v.k) p.set("n", v.n);
  if (v.image) p.set("image", v.image);
  if (v.sel) p.set("sel", v.sel);
  if (v.track) p.set("track", v.track);
  if (v.track && v.at !== null) p.set("at", v.at);
  const s = p.toString();
  return location.pathname + (s ? `?${s}` : "");
}

// a user action: the new view goes into the history (``push``) or replaces the entry, then shows
function go(changes, push = true) {
  const next = { ...view, ...changes };
  const url = toURL(next);
  if (url !== location.pathname + location.search) history[push ? "pushState" : "replaceState"](null, "", url);
  show(next);
}

const resultsKey = (v) => JSON.stringify([mode(v), v.q, v.like, v.qimg, v.prefix, v.area, v.score, v.one, v.k]);

function show(next) {
  const prevSel = view.sel, prevQ = view.q;
  Object.assign(view, next);
  if (view.q !== prevQ || !run.key) $("q").value = view.q;  // else keep what is being typed
  syncControls();
  if (resultsKey(view) !== run.key || view.n < run.count) loadResults(false);
  else if (view.n > run.count && !run.exhausted && !run.loading) loadResults(true);
  if (view.image !== state.openId) { if (view.image) openImage(view.image); else closeViewer(); }
  else if (view.sel !== prevSel) selectRegion(view.sel);
  if (view.track !== player.trackId) { if (view.track) openPlayer(view.track, view.at); else closePlayer(); }
  else if (view.track && view.at !== null && view.at !== player.frame) seekFrame(view.at);
}

function syncControls() {
  const m = mode(view);
  $("f-prefix").value = view.prefix; $("f-area").value = view.area; $("f-score").value = view.score;
  $("per-image").checked = view.one;
  if (![...$("k").options].some((o) => Number(o.value) === view.k)) {  // a page size from a link
    const o = document.createElement("option"); o.textContent = String(view.k); $("k").append(o);
  }
  $("k").value = String(view.k);
  const filtered = view.prefix || view.area !== "" || view.score !== "" || view.one;
  $("f-clear").hidden = !filtered;
  document.querySelectorAll(".search-only").forEach((el) => el.classList.toggle("inactive", m === "browse"));
  $("filter-note").textContent = m === "browse" && (view.area !== "" || view.score !== "" || view.one)
    ? "min area, min score and one per image apply to region searches" : "";
  $("browse-btn").classList.toggle("active", m === "browse");
  const titles = { browse: "browse", text: `“${view.q}”`, similar: `like region ${view.like}`, image: "image search" };
  document.title = `${titles[m]} · regionsearch`;
}

function filtersFromControls() {
  return { prefix: $("f-prefix").value, area: $("f-area").value.trim(), score: $("f-score").value.trim(),
    one: $("per-image").checked, k: parseInt($("k").value, 10) };
}

// the API's filters from the view; a message instead when a value is out of range
function apiFilters() {
  const f = {};
  if (view.area !== "") {
    const a = Number(view.area);
    if (!Number.isFinite(a) || a < 0 || a > 100) return { error: "Min area is a share of the image: a number from 0 to 100 (%)." };
    if (a > 0) f.min_area = a / 100;
  }
  if (view.score !== "") {
    const s = Number(view.score);
    if (!Number.isFinite(s) || s < -1 || s > 1) return { error: "Min score is a similarity: a number from -1 to 1." };
    f.min_score = s;
  }
  if (view.prefix) f.path_prefix = view.prefix;
  if (view.one) f.per_image = 1;
  return { filters: f };
}

// ---------------------------------------------------------------- results (browse and searches)
function setStatus(text, error = false) {
  const st = $("status");
  st.className = error ? "status error" : "status"; st.textContent = text;
}

function showEmpty(text) { const e = $("empty"); e.textContent = text; e.hidden = !text; }

async function loadResults(append) {
  const token = ++run.token, m = mode(view);
  if (!append) {
    Object.assign(run, { key: resultsKey(view), count: 0, total: null, cursor: null, exhausted: false, shown: new Set(), top: 1 });
    $("results").replaceChildren();
  }
  showEmpty(""); $("more").hidden = true; run.loading = true; $("results-pane").dataset.state = "loading";
  if (!append) renderQueryCard(m);
  const f = apiFilters();
  if (f.error) { run.loading = false; run.exhausted = true; setStatus(f.error, true); $("results-pane").dataset.state = "error"; return; }
  setStatus(m === "browse" ? "Loading images…" : "Searching…");
  const t0 = performance.now();
  try {
    if (m === "browse") await loadImages(token);
    else await loadHits(token, m, f.filters);
    if (token !== run.token) return;
    run.loading = false;
    summarise(m, Math.round(performance.now() - t0));
    $("results-pane").dataset.state = "done";
  } catch (e) {
    if (token !== run.token) return;
    run.loading = false; run.exhausted = true;
    setStatus(e.message, true);
    $("results-pane").dataset.state = "error";
  }
}

async function loadImages(token) {
  while (run.count < view.n && !run.exhausted) {
    const p = new URLSearchParams({ limit: Math.min(view.n - run.count, BROWSE_PAGE_MAX) });
    if (run.cursor) p.set("before", run.cursor);
    if (view.prefix) p.set("path_prefix", view.prefix);
    const d = await api("GET", `/v1/images?${p}`);
    if (token !== run.token) return;
    d.images.forEach((im) => $("results").append(imageTile(im)));
    run.count += d.images.length; run.total = d.total;
    run.cursor = d.next_before; run.exhausted = d.next_before === null;
  }
}

async function loadHits(token, m, filters) {
  const want = Math.min(view.n, limits.max_k || Infinity);
  const data = await fetchHits(m, want, filters);
  if (token !== run.token) return;
  if (!run.count && data.hits.length) run.top = Math.max(...data.hits.map((h) => h.score)) || 1;
  const fresh = data.hits.filter((h) => !run.shown.has(h.region_id));
  fresh.forEach((h, i) => { run.shown.add(h.region_id); $("results").append(hitCard(h, run.count + i)); });
  run.count += fresh.length;
  run.exhausted = data.hits.length < want || want >= (limits.max_k || Infinity);
}

function fetchHits(m, k, filters) {
  if (m === "text") return api("POST", "/v1/search", { text: view.q, k, filters });
  if (m === "similar") {
    const p = new URLSearchParams({ k });
    Object.entries(filters).forEach(([name, value]) => p.set(name, value));
    return api("GET", `/v1/regions/${view.like}/similar?${p}`);
  }
  const qi = queryImage(view.qimg);
  if (!qi) {
    return Promise.reject(new Error("The query image of this link is not in this browser any more: "
      + "pick, paste or drop an image to search again."));
  }
  const form = new FormData();
  form.append("file", qi.blob, qi.name);
  form.append("k", String(k));
  Object.entries(filters).forEach(([name, value]) => form.append(name, String(value)));
  return api("POST", "/v1/search/image", form);
}

function filterWords() {
  const parts = [];
  if (view.prefix) parts.push(`path starts with “${view.prefix}”`);
  if (view.area !== "" && Number(view.area) > 0) parts.push(`area ≥ ${view.area}%`);
  if (view.score !== "") parts.push(`score ≥ ${view.score}`);
  if (view.one) parts.push("one per image");
  return parts.join(", ");
}

function summarise(m, ms) {
  const n = run.count, filters = filterWords();
  if (m === "browse") {
    if (!n) {
      showEmpty(view.prefix ? `No indexed image has a path starting with “${view.prefix}”. Check the prefix (it is case-sensitive) or clear the filters.`
        : "No images are indexed yet. Index a folder with “regionsearch index PATH”, then reload this page.");
      setStatus(view.prefix ? "0 images" : "Empty data directory");
    } else {
      setStatus(`Newest first · ${n} of ${plural(run.total, "image")}${view.prefix ? ` under “${view.prefix}”` : ""} · click one to see its regions`);
    }
  } else {
    const what = { text: `for “${view.q}”`, similar: `like region ${view.like}`, image: "like the query image" }[m];
    if (!n) showEmpty(`No region ${what.replace(/^for /, "matches ")}${filters ? ` with these filters (${filters}). Loosen or clear them.` : "."}`);
    const capped = run.exhausted && run.count >= limits.max_k ? ` · the service returns at most ${limits.max_k}` : "";
    setStatus(`${plural(n, "region")} ${what} in ${ms} ms${filters ? ` · ${filters}` : ""}${capped}`);
  }
  $("more").hidden = run.exhausted || !n;
  $("more").disabled = false;
  $("more").textContent = `Load ${view.k} more`;
}

function imageTile(im) {
  const card = document.createElement("div");
  card.className = "tile"; card.dataset.imageId = im.image_id; card.tabIndex = 0;
  card.title = `${im.path}\n${im.width}×${im.height} · ${plural(im.regions, "region")}`;
  const img = document.createElement("img");
  img.loading = "lazy"; img.alt = baseName(im.path);
  img.src = `/v1/images/${im.image_id}/thumb.jpg?size=256`;
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("span"), count = document.createElement("span");
  name.className = "name"; name.textContent = baseName(im.path);
  count.className = "kind"; count.textContent = plural(im.regions, "region");
  meta.append(name, count);
  card.append(img, meta);
  const open = () => { pendingRelation = null; go({ image: im.image_id, sel: null, track: null, at: null }); };
  card.addEventListener("click", open);
  card.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
  if (view.image === im.image_id) card.classList.add("active");
  return card;
}

function hitCard(h, rank) {
  if (h.kind === "track") return trackCard(h, rank);
  const card = document.createElement("div");
  card.className = "hit"; card.dataset.regionId = h.region_id; card.dataset.imageId = h.image_id;
  card.title = `${h.image_path}\nregion ${h.region_id} · ${h.region_kind} · area ${h.area}`;
  const meta = hitMeta(h, rank, h.region_kind === "whole" ? "whole image" : `region ${h.region_id}`);
  if (h.relation) {
    const rel = h.relation, what = rel.scene ? "the scene" : `region ${rel.object.region_id}`;
    meta.children[1].textContent = `${rel.predicate.replace("_", " ")} ${what}`;
    card.title += `\n${rel.predicate} ${what} (object score ${rel.object.score.toFixed(3)})`;
    card.classList.add("relational");
  }
  card.append(cropImg(h.region_id), scoreBar(h), meta, likeButton(h.region_id, "link"));
  card.addEventListener("click", () => { pendingRelation = h.relation || null; go({ image: h.image_id, sel: h.region_id, track: null, at: null }); });
  if (view.sel === h.region_id) card.classList.add("active");
  return card;
}

// A video object track: a strip of its frames with the mask outlined (JPEGs drawn by the server),
// the time range; a click opens the player
function trackCard(h, rank) {
  const card = document.createElement("div");
  card.className = "hit track"; card.dataset.regionId = h.region_id; card.dataset.videoId = h.video.id;
  const range = `${h.t_start.toFixed(1)}–${h.t_end.toFixed(1)} s`;
  card.title = `${h.video.path}\ntrack ${h.region_id} · ${range} · frames ${h.frame_start}–${h.frame_end}`;
  card.append(trackStrip(h), scoreBar(h), hitMeta(h, rank, `track · ${range}`), likeButton(h.region_id, "link"));
  card.addEventListener("click", () => go({ track: h.region_id, at: null, image: null, sel: null }));
  if (view.track === h.region_id) card.classList.add("active");
  return card;
}

// up to STRIP_MAX of the track's stored frames, evenly spread over its range (first and last kept)
const STRIP_MAX = 5;
function stripFrames(frames) {
  const n = Math.min(STRIP_MAX, frames.length);
  if (n < 2) return frames.slice(0, n);
  return [...new Set(Array.from({ length: n }, (_, i) => Math.round(i * (frames.length - 1) / (n - 1))))].map((i) => frames[i]);
}

// the part of the video the strip shows: every box of the track, grown by half its larger side
// (context), square where the frame allows; XYWH pixels
function stripBox(frames) {
  const [H, W] = frames[0].mask.size;
  let x0 = W, y0 = H, x1 = 0, y1 = 0;
  frames.forEach(({ bbox: [x, y, w, h] }) => { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + w); y1 = Math.max(y1, y + h); });
  const side = Math.max(32, 1.5 * Math.max(x1 - x0, y1 - y0)), bw = Math.min(W, side), bh = Math.min(H, side);
  const x = Math.min(W - bw, Math.max(0, (x0 + x1 - bw) / 2)), y = Math.min(H - bh, Math.max(0, (y0 + y1 - bh) / 2));
  return [x, y, bw, bh].map((v) => Math.max(0, Math.round(v)));
}

function trackStrip(h) {
  const strip = document.createElement("div");
  strip.className = "strip"; strip.dataset.state = "loading";
  const frameImg = (f, box) => {
    const img = document.createElement("img");
    img.alt = `frame ${f.frame} (${f.t.toFixed(1)} s)`; img.title = img.alt; img.dataset.frame = f.frame;
    img.src = `/v1/videos/${h.video.id}/frames/${f.frame}.jpg?track=${h.region_id}&size=144${box ? `&box=${box.join(",")}` : ""}`;
    return img;
  };
  getTrack(h.region_id).then((tr) => {
    const box = stripBox(tr.frames);
    strip.replaceChildren(...stripFrames(tr.frames).map((f) => frameImg(f, box)));
    strip.dataset.state = "done";
  }).catch(() => {  // the track went away (re-indexed): its best frame alone
    strip.replaceChildren(frameImg({ frame: h.best_frame.frame, t: h.best_frame.t }));
    strip.dataset.state = "done";
  });
  return strip;
}

const trackCache = new Map();  // track id -> promise of GET /v1/tracks/{id}
function getTrack(id) {
  if (!trackCache.has(id)) {
    trackCache.set(id, api("GET", `/v1/tracks/${id}`).catch((e) => { trackCache.delete(id); throw e; }));
    if (trackCache.size > 64) trackCache.delete(trackCache.keys().next().value);
  }
  return trackCache.get(id);
}

function cropImg(regionId) {
  const img = document.createElement("img");
  img.loading = "lazy"; img.alt = `region ${regionId}`;
  img.src = `/v1/regions/${regionId}/crop.png?size=256`;
  return img;
}

function scoreBar(h) {
  const bar = document.createElement("div");
  bar.className = "bar"; bar.style.width = `${Math.max(4, 100 * Math.max(0, h.score) / (run.top || 1))}%`;
  return bar;
}

function hitMeta(h, rank, what) {
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.innerHTML = `<span class="score"></span><span class="kind"></span>`;
  meta.children[0].textContent = `#${rank + 1} · ${h.score.toFixed(3)}`;
  meta.children[1].textContent = what;
  return meta;
}

function likeButton(regionId, cls) {
  const b = document.createElement("button");
  b.type = "button"; b.className = `like ${cls}`; b.textContent = "More like this";
  b.title = `regions similar to region ${regionId}`;
  b.addEventListener("click", (ev) => { ev.stopPropagation(); moreLike(regionId); });
  return b;
}

function moreLike(regionId) {
  go({ like: regionId, q: "", qimg: null, n: view.k });
  window.scrollTo({ top: 0 });
}

function markActiveCards() {
  document.querySelectorAll(".hit, .tile").forEach((c) => {
    const on = c.classList.contains("track") ? Number(c.dataset.regionId) === view.track
      : c.classList.contains("hit") ? Number(c.dataset.regionId) === view.sel && Number(c.dataset.imageId) === view.image
        : Number(c.dataset.imageId) === view.image;
    c.classList.toggle("active", on);
  });
}

// the query shown above image and similar-region results
async function renderQueryCard(m) {
  const card = $("query-card"), img = $("query-img");
  if (m !== "similar" && m !== "image") { card.hidden = true; return; }
  card.hidden = false;
  if (m === "image") {
    const qi = queryImage(view.qimg);
    img.hidden = !qi; if (qi) img.src = qi.url;
    $("query-title").textContent = "Regions like this image";
    $("query-sub").textContent = qi ? qi.name : "the image is not available in this browser";
    return;
  }
  const like = view.like;
  $("query-title").textContent = `Regions like region ${like}`;
  $("query-sub").textContent = ""; img.hidden = true;
  try {
    const r = await api("GET", `/v1/regions/${like}`);
    if (view.like !== like) return;
    img.src = `/v1/regions/${like}/crop.png?size=128`; img.hidden = false;
    const sub = $("query-sub"), a = document.createElement("a");
    a.href = "#"; a.textContent = "open its image";
    a.addEventListener("click", (ev) => {
      ev.preventDefault(); pendingRelation = null;
      go(r.kind === "track" ? { track: like, at: null, image: null, sel: null } : { image: r.image_id, sel: like, track: null, at: null });
    });
    sub.replaceChildren(`${r.kind === "whole" ? "whole image" : plural(r.area, "pixel")} of ${baseName(r.image_path)} · `, a);
  } catch (e) { $("query-sub").textContent = e.message; }
}

// ---------------------------------------------------------------- search by image
function fnvHex(bytes, seed) {
  let h = seed >>> 0;
  for (let i = 0; i < bytes.length; i++) { h ^= bytes[i]; h = Math.imul(h, 16777619) >>> 0; }
  return h.toString(16).padStart(8, "0");
}

async function searchByImage(file) {
  if (!file || !/^image\//.test(file.type)) { setStatus("That is not an image: pick, paste or drop a PNG, JPEG, WebP or GIF file.", true); return; }
  if (limits.max_upload_bytes && file.size > limits.max_upload_bytes) {
    setStatus(`The image is ${(file.size / 1e6).toFixed(1)} MB; this server takes at most ${(limits.max_upload_bytes / 1e6).toFixed(1)} MB.`, true);
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  const key = fnvHex(bytes, 2166136261) + fnvHex(bytes, 33554467) + (bytes.length % 4096).toString(16);
  const name = file.name || "pasted image";
  if (!queryImages.has(key)) queryImages.set(key, { blob: file, name, url: URL.createObjectURL(file) });
  rememberQueryImage(key, name, file.type, bytes);
  go({ qimg: key, q: "", like: null, n: view.k });
}

// keep the last few query images in sessionStorage so reload and back/forward find them
function rememberQueryImage(key, name, type, bytes) {
  try {
    if (bytes.length > 3e6) return;
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    const keys = JSON.parse(sessionStorage.getItem("rs-qimg-keys") || "[]").filter((k) => k !== key);
    keys.push(key);
    while (keys.length > 3) sessionStorage.removeItem(`rs-qimg:${keys.shift()}`);
    sessionStorage.setItem(`rs-qimg:${key}`, JSON.stringify({ name, type, data: btoa(bin) }));
    sessionStorage.setItem("rs-qimg-keys", JSON.stringify(keys));
  } catch (e) { /* storage full or disabled: the image stays in memory for this page only */ }
}

function queryImage(key) {
  if (!key) return null;
  if (queryImages.has(key)) return queryImages.get(key);
  try {
    const saved = JSON.parse(sessionStorage.getItem(`rs-qimg:${key}`) || "null");
    if (!saved) return null;
    const bin = atob(saved.data), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const blob = new Blob([bytes], { type: saved.type });
    const qi = { blob, name: saved.name, url: URL.createObjectURL(blob) };
    queryImages.set(key, qi);
    return qi;
  } catch (e) { return null; }
}

function setupImageInput() {
  $("image-btn").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", () => { const f = $("file").files[0]; $("file").value = ""; if (f) searchByImage(f); });
  document.addEventListener("paste", (ev) => {
    const items = ev.clipboardData ? [...ev.clipboardData.items] : [];
    const item = items.find((i) => i.kind === "file" && /^image\//.test(i.type));
    if (!item) return;  // text goes where it was pasted
    ev.preventDefault();
    searchByImage(item.getAsFile());
  });
  const hasFiles = (ev) => ev.dataTransfer && [...ev.dataTransfer.types].includes("Files");
  let depth = 0;
  window.addEventListener("dragenter", (ev) => { if (hasFiles(ev)) { ev.preventDefault(); depth++; $("drop").hidden = false; } });
  window.addEventListener("dragover", (ev) => { if (hasFiles(ev)) ev.preventDefault(); });
  window.addEventListener("dragleave", (ev) => { if (hasFiles(ev) && --depth <= 0) { depth = 0; $("drop").hidden = true; } });
  window.addEventListener("drop", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault(); depth = 0; $("drop").hidden = true;
    const file = [...ev.dataTransfer.files].find((f) => /^image\//.test(f.type));
    if (file) searchByImage(file);
    else setStatus("Drop an image file (PNG, JPEG, WebP or GIF) to search by it.", true);
  });
}

// ---------------------------------------------------------------- viewer
async function openImage(imageId) {
  const token = ++viewerToken, relation = pendingRelation;
  pendingRelation = null;
  Object.assign(state, { openId: imageId, image: null, scene: null, relation: relation || null, points: [], labels: [], box: null, candidates: [], selected: 0 });
  $("scene-panel").hidden = true; $("scene-btn").classList.remove("active");
  $("viewer").hidden = false; $("viewer").dataset.state = "loading";
  $("viewer-title").textContent = `Image ${imageId}`; $("viewer-sub").textContent = "loading…";
  $("region-list").replaceChildren(); $("regions-head").textContent = "Regions"; renderCandidates();
  markActiveCards();
  let info;
  try { info = await api("GET", `/v1/images/${imageId}`); } catch (e) {
    if (token !== viewerToken) return;
    $("viewer-sub").textContent = ""; $("viewer-img").removeAttribute("src");
    $("seg-status").className = "status small error"; $("seg-status").textContent = e.message;
    $("viewer").dataset.state = "error";
    return;
  }
  if (token !== viewerToken) return;
  const tracks = info.regions.filter((r) => r.kind === "track");
  if (tracks.length) {  // a video (from browsing): its player, on the chosen track or the largest one
    const pick = tracks.find((r) => r.region_id === view.sel) || tracks.reduce((a, b) => (b.area > a.area ? b : a));
    go({ image: null, sel: null, track: pick.region_id, at: null }, false);
    return;
  }
  const img = $("viewer-img");
  await new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; img.src = `/v1/images/${imageId}/file`; });
  if (token !== viewerToken) return;
  assignColours(info, img);
  state.image = info;
  $("viewer-title").textContent = baseName(info.path);
  $("viewer-title").title = info.path;
  const masks = info.regions.filter((r) => r.kind !== "whole").length;
  $("viewer-sub").textContent = `image ${imageId} · ${info.width}×${info.height} · ${plural(masks, "region")}`;
  for (const id of ["regions-canvas", "highlight-canvas", "mask-canvas", "prompt-canvas"]) { const c = $(id); c.width = info.width; c.height = info.height; }
  fitImage();
  drawRegions(); renderRegionList(); selectRegion(view.sel);
  drawMasks(); drawPrompts(); renderCandidates();
  $("seg-status").className = "status small";
  $("seg-status").textContent = "Click the image to segment with SAM 2.1.";
  $("viewer").dataset.state = "done";
}

// on a narrow screen the viewer sits below the results: bring it into view when a result opens it
function revealViewer(ev) {
  const opened = ev.target.closest(".hit, .tile");
  if (!opened || ev.target.closest(".like") || !window.matchMedia("(max-width: 900px)").matches) return;
  $(opened.classList.contains("track") ? "player" : "viewer").scrollIntoView({ behavior: "smooth", block: "start" });
}

function closeViewer() {
  viewerToken++;
  state.openId = null; state.image = null; state.scene = null;
  $("viewer").hidden = true;
  markActiveCards();
}

// scale the image (up or down) to the space available; the canvases follow the <img> box
function fitImage() {
  if (!state.image) return;
  const wrap = document.querySelector(".stage-wrap"), img = $("viewer-img");
  const availW = wrap.clientWidth - 12, availH = Math.max(240, window.innerHeight * 0.42);
  const scale = Math.min(availW / state.image.width, availH / state.image.height);
  img.style.width = `${Math.floor(state.image.width * scale)}px`;
  img.style.height = `${Math.floor(state.image.height * scale)}px`;
}
window.addEventListener("resize", fitImage);

const regionColour = (r) => r._rgb || PALETTE[state.image.regions.indexOf(r) % PALETTE.length];

// each region's colour contrasts with the region's own mean colour (a red object is not painted
// red): one of the three palette colours farthest from it, in turn so neighbours differ
function assignColours(info, img) {
  let data = null;
  try {
    const c = document.createElement("canvas");
    c.width = info.width; c.height = info.height;
    const ctx = context2d(c);
    ctx.drawImage(img, 0, 0, info.width, info.height);
    data = ctx.getImageData(0, 0, info.width, info.height).data;
  } catch (e) { data = null; }
  const dist = (a, b) => 2 * (a[0] - b[0]) ** 2 + 4 * (a[1] - b[1]) ** 2 + 3 * (a[2] - b[2]) ** 2;
  info.regions.forEach((r, i) => {
    const mean = data && r.kind !== "whole" ? meanColour(r, data, info.width, info.height) : null;
    r._rgb = mean ? [...PALETTE].sort((a, b) => dist(b, mean) - dist(a, mean))[i % 3] : PALETTE[i % PALETTE.length];
  });
}

function meanColour(r, data, w, h) {
  const m = maskOf(r), [bx, by, bw, bh] = r.bbox, step = Math.max(1, Math.floor(Math.sqrt(bw * bh / 4000)));
  const sum = [0, 0, 0];
  let n = 0;
  for (let y = Math.max(0, Math.floor(by)); y < Math.min(h, by + bh); y += step) {
    for (let x = Math.max(0, Math.floor(bx)); x < Math.min(w, bx + bw); x += step) {
      const j = y * w + x;
      if (!m[j]) continue;
      sum[0] += data[4 * j]; sum[1] += data[4 * j + 1]; sum[2] += data[4 * j + 2]; n++;
    }
  }
  return n ? sum.map((v) => v / n) : null;
}

function drawRegions() {
  const c = $("regions-canvas"), ctx = context2d(c);
  ctx.clearRect(0, 0, c.width, c.height);
  if (!state.image) return;
  if (state.scene) { drawScene(ctx, c); return; }
  if (!$("show-regions").checked) return;
  state.image.regions.forEach((r) => {
    if (r.kind !== "whole") paintMask(ctx, maskOf(r), c.width, c.height, regionColour(r), 0.12, 0.85, r.bbox);
  });
  const rel = state.relation;
  if (rel && !rel.scene) {  // the object of a relational hit: dashed box with the predicate
    const [x, y, w, h] = rel.object.bbox;
    ctx.setLineDash([8, 5]); ctx.strokeStyle = "rgba(255,255,255,0.95)"; ctx.lineWidth = Math.max(2, c.width / 200);
    ctx.strokeRect(x, y, w, h); ctx.setLineDash([]);
    label(ctx, c, rel.predicate.replace("_", " ") + " this", x, y, [255, 255, 255]);
  }
}

// the selected (or hovered) region: stronger fill, its box and its name
function drawHighlight() {
  const c = $("highlight-canvas"), ctx = context2d(c);
  ctx.clearRect(0, 0, c.width, c.height);
  if (!state.image) return;
  const id = hoverRegion || view.sel, r = state.image.regions.find((x) => x.region_id === id);
  if (!r) return;
  const rgb = regionColour(r), [x, y, w, h] = r.bbox;
  if (r.kind !== "whole") paintMask(ctx, maskOf(r), c.width, c.height, rgb, 0.4, 1, r.bbox);
  ctx.strokeStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`; ctx.lineWidth = Math.max(2, c.width / 160);
  ctx.strokeRect(x, y, w, h);
  label(ctx, c, r.kind === "whole" ? "whole image" : `region ${r.region_id}`, x, y, rgb);
}

function label(ctx, c, text, x, y, rgb) {
  const size = Math.max(11, Math.round(c.width / 45));
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  const tw = ctx.measureText(text).width, ty = y - size - 4 >= 0 ? y - size - 4 : Math.min(c.height - size - 4, y + 2);
  const tx = Math.max(0, Math.min(x, c.width - tw - 8));
  ctx.fillStyle = "rgba(0,0,0,0.72)"; ctx.fillRect(tx, ty, tw + 8, size + 4);
  ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`; ctx.fillText(text, tx + 4, ty + size);
}

function renderRegionList() {
  const list = $("region-list");
  list.replaceChildren();
  const regions = [...state.image.regions].sort((a, b) => (a.kind === "whole") - (b.kind === "whole") || b.area - a.area);
  const total = (state.image.width * state.image.height) || 1;
  const masks = regions.filter((r) => r.kind !== "whole").length;
  $("regions-head").textContent = `${plural(masks, "region")}, largest first${masks < regions.length ? ", then the whole image" : ""}`;
  if (!regions.length) { const li = document.createElement("li"); li.className = "none"; li.textContent = "No regions were found in this image."; list.append(li); }
  regions.forEach((r) => {
    const li = document.createElement("li"), rgb = regionColour(r);
    li.dataset.regionId = r.region_id; li.tabIndex = 0;
    const sw = document.createElement("span");
    sw.className = "swatch"; sw.style.background = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
    const img = document.createElement("img");
    img.loading = "lazy"; img.alt = ""; img.src = `/v1/regions/${r.region_id}/crop.png?size=96`;
    const text = document.createElement("div");
    text.className = "what";
    const name = document.createElement("strong"), sub = document.createElement("span");
    name.textContent = r.kind === "whole" ? "whole image" : `region ${r.region_id}`;
    sub.className = "muted";
    sub.textContent = `${(100 * r.area / total).toFixed(r.area / total < 0.01 ? 2 : 1)}% of the image`
      + (r.predicted_iou != null ? ` · IoU ${r.predicted_iou.toFixed(2)}` : "");
    text.append(name, sub);
    li.append(sw, img, text, likeButton(r.region_id, "small"));
    li.addEventListener("mouseenter", () => { hoverRegion = r.region_id; drawHighlight(); });
    li.addEventListener("mouseleave", () => { hoverRegion = null; drawHighlight(); });
    const pick = () => go({ sel: view.sel === r.region_id ? null : r.region_id }, false);
    li.addEventListener("click", pick);
    li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") pick(); });
    list.append(li);
  });
}

function selectRegion(id) {
  drawHighlight();
  markActiveCards();
  const list = $("region-list");
  list.querySelectorAll("li").forEach((li) => li.classList.toggle("active", Number(li.dataset.regionId) === id));
  const li = list.querySelector("li.active");
  if (li && (li.offsetTop < list.scrollTop || li.offsetTop + li.offsetHeight > list.scrollTop + list.clientHeight)) {
    list.scrollTop = li.offsetTop;
  }
}

// ---------------------------------------------------------------- scene view
function objectNames(objects) {
  const count = {}, seen = {};
  objects.forEach((o) => { count[o.label] = (count[o.label] || 0) + 1; });
  return objects.map((o) => count[o.label] > 1 ? `${o.label} ${seen[o.label] = (seen[o.label] || 0) + 1}` : o.label);
}

function drawScene(ctx, c) {
  const objs = state.scene.objects, names = objectNames(objs);
  objs.forEach((o, i) => paintMask(ctx, decodeRLE(o.mask), c.width, c.height, PALETTE[i % PALETTE.length], 0.18, 1, o.bbox));
  objs.forEach((o, i) => label(ctx, c, names[i], o.bbox[0], o.bbox[1], PALETTE[i % PALETTE.length]));
}

async function toggleScene() {
  if (!state.image) return;
  if (state.scene) { state.scene = null; $("scene-panel").hidden = true; $("scene-btn").classList.remove("active"); drawRegions(); return; }
  $("seg-status").textContent = "Computing the scene…";
  try {
    const t0 = performance.now();
    const sc = await api("GET", `/v1/images/${state.image.image_id}/scene`);
    state.scene = sc;
    const names = objectNames(sc.objects);
    $("scene-text").textContent = sc.text;
    const list = $("scene-relations"); list.replaceChildren();
    const shown = sc.relations.filter((r) => ["left_of", "above", "inside", "near", "overlaps"].includes(r.predicate)
      && !(["near", "overlaps"].includes(r.predicate) && r.subject_index > r.object_index));
    shown.slice(0, 200).forEach((r) => {
      const li = document.createElement("li");
      li.textContent = `${names[r.subject_index]} — ${r.predicate.replace("_", " ")} — ${names[r.object_index]}`;
      list.append(li);
    });
    $("scene-panel").hidden = false; $("scene-btn").classList.add("active");
    drawRegions();
    $("seg-status").textContent = `Scene: ${sc.objects.length} objects, ${sc.relations.length} relations in ${Math.round(performance.now() - t0)} ms`;
  } catch (e) { $("seg-status").textContent = e.message; }
}

// ---------------------------------------------------------------- SAM prompts
function drawMasks() {
  const c = $("mask-canvas"), ctx = context2d(c);
  ctx.clearRect(0, 0, c.width, c.height);
  const cand = state.candidates[state.selected];
  if (cand) paintMask(ctx, decodeRLE(cand.rle), c.width, c.height, [30, 144, 255], 0.5, 1, cand.bbox);
}

function drawPrompts() {
  const c = $("prompt-canvas"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const r = Math.max(4, c.width / 70);
  if (state.box) {
    const [x0, y0, x1, y1] = state.box;
    ctx.strokeStyle = "#ffd400"; ctx.lineWidth = Math.max(2, c.width / 250); ctx.setLineDash([8, 5]);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0); ctx.setLineDash([]);
  }
  state.points.forEach(([x, y], i) => {
    ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = state.labels[i] ? "#22c55e" : "#ef4444"; ctx.fill();
    ctx.lineWidth = Math.max(1.5, r / 3); ctx.strokeStyle = "#fff"; ctx.stroke();
  });
}

function renderCandidates() {
  const box = $("candidates");
  box.replaceChildren();
  state.candidates.forEach((cand, i) => {
    const b = document.createElement("button");
    b.textContent = `Mask ${i + 1} · ${cand.score.toFixed(3)}`;
    b.className = i === state.selected ? "active" : "";
    b.addEventListener("click", () => { state.selected = i; drawMasks(); renderCandidates(); });
    box.append(b);
  });
}

async function segment() {
  if (!state.image) return;
  if (state.busy) { state.pending = true; return; }
  if (!state.points.length && !state.box) { state.candidates = []; drawMasks(); renderCandidates(); return; }
  state.busy = true;
  const prev = state.candidates[state.selected];
  const body = { image_id: state.image.image_id, multimask_output: true };
  if (state.points.length) { body.points = state.points; body.labels = state.labels; }
  if (state.box) body.box = state.box;
  if ($("refine").checked && prev && state.points.length > 1) body.mask_input = prev.logits_id;
  const st = $("seg-status");
  try {
    const d = await api("POST", "/v1/segment", body);
    state.candidates = d.masks; state.selected = 0;
    drawMasks(); renderCandidates();
    st.className = "status small";
    st.textContent = `${plural(d.masks.length, "candidate")} · image embedding ${d.cached ? "cached" : "computed"} · ${d.timings.total_ms.toFixed(0)} ms server`;
  } catch (e) {
    st.className = "status small error"; st.textContent = e.message;
  } finally {
    state.busy = false;
    if (state.pending) { state.pending = false; segment(); }
  }
}

function imageCoords(ev) {
  const c = $("prompt-canvas"), rect = c.getBoundingClientRect();
  const x = (ev.clientX - rect.left) * c.width / rect.width, y = (ev.clientY - rect.top) * c.height / rect.height;
  return [Math.min(c.width, Math.max(0, x)), Math.min(c.height, Math.max(0, y))];
}

function setupViewer() {
  const c = $("prompt-canvas");
  let start = null, dragging = false;
  c.addEventListener("contextmenu", (ev) => ev.preventDefault());
  c.addEventListener("mousedown", (ev) => { start = { p: imageCoords(ev), button: ev.button, shift: ev.shiftKey }; dragging = false; });
  c.addEventListener("mousemove", (ev) => {
    if (!start) return;
    const p = imageCoords(ev), scale = c.width / c.getBoundingClientRect().width;
    if (Math.hypot(p[0] - start.p[0], p[1] - start.p[1]) > 6 * scale) dragging = true;
    if (dragging) {
      state.box = [Math.min(start.p[0], p[0]), Math.min(start.p[1], p[1]), Math.max(start.p[0], p[0]), Math.max(start.p[1], p[1])];
      drawPrompts();
    }
  });
  window.addEventListener("mouseup", (ev) => {
    if (!start) return;
    const s = start; start = null;
    if (dragging) { dragging = false; segment(); return; }
    if (ev.target !== c) return;
    const fg = !(s.shift || s.button === 2);
    state.points.push(s.p.map((v) => Math.round(v * 10) / 10)); state.labels.push(fg ? 1 : 0);
    drawPrompts(); segment();
  });
  $("clear").addEventListener("click", () => {
    state.points = []; state.labels = []; state.box = null; state.candidates = [];
    drawPrompts(); drawMasks(); renderCandidates(); $("seg-status").textContent = "";
  });
  $("show-regions").addEventListener("change", () => drawRegions());
  $("close-viewer").addEventListener("click", () => go({ image: null, sel: null }));
  $("scene-btn").addEventListener("click", toggleScene);
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape" || ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)) return;
    if (view.image) go({ image: null, sel: null });
    else if (view.track) go({ track: null, at: null });
  });
}

// ---------------------------------------------------------------- track player
// Frames come from GET /v1/videos/{id}/frames/{frame}.jpg (decoded on the server), so any codec
// plays. The player steps through "steps": the video sampled every `stride` frames (the track's
// own spacing), the track's stored frames and the frames an interactive run returned.
const PLAYER_SIZE = 640;  // longest side of the frames requested (the server never scales up)
// outline colours: the two of these farthest from the tracked object's own colour
const OUTLINE_RGB = [[255, 200, 0], [0, 220, 255], [255, 64, 200], [30, 144, 255], [64, 235, 96], [255, 64, 64]];
const player = { trackId: null, token: 0, track: null, vid: 0, w: 0, h: 0, fps: 0, last: 0, stride: 1, steps: [],
  byFrame: new Map(), live: new Map(), frame: null, playing: false, run: null, trackRgb: OUTLINE_RGB[0], liveRgb: OUTLINE_RGB[1] };

const frameURL = (frame) => `/v1/videos/${player.vid}/frames/${frame}.jpg?size=${PLAYER_SIZE}`;
const frameTime = (frame) => (player.live.get(frame) || player.byFrame.get(frame) || { t: frame / (player.fps || 1) }).t;

async function openPlayer(trackId, at) {
  const token = ++player.token;
  stopRun(); pause();
  Object.assign(player, { trackId, track: null, frame: null, live: new Map(), byFrame: new Map(), steps: [] });
  $("player").hidden = false; $("player").dataset.state = "loading"; delete $("player").dataset.frame;
  $("player-title").textContent = `Track ${trackId}`; $("player-sub").textContent = "loading…";
  playerStatus("");
  markActiveCards();
  let tr;
  try { tr = await getTrack(trackId); } catch (e) {
    if (token !== player.token) return;
    $("player-sub").textContent = ""; playerStatus(e.message, true); $("player").dataset.state = "error";
    return;
  }
  if (token !== player.token) return;
  setupTrack(tr);
  const first = at !== null && at !== undefined ? nearestStep(at) : tr.best_frame.frame;
  await seekFrame(first);
  if (token !== player.token) return;
  pickColours(); drawPlayer();
  playerStatus("Play (space), step (← →) or click the time bar to seek. Pause and click an object to track it from that frame.");
  $("player").dataset.state = "done";
}

function setupTrack(tr) {
  const [h, w] = tr.frames[0].mask.size, v = tr.video;
  const gaps = tr.frames.slice(1).map((f, i) => f.frame - tr.frames[i].frame).sort((a, b) => a - b);
  const stride = Math.max(1, gaps.length ? gaps[Math.floor(gaps.length / 2)] : Math.round(v.fps / 2) || 1);
  const last = v.duration_s && v.fps ? Math.max(tr.frame_end, Math.round(v.duration_s * v.fps) - 1) : tr.frame_end;
  Object.assign(player, { track: tr, vid: v.id, w, h, fps: v.fps, last, stride,
    byFrame: new Map(tr.frames.map((f) => [f.frame, f])) });
  rebuildSteps();
  $("player-title").textContent = baseName(v.path); $("player-title").title = v.path;
  $("player-sub").textContent = `track ${tr.region_id} · ${tr.t_start.toFixed(1)}–${tr.t_end.toFixed(1)} s · ${plural(tr.frames.length, "frame")} with its mask`;
  setRange("track-range", tr.t_start, tr.t_end);
  setRange("live-range", null, null);
}

function rebuildSteps() {
  const set = new Set(player.byFrame.keys());
  for (let f = 0; f <= player.last; f += player.stride) set.add(f);
  player.live.forEach((_, f) => set.add(f));
  player.steps = [...set].sort((a, b) => a - b);
}

function nearestStep(frame) {
  let best = player.steps[0];
  for (const f of player.steps) if (Math.abs(f - frame) < Math.abs(best - frame)) best = f;
  return best;
}

function duration() { return player.fps ? (player.last + 1) / player.fps : 1; }

function setRange(cls, t0, t1) {
  const el = $("timebar").querySelector(`.${cls}`);
  el.hidden = t0 === null;
  if (t0 === null) return;
  const d = duration();
  el.style.left = `${100 * Math.max(0, t0) / d}%`;
  el.style.width = `${Math.max(0.8, 100 * (t1 - t0 + 1 / (player.fps || 1)) / d)}%`;
}

// show a frame: its JPEG decoded off-screen first, then swapped in with its masks (no flicker)
async function seekFrame(frame) {
  const token = player.token, img = new Image();
  img.src = frameURL(frame);
  try { await img.decode(); } catch (e) {
    if (token === player.token) playerStatus(`Frame ${frame} could not be loaded.`, true);
    return false;
  }
  if (token !== player.token) return false;
  player.frame = frame;
  const el = $("player-img");
  el.src = img.src;
  $("player").dataset.frame = frame;
  fitPlayer(); drawPlayer(); updateClock();
  return true;
}

function fitPlayer() {
  if (!player.track) return;
  const wrap = $("player").querySelector(".stage-wrap"), img = $("player-img"), c = $("player-canvas");
  const scale = Math.min((wrap.clientWidth - 12) / player.w, Math.max(240, window.innerHeight * 0.5) / player.h);
  const dw = Math.floor(player.w * scale), dh = Math.floor(player.h * scale);
  img.style.width = `${dw}px`; img.style.height = `${dh}px`;
  const dpr = window.devicePixelRatio || 1;
  if (c.width !== Math.round(dw * dpr) || c.height !== Math.round(dh * dpr)) { c.width = Math.round(dw * dpr); c.height = Math.round(dh * dpr); }
}
window.addEventListener("resize", () => { fitPlayer(); drawPlayer(); });

function drawPlayer() {
  const c = $("player-canvas"), ctx = context2d(c);
  ctx.clearRect(0, 0, c.width, c.height);
  const f = player.byFrame.get(player.frame), live = player.live.get(player.frame);
  if (f) paintOutline(ctx, maskOf(f), player.w, player.h, player.trackRgb, f.bbox);
  if (live) paintOutline(ctx, maskOf(live), player.w, player.h, player.liveRgb, live.bbox);
  $("player").dataset.drawn = [f ? "track" : "", live ? "live" : ""].filter(Boolean).join(" ");
}

// the object's mean colour on the shown frame (its mask there, sampled on a small canvas), then the
// outline colours farthest from it: the track's, and the interactive one (far from both)
function pickColours() {
  const f = player.byFrame.get(player.frame), img = $("player-img");
  const dist = (a, b) => 2 * (a[0] - b[0]) ** 2 + 4 * (a[1] - b[1]) ** 2 + 3 * (a[2] - b[2]) ** 2;
  let mean = null;
  try {
    if (f) {
      const sc = Math.min(1, 256 / Math.max(player.w, player.h)), cw = Math.max(1, Math.round(player.w * sc)), ch = Math.max(1, Math.round(player.h * sc));
      const c = document.createElement("canvas"); c.width = cw; c.height = ch;
      const ctx = context2d(c); ctx.drawImage(img, 0, 0, cw, ch);
      const d = ctx.getImageData(0, 0, cw, ch).data, m = maskOf(f), sum = [0, 0, 0];
      let n = 0;
      for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) {
        if (!m[Math.min(player.h - 1, Math.floor(y / sc)) * player.w + Math.min(player.w - 1, Math.floor(x / sc))]) continue;
        const o = 4 * (y * cw + x); sum[0] += d[o]; sum[1] += d[o + 1]; sum[2] += d[o + 2]; n++;
      }
      if (n) mean = sum.map((v) => v / n);
    }
  } catch (e) { mean = null; }
  const ranked = mean ? [...OUTLINE_RGB].sort((a, b) => dist(b, mean) - dist(a, mean)) : OUTLINE_RGB;
  player.trackRgb = ranked[0];
  player.liveRgb = ranked.slice(1).find((c) => dist(c, ranked[0]) > 60000) || ranked[1];
  const css = (c) => `rgb(${c.join(",")})`;
  document.querySelector(".legend .track-key").style.background = css(player.trackRgb);
  document.querySelector(".legend .live-key").style.background = css(player.liveRgb);
  $("timebar").querySelector(".track-range").style.background = css(player.trackRgb);
  $("timebar").querySelector(".live-range").style.background = css(player.liveRgb);
}

// a mask (w x h) scaled to the canvas: a light tint, an opaque ring in ``rgb`` just inside the
// edge and a dark ring just outside it (``r`` canvas pixels each), so the outline shows on any background
function paintOutline(ctx, mask, w, h, rgb, bbox) {
  const cw = ctx.canvas.width, ch = ctx.canvas.height, sx = w / cw, sy = h / ch, r = Math.max(2, Math.round(cw / 300));
  const x0 = Math.max(0, Math.floor(bbox[0] / sx) - r - 1), y0 = Math.max(0, Math.floor(bbox[1] / sy) - r - 1);
  const x1 = Math.min(cw, Math.ceil((bbox[0] + bbox[2]) / sx) + r + 1), y1 = Math.min(ch, Math.ceil((bbox[1] + bbox[3]) / sy) + r + 1);
  if (x1 <= x0 || y1 <= y0) return;
  const bw = x1 - x0, bh = y1 - y0, m = new Uint8Array(bw * bh);
  for (let y = 0; y < bh; y++) {
    const row = Math.min(h - 1, Math.floor((y + y0 + 0.5) * sy)) * w;
    for (let x = 0; x < bw; x++) m[y * bw + x] = mask[row + Math.min(w - 1, Math.floor((x + x0 + 0.5) * sx))];
  }
  const img = ctx.getImageData(x0, y0, bw, bh), d = img.data;
  const near = (x, y, v) => {  // a pixel within r of (x, y) whose mask value is v
    for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) {
      const xx = x + dx, yy = y + dy;
      if (xx < 0 || yy < 0 || xx >= bw || yy >= bh) { if (!v) return true; continue; }
      if (m[yy * bw + xx] === v) return true;
    }
    return false;
  };
  for (let y = 0; y < bh; y++) {
    for (let x = 0; x < bw; x++) {
      const inside = m[y * bw + x], o = 4 * (y * bw + x);
      let px = null;
      if (inside) px = near(x, y, 0) ? [...rgb, 255] : [...rgb, 56];
      else if (near(x, y, 1)) px = [0, 0, 0, 200];
      if (px) { d[o] = px[0]; d[o + 1] = px[1]; d[o + 2] = px[2]; d[o + 3] = px[3]; }
    }
  }
  ctx.putImageData(img, x0, y0);
}

function updateClock() {
  const t = frameTime(player.frame), d = duration();
  $("timebar").querySelector(".cursor").style.left = `${100 * Math.min(1, t / d)}%`;
  $("player-time").textContent = `${t.toFixed(2)} / ${d.toFixed(1)} s · frame ${player.frame}`;
}

function playerStatus(text, error = false) {
  const st = $("player-status");
  st.className = error ? "status small error" : "status small"; st.textContent = text;
}

// ---- play / pause / seek
async function play() {
  if (player.playing || !player.track) return;
  player.playing = true; $("play-btn").textContent = "Pause"; $("player").dataset.playing = "1";
  const token = player.token;
  if (player.frame >= player.steps[player.steps.length - 1]) await seekFrame(player.steps[0]);  // from the start again
  playLoop(token);
}

function pause() {
  if (!player.playing) return;
  player.playing = false; $("play-btn").textContent = "Play"; delete $("player").dataset.playing;
  rememberFrame();
}

// the paused frame goes into the URL (replacing the entry: seeking is not a page of history)
function rememberFrame() {
  if (!view.track || player.frame === null) return;
  view.at = player.frame;
  const url = toURL(view);
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}

async function playLoop(token) {
  while (player.playing && token === player.token) {
    const next = player.steps.find((f) => f > player.frame);
    if (next === undefined) { pause(); return; }
    const wait = Math.max(100, 1000 * (frameTime(next) - frameTime(player.frame)));
    const t0 = performance.now();
    if (!await seekFrame(next)) { pause(); return; }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait - (performance.now() - t0))));
  }
}

function seekToBar(ev) {
  const rect = $("timebar").getBoundingClientRect(), frac = Math.min(1, Math.max(0, (ev.clientX - rect.left) / rect.width));
  const frame = nearestStep(Math.round(frac * duration() * (player.fps || 1)));
  seekFrame(frame).then((ok) => { if (ok && !player.playing) rememberFrame(); });
}

function closePlayer() {
  player.token++; stopRun(); pause();
  player.trackId = null; player.track = null;
  $("player").hidden = true;
  markActiveCards();
}

// ---- click on a paused frame: track what is under the click (POST /v1/segment/video)
const LIVE_SECONDS = 3;  // the interactive run covers this long before and after the clicked frame

function playerClick(ev) {
  if (!player.track || player.frame === null) return;
  if (player.playing) { pause(); return; }  // a click on a playing video pauses it first
  const rect = $("player-canvas").getBoundingClientRect();
  const x = Math.round(10 * (ev.clientX - rect.left) * player.w / rect.width) / 10;
  const y = Math.round(10 * (ev.clientY - rect.top) * player.h / rect.height) / 10;
  startRun(player.frame, Math.min(player.w - 1, Math.max(0, x)), Math.min(player.h - 1, Math.max(0, y)));
}

function stopRun() { if (player.run) { player.run.abort(); player.run = null; } }

async function startRun(frame, x, y) {
  stopRun();
  const ctrl = new AbortController(), token = player.token, span = Math.max(1, Math.round(LIVE_SECONDS * (player.fps || 1)));
  player.run = ctrl; player.live = new Map(); rebuildSteps(); drawPlayer(); setRange("live-range", null, null);
  $("player").dataset.live = "running";
  const body = { video_id: player.vid, frame, points: [[x, y]], labels: [1], direction: "both",
    frame_start: Math.max(0, frame - span), frame_end: Math.min(player.last, frame + span) };
  playerStatus(`Tracking from frame ${frame}…`);
  const t0 = performance.now();
  try {
    await streamLines("/v1/segment/video", body, ctrl.signal, (d) => { if (token === player.token) addLive(d); });
    if (token !== player.token || ctrl.signal.aborted) return;
    playerStatus(`Tracked through ${plural(player.live.size, "frame")} in ${Math.round(performance.now() - t0)} ms; click again to start over.`);
    $("player").dataset.live = "done";
  } catch (e) {
    if (ctrl.signal.aborted || token !== player.token) return;
    playerStatus(`Tracking failed: ${e.message}`, true);
    $("player").dataset.live = "error";
  } finally { if (player.run === ctrl) player.run = null; }
}

function addLive(d) {
  player.live.set(d.frame, d);
  rebuildSteps();
  const frames = [...player.live.keys()];
  setRange("live-range", frameTime(Math.min(...frames)), frameTime(Math.max(...frames)));
  if (d.frame === player.frame) drawPlayer();
  playerStatus(`Tracking… ${plural(player.live.size, "frame")} so far`);
}

// POST a JSON body and hand each line of the NDJSON answer to ``onLine`` as it arrives
async function streamLines(url, body, signal, onLine) {
  const resp = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal });
  if (!resp.ok) {
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    const hint = resp.status === 401 || resp.status === 403 ? " (this server wants an API key for video segmentation)" : "";
    throw new Error(((data && data.error) || `HTTP ${resp.status}`) + hint);
  }
  const reader = resp.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    buf += dec.decode(value || new Uint8Array(), { stream: !done });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim(); buf = buf.slice(nl + 1);
      if (line) onLine(JSON.parse(line));
    }
    if (done) break;
  }
  if (buf.trim()) onLine(JSON.parse(buf));
}

// keys while the player is open: space plays/pauses, left/right step to the previous/next frame
function playerKey(ev) {
  if (!player.track || player.frame === null || ["INPUT", "SELECT", "TEXTAREA", "BUTTON"].includes(document.activeElement.tagName)) return;
  if (ev.key === " ") { ev.preventDefault(); if (player.playing) pause(); else play(); return; }
  if (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight") return;
  ev.preventDefault(); pause();
  const i = player.steps.indexOf(nearestStep(player.frame)) + (ev.key === "ArrowRight" ? 1 : -1);
  if (i >= 0 && i < player.steps.length) seekFrame(player.steps[i]).then((ok) => { if (ok) rememberFrame(); });
}

function setupPlayer() {
  document.addEventListener("keydown", playerKey);
  $("play-btn").addEventListener("click", () => (player.playing ? pause() : play()));
  $("timebar").addEventListener("click", seekToBar);
  $("player-canvas").addEventListener("click", playerClick);
  $("close-player").addEventListener("click", () => go({ track: null, at: null }));
}

// ---------------------------------------------------------------- start
function setupControls() {
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("q").value.trim();
    go({ q: text, like: null, qimg: null, n: view.k });
  });
  const applyFilters = (ev) => {
    if (ev) ev.preventDefault();
    const f = filtersFromControls();
    go({ ...f, n: f.k });
  };
  $("filters").addEventListener("submit", applyFilters);
  $("filters").addEventListener("change", () => applyFilters());
  $("f-clear").addEventListener("click", () => go({ prefix: "", area: "", score: "", one: false, n: view.k }));
  $("browse-btn").addEventListener("click", () => go({ q: "", like: null, qimg: null, n: view.k }));
  $("home").addEventListener("click", (ev) => { ev.preventDefault(); go(defaultView()); });
  $("query-close").addEventListener("click", () => go({ q: "", like: null, qimg: null, n: view.k }));
  $("more").addEventListener("click", () => { $("more").disabled = true; go({ n: view.n + view.k }, false); });
  window.addEventListener("popstate", () => { pendingRelation = null; show(readURL()); });
  $("results").addEventListener("click", revealViewer);
}

async function checkReady() {
  const badge = $("ready");
  try {
    const r = await fetch("/readyz"); const d = await r.json();
    const n = (v, one) => `${v} ${one}${v === 1 ? "" : "s"}`;
    const videos = d.index.videos_indexed ? ` · ${n(d.index.videos_indexed, "video")}` : "";
    badge.textContent = d.ready ? `${n(d.index.regions, "region")} · ${n(d.index.images_indexed, "image")}${videos}` : "not ready";
    badge.className = "badge " + (d.ready ? "ok" : "bad");
    if (d.limits) {
      Object.assign(limits, d.limits);
      if (limits.max_text_chars) $("q").maxLength = limits.max_text_chars;
    }
    return d.ready;
  } catch (e) { badge.textContent = "offline"; badge.className = "badge bad"; return false; }
}

async function start() {
  setupControls();
  setupViewer();
  setupPlayer();
  setupImageInput();
  let ready = await checkReady();
  while (!ready) {
    setStatus("The service is starting (loading models)…");
    await new Promise((resolve) => setTimeout(resolve, 2000));
    ready = await checkReady();
  }
  show(readURL());
}

start();
