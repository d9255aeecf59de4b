// LRP explorer: the page of `lrp-ref serve`. Plain JavaScript, no library, no network beyond this server.
//
// Where the MNIST preprocessing happens: HERE, in the page (function mnistImage). The drawing pad keeps the
// strokes at 280 x 280 with a soft brush; on every update the strokes' bounding box is scaled so that its longer
// side is 20 pixels (keeping the aspect ratio), and the result is placed in a 28 x 28 field with its centre of
// mass at the centre, as LeCun et al. prepared MNIST. The server explains exactly the 28 x 28 image it receives
// (raw values 0..255), and the page shows that image under "what the model sees".
"use strict";

const PAD = 280;          // drawing pad resolution (CSS and canvas pixels)
const SIDE = 28;          // model input side
const BOX = 20;           // MNIST fits each digit's bounding box into 20 x 20
const BRUSH = 26;         // brush diameter on the pad, soft-edged (MNIST strokes are 2-3 px wide at 28 x 28)
const THROTTLE_MS = 60;   // at most one update per this interval while drawing

const state = {
  models: [], rules: [], samples: [],
  model: null,            // model name
  image: null,            // 28 x 28 raw values, what is explained next
  explainedImage: null,   // the image the shown results belong to
  drawPending: false,     // a stroke waits for its update
  source: null,           // "drawing" or "sample K"
  target: null,           // null: the predicted class
  start: null,            // null, or where the sweep starts inside the model: {start_at, channel | neuron, text}
  canStart: false,        // the server's lrp_ref.explain takes start_at
  rule: null,             // the rule inspected in sections 4 and 5
  layer: null,            // the boundary whose channels are shown
  scale: "panel",
  outline: true,
  results: {},            // rule -> last answer of /api/explain
  layerDetail: null,
  sampleLabel: null,      // the label of the shipped digit shown
  ruleErrors: {},         // rule -> why it could not explain this input
  updates: 0,
  lastUpdateMs: null,
  error: null,
};
window.lrpDemo = state;   // for the browser test and for the curious (open the console)

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ colours

// diverging map: blue (against) - white (0) - red (for); anchors chosen for contrast on white, both ends dark
const ANCHORS = [
  [-1.0, [8, 48, 150]], [-0.6, [48, 110, 210]], [-0.25, [160, 195, 240]], [0.0, [255, 255, 255]],
  [0.25, [245, 180, 150]], [0.6, [215, 70, 50]], [1.0, [130, 10, 20]],
];

function colour(v) {  // v in [-1, 1]
  v = Math.max(-1, Math.min(1, v));
  for (let i = 1; i < ANCHORS.length; i++) {
    const [x1, c1] = ANCHORS[i];
    if (v <= x1) {
      const [x0, c0] = ANCHORS[i - 1];
      const t = (v - x0) / (x1 - x0);
      return c0.map((c, k) => Math.round(c + t * (c1[k] - c)));
    }
  }
  return ANCHORS[ANCHORS.length - 1][1];
}

function maxAbs(values) {
  let m = 0;
  for (const v of values) m = Math.max(m, Math.abs(v));
  return m;
}

// a heatmap (rows of numbers) onto a canvas of the same size; `under`: raw image drawn beneath as grey ink
function paintHeatmap(canvas, rows, scale, under) {
  const h = rows.length, w = rows[0].length;
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      let rgb = colour(scale > 0 ? rows[r][c] / scale : 0);
      if (under) {  // darken by the ink: the digit's outline stays visible under both signs
        const ink = under[r][c] / 255;
        rgb = rgb.map((x) => Math.round(x * (1 - 0.28 * ink)));
      }
      const i = 4 * (r * w + c);
      img.data[i] = rgb[0]; img.data[i + 1] = rgb[1]; img.data[i + 2] = rgb[2]; img.data[i + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

function paintGrey(canvas, rows) {
  const h = rows.length, w = rows[0].length;
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      const i = 4 * (r * w + c), v = Math.round(rows[r][c]);
      img.data[i] = v; img.data[i + 1] = v; img.data[i + 2] = v; img.data[i + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

function paintColourbar() {
  const canvas = $("colorbar"), ctx = canvas.getContext("2d");
  for (let x = 0; x < canvas.width; x++) {
    const rgb = colour((2 * x) / (canvas.width - 1) - 1);
    ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
    ctx.fillRect(x, 0, 1, canvas.height);
  }
}

const fmt = (v) => {
  if (v === null || v === undefined) return "";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return v.toExponential(2).replace("-", "\u2212");
  return v.toFixed(a >= 100 ? 1 : a >= 10 ? 2 : 3).replace("-", "\u2212");
};

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

// ------------------------------------------------------------------ the drawing pad and MNIST preprocessing

const pad = $("pad");
const padCtx = pad.getContext("2d", {willReadFrequently: true});
let drawing = false, last = null, hasStrokes = false;

function clearPad() {
  padCtx.clearRect(0, 0, PAD, PAD);
  hasStrokes = false;
}

function padPoint(event) {
  const rect = pad.getBoundingClientRect();
  return [(event.clientX - rect.left) * (PAD / rect.width), (event.clientY - rect.top) * (PAD / rect.height)];
}

function stroke(from, to) {
  padCtx.save();
  padCtx.strokeStyle = "rgba(255,255,255,1)";
  padCtx.fillStyle = "rgba(255,255,255,1)";
  padCtx.lineWidth = BRUSH * 0.7;
  padCtx.lineCap = "round";
  padCtx.lineJoin = "round";
  padCtx.shadowColor = "rgba(255,255,255,1)";
  padCtx.shadowBlur = BRUSH * 0.35;  // the soft edge: MNIST digits are anti-aliased, not binary
  padCtx.beginPath();
  padCtx.moveTo(from[0], from[1]);
  padCtx.lineTo(to[0] + 0.01, to[1]);
  padCtx.stroke();
  padCtx.restore();
  hasStrokes = true;
}

// the pad's strokes as a 28 x 28 MNIST-like image (raw 0..255), or null when nothing is drawn
function mnistImage() {
  const alpha = padCtx.getImageData(0, 0, PAD, PAD).data;
  let x0 = PAD, y0 = PAD, x1 = -1, y1 = -1, mass = 0, mx = 0, my = 0;
  for (let y = 0; y < PAD; y++) {
    for (let x = 0; x < PAD; x++) {
      const a = alpha[4 * (y * PAD + x) + 3];
      if (a > 0) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
        mass += a; mx += a * (x + 0.5); my += a * (y + 0.5);
      }
    }
  }
  if (mass === 0) return null;
  // scale: the longer side of the bounding box becomes BOX pixels; centre of mass goes to the field's centre
  const s = BOX / Math.max(x1 - x0 + 1, y1 - y0 + 1);
  const cx = mx / mass, cy = my / mass;
  const acc = new Float64Array(SIDE * SIDE);
  // each pad pixel carries its ink times its area (s^2) to the output pixels it falls on (bilinear splat)
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const a = alpha[4 * (y * PAD + x) + 3];
      if (a === 0) continue;
      const tx = (x + 0.5 - cx) * s + SIDE / 2 - 0.5, ty = (y + 0.5 - cy) * s + SIDE / 2 - 0.5;
      const ix = Math.floor(tx), iy = Math.floor(ty), fx = tx - ix, fy = ty - iy;
      const w = a * s * s;
      for (const [dx, dy, f] of [[0, 0, (1 - fx) * (1 - fy)], [1, 0, fx * (1 - fy)], [0, 1, (1 - fx) * fy],
                                 [1, 1, fx * fy]]) {
        const X = ix + dx, Y = iy + dy;
        if (X >= 0 && X < SIDE && Y >= 0 && Y < SIDE) acc[Y * SIDE + X] += w * f;
      }
    }
  }
  const rows = [];
  for (let r = 0; r < SIDE; r++) {
    const row = [];
    for (let c = 0; c < SIDE; c++) row.push(Math.min(255, Math.round(acc[r * SIDE + c])));
    rows.push(row);
  }
  return rows;
}

function showImageOnPad(rows) {  // a shipped digit, enlarged on the pad (it is replaced by the next stroke)
  const small = document.createElement("canvas");
  paintGrey(small, rows);
  const data = small.getContext("2d").getImageData(0, 0, SIDE, SIDE);
  for (let i = 0; i < data.data.length; i += 4) {  // grey -> white ink with that opacity
    data.data[i + 3] = data.data[i]; data.data[i] = data.data[i + 1] = data.data[i + 2] = 255;
  }
  small.getContext("2d").putImageData(data, 0, 0);
  clearPad();
  padCtx.imageSmoothingEnabled = false;
  padCtx.drawImage(small, 0, 0, PAD, PAD);
  hasStrokes = false;
}

let throttle = null;
function drawingChanged(now) {
  if (throttle !== null && !now) return;
  clearTimeout(throttle);
  state.drawPending = true;
  throttle = setTimeout(() => {
    throttle = null;
    state.drawPending = false;
    const rows = mnistImage();
    if (rows === null) return;
    state.image = rows;
    state.source = "drawing";
    paintGrey($("seen"), rows);
    requestUpdate();
  }, now ? 0 : THROTTLE_MS);
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  if (state.source !== "drawing" || !hasStrokes) clearPad();
  if (state.source !== "drawing") { state.source = "drawing"; markSample(null); }
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = padPoint(event);
  stroke(last, last);
  drawingChanged(false);
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  event.preventDefault();
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const p = padPoint(e);
    stroke(last, p);
    last = p;
  }
  drawingChanged(false);
});
for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => {
    if (!drawing) return;
    drawing = false;
    drawingChanged(true);
  });
}

// ------------------------------------------------------------------ talking to the server

async function getJSON(path) {
  const response = await fetch(path);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

async function explainOne(rule, layer, image) {
  const body = {model: state.model, image: image || state.explainedImage, rule, target: state.target};
  if (state.start) {  // the seed's recipe: one neuron (or channel) of a hidden layer, all others zero
    body.target = null;
    body.start_at = state.start.start_at;
    if (state.start.channel !== undefined) body.channel = state.start.channel;
    else body.neuron = state.start.neuron;
  }
  if (layer !== null && layer !== undefined) body.layer = layer;
  const response = await fetch("/api/explain", {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

let inflight = false, pending = false;
function requestUpdate() {
  if (inflight) { pending = true; return; }
  runUpdate();
}

async function runUpdate() {
  inflight = true; pending = false;
  document.body.dataset.state = "busy";
  try {
    await update();
    state.error = null;
  } catch (err) {
    state.error = String(err.message || err);
    setStatus(`Error: ${state.error}`, true);
  } finally {
    inflight = false;
    if (pending) runUpdate();
    else document.body.dataset.state = state.error ? "error" : "ready";
  }
}

// one update: every rule explained on the current image (one request per rule, sent together)
async function update() {
  if (!state.image) return;
  const t0 = performance.now();
  const image = state.image;
  if (state.start && state.layer !== null && state.layer > state.start.start_at + 1) state.layer = null;
  const settled = await Promise.allSettled(
    state.rules.map((r) => explainOne(r.name, r.name === state.rule ? state.layer : null, image)));
  const failed = settled.filter((x) => x.status === "rejected");
  if (failed.length === settled.length) throw failed[0].reason;  // nothing to show: say why
  state.lastUpdateMs = performance.now() - t0;
  state.explainedImage = image;
  state.results = {};
  state.ruleErrors = {};
  settled.forEach((x, i) => {
    if (x.status === "fulfilled") state.results[x.value.rule] = x.value;
    else state.ruleErrors[state.rules[i].name] = String(x.reason.message || x.reason);
  });
  if (!state.results[state.rule]) state.rule = Object.keys(state.results)[0];  // a rule that could not run
  const inspected = state.results[state.rule];
  state.layerDetail = inspected && inspected.layer_relevance ? inspected.layer_relevance : null;
  state.updates += 1;
  render();
}

// ------------------------------------------------------------------ rendering

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function className(k) {
  const model = state.models.find((m) => m.name === state.model);
  return model && model.class_names.length > k ? model.class_names[k] : String(k);
}

function render() {
  const first = state.results[state.rule];
  if (!first) return;
  renderScores(first);
  renderHeatmaps();
  renderLayers();
  renderLedger();
  const sample = state.source && state.source.startsWith("sample") ? state.source : "your drawing";
  const label = state.sampleLabel !== null && state.source.startsWith("sample") ? `, labelled ${state.sampleLabel}` : "";
  const explained = state.start ? `${state.start.text} (its activation, all others zero)`
    : first.target === first.prediction ? "the predicted class" : `class ${className(first.target)}`;
  setStatus(`Prediction for ${sample}${label}: ${className(first.prediction)} ` +
            `(${Math.round(100 * first.probabilities[first.prediction])}%). Explaining ${explained}, ` +
            `${state.start ? "start relevance" : "f(x)"} = ${fmt(first.score)}.`);
}

function renderScores(answer) {
  const box = $("scores");
  box.replaceChildren();
  const lo = Math.min(0, ...answer.scores), hi = Math.max(0, ...answer.scores);
  const span = hi - lo || 1;
  answer.scores.forEach((score, k) => {
    const isTarget = k === answer.target, isPredicted = k === answer.prediction;
    const fill = el("span", {class: `fill ${score >= 0 ? "up" : "down"}`});
    fill.style.left = `${(100 * (Math.min(score, 0) - lo)) / span}%`;
    fill.style.width = `${(100 * Math.abs(score)) / span}%`;
    const zero = el("span", {class: "zero"});
    zero.style.left = `${(100 * (0 - lo)) / span}%`;
    const button = el("button", {
      type: "button", class: `score${isTarget ? " target" : ""}${isPredicted ? " predicted" : ""}`,
      "aria-pressed": String(isTarget), "data-class": String(k),
      "aria-label": `class ${className(k)}: score ${fmt(score)}, probability ${Math.round(100 * answer.probabilities[k])}%` +
                    `${isPredicted ? ", predicted" : ""}${isTarget ? ", explained" : ""}. Press to explain class ${className(k)}.`,
      onclick: () => { state.target = k; setStart(null); requestUpdate(); },
    }, [el("span", {class: "cls", text: className(k)}), el("span", {class: "bar"}, [zero, fill]),
        el("span", {class: "val", text: fmt(score)})]);
    box.append(button);
  });
  $("predicted").disabled = state.target === null && !state.start;
}

function renderHeatmaps() {
  const box = $("heatmaps");
  const answers = state.rules.map((r) => state.results[r.name]);
  const shared = Math.max(...answers.filter(Boolean).map((a) => maxAbs(a.relevance.flat())));
  box.replaceChildren();
  answers.forEach((a, i) => {
    if (!a) {  // this rule could not explain this input (the server said why)
      const why = (state.ruleErrors || {})[state.rules[i].name] || "no answer";
      box.append(el("div", {class: "heatmap failed", role: "note"}, [
        el("span", {class: "rule-name", text: state.rules[i].label}), el("span", {class: "numbers", text: why})]));
      return;
    }
    const own = maxAbs(a.relevance.flat());
    const scale = state.scale === "shared" ? shared : own;
    const canvas = el("canvas", {width: SIDE, height: SIDE, "aria-hidden": "true"});
    paintHeatmap(canvas, a.relevance, scale, state.outline ? state.explainedImage : null);
    const sum = a.relevance.flat().reduce((x, y) => x + y, 0);
    const selected = a.rule === state.rule;
    const button = el("button", {
      type: "button", class: `heatmap${selected ? " selected" : ""}`, "aria-pressed": String(selected),
      "data-rule": a.rule,
      "aria-label": `${state.rules[i].label}: sum of relevance ${fmt(sum)}, f(x) ${fmt(a.score)}, ` +
                    `max |R| ${fmt(own)}.${a.note ? " Note: " + a.note : ""} Press to inspect this rule layer by layer.`,
      onclick: () => { state.rule = a.rule; state.layer = null; state.layerDetail = null; render(); },
    }, [canvas, el("span", {class: "caption"}, [
      el("span", {class: "rule-name", text: state.rules[i].label}),
      el("span", {class: "numbers", text: `\u03a3R = ${fmt(sum)}`}),
      el("span", {class: "numbers", text: `max|R| = ${fmt(own)}`}),
    ])]);
    if (a.note) {
      button.title = a.note;
      button.querySelector(".rule-name").append(el("span", {class: "note-mark", text: " *", "aria-hidden": "true"}));
    }
    box.append(button);
  });
  const notes = $("notes");
  notes.replaceChildren(...answers.filter((a) => a.note).map((a) => el("li", {text: `* ${ruleLabel(a.rule)}: ${a.note}`})));
  $("cb-low").textContent = state.scale === "shared" ? `\u2212${fmt(shared)}` : "\u2212max|R|";
  $("cb-high").textContent = state.scale === "shared" ? `+${fmt(shared)}` : "+max|R|";
  $("scale-note").textContent = state.scale === "shared"
    ? `One scale for all panels: white is 0, the darkest red/blue is \u00b1${fmt(shared)}. Rules that spread relevance thinly look pale.`
    : "Each panel is scaled to its own largest |R| (shown under it): compare patterns, not intensities, across panels.";
}

function ruleLabel(name) {
  const rule = state.rules.find((r) => r.name === name);
  return rule ? rule.label : name;
}

function renderLayers() {
  const answer = state.results[state.rule];
  $("layers-rule").textContent = ruleLabel(state.rule);
  const list = $("layers");
  list.replaceChildren();
  const biggest = Math.abs(answer.score) || 1;
  [...answer.layers].reverse().forEach((layer) => {
    const selected = layer.index === state.layer;
    const share = el("span", {class: "share"});
    share.style.width = `${Math.min(100, (100 * Math.abs(layer.sum)) / biggest)}%`;
    share.classList.add(layer.sum >= 0 ? "up" : "down");
    const top = layer.index === answer.layers.length - 1;
    const name = top ? `${layer.name} (${state.start ? "the start" : "output, start"})` : layer.name;
    const button = el("button", {
      type: "button", class: `layer${selected ? " selected" : ""}`, "aria-pressed": String(selected),
      "data-layer": String(layer.index),
      "aria-label": `${name}, shape ${layer.shape.join(" by ")}, sum of relevance ${fmt(layer.sum)}. Press to see its channels.`,
      onclick: () => selectLayer(layer.index),
    }, [el("span", {class: "lname", text: name}), el("span", {class: "lshape", text: layer.shape.join("\u00d7")}),
        el("span", {class: "lsum", text: `\u03a3R ${fmt(layer.sum)}`}), share]);
    list.append(el("li", {}, [button]));
  });
  renderLayerDetail();
}

async function selectLayer(index) {
  state.layer = index;
  renderLayers();
  try {
    const answer = await explainOne(state.rule, index);
    if (state.layer === index) { state.layerDetail = answer.layer_relevance; renderLayerDetail(); }
  } catch (err) {
    setStatus(`Error: ${err.message || err}`, true);
  }
}

function renderLayerDetail() {
  const box = $("layer-detail");
  box.replaceChildren();
  const detail = state.layerDetail;
  if (state.layer === null) {
    box.append(el("p", {class: "hint", text: "Press a layer in the list to see where its relevance sits."}));
    return;
  }
  if (!detail || detail.index !== state.layer) {
    box.append(el("p", {class: "hint", text: "Loading\u2026"}));
    return;
  }
  const values = detail.values;
  box.append(el("h3", {text: `${detail.name}: ${detail.shape.join("\u00d7")}`}));
  if (detail.shape.length === 3) {  // channels x H x W: one small heatmap per channel, one shared scale
    const scale = maxAbs(values.flat(2));
    const sums = values.map((ch) => ch.flat().reduce((x, y) => x + y, 0));
    box.append(el("p", {class: "hint", text: `${detail.shape[0]} channels, one colour scale for all (\u00b1${fmt(scale)}); ` +
                                                "the number is each channel's \u03a3R."}));
    const grid = el("div", {class: "channels", role: "list"});
    const startable = state.canStart && detail.index > 0;
    if (startable) {
      box.append(el("p", {class: "hint", text: "Press a channel to explain it instead of a class: the sweep then starts " +
                                                "from that channel's activations, all other neurons zero."}));
    }
    values.forEach((channel, c) => {
      const canvas = el("canvas", {"aria-hidden": "true"});
      paintHeatmap(canvas, channel, scale, null);
      const caption = el("figcaption", {text: `${c}: ${fmt(sums[c])}`});
      const chosen = state.start && state.start.start_at === detail.index - 1 && state.start.channel === c;
      const item = startable
        ? el("button", {type: "button", class: `channel${chosen ? " selected" : ""}`, "data-channel": String(c),
                        "aria-pressed": String(Boolean(chosen)),
                        "aria-label": `channel ${c}: sum ${fmt(sums[c])}. Press to explain this channel.`,
                        onclick: () => startFrom(detail, {channel: c}, `channel ${c} of ${detail.name}`)},
                 [canvas, caption])
        : el("figure", {class: "channel", "aria-label": `channel ${c}: sum ${fmt(sums[c])}`}, [canvas, caption]);
      grid.append(el("div", {role: "listitem"}, [item]));
    });
    box.append(grid);
  } else {  // a vector: one bar per unit
    const flat = values.flat(Infinity);
    const scale = maxAbs(flat);
    box.append(el("p", {class: "hint", text: `${flat.length} units, bars scaled to \u00b1${fmt(scale)}.`}));
    const canvas = el("canvas", {class: "units", width: Math.max(flat.length * 4, 40), height: 120,
                                 "aria-label": `relevance of the ${flat.length} units`, role: "img"});
    const ctx = canvas.getContext("2d");
    const mid = canvas.height / 2, w = canvas.width / flat.length;
    ctx.fillStyle = "#ccc"; ctx.fillRect(0, mid, canvas.width, 1);
    flat.forEach((v, i) => {
      const rgb = colour(scale > 0 ? v / scale : 0);
      ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
      const h = scale > 0 ? (Math.abs(v) / scale) * (mid - 2) : 0;
      ctx.fillRect(i * w, v >= 0 ? mid - h : mid + 1, Math.max(w - 1, 1), h);
    });
    box.append(canvas);
    if (flat.length <= 20) {
      box.append(el("p", {class: "hint", text: flat.map((v, i) => `${i}: ${fmt(v)}`).join("   ")}));
    }
    if (state.canStart && detail.index > 0) {  // explain one unit: click the bars or type its number
      const input = el("input", {type: "number", id: "unit", min: "0", max: String(flat.length - 1), value: "0"});
      const go = () => {
        const k = Math.max(0, Math.min(flat.length - 1, Math.round(Number(input.value) || 0)));
        startFrom(detail, {neuron: k}, `unit ${k} of ${detail.name}`);
      };
      canvas.addEventListener("click", (event) => {
        const rect = canvas.getBoundingClientRect();
        input.value = String(Math.floor(((event.clientX - rect.left) / rect.width) * flat.length));
        go();
      });
      canvas.classList.add("clickable");
      box.append(el("div", {class: "row unit-row"}, [
        el("label", {for: "unit", text: "Unit"}), input,
        el("button", {type: "button", id: "unit-go", onclick: go, text: "Explain this unit"}),
        el("span", {class: "hint", text: "(or click a bar): the sweep starts from that unit's activation"}),
      ]));
    }
  }
}

function setStart(start) {
  state.start = start;
  const banner = $("start-banner");
  banner.hidden = !start;
  $("start-text").textContent = start ? start.text : "";
}

function startFrom(detail, selection, text) {
  state.layer = detail.index;  // keep showing this boundary: only the chosen neurons carry relevance there now
  setStart({start_at: detail.index - 1, ...selection, text});
  requestUpdate();
}

function renderLedger() {
  const answer = state.results[state.rule];
  const ledger = answer.ledger;
  const f = ledger.start;
  const startName = state.start ? "start relevance" : "f(x)";
  $("conservation").textContent = `${ruleLabel(state.rule)}: ${startName} = ${fmt(f)} = relevance at the input ` +
    `${fmt(ledger.input_relevance)} + absorbed ${fmt(ledger.absorbed)}` +
    (ledger.balanced ? "  \u2713 every layer balances" : "  \u2717 a layer does not balance");
  const box = $("ledger");
  box.replaceChildren();
  const top = Math.max(Math.abs(f), ...ledger.entries.map((e) => Math.abs(e.absorbed))) || 1;
  const table = el("div", {class: "ledger-rows", role: "table", "aria-label": "relevance absorbed per layer"});
  table.append(el("div", {class: "ledger-row head", role: "row"}, ["layer", "R out", "R in", "absorbed"].map(
    (t) => el("span", {role: "columnheader", text: t}))));
  [...ledger.entries].reverse().forEach((e) => {
    const bar = el("span", {class: `absorbed-bar ${e.absorbed >= 0 ? "up" : "down"}`});
    bar.style.width = `${(100 * Math.abs(e.absorbed)) / top}%`;
    table.append(el("div", {class: "ledger-row", role: "row"}, [
      el("span", {class: "lname", role: "cell", text: e.layer}),
      el("span", {class: "num", role: "cell", text: fmt(e.r_out)}),
      el("span", {class: "num", role: "cell", text: fmt(e.r_in)}),
      el("span", {class: "absorbed", role: "cell"}, [el("span", {class: "track"}, [bar]),
                                                       el("span", {class: "num", text: fmt(e.absorbed)})]),
    ]));
  });
  box.append(table);
}

// ------------------------------------------------------------------ samples, models, controls

function markSample(index) {
  for (const b of document.querySelectorAll("#samples button")) {
    b.setAttribute("aria-pressed", String(Number(b.dataset.index) === index));
  }
}

function pickSample(sample) {
  state.image = sample.image;
  state.source = `sample ${sample.index}`;
  state.sampleLabel = sample.label;
  state.target = null;
  showImageOnPad(sample.image);
  paintGrey($("seen"), sample.image);
  markSample(sample.index);
  requestUpdate();
}

function buildSamples() {
  const box = $("samples");
  box.replaceChildren();
  if (!state.samples.length) {
    box.append(el("p", {class: "hint", text: "No samples file was found (lrp-ref serve --samples FILE)."}));
    return;
  }
  for (const sample of state.samples) {
    const canvas = el("canvas", {"aria-hidden": "true"});
    paintGrey(canvas, sample.image);
    box.append(el("button", {
      type: "button", class: "sample", "data-index": String(sample.index), "data-label": String(sample.label),
      "aria-pressed": "false", "aria-label": `MNIST test digit ${sample.index}, labelled ${sample.label}`,
      onclick: () => pickSample(sample),
    }, [canvas]));
  }
}

function showModelInfo() {
  const model = state.models.find((m) => m.name === state.model);
  const acc = model.test_accuracy !== null && model.test_accuracy !== undefined
    ? `, ${(100 * model.test_accuracy).toFixed(2)}% on the MNIST test set` : "";
  const merged = model.canonized ? `; ${model.canonized} batch norms merged into the layers before them` : "";
  $("model-info").textContent = `${model.nodes.length} layers${acc}${merged}.`;
}

async function init() {
  paintColourbar();
  try {
    const [models, rules, samples] = await Promise.all([getJSON("/api/models"), getJSON("/api/rules"),
                                                         getJSON("/api/samples")]);
    state.models = models.models; state.rules = rules.rules; state.samples = samples.samples;
    state.canStart = Boolean(models.start_at);
  } catch (err) {
    setStatus(`Cannot reach the lrp-ref server: ${err.message || err}`, true);
    document.body.dataset.state = "error";
    return;
  }
  state.model = state.models[0].name;
  state.rule = state.rules[0].name;
  const select = $("model");
  for (const m of state.models) select.append(el("option", {value: m.name, text: `${m.name} (${m.file.split("/").pop()})`}));
  select.addEventListener("change", () => {
    state.model = select.value; state.layer = null; state.layerDetail = null; state.target = null; setStart(null);
    showModelInfo(); requestUpdate();
  });
  showModelInfo();
  $("clear").addEventListener("click", () => {
    clearPad(); state.image = null; state.source = null; state.results = {}; state.target = null;
    markSample(null);
    paintGrey($("seen"), Array.from({length: SIDE}, () => new Array(SIDE).fill(0)));
    for (const id of ["scores", "heatmaps", "layers", "layer-detail", "ledger"]) $(id).replaceChildren();
    $("conservation").textContent = "";
    setStatus("Draw a digit on the black pad, or pick an MNIST digit.");
  });
  $("predicted").addEventListener("click", () => { state.target = null; setStart(null); requestUpdate(); });
  $("start-clear").addEventListener("click", () => { setStart(null); requestUpdate(); });
  for (const radio of document.querySelectorAll("input[name=scale]")) {
    radio.addEventListener("change", () => { state.scale = radio.value; if (state.updates) renderHeatmaps(); });
  }
  $("outline").addEventListener("change", (event) => { state.outline = event.target.checked; if (state.updates) renderHeatmaps(); });
  buildSamples();
  if (state.samples.length) pickSample(state.samples[0]);
  else { setStatus("Draw a digit on the black pad."); document.body.dataset.state = "ready"; }
}

init();
