// regionsearch web page: search -> grid of region crops; click -> image with its regions;
// click/shift-click/right-click/drag on the image -> SAM 2.1 masks live (multimask candidates).
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = [[255, 64, 64], [64, 160, 255], [64, 220, 96], [255, 200, 0], [200, 96, 255],
  [0, 220, 220], [255, 128, 0], [255, 64, 200]];

const state = { scene: null, relation: null, image: null, points: [], labels: [], box: null, candidates: [], selected: 0, busy: false, pending: false };

async function api(method, url, body) {
  const init = { method, headers: {} };
  if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const resp = await fetch(url, init);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) throw new Error((data && data.error) || `HTTP ${resp.status}`);
  return data;
}

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

function paintMask(ctx, mask, w, h, rgb, fillAlpha, edgeAlpha) {
  const img = ctx.getImageData(0, 0, w, h), d = img.data;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w];
      const a = edge ? edgeAlpha : fillAlpha;
      if (!a) continue;
      const o = i * 4, prev = d[o + 3] / 255, na = a + prev * (1 - a);
      for (let c = 0; c < 3; c++) d[o + c] = Math.round((rgb[c] * a + d[o + c] * prev * (1 - a)) / (na || 1));
      d[o + 3] = Math.round(na * 255);
    }
  }
  ctx.putImageData(img, 0, 0);
}

// ---------------------------------------------------------------- search
async function checkReady() {
  const badge = $("ready");
  try {
    const r = await fetch("/readyz"); const d = await r.json();
    badge.textContent = d.ready ? `${d.index.regions} regions · ${d.index.images_indexed} images` : "not ready";
    badge.className = "badge " + (d.ready ? "ok" : "bad");
  } catch (e) { badge.textContent = "offline"; badge.className = "badge bad"; }
}

async function runSearch(ev) {
  if (ev) ev.preventDefault();
  const text = $("q").value.trim();
  if (!text) return;
  const status = $("status");
  status.className = "status"; status.textContent = "Searching…";
  const body = { text, k: parseInt($("k").value, 10), filters: {} };
  if ($("per-image").checked) body.filters.per_image = 1;
  const t0 = performance.now();
  try {
    const data = await api("POST", "/v1/search", body);
    renderHits(data.hits);
    status.textContent = `${data.hits.length} region${data.hits.length === 1 ? "" : "s"} for “${data.query}” in ${Math.round(performance.now() - t0)} ms`;
  } catch (e) {
    status.className = "status error"; status.textContent = e.message; $("results").replaceChildren();
  }
}

function renderHits(hits) {
  const grid = $("results");
  grid.replaceChildren();
  const top = hits.length ? Math.max(...hits.map((h) => h.score)) : 1;
  hits.forEach((h, rank) => {
    const card = document.createElement("div");
    card.className = "hit"; card.dataset.regionId = h.region_id; card.dataset.imageId = h.image_id;
    card.title = `${h.image_path}\nregion ${h.region_id} · ${h.region_kind} · area ${h.area}`;
    const img = document.createElement("img");
    img.loading = "lazy"; img.alt = `region ${h.region_id}`;
    img.src = `/v1/regions/${h.region_id}/crop.png?size=256`;
    const bar = document.createElement("div");
    bar.className = "bar"; bar.style.width = `${Math.max(4, 100 * Math.max(0, h.score) / (top || 1))}%`;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.innerHTML = `<span class="score"></span><span class="kind"></span>`;
    meta.children[0].textContent = `#${rank + 1} · ${h.score.toFixed(3)}`;
    meta.children[1].textContent = h.region_kind === "whole" ? "whole image" : `region ${h.region_id}`;
    if (h.relation) {
      const rel = h.relation, what = rel.scene ? "the scene" : `region ${rel.object.region_id}`;
      meta.children[1].textContent = `${rel.predicate.replace("_", " ")} ${what}`;
      card.title += `\n${rel.predicate} ${what} (object score ${rel.object.score.toFixed(3)})`;
      card.classList.add("relational");
    }
    card.append(img, bar, meta);
    card.addEventListener("click", () => {
      document.querySelectorAll(".hit.active").forEach((c) => c.classList.remove("active"));
      card.classList.add("active");
      openImage(h.image_id, h.region_id, h.relation);
    });
    grid.append(card);
  });
}

// ---------------------------------------------------------------- viewer
async function openImage(imageId, regionId, relation) {
  const info = await api("GET", `/v1/images/${imageId}`);
  state.image = info; state.scene = null; state.relation = relation || null;
  $("scene-panel").hidden = true; $("scene-btn").classList.remove("active"); state.points = []; state.labels = []; state.box = null; state.candidates = []; state.selected = 0;
  $("viewer").hidden = false;
  $("viewer-title").textContent = `Image ${imageId}`;
  const name = info.path.split("/").pop();
  $("viewer-sub").textContent = `${name} · ${info.width}×${info.height} · ${info.regions.length} regions`;
  const img = $("viewer-img");
  await new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; img.src = `/v1/images/${imageId}/file`; });
  for (const id of ["regions-canvas", "mask-canvas", "prompt-canvas"]) { const c = $(id); c.width = info.width; c.height = info.height; }
  fitImage();
  drawRegions(regionId);
  drawMasks(); drawPrompts(); renderCandidates();
  $("seg-status").textContent = "Click the image to segment with SAM 2.1.";
}

// scale the image (up or down) to the space available; the canvases follow the <img> box
function fitImage() {
  if (!state.image) return;
  const wrap = document.querySelector(".stage-wrap"), img = $("viewer-img");
  const availW = wrap.clientWidth - 12, availH = Math.max(240, window.innerHeight * 0.68);
  const scale = Math.min(availW / state.image.width, availH / state.image.height);
  img.style.width = `${Math.floor(state.image.width * scale)}px`;
  img.style.height = `${Math.floor(state.image.height * scale)}px`;
}
window.addEventListener("resize", fitImage);

function drawRegions(highlight) {
  const c = $("regions-canvas"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  if (!state.image) return;
  if (state.scene) { drawScene(ctx, c); return; }
  if (!$("show-regions").checked) return;
  state.image.regions.forEach((r, i) => {
    if (r.kind === "whole") return;
    const hl = r.region_id === highlight;
    paintMask(ctx, decodeRLE(r.mask), c.width, c.height, PALETTE[i % PALETTE.length], hl ? 0.35 : 0.12, hl ? 1 : 0.85);
  });
  state.image.regions.forEach((r, i) => {
    if (r.kind === "whole") return;
    const [x, y, w, h] = r.bbox, rgb = PALETTE[i % PALETTE.length];
    ctx.strokeStyle = `rgba(${rgb[0]},${rgb[1]},${rgb[2]},0.9)`; ctx.lineWidth = Math.max(1, c.width / 400);
    if (r.region_id === highlight) { ctx.lineWidth *= 2.5; ctx.strokeRect(x, y, w, h); }
  });
  const rel = state.relation;
  if (rel && !rel.scene) {  // the object of a relational hit: dashed box with the predicate
    const [x, y, w, h] = rel.object.bbox;
    ctx.setLineDash([8, 5]); ctx.strokeStyle = "rgba(255,255,255,0.95)"; ctx.lineWidth = Math.max(2, c.width / 200);
    ctx.strokeRect(x, y, w, h); ctx.setLineDash([]);
    label(ctx, c, rel.predicate.replace("_", " ") + " this", x, y, [255, 255, 255]);
  }
}

function label(ctx, c, text, x, y, rgb) {
  const size = Math.max(11, Math.round(c.width / 45));
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  const tw = ctx.measureText(text).width, ty = Math.max(0, y - size - 4);
  ctx.fillStyle = "rgba(0,0,0,0.7)"; ctx.fillRect(x, ty, tw + 8, size + 4);
  ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`; ctx.fillText(text, x + 4, ty + size);
}

// ---------------------------------------------------------------- scene view
function objectNames(objects) {
  const count = {}, seen = {};
  objects.forEach((o) => { count[o.label] = (count[o.label] || 0) + 1; });
  return objects.map((o) => count[o.label] > 1 ? `${o.label} ${seen[o.label] = (seen[o.label] || 0) + 1}` : o.label);
}

function drawScene(ctx, c) {
  const objs = state.scene.objects, names = objectNames(objs);
  objs.forEach((o, i) => paintMask(ctx, decodeRLE(o.mask), c.width, c.height, PALETTE[i % PALETTE.length], 0.18, 1));
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

function drawMasks() {
  const c = $("mask-canvas"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const cand = state.candidates[state.selected];
  if (cand) paintMask(ctx, decodeRLE(cand.rle), c.width, c.height, [30, 144, 255], 0.5, 1);
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
    st.textContent = `${d.masks.length} candidate${d.masks.length === 1 ? "" : "s"} · image embedding ${d.cached ? "cached" : "computed"} · ${d.timings.total_ms.toFixed(0)} ms server`;
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
  $("close-viewer").addEventListener("click", () => { $("viewer").hidden = true; });
  $("scene-btn").addEventListener("click", toggleScene);
}

$("search-form").addEventListener("submit", runSearch);
setupViewer();
checkReady();
const initial = new URLSearchParams(location.search).get("q");
if (initial) { $("q").value = initial; runSearch(); }
