// Prompt decoding in the browser, as the official SAM demo does: the server's decoder ONNX
// (/api/decoder.onnx, the official SamOnnxModel signature) run by onnxruntime-web (vendored in
// /static/vendor by scripts/vendor_ort_web.sh, never from a CDN) on each image's embedding
// (/api/images/{id}/embedding.bin, float16 by default). `init` rejects where WebAssembly, the
// vendored runtime or a SAM decoder is missing; the page then decodes on the server.
"use strict";

const samkitDecoder = (() => {
  let session = null;
  let queue = Promise.resolve();  // session.run calls one at a time (a session is not reentrant)
  const embeddings = new Map();  // image id -> Promise of {tensor, inputSize, size}

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = () => reject(new Error(`${src} is missing: run scripts/vendor_ort_web.sh`));
      document.head.appendChild(s);
    });
  }

  async function init() {
    if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly");
    if (!window.ort) await loadScript("/static/vendor/ort.wasm.min.js");
    ort.env.wasm.wasmPaths = "/static/vendor/";
    ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation; one is enough here
    const r = await fetch("/api/decoder.onnx");
    if (!r.ok) {
      let msg = r.statusText;
      try { msg = (await r.json()).detail; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    session = await ort.InferenceSession.create(new Uint8Array(await r.arrayBuffer()),
      { executionProviders: ["wasm"] });
  }

  // IEEE half -> float, for the float16 embedding.
  function halfToFloat(src) {
    const out = new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) {
      const h = src[i], s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
      out[i] = e === 0 ? s * f * 2 ** -24 : e === 31 ? (f ? NaN : s * Infinity)
        : s * (1 + f / 1024) * 2 ** (e - 15);
    }
    return out;
  }

  function embedding(id, dtype) {
    const key = `${id}:${dtype}`;
    if (!embeddings.has(key)) {
      embeddings.set(key, (async () => {
        const r = await fetch(`/api/images/${id}/embedding.bin?dtype=${dtype}`);
        if (!r.ok) throw new Error(`embedding: ${r.statusText}`);
        const shape = r.headers.get("x-shape").split(",").map(Number);
        const inputSize = r.headers.get("x-input-size").split(",").map(Number);
        const size = r.headers.get("x-original-size").split(",").map(Number);
        const buf = await r.arrayBuffer();
        const data = dtype === "float16" ? halfToFloat(new Uint16Array(buf)) : new Float32Array(buf);
        return { tensor: new ort.Tensor("float32", data, shape), inputSize, size, bytes: buf.byteLength };
      })());
      embeddings.get(key).catch(() => embeddings.delete(key));
    }
    return embeddings.get(key);
  }

  // Column-major COCO RLE (uncompressed counts) of logits > 0 in plane k of N x H x W.
  function rleOf(logits, k, h, w) {
    const base = k * h * w;
    const counts = [];
    let run = 0, on = false, area = 0;
    for (let x = 0; x < w; x++) {
      for (let y = 0; y < h; y++) {
        const v = logits[base + y * w + x] > 0;
        if (v !== on) { counts.push(run); run = 0; on = v; }
        run++;
        if (v) area++;
      }
    }
    counts.push(run);
    return { rle: { size: [h, w], counts }, area };
  }

  // Decode points (N x 2, labels N) and/or a box in original pixels; the three multimask
  // candidates as the server's /predict returns them: {masks: [{rle, score, area}], best}.
  async function decode(id, dtype, points, labels, box) {
    const emb = await embedding(id, dtype);
    const [h, w] = emb.size, [ih, iw] = emb.inputSize;
    const sx = iw / w, sy = ih / h;
    const coords = [], labs = [];
    points.forEach(([x, y], i) => { coords.push(x * sx, y * sy); labs.push(labels[i]); });
    if (box) {
      coords.push(box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy);
      labs.push(2, 3);
    } else {
      coords.push(0, 0);  // the official padding point when there is no box
      labs.push(-1);
    }
    const n = labs.length;
    const [, , gh, gw] = emb.tensor.dims;
    const feeds = {
      image_embeddings: emb.tensor,
      point_coords: new ort.Tensor("float32", Float32Array.from(coords), [1, n, 2]),
      point_labels: new ort.Tensor("float32", Float32Array.from(labs), [1, n]),
      mask_input: new ort.Tensor("float32", new Float32Array(16 * gh * gw), [1, 1, 4 * gh, 4 * gw]),
      has_mask_input: new ort.Tensor("float32", new Float32Array([0]), [1]),
      orig_im_size: new ort.Tensor("float32", new Float32Array([h, w]), [2]),
    };
    let ms = 0;
    const run = queue.then(async () => {
      const t0 = performance.now();
      const res = await session.run(feeds);
      ms = performance.now() - t0;
      return res;
    });
    queue = run.catch(() => {});
    const out = await run;
    const logits = out.masks.data, iou = out.iou_predictions.data;
    const masks = [];
    for (let k = 1; k < 4; k++) {  // tokens 1..3: the multimask outputs
      const { rle, area } = rleOf(logits, k, h, w);
      masks.push({ rle, score: iou[k], area });
    }
    let best = 0;
    masks.forEach((m, k) => { if (m.score > masks[best].score) best = k; });
    return { masks, best, width: w, height: h, decode_ms: ms, local: true };
  }

  return { init, embedding, decode, get ready() { return session !== null; } };
})();
window.samkitDecoder = samkitDecoder;
