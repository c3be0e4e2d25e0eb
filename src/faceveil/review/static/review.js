// faceveil review page: plain JS, no build step, no external assets.
"use strict";

const params = new URLSearchParams(location.search);
const TOKEN = params.get("token") || sessionStorage.getItem("faceveil-token") || "";
sessionStorage.setItem("faceveil-token", TOKEN);
// Keep the token out of the address bar (and out of history); the cookie and sessionStorage carry it.
if (params.has("token")) history.replaceState(null, "", location.pathname);

const $ = (sel) => document.querySelector(sel);
let items = [];          // from /api/items, flags first
let idx = 0;             // current item
let view = "grid";
let drawing = true;      // draw mode in the large view
const edits = new Map(); // path -> {manual: [...], removed: [...], undo: [...]}, unapplied changes
let frameIdx = 0;        // the frame shown of a video item
let frameBoxes = [];     // what the run anonymized on that frame (from its track record)
let comparing = false;   // the method comparison panel is open
let methods = null;      // from /api/compare
const isVideo = (item) => item.kind === "video";

function enc(path) { return path.split("/").map(encodeURIComponent).join("/"); }
function url(kind, item) {
  const v = item.version ? "&v=" + encodeURIComponent(item.version) : "";
  return `${kind}/${enc(item.path)}?token=${encodeURIComponent(TOKEN)}${v}`;
}

async function api(path, body) {
  const opts = { headers: { "X-Faceveil-Token": TOKEN } };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

function editOf(item) {
  if (!edits.has(item.path)) {
    // A deep copy: image boxes are arrays, video boxes {box, from, to}.
    edits.set(item.path, { manual: JSON.parse(JSON.stringify(item.manual)),
                           removed: JSON.parse(JSON.stringify(item.removed)), flip: [], undo: [] });
  }
  return edits.get(item.path);
}
function dirty(item) {
  const e = edits.get(item.path);
  return !!e && (JSON.stringify(e.manual) !== JSON.stringify(item.manual) ||
                 JSON.stringify(e.removed) !== JSON.stringify(item.removed) || (e.flip || []).length > 0);
}
function sameBox(a, b) { return a.every((v, i) => Math.abs(v - b[i]) < 0.5); }
function isRemoved(e, box) { return e.removed.some((b) => sameBox(b, box)); }

function updateCounter() {
  const flagged = items.filter((i) => i.flags.length);
  const remaining = flagged.filter((i) => !i.approved).length;
  const approved = items.filter((i) => i.approved).length;
  const checking = items.filter((i) => !i.checked).length;
  $("#counter").innerHTML = `<span class="n" id="flagged-remaining">${remaining}</span> flagged images remaining` +
    ` · ${approved}/${items.length} approved` +
    (checking ? ` · <span id="checking">checking ${items.length - checking}/${items.length}…</span>` : "");
}

function boxEl(box, size, cls, label) {
  const d = document.createElement("div");
  d.className = "box " + cls;
  const [w, h] = size;
  d.style.left = (100 * box[0] / w) + "%";
  d.style.top = (100 * box[1] / h) + "%";
  d.style.width = (100 * (box[2] - box[0]) / w) + "%";
  d.style.height = (100 * (box[3] - box[1]) / h) + "%";
  if (label) { const s = document.createElement("span"); s.textContent = label; d.appendChild(s); }
  return d;
}

function drawBoxes(frame, item, labels) {
  frame.querySelectorAll(".box").forEach((b) => b.remove());
  if (!item.size) return;
  const e = edits.get(item.path) || { manual: item.manual, removed: item.removed };
  const flagged = item.flags.flatMap((f) => f.boxes || []);
  const isFlag = (b) => flagged.some((f) => sameBox(f, b));
  for (const f of item.faces) {
    const removed = isRemoved(e, f.box);
    frame.appendChild(boxEl(f.box, item.size, (removed ? "removed" : "main") + (isFlag(f.box) ? " flag" : ""),
                            labels ? (removed ? "removed" : f.score.toFixed(2)) : ""));
  }
  for (const s of item.suggestions) {
    if (e.manual.some((m) => sameBox(m, s.box))) continue;
    frame.appendChild(boxEl(s.box, item.size, "sugg" + (s.kept ? " kept" : "") + (s.hidden ? " hidden-ok" : "") + (isFlag(s.box) ? " flag" : ""),
                            labels ? `${s.source} ${s.score.toFixed(2)}` : ""));
  }
  for (const m of e.manual) {
    const pending = !item.manual.some((b) => sameBox(b, m));
    frame.appendChild(boxEl(m, item.size, "manual" + (pending ? " pending" : ""), labels ? "manual" : ""));
  }
}

function frameUrl(which, item, i, w) {
  const v = item.version ? "&v=" + encodeURIComponent(item.version) : "";
  return `frame/${which}/${enc(item.path)}?token=${encodeURIComponent(TOKEN)}&i=${i}${w ? "&w=" + w : ""}${v}`;
}

// Boxes on a video frame: the run's (detected solid, held/predicted dashed), manual ranges covering it.
function drawVideoBoxes(frame, item, labels) {
  frame.querySelectorAll(".box").forEach((b) => b.remove());
  if (!item.size) return;
  const e = edits.get(item.path) || { manual: item.manual };
  for (const b of frameBoxes) {
    if (b.kind === "m") continue;
    frame.appendChild(boxEl(b.box, item.size, b.kind === "h" ? "main held" : "main",
                            labels ? (b.kind === "h" ? `#${b.track} held` : `#${b.track}`) : ""));
  }
  for (const s of item.second.filter((f) => f.frame === frameIdx)) {
    frame.appendChild(boxEl(s.box, item.size, "sugg flag", labels ? `${s.source} ${s.score.toFixed(2)}` : ""));
  }
  for (const m of e.manual) {
    if (frameIdx < m.from || frameIdx > m.to) continue;
    const pending = !item.manual.some((b) => JSON.stringify(b) === JSON.stringify(m));
    frame.appendChild(boxEl(m.box, item.size, "manual" + (pending ? " pending" : ""),
                            labels ? `manual ${m.from}–${m.to}` : ""));
  }
}

function defaultRange(item, i) {
  // That frame ± the hold length, or to the end of a track visible there.
  const hold = item.hold || 0;
  let to = i + hold;
  for (const t of item.tracks) if (t.start <= i && i <= t.end) to = Math.max(to, t.end);
  $("#range-from").value = Math.max(0, i - hold);
  $("#range-to").value = Math.min(item.frames - 1, to);
}

async function setFrame(i, keepRange) {
  const item = items[idx];
  frameIdx = Math.min(Math.max(0, i), Math.max(0, item.frames - 1));
  $("#frame-num").value = frameIdx;
  if (!keepRange) defaultRange(item, frameIdx);
  document.querySelectorAll(".strip figure").forEach((f) =>
    f.classList.toggle("current", Number(f.dataset.frame) === frameIdx));
  frameBoxes = [];
  if (item.has_record && item.has_output) {
    try {
      const r = await api(`api/frame/${enc(item.path)}?i=${frameIdx}`);
      frameBoxes = r.boxes;
      $("#frame-info").textContent = `${frameIdx + 1}/${item.frames}` + (r.error ? ` · FAILED: ${r.error}` : "") +
        ` · ${r.boxes.length} box${r.boxes.length === 1 ? "" : "es"}`;
    } catch (err) { $("#frame-info").textContent = "boxes: " + err.message; }
  }
  videoStage("#stage-out", item, "out");
  videoStage("#stage-orig", item, "orig");
}

function videoStage(id, item, which) {
  const st = $(id);
  st.textContent = "";
  st.classList.toggle("drawing", drawing);
  const available = which === "out" ? item.has_output : item.has_original;
  if (!available) { st.textContent = which === "out" ? "no output (failed)" : "no original"; return; }
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.src = frameUrl(which, item, frameIdx);
  img.alt = `${which === "out" ? "anonymized" : "original"} ${item.path} frame ${frameIdx}`;
  img.draggable = false;
  frame.appendChild(img);
  st.appendChild(frame);
  drawVideoBoxes(frame, item, true);
  attachDrawing(frame, item);
}

function renderStrips(item) {
  const box = $("#strips");
  box.textContent = "";
  const flagged = new Set(item.flags.flatMap((f) => f.tracks || []));
  const row = (label, frames, heldSet, flag, tid) => {
    const r = document.createElement("div");
    r.className = "strip";
    const l = document.createElement("span");
    l.className = "label" + (flag ? " flag" : "");
    l.textContent = label;
    r.appendChild(l);
    if (tid !== undefined && item.has_record && item.has_original) r.appendChild(flipButton(item, tid));
    for (const f of frames.slice(0, 16)) {
      const fig = document.createElement("figure");
      fig.dataset.frame = f;
      if (heldSet && heldSet.has(f)) fig.className = "held";
      const img = document.createElement("img");
      img.loading = "lazy";
      img.src = frameUrl("out", item, f, 96);
      img.alt = `frame ${f}`;
      const cap = document.createElement("figcaption");
      cap.textContent = f;
      fig.append(img, cap);
      fig.addEventListener("click", () => setFrame(f));
      r.appendChild(fig);
    }
    box.appendChild(r);
  };
  const kept = new Map((item.kept_tracks || []).map((k) => [k.id, k]));
  const keptText = (k) => k ? ` · kept on ${k.kept_frames} frame${k.kept_frames === 1 ? "" : "s"}` +
    (k.name ? ` as ${k.name} at ${Number(k.distance || 0).toFixed(2)}` : ` by ${k.by}`) : "";
  for (const t of item.tracks) {
    const held = new Set(t.held.flat());
    row(`track #${t.id}: frames ${t.start}–${t.end}` + (t.held.length ? `, held ${t.held.map((h) => h.join("–")).join(", ")}` : "") +
        keptText(kept.get(t.id)), t.strip, held, flagged.has(t.id), t.id);
  }
  for (const k of kept.values()) {  // kept on every frame: not among the tracks the output hides
    if (item.tracks.some((t) => t.id === k.id) || k.start === null) continue;
    row(`track #${k.id}: frames ${k.start}–${k.end}` + keptText(k), [k.start, k.end], null, false, k.id);
  }
  if (item.failed_frames.length) row("failed frames (fully blurred)", item.failed_frames, null, true);
  const second = [...new Set(item.second.map((s) => s.frame))];
  if (second.length) row("second detector: unchanged faces", second, null, true);
  if (!item.tracks.length && !item.failed_frames.length && !second.length) {
    box.textContent = item.has_record ? "no face tracks" : "no track record";
  }
}

// One click flips a whole track: kept (on any frame) -> hidden on every frame, hidden -> kept on every frame.
// Pending until Apply, which re-renders the video; a second click before Apply takes the flip back.
function flipButton(item, tid) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "flip";
  const e = edits.get(item.path);
  const pending = !!e && (e.flip || []).includes(tid);
  const kept = (item.kept_tracks || []).some((k) => k.id === tid && k.kept_frames > 0);
  b.textContent = (kept !== pending ? "hide track" : "keep track") + (pending ? " (pending: apply)" : "");
  if (pending) b.classList.add("on");
  b.title = kept ? "hide this face in every frame (Apply re-renders)" : "leave this face as it is in every frame (Apply re-renders)";
  b.addEventListener("click", (ev) => {
    ev.stopPropagation();
    const ed = editOf(item);
    const i = ed.flip.indexOf(tid);
    if (i >= 0) ed.flip.splice(i, 1); else ed.flip.push(tid);
    ed.undo.push(() => { const j = ed.flip.indexOf(tid); if (j >= 0) ed.flip.splice(j, 1); else ed.flip.push(tid); });
    renderStrips(item);
  });
  return b;
}

function renderGrid() {
  const grid = $("#grid");
  grid.textContent = "";
  items.forEach((item, i) => {
    const card = document.createElement("div");
    card.className = "card" + (item.flags.length ? " flagged" : "") + (item.approved ? " approved" : "") +
      (i === idx ? " selected" : "");
    card.dataset.path = item.path;
    card.dataset.index = i;
    if (item.has_output) {
      const frame = document.createElement("div");
      frame.className = "frame";
      const img = document.createElement("img");
      img.src = url("thumb", item);
      img.alt = item.path;
      img.loading = "lazy";
      frame.appendChild(img);
      card.appendChild(frame);
      drawBoxes(frame, item, false);
    } else {
      const m = document.createElement("div");
      m.className = "missing";
      m.textContent = "no output (failed)";
      card.appendChild(m);
    }
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = (item.approved ? "✓ " : "") + item.path + (isVideo(item)
      ? ` · video, ${item.frames} frames, ${item.tracks.length} track${item.tracks.length === 1 ? "" : "s"}`
      : (item.faces.length ? ` · ${item.faces.length} face${item.faces.length > 1 ? "s" : ""}` : ""));
    card.appendChild(name);
    if (!item.checked) {
      const why = document.createElement("div");
      why.className = "why";
      why.textContent = "checking…";
      card.appendChild(why);
    } else if (item.flags.length) {
      const why = document.createElement("div");
      why.className = "why";
      why.textContent = item.flags.map((f) => f.text).slice(0, 2).join("; ") +
        (item.flags.length > 2 ? ` (+${item.flags.length - 2})` : "");
      card.appendChild(why);
    }
    card.addEventListener("click", () => { idx = i; showDetail(); });
    grid.appendChild(card);
  });
  updateCounter();
}

function stage(id, item, kind) {
  const st = $(id);
  st.textContent = "";
  st.classList.toggle("drawing", drawing);
  const available = kind === "img/out" ? item.has_output : item.has_original;
  if (!available) { st.textContent = kind === "img/out" ? "no output (failed)" : "no original"; return; }
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.src = url(kind, item);
  img.alt = kind === "img/out" ? "anonymized " + item.path : "original " + item.path;
  img.draggable = false;
  frame.appendChild(img);
  st.appendChild(frame);
  drawBoxes(frame, item, true);
  attachDrawing(frame, item);
}

function showDetail() {
  view = "detail";
  const item = items[idx];
  editOf(item);
  $("#grid").hidden = true;
  $("#detail").hidden = false;
  $("#detail-name").textContent = item.path;
  $("#detail-pos").textContent = `${idx + 1} / ${items.length}`;
  $("#btn-approve").textContent = item.approved ? "unapprove" : "approve";
  $("#btn-draw").textContent = "draw: " + (drawing ? "on" : "off");
  $("#btn-draw").classList.toggle("on", drawing);
  const fl = $("#flags");
  fl.textContent = "";
  for (const f of item.flags) { const li = document.createElement("li"); li.textContent = f.text; fl.appendChild(li); }
  if (!item.flags.length) { const li = document.createElement("li"); li.className = "none"; li.textContent = "no flags"; fl.appendChild(li); }
  $("#video").hidden = !isVideo(item);
  if (isVideo(item)) {
    const shown = $("#video").dataset.path === item.path;
    $("#video").dataset.path = item.path;
    renderStrips(item);
    const first = item.flags.flatMap((f) => f.frames || [])[0] ?? (item.tracks[0] ? item.tracks[0].start : 0);
    setFrame(shown ? frameIdx : first, shown);
  } else {
    stage("#stage-out", item, "img/out");
    stage("#stage-orig", item, "img/orig");
  }
  renderCompare(item);
  setStatus();
  updateCounter();
}

// The same faces hidden by each method, rendered by the server on demand (images only).
async function renderCompare(item) {
  const box = $("#compare");
  box.hidden = !comparing || isVideo(item);
  $("#btn-compare").classList.toggle("on", comparing);
  if (box.hidden) return;
  box.textContent = "";
  try {
    if (!methods) methods = await api("api/compare");
  } catch (err) { setStatus("methods: " + err.message, "error"); return; }
  for (const m of methods.methods) {
    const fig = document.createElement("figure");
    if (m === methods.current) fig.className = "current";
    const cap = document.createElement("figcaption");
    cap.textContent = m === methods.current ? `${m} (this run)` : m;
    const img = document.createElement("img");
    img.alt = `${item.path} hidden by ${m}`;
    img.loading = "lazy";
    img.src = `compare/${encodeURIComponent(m)}/${enc(item.path)}?w=640&token=${encodeURIComponent(TOKEN)}`;
    fig.append(cap, img);
    box.appendChild(fig);
  }
}

function showGrid() {
  view = "grid";
  $("#detail").hidden = true;
  $("#grid").hidden = false;
  renderGrid();
  const sel = $("#grid .card.selected");
  if (sel) sel.scrollIntoView({ block: "nearest" });
}

function setStatus(text, cls) {
  const st = $("#status");
  const item = items[idx];
  st.className = cls || (item && dirty(item) ? "dirty" : "");
  st.textContent = text || (item && dirty(item) ? "unapplied changes: press Enter to apply" :
    item && item.applied_at ? `applied ${item.applied_at}` : "");
}

function redrawDetail() {
  const item = items[idx];
  document.querySelectorAll("#detail .frame").forEach((f) =>
    isVideo(item) ? drawVideoBoxes(f, item, true) : drawBoxes(f, item, true));
  setStatus();
}

function attachDrawing(frame, item) {
  let start = null, temp = null;
  const toImage = (ev) => {
    const r = frame.getBoundingClientRect();
    const x = Math.min(Math.max(ev.clientX - r.left, 0), r.width);
    const y = Math.min(Math.max(ev.clientY - r.top, 0), r.height);
    return [x * item.size[0] / r.width, y * item.size[1] / r.height, x, y];
  };
  // Pointer capture keeps the drag ours when it leaves the image; no window listeners pile up.
  frame.addEventListener("pointerdown", (ev) => {
    if (!drawing || ev.button !== 0 || !item.size) return;
    ev.preventDefault();
    frame.setPointerCapture(ev.pointerId);
    start = toImage(ev);
    temp = boxEl([start[0], start[1], start[0], start[1]], item.size, "manual pending", "");
    frame.appendChild(temp);
  });
  frame.addEventListener("pointermove", (ev) => {
    if (!start) return;
    const p = toImage(ev);
    const b = [Math.min(start[0], p[0]), Math.min(start[1], p[1]), Math.max(start[0], p[0]), Math.max(start[1], p[1])];
    const n = boxEl(b, item.size, "manual pending", "");
    temp.replaceWith(n);
    temp = n;
  });
  frame.addEventListener("pointerup", (ev) => {
    if (!start) return;
    const p = toImage(ev);
    const moved = Math.hypot(p[2] - start[2], p[3] - start[3]);
    const e = editOf(item);
    if (moved >= 4) {
      const b = [Math.min(start[0], p[0]), Math.min(start[1], p[1]), Math.max(start[0], p[0]), Math.max(start[1], p[1])]
        .map((v) => Math.round(v * 10) / 10);
      if (b[2] - b[0] < 2 || b[3] - b[1] < 2) {  // the server refuses it too: it would hide nothing
        temp.remove();
        setStatus("box under 2 image pixels wide or high: draw it larger", "error");
      } else if (isVideo(item)) {  // held over the frame range in the bar (default: this frame ± the hold)
        const a = parseInt($("#range-from").value, 10), z = parseInt($("#range-to").value, 10);
        const from = Number.isFinite(a) ? a : frameIdx, to = Number.isFinite(z) ? z : frameIdx;
        e.manual.push({ box: b, from: Math.min(from, to), to: Math.max(from, to) });
        e.undo.push(() => e.manual.pop());
      } else {
        e.manual.push(b);
        e.undo.push(() => e.manual.pop());
      }
    } else if (isVideo(item)) {
      const inside = (m) => frameIdx >= m.from && frameIdx <= m.to && start[0] >= m.box[0] && start[0] <= m.box[2] &&
        start[1] >= m.box[1] && start[1] <= m.box[3];
      const i = e.manual.findIndex(inside);  // a click removes a manual box shown on this frame
      if (i >= 0) { const [m] = e.manual.splice(i, 1); e.undo.push(() => e.manual.splice(i, 0, m)); }
    } else {
      clickAt(item, e, start[0], start[1]);
    }
    start = null;
    temp = null;
    redrawDetail();
  });
}

// A click (no drag) toggles a detected box (false face) or accepts a suggestion as a manual box.
function clickAt(item, e, x, y) {
  const inside = (b) => x >= b[0] && x <= b[2] && y >= b[1] && y <= b[3];
  const area = (b) => (b[2] - b[0]) * (b[3] - b[1]);
  const manual = e.manual.filter(inside).sort((a, b) => area(a) - area(b))[0];
  if (manual) {
    const i = e.manual.indexOf(manual);
    e.manual.splice(i, 1);
    e.undo.push(() => e.manual.splice(i, 0, manual));
    return;
  }
  const sugg = item.suggestions.filter((s) => inside(s.box)).sort((a, b) => area(a.box) - area(b.box))[0];
  if (sugg && !e.manual.some((m) => sameBox(m, sugg.box))) {
    e.manual.push(sugg.box.slice());
    e.undo.push(() => e.manual.pop());
    return;
  }
  const face = item.faces.filter((f) => inside(f.box)).sort((a, b) => area(a.box) - area(b.box))[0];
  if (face) {
    const i = e.removed.findIndex((b) => sameBox(b, face.box));
    if (i >= 0) { const [b] = e.removed.splice(i, 1); e.undo.push(() => e.removed.splice(i, 0, b)); }
    else { e.removed.push(face.box.slice()); e.undo.push(() => e.removed.pop()); }
  }
}

function replaceItem(updated) {
  const i = items.findIndex((it) => it.path === updated.path);
  if (i >= 0) items[i] = updated;
}

async function apply() {
  const item = items[idx];
  if (!item.has_original) { setStatus("no original: cannot re-anonymize", "error"); return; }
  const e = editOf(item);
  setStatus("applying…");
  try {
    // The version shown: an output changed since (another tab's Apply) is refused (409: reload), never overwritten.
    const body = { path: item.path, version: item.version || "", manual: e.manual, removed: e.removed };
    if (isVideo(item) && e.flip && e.flip.length) body.flip = e.flip;
    const updated = await api("api/apply", body);
    replaceItem(updated);
    edits.delete(updated.path);
    showDetail();
    if (isVideo(updated)) {
      const flipped = body.flip ? `, track(s) ${body.flip.map((t) => "#" + t).join(", ")} flipped whole` : "";
      const warned = updated.warnings.length ? "; warning: " + updated.warnings.join("; ") : "";  // the new render's
      setStatus(`applied: video re-anonymized with ${updated.manual.length} manual box range(s)${flipped}${warned}`);
    } else {
      const n = updated.faces.filter((f) => !f.removed).length + updated.manual.length;
      setStatus(`applied: ${n} region${n === 1 ? "" : "s"} re-anonymized`);
    }
  } catch (err) { setStatus("apply failed: " + err.message, "error"); }
}

async function approve() {
  const item = items[idx];
  if (dirty(item)) { setStatus("apply or undo the changes first", "error"); return; }
  try {
    const updated = await api("api/approve", { path: item.path, version: item.version || "",
                                            approved: !item.approved });
    replaceItem(updated);
    if (updated.approved && idx < items.length - 1) idx += 1;
    view === "detail" ? showDetail() : renderGrid();
  } catch (err) { setStatus("approve failed: " + err.message, "error"); }
}

function undo() {
  const e = edits.get(items[idx].path);
  if (e && e.undo.length) {
    e.undo.pop()();
    view === "detail" ? redrawDetail() : renderGrid();
    if (view === "detail" && isVideo(items[idx])) renderStrips(items[idx]);  // a track's flip button
  }
}

function move(step) {
  idx = Math.min(Math.max(idx + step, 0), items.length - 1);
  view === "detail" ? showDetail() : renderGrid();
}

document.addEventListener("keydown", (ev) => {
  if (ev.target instanceof HTMLInputElement || !items.length) return;
  const k = ev.key;
  if (k === "ArrowRight" || k === "j") move(1);
  else if (k === "ArrowLeft" || k === "k") move(-1);
  else if (k === "a") approve();
  else if (k === "d") { drawing = !drawing; if (view === "detail") showDetail(); }
  else if (k === "u" || (k === "z" && (ev.ctrlKey || ev.metaKey))) undo();
  else if (k === "Enter") view === "detail" ? apply() : showDetail();
  else if (k === "Escape") showGrid();
  else if (k === "m" && view === "detail") { comparing = !comparing; renderCompare(items[idx]); }
  else if ((k === "," || k === ".") && view === "detail" && isVideo(items[idx])) setFrame(frameIdx + (k === "." ? 1 : -1));
  else return;
  ev.preventDefault();
});

$("#btn-grid").addEventListener("click", showGrid);
$("#btn-prev").addEventListener("click", () => move(-1));
$("#btn-next").addEventListener("click", () => move(1));
$("#btn-draw").addEventListener("click", () => { drawing = !drawing; showDetail(); });
$("#btn-undo").addEventListener("click", undo);
$("#btn-apply").addEventListener("click", apply);
$("#btn-approve").addEventListener("click", approve);
$("#btn-compare").addEventListener("click", () => { comparing = !comparing; renderCompare(items[idx]); });
$("#btn-fprev").addEventListener("click", () => setFrame(frameIdx - 1));
$("#btn-fnext").addEventListener("click", () => setFrame(frameIdx + 1));
$("#frame-num").addEventListener("change", () => setFrame(parseInt($("#frame-num").value, 10) || 0));

// While the server is still checking images, refresh the list every 2 s (flags first, as they arrive).
async function refresh() {
  try {
    const data = await api("api/items");
    const current = items[idx] && items[idx].path;
    const wasChecked = items[idx] && items[idx].checked;
    items = data.items;
    idx = Math.max(items.findIndex((i) => i.path === current), 0);
    if (view === "grid") renderGrid();
    else if (!wasChecked && items[idx].checked) showDetail();
    else updateCounter();
    if (data.summary.checking) setTimeout(refresh, 2000);
  } catch (err) { setTimeout(refresh, 5000); }
}

// Failed inputs of the run that have no item (outside IN, gone since): named here, as the console does.
function showFailedUnlisted(lost) {
  const box = $("#failed-unlisted");
  if (!lost || !lost.length) { box.hidden = true; return; }
  const head = document.createElement("p");
  head.textContent = `${lost.length} input${lost.length > 1 ? "s" : ""} of the run failed (not anonymized) ` +
    "and cannot be reviewed or redone here:";
  const list = document.createElement("ul");
  for (const f of lost) {
    const li = document.createElement("li");
    li.textContent = `${f.input}: ${f.why}`;
    list.appendChild(li);
  }
  box.replaceChildren(head, list);
  box.hidden = false;
}

async function load() {
  try {
    const data = await api("api/items");
    items = data.items;
    showFailedUnlisted(data.failed_unlisted);
    if (data.summary.checking) setTimeout(refresh, 2000);
    const c = data.config;
    $("#config").textContent = `${c.method} ${JSON.stringify(c.method_params)} · ${c.detector} ` +
      `threshold ${data.threshold ?? "-"} · second: ${data.second_detectors.join(", ") || "none"}`;
    // Resume: start at the first flagged image not yet approved, else the first not approved.
    let start = items.findIndex((i) => i.flags.length && !i.approved);
    if (start < 0) start = items.findIndex((i) => !i.approved);
    idx = Math.max(start, 0);
    showGrid();
  } catch (err) {
    $("#counter").textContent = "cannot load: " + err.message + " (open the URL printed by `faceveil review`)";
  }
}
load();
