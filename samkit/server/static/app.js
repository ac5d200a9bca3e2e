// samkit web page: plain JS over the HTTP API (see /docs). A project holds images; each image's
// accepted objects live on the server (SQLite); prompts and the mask being drawn (the draft)
// live here only, so users working at once never see each other's unsaved work.
"use strict";

const $ = (id) => document.getElementById(id);
const MASK_RGBA = [30, 144, 255, 140];
const PROPOSAL_RGBA = [255, 140, 0, 150];
const PALETTE = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]];

const app = {
  project: null,       // {id, name, categories, ...}
  images: new Map(),   // id -> image state, see newState
  current: null,       // the current image's state
  reference: null,     // id of the PerSAM reference
  seq: 0,              // latest prompt request; older replies are dropped
  rendered: 0,         // seq of the mask now drawn
  everythingOptions: { points_per_side: 16 },  // any field of the API's EverythingIn
  // "browser" once the decoder ONNX runs here (decoder.js), else "server"
  decoding: "loading",
  decoderError: null,
  embeddingDtype: "float16",  // "float32" transfers the server's exact embedding
  hovers: 0,                  // hover previews drawn
  ...(window.samkitOptions || {}),
};
window.samkit = app;

function newState(info) {
  return { ...info, points: [], labels: [], box: null, history: [], future: [], result: null,
    picked: 0, everything: null, objects: null, selected: null, editing: null, proposals: [] };
}

function setStatus(text, busy) {
  $("status").textContent = text;
  document.body.dataset.status = busy ? "busy" : "idle";
}

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) {
    opts.headers["content-type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (!r.ok) {
    let msg = r.statusText;
    try { msg = (await r.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(typeof msg === "string" ? msg : JSON.stringify(msg));
  }
  if (r.status === 204) return null;
  const type = r.headers.get("content-type") || "";
  return type.includes("json") ? r.json() : r.blob();
}

// -- COCO RLE (pycocotools' string form, column-major runs) ------------------------------------

function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// Paint an RLE mask into RGBA pixel data (width w, height h) with one color.
function paintRle(data, rle, rgba) {
  const [h, w] = rle.size;
  const counts = typeof rle.counts === "string" ? rleCounts(rle.counts) : rle.counts;
  let i = 0;
  counts.forEach((n, j) => {
    if (j % 2 === 1) {
      for (let t = i; t < i + n; t++) {
        const o = ((t % h) * w + Math.floor(t / h)) * 4;
        data[o] = rgba[0]; data[o + 1] = rgba[1]; data[o + 2] = rgba[2]; data[o + 3] = rgba[3];
      }
    }
    i += n;
  });
}

function drawMasks(canvas, rles, colors) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(canvas.width, canvas.height);
  rles.forEach((rle, k) => paintRle(img.data, rle, colors[k]));
  ctx.putImageData(img, 0, 0);
}

function categoryColor(name, alpha) {
  const cats = app.project ? app.project.categories : [];
  let k = cats.indexOf(name);
  if (k < 0) k = [...name].reduce((a, c) => a + c.charCodeAt(0), 0);
  return [...PALETTE[k % PALETTE.length], alpha];
}

// -- projects ----------------------------------------------------------------------------------

async function loadProjects(selectId) {
  const { projects } = await api("GET", "/api/projects");
  const sel = $("project");
  sel.innerHTML = "";
  for (const p of projects) {
    const o = document.createElement("option");
    o.value = p.id;
    o.textContent = `${p.name} (${p.done}/${p.images} done)`;
    sel.appendChild(o);
  }
  const pick = selectId || (projects.length ? projects[projects.length - 1].id : null);
  if (pick) { sel.value = pick; await openProject(pick); }
}

async function openProject(pid) {
  const p = await api("GET", `/api/projects/${pid}`);
  app.project = p;
  app.images = new Map();
  app.current = null;
  $("images").innerHTML = "";
  $("stage").hidden = true;
  renderCategories();
  for (const info of p.images) {
    const st = newState(info);
    app.images.set(st.id, st);
    addThumb(st);
  }
  renderProgress();
  if (p.images.length) await show(app.images.get(p.images[0].id));
  else setStatus("Add images to start.");
}

async function ensureProject() {
  if (app.project) return app.project;
  const p = await api("POST", "/api/projects", { name: "Project 1", categories: ["object"] });
  await loadProjects(p.id);
  return app.project;
}

function renderCategories() {
  const dl = $("categories");
  dl.innerHTML = "";
  for (const c of app.project.categories) {
    const o = document.createElement("option");
    o.value = c;
    dl.appendChild(o);
  }
  if (app.project.categories.length && !$("category").dataset.touched) {
    $("category").value = app.project.categories[0];
  }
}

async function rememberCategory(name) {
  if (app.project.categories.includes(name)) return;
  const cats = [...app.project.categories, name];
  app.project = { ...app.project, ...(await api("PATCH", `/api/projects/${app.project.id}`,
    { categories: cats })) };
  renderCategories();
}

function renderProgress() {
  const all = [...app.images.values()];
  $("progress").textContent = `${all.filter((s) => s.done).length}/${all.length} done`;
  for (const st of all) {
    const li = document.querySelector(`#images li[data-id="${st.id}"]`);
    if (!li) continue;
    li.querySelector(".count").textContent =
      `${st.objectsCount} object${st.objectsCount === 1 ? "" : "s"}` +
      (st.proposals.length ? `, ${st.proposals.length} proposal` : "") + (st.done ? " ✓" : "");
    li.classList.toggle("done", st.done);
  }
}

// -- images ------------------------------------------------------------------------------------

async function upload(files) {
  try { await ensureProject(); } catch (e) { setStatus(`Error: ${e.message}`); return; }
  for (const file of files) {
    const form = new FormData();
    form.append("file", file);
    setStatus(`Uploading and embedding ${file.name}…`, true);
    try {
      const info = await api("POST", `/api/projects/${app.project.id}/images`, form);
      const st = newState(info);
      st.objects = [];
      app.images.set(info.id, st);
      addThumb(st);
      renderProgress();
      await show(st);
      setStatus(`${info.name}: ${info.width}×${info.height}, embedded in ${info.embed_ms.toFixed(0)} ms. Click the object.`);
    } catch (e) {
      setStatus(`Could not open ${file.name}: ${e.message}`);
    }
  }
}

function addThumb(st) {
  // a project's image comes with its object count; the objects are fetched when it is shown
  st.objectsCount = typeof st.objects === "number" ? st.objects : (st.objects || []).length;
  if (typeof st.objects === "number") st.objects = null;
  const li = document.createElement("li");
  li.dataset.id = st.id;
  li.innerHTML = `<img alt="" loading="lazy"><span><span class="name"></span><br><small class="count"></small></span>`;
  li.querySelector("img").src = `/api/images/${st.id}/image.png`;
  li.querySelector(".name").textContent = st.name;
  li.onclick = () => show(st);
  $("images").appendChild(li);
}

async function show(st) {
  app.current = st;
  app.seq++;
  document.querySelectorAll("#images li").forEach((li) =>
    li.classList.toggle("current", li.dataset.id === st.id));
  for (const c of [$("saved"), $("overlay"), $("marks")]) { c.width = st.width; c.height = st.height; }
  $("stage").hidden = false;
  const img = $("image");
  const loaded = new Promise((resolve) => {
    img.onload = resolve;
    img.src = `/api/images/${st.id}/image.png`;
  });
  if (app.decoding === "browser") samkitDecoder.embedding(st.id, app.embeddingDtype).catch(() => {});
  if (st.objects === null) {
    try { st.objects = (await api("GET", `/api/images/${st.id}/objects`)).objects; }
    catch (e) { st.objects = []; setStatus(`Error: ${e.message}`); }
    st.objectsCount = st.objects.length;
  }
  await loaded;
  if (app.current === st) render();
}

function step(delta) {
  const ids = [...app.images.keys()];
  if (!app.current || !ids.length) return;
  const k = (ids.indexOf(app.current.id) + delta + ids.length) % ids.length;
  show(app.images.get(ids[k]));
}

// -- prompts -----------------------------------------------------------------------------------

function toImage(ev) {
  const r = $("marks").getBoundingClientRect();
  const st = app.current;
  const x = Math.round(((ev.clientX - r.left) * st.width) / r.width);
  const y = Math.round(((ev.clientY - r.top) * st.height) / r.height);
  return [Math.min(Math.max(x, 0), st.width - 1), Math.min(Math.max(y, 0), st.height - 1)];
}

function prompts(st) {
  return { points: st.points.slice(), labels: st.labels.slice(), box: st.box };
}

// Every change is an action with its inverse: prompt edits here, object edits on the server.
function remember(st, action) {
  st.history.push(action || { kind: "prompt", state: prompts(st) });
  st.future = [];
}

let drag = null;
$("marks").addEventListener("contextmenu", (ev) => ev.preventDefault());
$("marks").addEventListener("pointerdown", (ev) => {
  if (!app.current) return;
  drag = { start: toImage(ev), sx: ev.clientX, sy: ev.clientY, button: ev.button };
  $("marks").setPointerCapture(ev.pointerId);  // a drag may end outside the image
});
$("marks").addEventListener("pointermove", (ev) => {
  if (!drag) { hover(ev); return; }
  if (Math.hypot(ev.clientX - drag.sx, ev.clientY - drag.sy) < 5) return;
  const [x, y] = toImage(ev);
  drawMarks([...drag.start, x, y]);
});
$("marks").addEventListener("pointerup", (ev) => {
  if (!drag || !app.current) return;
  const st = app.current;
  const end = toImage(ev);
  remember(st);
  if (Math.hypot(ev.clientX - drag.sx, ev.clientY - drag.sy) >= 5) {
    const [x0, y0] = drag.start, [x1, y1] = end;
    st.box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
  } else {
    st.points.push(drag.start);
    st.labels.push(drag.button === 2 ? 0 : 1);
  }
  drag = null;
  predict();
});

// Hover preview: the mask under the cursor, decoded in the browser while the image has no
// prompts yet (never asked of the server). One decode at a time; the latest position waits.
let hoverBusy = false, hoverNext = null;
async function hover(ev) {
  const st = app.current;
  if (!st || app.decoding !== "browser" || st.points.length || st.box || st.result
      || st.everything || st.editing || st.proposals.length) return;
  hoverNext = toImage(ev);
  if (hoverBusy) return;
  hoverBusy = true;
  try {
    while (hoverNext) {
      const [x, y] = hoverNext;
      hoverNext = null;
      const res = await samkitDecoder.decode(st.id, app.embeddingDtype, [[x, y]], [1], null);
      if (app.current !== st || st.points.length || st.box || st.result || st.everything) break;
      drawMasks($("overlay"), [res.masks[res.best].rle], [[...MASK_RGBA.slice(0, 3), 90]]);
      app.hovers++;
      app.hoverAt = [x, y];
      $("overlay").dataset.hovers = String(app.hovers);
    }
  } catch (e) {
    setStatus(`Hover: ${e.message}`);
  } finally {
    hoverBusy = false;
  }
}
$("marks").addEventListener("pointerleave", () => {
  hoverNext = null;
  if (app.current && !drag) render();
});

async function predict() {
  const st = app.current;
  const seq = ++app.seq;
  st.everything = null;
  if (!st.points.length && !st.box) {
    // editing an object with no prompts left: its stored mask is the draft again
    st.result = st.editing ? { masks: [{ rle: st.editing.rle, score: st.editing.score ?? 0 }], best: 0 } : null;
    st.picked = 0;
    render(); return;
  }
  drawMarks();
  setStatus("Segmenting…", true);
  const body = { points: st.points, labels: st.labels, box: st.box, multimask: true, format: "rle" };
  if (st.editing) body.mask = { rle: st.editing.rle };  // refine the object being edited
  try {
    // a mask prompt (refining a stored object) is decoded on the server
    const local = app.decoding === "browser" && !st.editing;
    const res = local
      ? await samkitDecoder.decode(st.id, app.embeddingDtype, st.points, st.labels, st.box)
      : await api("POST", `/api/images/${st.id}/predict`, body);
    if (seq !== app.seq) return;  // a newer prompt is on its way
    st.result = res;
    st.picked = res.best;
    render(seq);
    setStatus(`Mask ${res.best + 1}: predicted IoU ${res.masks[res.best].score.toFixed(3)} (decoded ${local ? "in the browser" : "on the server"}, ${res.decode_ms.toFixed(0)} ms)`);
  } catch (e) {
    if (seq === app.seq) setStatus(`Error: ${e.message}`);
  }
}

// -- drawing -----------------------------------------------------------------------------------

function render(seq) {
  const st = app.current;
  if (!st) return;
  const ov = $("overlay");
  if (st.everything) {
    drawMasks(ov, st.everything.map((a) => a.segmentation),
      st.everything.map((_, k) => [...PALETTE[k % PALETTE.length], 140]));
  } else if (st.result) {
    drawMasks(ov, [st.result.masks[st.picked].rle], [MASK_RGBA]);
  } else if (st.proposals.length) {
    drawMasks(ov, st.proposals.map((p) => p.rle), st.proposals.map(() => PROPOSAL_RGBA));
  } else {
    ov.getContext("2d").clearRect(0, 0, ov.width, ov.height);
  }
  const shown = (st.objects || []).filter((o) => !st.editing || o.id !== st.editing.id);
  drawMasks($("saved"), shown.map((o) => o.rle),
    shown.map((o) => categoryColor(o.category, o.id === st.selected ? 170 : 90)));
  drawMarks();
  renderCandidates();
  renderObjects();
  renderProposals();
  renderProgress();
  app.rendered = seq === undefined ? app.seq : seq;
  ov.dataset.rendered = String(app.rendered);
}

function drawMarks(dragBox) {
  const st = app.current;
  const c = $("marks");
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const r = Math.max(3, Math.round(Math.max(c.width, c.height) / 150));
  const box = dragBox || st.box;
  if (box) {
    ctx.strokeStyle = "#ffd700";
    ctx.lineWidth = Math.max(2, r / 2);
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  }
  st.points.forEach(([x, y], i) => {
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = st.labels[i] === 1 ? "#00dc00" : "#e60000";
    ctx.fill();
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 1;
    ctx.stroke();
  });
}

function renderCandidates() {
  const st = app.current;
  const ol = $("candidates");
  ol.innerHTML = "";
  if (!st.result) return;
  st.result.masks.forEach((m, k) => {
    const li = document.createElement("li");
    li.className = k === st.picked ? "picked" : "";
    const c = document.createElement("canvas");
    c.width = st.width; c.height = st.height;
    drawMasks(c, [m.rle], [MASK_RGBA]);
    const label = document.createElement("span");
    label.textContent = `mask ${k + 1}: ${m.score.toFixed(3)}` + (k === st.result.best ? " (best)" : "");
    li.append(c, label);
    li.onclick = () => { st.picked = k; render(); };
    ol.appendChild(li);
  });
}

function renderObjects() {
  const st = app.current;
  const ol = $("objects");
  ol.innerHTML = "";
  const objs = st.objects || [];
  $("object-count").textContent = `(${objs.length})`;
  objs.forEach((o) => {
    const li = document.createElement("li");
    li.dataset.id = o.id;
    li.className = (o.id === st.selected ? "picked" : "") + (st.editing && st.editing.id === o.id ? " editing" : "");
    const sw = document.createElement("i");
    const [r, g, b] = categoryColor(o.category, 255);
    sw.style.background = `rgb(${r},${g},${b})`;
    const sel = document.createElement("select");
    const cats = new Set([...(app.project ? app.project.categories : []), o.category]);
    for (const c of cats) sel.add(new Option(c, c, false, c === o.category));
    sel.onclick = (ev) => ev.stopPropagation();
    sel.onchange = () => editObject(o, { category: sel.value });
    const area = document.createElement("small");
    area.textContent = `${o.area} px`;
    const edit = document.createElement("button");
    edit.textContent = "Edit";
    edit.className = "edit";
    edit.title = "Refine this object's mask with clicks, then accept";
    edit.onclick = (ev) => { ev.stopPropagation(); startEdit(o); };
    const del = document.createElement("button");
    del.textContent = "✕";
    del.className = "delete";
    del.title = "Delete this object (Delete)";
    del.onclick = (ev) => { ev.stopPropagation(); deleteObject(o); };
    li.append(sw, sel, area, edit, del);
    li.onclick = () => { st.selected = st.selected === o.id ? null : o.id; render(); };
    ol.appendChild(li);
  });
}

function renderProposals() {
  const st = app.current;
  const ol = $("proposals");
  ol.innerHTML = "";
  $("proposals-title").hidden = !st.proposals.length;
  st.proposals.forEach((p, k) => {
    const li = document.createElement("li");
    li.innerHTML = `<span>proposal: ${p.score.toFixed(3)}</span>`;
    const yes = document.createElement("button");
    yes.textContent = "Accept";
    yes.className = "accept-proposal";
    yes.onclick = async () => {
      st.proposals.splice(k, 1);
      await addObject(st, { rle: p.rle, score: p.score, category: p.category });
    };
    const no = document.createElement("button");
    no.textContent = "Reject";
    no.className = "reject-proposal";
    no.onclick = () => { st.proposals.splice(k, 1); render(); };
    li.append(yes, no);
    ol.appendChild(li);
  });
}

function selectedRle() {
  const st = app.current;
  if (!st) return null;
  if (st.result) return st.result.masks[st.picked].rle;
  const o = (st.objects || []).find((x) => x.id === st.selected);
  return o ? o.rle : null;
}

// -- objects (kept on the server) --------------------------------------------------------------

async function postObject(st, obj) {
  return api("POST", `/api/images/${st.id}/objects`,
    { category: obj.category, mask: { rle: obj.rle }, score: obj.score ?? null });
}

function setObjects(st, objs) {
  st.objects = objs;
  st.objectsCount = objs.length;
}

async function addObject(st, obj, undoable = true) {
  try {
    await rememberCategory(obj.category);
    const saved = await postObject(st, obj);
    setObjects(st, [...st.objects, saved]);
    if (undoable) remember(st, { kind: "add", obj: saved });
    render();
    setStatus(`Accepted a ${saved.category} (${st.objects.length} on this image).`);
    return saved;
  } catch (e) {
    setStatus(`Error: ${e.message}`);
    return null;
  }
}

async function accept() {
  const st = app.current;
  if (!st) return;
  const category = $("category").value.trim() || "object";
  if (st.everything) {  // accept every mask of everything mode
    for (const a of st.everything) {
      await addObject(st, { rle: a.segmentation, score: a.predicted_iou, category }, false);
    }
    st.everything = null;
    render();
    return;
  }
  if (!st.result) { setStatus("Click the object first, then accept it."); return; }
  const m = st.result.masks[st.picked];
  if (st.editing) {
    const before = st.editing;
    st.editing = null;
    st.selected = null;
    await editObject(before, { rle: m.rle, score: m.score, category });
  } else {
    await addObject(st, { rle: m.rle, score: m.score, category });
  }
  st.points = []; st.labels = []; st.box = null; st.result = null;
  render();
}

async function editObject(before, change) {
  const st = app.current;
  try {
    if (change.category) await rememberCategory(change.category);
    const body = {};
    if (change.category) body.category = change.category;
    if (change.rle) { body.mask = { rle: change.rle }; body.score = change.score ?? null; }
    const after = await api("PATCH", `/api/objects/${before.id}`, body);
    setObjects(st, st.objects.map((o) => (o.id === after.id ? after : o)));
    remember(st, { kind: "edit", before, after });
    render();
    setStatus(`Saved the ${after.category}.`);
  } catch (e) {
    setStatus(`Error: ${e.message}`);
  }
}

async function deleteObject(o) {
  const st = app.current;
  try {
    await api("DELETE", `/api/objects/${o.id}`);
    setObjects(st, st.objects.filter((x) => x.id !== o.id));
    if (st.selected === o.id) st.selected = null;
    remember(st, { kind: "delete", obj: o });
    render();
    setStatus(`Deleted the ${o.category}.`);
  } catch (e) {
    setStatus(`Error: ${e.message}`);
  }
}

function startEdit(o) {
  const st = app.current;
  remember(st);
  st.editing = o;
  st.selected = o.id;
  st.points = []; st.labels = []; st.box = null;
  $("category").value = o.category;
  predict();
  setStatus(`Editing the ${o.category}: click to refine, Enter to save.`);
}

// Undo or redo one action; object actions are replayed on the server (a re-created object gets
// a new id, which the action then records).
async function replay(action, undo) {
  const st = app.current;
  if (action.kind === "prompt") {
    const now = prompts(st);
    Object.assign(st, action.state);
    if (!st.points.length && !st.box) st.editing = null;
    await predict();
    return { kind: "prompt", state: now };
  }
  const adding = (action.kind === "add") !== undo;
  if (action.kind === "edit") {
    const target = undo ? action.before : action.after;
    const saved = await api("PATCH", `/api/objects/${target.id}`,
      { category: target.category, mask: { rle: target.rle }, score: target.score ?? null });
    setObjects(st, st.objects.map((o) => (o.id === saved.id ? saved : o)));
    render();
    return action;
  }
  if (adding) {
    const saved = await postObject(st, action.obj);
    setObjects(st, [...st.objects, saved]);
    render();
    return { ...action, obj: saved };
  }
  await api("DELETE", `/api/objects/${action.obj.id}`);
  setObjects(st, st.objects.filter((o) => o.id !== action.obj.id));
  render();
  return action;
}

async function undoRedo(undo) {
  const st = app.current;
  if (!st) return;
  const from = undo ? st.history : st.future;
  const to = undo ? st.future : st.history;
  if (!from.length) return;
  try {
    to.push(await replay(from.pop(), undo));
  } catch (e) {
    setStatus(`Error: ${e.message}`);
  }
}

// -- buttons and keys --------------------------------------------------------------------------

$("file").addEventListener("change", (ev) => { upload([...ev.target.files]); ev.target.value = ""; });
$("project").onchange = () => openProject($("project").value);
$("new-project").onclick = async () => {
  const name = prompt("Name of the new project", `Project ${$("project").options.length + 1}`);
  if (!name) return;
  try {
    const p = await api("POST", "/api/projects", { name, categories: ["object"] });
    await loadProjects(p.id);
  } catch (e) { setStatus(`Error: ${e.message}`); }
};
$("category").addEventListener("input", () => { $("category").dataset.touched = "1"; });
$("accept").onclick = accept;
$("undo").onclick = () => undoRedo(true);
$("redo").onclick = () => undoRedo(false);

$("clear").onclick = () => {
  const st = app.current;
  if (!st) return;
  remember(st);
  st.points = []; st.labels = []; st.box = null; st.editing = null;
  predict();
};

async function toggleDone() {
  const st = app.current;
  if (!st) return;
  try {
    const res = await api("PATCH", `/api/images/${st.id}/progress`, { done: !st.done });
    st.done = res.done;
    render();
  } catch (e) { setStatus(`Error: ${e.message}`); }
}

document.addEventListener("keydown", (ev) => {
  if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement) {
    if (ev.key === "Enter" && ev.target === $("category")) { ev.preventDefault(); accept(); }
    return;
  }
  const k = ev.key;
  if ((ev.ctrlKey || ev.metaKey) && k.toLowerCase() === "z") {
    ev.preventDefault(); undoRedo(!ev.shiftKey); return;
  }
  if ((ev.ctrlKey || ev.metaKey) && k === "y") { ev.preventDefault(); undoRedo(false); return; }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (k === "Enter" || k === "a") accept();
  else if (k === "Escape") $("clear").onclick();
  else if (k === "n" || k === "ArrowRight") step(1);
  else if (k === "p" || k === "ArrowLeft") step(-1);
  else if (k === "d") toggleDone();
  else if (k === "e") $("everything").onclick();
  else if (k === "f") $("find").onclick();
  else if (k === "Delete" || k === "Backspace") {
    const st = app.current;
    const o = st && (st.objects || []).find((x) => x.id === st.selected);
    if (o) deleteObject(o);
  } else if (/^[1-9]$/.test(k) && app.project) {
    const c = app.project.categories[Number(k) - 1];
    if (c) { $("category").value = c; setStatus(`Category: ${c}`); }
  }
});

$("everything").onclick = async () => {
  const st = app.current;
  if (!st) return;
  const seq = ++app.seq;
  setStatus("Segmenting everything…", true);
  try {
    const res = await api("POST", `/api/images/${st.id}/everything`, app.everythingOptions);
    if (seq !== app.seq) return;
    st.everything = res.annotations;
    render(seq);
    setStatus(`${res.annotations.length} masks in ${(res.ms / 1000).toFixed(1)} s (Enter accepts them all)`);
  } catch (e) {
    setStatus(`Error: ${e.message}`);
  }
};

$("find").onclick = async () => {
  const st = app.current;
  const rle = selectedRle();
  if (!rle) { setStatus("Segment or select the object first, then find it in every image."); return; }
  const sel = (st.objects || []).find((x) => x.id === st.selected);
  const category = st.result ? $("category").value.trim() || "object" : sel.category;
  setStatus("Finding the object in every image…", true);
  try {
    const res = await api("POST", `/api/projects/${app.project.id}/find`,
      { image_id: st.id, mask: { rle } });
    for (const p of res.proposals) {
      const other = app.images.get(p.image_id);
      if (other) other.proposals = [{ ...p, category }];
    }
    render();
    setStatus(`${res.proposals.length} proposals in ${res.searched} images: open each image to accept or reject.`);
  } catch (e) {
    setStatus(`Error: ${e.message}`);
  }
};

$("reference").onclick = async () => {
  const rle = selectedRle();
  if (!rle) { setStatus("Segment the object first, then use it as the reference."); return; }
  setStatus("Learning the reference object…", true);
  try {
    app.reference = (await api("POST", "/api/references",
      { image_id: app.current.id, mask: { rle } })).id;
    $("apply").disabled = false;
    setStatus("Reference set. Open or pick another image and press “Apply reference”.");
  } catch (e) {
    setStatus(`Error: ${e.message}`);
  }
};

$("apply").onclick = async () => {
  const st = app.current;
  if (!st || !app.reference) return;
  const seq = ++app.seq;
  setStatus("Finding the reference object…", true);
  try {
    const res = await api("POST", `/api/references/${app.reference}/apply`,
      { image_id: st.id, format: "rle" });
    if (seq !== app.seq) return;
    remember(st);
    st.points = res.points.map(([x, y]) => [Math.round(x), Math.round(y)]);
    st.labels = res.labels;
    st.box = null;
    st.everything = null;
    st.result = { masks: [res.mask], best: 0 };
    st.picked = 0;
    render(seq);
    setStatus(`Reference found: predicted IoU ${res.mask.score.toFixed(3)}`);
  } catch (e) {
    setStatus(`Error: ${e.message}`);
  }
};

function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

$("download-png").onclick = async () => {
  const rle = selectedRle();
  if (!rle) { setStatus("No mask selected."); return; }
  const blob = await api("POST", "/api/export/png", { image_id: app.current.id, mask: { rle } });
  saveBlob(blob, `${app.current.name.replace(/\.[^.]*$/, "")}-mask.png`);
};

$("export").onclick = () => {
  if (!app.project) { setStatus("No project yet."); return; }
  const a = document.createElement("a");
  a.href = `/api/projects/${app.project.id}/export?format=${$("export-format").value}`;
  a.click();
};

loadProjects().catch((e) => setStatus(`Error: ${e.message}`));
if (app.decoding === "server") {
  app.decoderError = "server decoding was asked for";
  $("decoding").textContent = "Prompts are decoded on the server.";
} else {
  samkitDecoder.init().then(() => {
    app.decoding = "browser";
    $("decoding").textContent = "Prompts are decoded in this browser (onnxruntime-web).";
    if (app.current) samkitDecoder.embedding(app.current.id, app.embeddingDtype).catch(() => {});
  }).catch((e) => {
    app.decoding = "server";
    app.decoderError = e.message;
    $("decoding").textContent = `Prompts are decoded on the server (${e.message}).`;
  });
}
