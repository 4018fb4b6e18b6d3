// unrolled serve: the page. Plain JavaScript, no library: it calls the JSON API under /api and
// draws the curves, the attention map and the forecast as SVG.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const SVGNS = "http://www.w3.org/2000/svg";
let current = null; // the selected run's summary

function esc(text) {
  const d = document.createElement("div");
  d.textContent = text;
  return d.innerHTML;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  const r = await fetch(path, init);
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return r;
}

function showError(e) {
  const p = $("#error");
  p.textContent = e ? String(e.message || e) : "";
  p.hidden = !e;
}

function runPath(id) {
  return "/api/runs/" + id.split("/").map(encodeURIComponent).join("/");
}

// ---- SVG ----------------------------------------------------------------------------------------
function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function fmt(v) {
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(1) : String(+v.toPrecision(3));
}

// lines: [{points: [[x, y], ...], color, label, width, dots}], bands: [{lower: [[x, y]], upper: [[x, y]], color}]
function chart(title, lines, bands = [], width = 460, height = 220) {
  const pad = {l: 52, r: 10, t: 20, b: 26};
  const all = lines.flatMap(l => l.points).concat(bands.flatMap(b => b.lower.concat(b.upper)))
    .filter(p => p[1] !== null && isFinite(p[1]));
  const root = svg("svg", {width, height, viewBox: `0 0 ${width} ${height}`, class: "chart"});
  svg("text", {x: pad.l, y: 13}, root).textContent = title;
  if (!all.length) return root;
  let [x0, x1] = [Math.min(...all.map(p => p[0])), Math.max(...all.map(p => p[0]))];
  let [y0, y1] = [Math.min(...all.map(p => p[1])), Math.max(...all.map(p => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const X = x => pad.l + (x - x0) / (x1 - x0) * (width - pad.l - pad.r);
  const Y = y => height - pad.b - (y - y0) / (y1 - y0) * (height - pad.t - pad.b);
  svg("line", {x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b, stroke: "#999"}, root);
  svg("line", {x1: pad.l, y1: pad.t, x2: pad.l, y2: height - pad.b, stroke: "#999"}, root);
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    svg("text", {x: pad.l - 4, y: Y(y) + 4, "text-anchor": "end"}, root).textContent = fmt(y);
  }
  for (const x of [x0, x1]) {
    svg("text", {x: X(x), y: height - 8, "text-anchor": "middle"}, root).textContent = fmt(x);
  }
  const path = pts => pts.filter(p => p[1] !== null).map((p, i) => `${i ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
  for (const b of bands) {
    const d = path(b.upper) + path(b.lower.slice().reverse()).replace(/^M/, "L") + "Z";
    svg("path", {d, fill: b.color, stroke: "none", class: "band"}, root);
  }
  let ly = pad.t + 4;
  for (const l of lines) {
    svg("path", {d: path(l.points), fill: "none", stroke: l.color, "stroke-width": l.width || 1.5}, root);
    if (l.dots) {
      for (const p of l.points.filter(p => p[1] !== null)) svg("circle", {cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: l.color}, root);
    }
    if (l.label) {
      svg("text", {x: width - pad.r - 4, y: ly + 8, "text-anchor": "end", style: `fill:${l.color}`}, root).textContent = l.label;
      ly += 13;
    }
  }
  return root;
}

// ---- the runs -----------------------------------------------------------------------------------
async function loadRuns() {
  const data = await (await api("/api/runs")).json();
  $("#root").textContent = data.root;
  const body = $("#runs tbody");
  body.innerHTML = "";
  $("#runs-empty").hidden = data.runs.length > 0;
  for (const run of data.runs) {
    const tr = document.createElement("tr");
    tr.dataset.id = run.id;
    const best = run.best_val === null || run.best_val === undefined ? "" : `${run.metric || "val"} ${fmt(run.best_val)} (step ${run.best_step})`;
    tr.innerHTML = `<td>${esc(run.id)}</td><td>${esc(run.task || run.error || "?")}</td><td>${run.step ?? ""}</td>` +
      `<td>${esc(best)}</td><td class="status-${run.status}">${run.status}</td>`;
    tr.addEventListener("click", () => selectRun(run));
    if (current && current.id === run.id) tr.classList.add("selected");
    body.appendChild(tr);
  }
}

async function selectRun(run) {
  current = run;
  showError(null);
  for (const tr of document.querySelectorAll("#runs tbody tr")) tr.classList.toggle("selected", tr.dataset.id === run.id);
  $("#run").hidden = false;
  $("#run-title").textContent = `${run.id} (${run.task}, step ${run.step ?? "-"})`;
  for (const panel of document.querySelectorAll(".panel")) {
    panel.hidden = !(run.verbs || []).includes(panel.dataset.verb);
    for (const out of panel.querySelectorAll(".out")) out.textContent = "";
  }
  $("#attention-out").innerHTML = "";
  const records = (await (await api(runPath(run.id) + "/metrics")).json()).records;
  drawCurves(records, run.metric);
}

function drawCurves(records, metric) {
  const box = $("#curves");
  box.innerHTML = "";
  const train = records.filter(r => r.kind === "train" && typeof r.loss === "number").map(r => [r.step, r.loss]);
  const vals = records.filter(r => r.kind === "val");
  box.appendChild(chart("training loss", [{points: train, color: "#5b8bd6"}]));
  const key = metric || "val_loss";
  const points = vals.filter(r => typeof r[key] === "number").map(r => [r.step, r[key]]);
  box.appendChild(chart(`validation ${key.replace(/^val_/, "")}`, [{points, color: "#d1743b", dots: true}]));
}

// ---- the panels ---------------------------------------------------------------------------------
function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || el.value === "") continue;
    out[el.name] = el.type === "number" ? Number(el.value) : el.value;
  }
  return out;
}

const panels = {
  async sample(form, v) {
    const out = $("#sample-out");
    out.textContent = v.prime || "";
    const r = await api(runPath(current.id) + "/stream", {prime: v.prime || "", length: v.length, temperature: v.temperature, seed: v.seed});
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      out.textContent += decoder.decode(value, {stream: true});
    }
  },
  async score(form, v) {
    const s = await (await api(runPath(current.id) + "/score", {text: v.text || ""})).json();
    const per = Object.keys(s).find(k => k.startsWith("nats_per_"));
    $("#score-out").textContent = `${fmt(s[per])} ${per.replace(/_/g, " ")}, perplexity ${fmt(s.perplexity)}`;
  },
  async neurons(form, v) {
    const body = {text: v.text || ""};
    if (v.signal) body.signal = v.signal;
    if (v.unit !== undefined) body.unit = v.unit;
    const n = await (await api(runPath(current.id) + "/neurons", body)).json();
    const select = form.elements.signal;
    if (select.options.length === 1) {
      for (const s of n.signals) select.add(new Option(`${s.name} (${s.units})`, s.name));
    }
    $("#neurons-caption").textContent = `${n.signal}, unit ${n.unit}: red > 0, blue < 0`;
    const top = Math.max(1, ...n.values.map(Math.abs));
    $("#neurons-out").innerHTML = Array.from(n.text).map((ch, i) => {
      const a = n.values[i] / top;
      const color = a >= 0 ? `rgba(214,64,50,${a.toFixed(3)})` : `rgba(50,100,214,${(-a).toFixed(3)})`;
      return `<span style="background:${color}" title="${n.values[i].toFixed(3)}">${ch === "\n" ? "↵\n" : esc(ch)}</span>`;
    }).join("");
  },
  async translate(form, v) {
    const t = (await (await api(runPath(current.id) + "/translate", {text: v.text || "", beam: v.beam || 1})).json()).translations[0];
    $("#translate-out").textContent = t.translation;
    $("#attention-out").innerHTML = "";
    if (t.attention) $("#attention-out").appendChild(attentionMap(t));
  },
  async tag(form, v) {
    const s = (await (await api(runPath(current.id) + "/tag", {text: v.text || ""})).json()).sentences[0];
    $("#tag-out").innerHTML = s.map(([w, t]) => `<span class="tag">${esc(w)}<small>${esc(t)}</small></span>`).join("");
  },
  async predict(form, v) {
    const p = (await (await api(runPath(current.id) + "/predict", {text: v.text || ""})).json()).predictions[0];
    const rows = Object.entries(p.probabilities).sort((a, b) => b[1] - a[1]);
    $("#predict-out").innerHTML = `<b>${esc(p.label)}</b> (${(100 * p.probability).toFixed(1)}%)<br>` +
      rows.map(([label, q]) => `<span class="bar" style="width:${(200 * q).toFixed(0)}px"></span>${esc(label)} ${(100 * q).toFixed(1)}%`).join("<br>");
  },
  async forecast(form, v) {
    const f = await (await api(runPath(current.id) + "/forecast", v.horizon ? {horizon: v.horizon} : {})).json();
    const n = f.history.values.length;
    const hist = f.history.values.map((y, i) => [i, y]);
    const at = f.mean.map((_, h) => n + h);
    const mean = [[n - 1, f.history.values[n - 1]]].concat(f.mean.map((y, h) => [at[h], y]));
    const bands = [];
    for (const [level, color] of [["95", "rgba(209,116,59,0.15)"], ["80", "rgba(209,116,59,0.3)"]]) {
      if (f[`lower_${level}`]) {
        bands.push({lower: f[`lower_${level}`].map((y, h) => [at[h], y]), upper: f[`upper_${level}`].map((y, h) => [at[h], y]), color});
      }
    }
    const out = $("#forecast-out");
    out.innerHTML = "";
    const title = `forecast of ${f.mean.length} steps after ${f.history.time[n - 1]}`;
    out.appendChild(chart(title, [{points: hist, color: "#5b8bd6", label: "history"}, {points: mean, color: "#d1743b", label: "forecast", width: 2, dots: true}], bands, 700, 260));
  },
};

function attentionMap(t) {
  const rows = t.output_tokens.concat(["</s>"]).slice(0, t.attention.length);
  const cols = t.source_tokens.concat(["</s>"]);
  const cell = 22, top = 70, left = 12 + 7 * Math.max(...rows.map(r => r.length));
  const root = svg("svg", {width: left + cell * cols.length + 10, height: top + cell * rows.length + 10, class: "attention"});
  cols.forEach((c, j) => {
    svg("text", {x: left + j * cell + cell / 2, y: top - 6, transform: `rotate(-50 ${left + j * cell + cell / 2} ${top - 6})`}, root).textContent = c;
  });
  rows.forEach((r, i) => {
    svg("text", {x: left - 6, y: top + i * cell + cell * 0.7, "text-anchor": "end"}, root).textContent = r;
    t.attention[i].forEach((a, j) => {
      const shade = Math.round(255 * (1 - a));
      svg("rect", {x: left + j * cell, y: top + i * cell, width: cell - 1, height: cell - 1, fill: `rgb(${shade},${shade},255)`}, root)
        .appendChild(svg("title", {})).textContent = a.toFixed(3);
    });
  });
  return root;
}

for (const form of document.querySelectorAll(".panel")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(null);
    const button = $("button", form);
    button.disabled = true;
    try {
      await panels[form.dataset.verb](form, formValues(form));
    } catch (e) {
      showError(e);
    } finally {
      button.disabled = false;
    }
  });
}

loadRuns().catch(showError);
setInterval(() => loadRuns().catch(showError), 5000);
