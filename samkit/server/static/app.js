// samkit web page: plain JS over the HTTP API (see /docs). One state object per uploaded image.
"use strict";

const $ = (id) => document.getElementById(id);
const MASK_RGBA = [30, 144, 255, 140];
const PALETTE = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]];

const app = {
  images: new Map(),   // id -> {id, width, height, points, labels, box, history, result, picked, everything}
  current: null,       // the current image's state
  reference: null,     // id of the PerSAM reference
  seq: 0,              // latest prompt request; older replies are dropped
  rendered: 0,         // seq of the mask now drawn
  everythingOptions: { points_per_side: 16 },  // any field of the API's EverythingIn
};
window.samkit = app;

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

// -- images ------------------------------------------------------------------------------------

async function upload(files) {
  for (const file of files) {
    const form = new FormData();
    form.append("file", file);
    setStatus(`Uploading and embedding ${file.name}…`, true);
    try {
      const info = await api("POST", "/api/images", form);
      const st = { ...info, name: file.name, points: [], labels: [], box: null, history: [],
        result: null, picked: 0, everything: null };
      app.images.set(info.id, st);
      addThumb(st);
      await show(st);
      setStatus(`${file.name}: ${info.width}×${info.height}, embedded in ${info.embed_ms.toFixed(0)} ms. Click the object.`);
    } catch (e) {
      setStatus(`Could not open ${file.name}: ${e.message}`);
    }
  }
}

function addThumb(st) {
  const li = document.createElement("li");
  li.dataset.id = st.id;
  li.innerHTML = `<img alt=""><span></span>`;
  li.querySelector("img").src = `/api/images/${st.id}/image.png`;
  li.querySelector("span").textContent = st.name;
  li.onclick = () => show(st);
  $("images").appendChild(li);
}

function show(st) {
  app.current = st;
  app.seq++;
  document.querySelectorAll("#images li").forEach((li) =>
    li.classList.toggle("current", li.dataset.id === st.id));
  for (const c of [$("overlay"), $("marks")]) { c.width = st.width; c.height = st.height; }
  $("stage").hidden = false;
  const img = $("image");
  return new Promise((resolve) => {
    img.onload = () => { render(); resolve(); };
    img.src = `/api/images/${st.id}/image.png`;
  });
}

// -- prompts -----------------------------------------------------------------------------------

function toImage(ev) {
  const r = $("marks").getBoundingClientRect();
  const st = app.current;
  const x = Math.round(((ev.clientX - r.left) * st.width) / r.width);
  const y = Math.round(((ev.clientY - r.top) * st.height) / r.height);
  return [Math.min(Math.max(x, 0), st.width - 1), Math.min(Math.max(y, 0), st.height - 1)];
}

function remember(st) {
  st.history.push({ points: st.points.slice(), labels: st.labels.slice(), box: st.box });
}

let drag = null;
$("marks").addEventListener("contextmenu", (ev) => ev.preventDefault());
$("marks").addEventListener("pointerdown", (ev) => {
  if (!app.current) return;
  drag = { start: toImage(ev), sx: ev.clientX, sy: ev.clientY, button: ev.button };
});
$("marks").addEventListener("pointermove", (ev) => {
  if (!drag || Math.hypot(ev.clientX - drag.sx, ev.clientY - drag.sy) < 5) return;
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

async function predict() {
  const st = app.current;
  const seq = ++app.seq;
  st.everything = null;
  if (!st.points.length && !st.box) { st.result = null; render(); return; }
  drawMarks();
  setStatus("Segmenting…", true);
  try {
    const res = await api("POST", `/api/images/${st.id}/predict`,
      { points: st.points, labels: st.labels, box: st.box, multimask: true, format: "rle" });
    if (seq !== app.seq) return;  // a newer prompt is on its way
    st.result = res;
    st.picked = res.best;
    render(seq);
    setStatus(`Mask ${res.best + 1}: predicted IoU ${res.masks[res.best].score.toFixed(3)} (decoder ${res.decode_ms.toFixed(0)} ms)`);
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
  } else {
    ov.getContext("2d").clearRect(0, 0, ov.width, ov.height);
  }
  drawMarks();
  renderCandidates();
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

function selectedRle() {
  const st = app.current;
  return st && st.result ? st.result.masks[st.picked].rle : null;
}

// -- buttons -----------------------------------------------------------------------------------

$("file").addEventListener("change", (ev) => { upload([...ev.target.files]); ev.target.value = ""; });

$("undo").onclick = () => {
  const st = app.current;
  if (!st || !st.history.length) return;
  Object.assign(st, st.history.pop());
  predict();
};
document.addEventListener("keydown", (ev) => {
  if ((ev.ctrlKey || ev.metaKey) && ev.key === "z") $("undo").onclick();
});

$("clear").onclick = () => {
  const st = app.current;
  if (!st) return;
  remember(st);
  st.points = []; st.labels = []; st.box = null;
  predict();
};

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
    setStatus(`${res.annotations.length} masks in ${(res.ms / 1000).toFixed(1)} s`);
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

$("download-coco").onclick = async () => {
  const items = [];
  for (const st of app.images.values()) {
    const anns = st.everything
      ? st.everything.map((a) => ({ rle: a.segmentation, score: a.predicted_iou }))
      : st.result ? [{ rle: st.result.masks[st.picked].rle, score: st.result.masks[st.picked].score }] : [];
    if (anns.length) {
      items.push({ image_id: st.id, masks: anns.map((a) => ({ rle: a.rle })),
        scores: anns.map((a) => a.score) });
    }
  }
  if (!items.length) { setStatus("No masks to export yet."); return; }
  const coco = await api("POST", "/api/export/coco", { items });
  saveBlob(new Blob([JSON.stringify(coco)], { type: "application/json" }), "masks.coco.json");
};
