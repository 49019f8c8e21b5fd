// scratchpad show: draws the text byte by byte from the embedded data (see eval/show_data.py for
// what each number means) and re-marks scratchpads for the τ on the slider.
// Test hooks (query string): tau=<nats|inf> moves the slider (dispatching 'input' as a user's drag
// does), all=1 renders every chunk at once, colour=bits colours by bits.
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const CHUNK = 2048, TAU_INF = 6, MAX_NATS = Math.log(256), MAX_BITS = 10;

function b64bytes(s) {
  const raw = atob(s), out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}
const mask = (s) => Uint8Array.from(s, (c) => c === "1");
const BYTES = b64bytes(D.bytes);
const ENTROPY = new Float32Array(b64bytes(D.entropy).buffer);
const ENDS = mask(D.ends);
const N = BYTES.length;
// bits in thousandths (uint16 little-endian), 65535 = no prediction (byte 0)
const RUNS = D.runs.map((r) => {
  const q = new Uint16Array(b64bytes(r.bits).buffer);
  return { ...r, bits: Float64Array.from(q, (v) => (v === 65535 ? NaN : v / 1000)), scratch: mask(r.scratch) };
});
const tauValue = (t) => (t === "inf" ? Infinity : t);
const tauText = (t) => (t === Infinity || t === "inf" ? "∞" : (+t).toFixed(2).replace(/\.?0+$/, "") || "0");

const { glyph: GLYPH, kind: KIND } = byteGlyphs(BYTES);   // infer/byte_glyphs.js

// ---- per-position structure: window of each byte, open-patch length, patch index in its window
const WIN_START = new Uint8Array(N), OPEN = new Int32Array(N), PATCH = new Int32Array(N);
for (const [s, L] of D.windows) {
  WIN_START[s] = 1;
  for (let i = s, open = 0, patch = 0; i < s + L; i++) {
    OPEN[i] = ++open; PATCH[i] = patch;
    if (ENDS[i]) { open = 0; patch++; }
  }
}

// ---- the state a τ implies (recomputed from the stored entropies, as the model's scratch_mask does)
const S = { tau: null, scratch: RUNS[D.chosen].scratch, offset: new Int32Array(N), colour: "entropy", bitsRun: D.chosen };
function scratchFor(tau) {
  if (!D.model.scratchpad) return new Uint8Array(N);
  const t = Math.fround(tau), k = D.every;   // torch compares in float32
  return Uint8Array.from(ENTROPY, (e, i) => !ENDS[i] && ((e > t) || (k > 0 && OPEN[i] % k === 0)));
}
function offsets(scratch) {
  const off = new Int32Array(N);
  for (let i = 0; i < N; i++) off[i] = ENDS[i] || scratch[i] ? 0 : (WIN_START[i] ? 1 : off[i - 1] + 1);
  return off;
}
function accounting(tau, scratch) {
  // scratchpad/accounting.py per_byte(): FLOPs = 2 * MACs; keys = trunk entries read (self included)
  const m = D.costs.model, b = D.costs.baseline;
  let commits = 0, scr = 0, keys = 0;
  for (const [s, L] of D.windows) {
    let c = 0;
    for (let i = s; i < s + L; i++) { if (scratch[i]) { scr++; keys += PATCH[i] + 1; } if (ENDS[i]) c++; }
    commits += c; keys += (c * (c + 1)) / 2;
  }
  const aux = (Number.isFinite(tau) ? D.costs.aux_with_entropy : D.costs.aux_always) ? N : 0;
  const flops = 2 * (N * m.encoder_byte + aux * m.aux_step + (commits + scr) * m.trunk_step + keys * m.trunk_per_key
                     + N * m.decoder_byte);
  const base = 2 * (N * b.encoder_byte + (D.costs.baseline_aux ? N : 0) * b.aux_step + N * b.trunk_step
                    + D.baseline_keys * b.trunk_per_key + N * b.decoder_byte);
  return { scr, commits, trunk: (commits + scr) / N, flopsRatio: flops / base, kvRatio: commits / N };
}
const runAt = (tau) => RUNS.findIndex((r) => tauValue(r.tau) === tau);

// ---- colour
const shade = (i) => S.colour === "bits" ? heat(RUNS[S.bitsRun].bits[i], MAX_BITS) : heat(ENTROPY[i], MAX_NATS);
const bitsText = (i) => Number.isNaN(RUNS[S.bitsRun].bits[i]) ? "" : RUNS[S.bitsRun].bits[i].toFixed(3);

// ---- lazy rendering in chunks of CHUNK bytes
const chunks = [];
function renderChunk(k) {
  const c = chunks[k];
  if (c.done) return;
  const parts = [];
  for (let i = c.start; i < c.end; i++) {
    const cls = ["b", KIND[i], WIN_START[i] && i > 0 ? "win" : ""].filter(Boolean).join(" ");
    parts.push(`<span class="${cls}" data-i="${i}" data-entropy="${ENTROPY[i].toFixed(4)}" data-bits="${bitsText(i)}" ` +
      `data-scratch="${S.scratch[i]}" data-commit="${ENDS[i]}" data-offset="${S.offset[i]}" ` +
      `style="background:${shade(i)}">${escapeHtml(GLYPH[i])}</span>`);
  }
  c.el.innerHTML = parts.join("");
  c.el.classList.add("done");
  c.done = true;
}
function eachRendered(fn) {
  for (const c of chunks) if (c.done) for (const el of c.el.children) fn(el, +el.dataset.i);
}
const observer = new IntersectionObserver((entries) => {
  for (const e of entries) if (e.isIntersecting) renderChunk(+e.target.dataset.chunk);
}, { rootMargin: "1500px 0px" });
for (let s = 0, k = 0; s < N; s += CHUNK, k++) {
  const el = document.createElement("span");
  el.className = "chunk"; el.dataset.chunk = k;
  el.textContent = `… bytes ${s}–${Math.min(s + CHUNK, N) - 1} (drawn when scrolled into view) …`;
  $("text").appendChild(el);
  chunks.push({ el, start: s, end: Math.min(s + CHUNK, N), done: false });
  observer.observe(el);
}

// ---- strip chart: max entropy per pixel column, τ as a line
function drawStrip() {
  const cv = $("strip"), w = (cv.width = cv.clientWidth || 1000), h = cv.height, ctx = cv.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const y = (e) => h - 4 - (e / MAX_NATS) * (h - 8);
  for (let x = 0; x < w; x++) {
    const a = Math.floor((x * N) / w), z = Math.max(a + 1, Math.floor(((x + 1) * N) / w));
    let e = 0, fires = false;
    for (let i = a; i < z && i < N; i++) { e = Math.max(e, ENTROPY[i]); fires = fires || S.scratch[i] === 1; }
    if (a >= N) break;
    ctx.fillStyle = fires ? "#2563eb" : "#9aa5b1";
    ctx.fillRect(x, y(e), 1, h - 4 - y(e));
  }
  if (Number.isFinite(S.tau) && D.model.scratchpad) {
    ctx.strokeStyle = "#b91c1c"; ctx.lineWidth = 2; ctx.setLineDash([6, 3]); ctx.beginPath();
    ctx.moveTo(0, y(S.tau)); ctx.lineTo(w, y(S.tau)); ctx.stroke();
  }
}
$("strip").addEventListener("click", (ev) => {
  const i = Math.min(N - 1, Math.floor((ev.offsetX / $("strip").clientWidth) * N));
  renderChunk(Math.floor(i / CHUNK));
  const el = document.querySelector(`.b[data-i="${i}"]`);
  el.scrollIntoView({ block: "center" }); el.classList.add("hl"); setTimeout(() => el.classList.remove("hl"), 1500);
});

// ---- the τ slider
function setTau(tau, scratch = scratchFor(tau)) {
  S.tau = tau;
  S.scratch = scratch;
  S.offset = offsets(S.scratch);
  eachRendered((el, i) => { el.dataset.scratch = S.scratch[i]; el.dataset.offset = S.offset[i]; });
  const a = accounting(tau, S.scratch), r = runAt(tau);
  const put = (id, text, value) => { $(id).textContent = text; $(id).dataset.value = value; };
  $("tau-value").textContent = "τ = " + tauText(tau);
  put("stat-scratchpads", a.scr.toLocaleString("en"), a.scr);
  put("stat-rate", (100 * a.scr / N).toFixed(1) + "%", a.scr / N);
  put("stat-trunk", a.trunk.toFixed(3), a.trunk);
  put("stat-flops", a.flopsRatio.toFixed(3) + "×", a.flopsRatio);
  put("stat-kv", a.kvRatio.toFixed(4) + "×", a.kvRatio);
  put("stat-bpb", r >= 0 ? RUNS[r].bpb.toFixed(4) : `not run at this τ (run at ${RUNS.map((q) => tauText(q.tau)).join(", ")})`,
      r >= 0 ? RUNS[r].bpb : "");
  for (const tr of $("runs").rows) tr.classList.toggle("current", tr.dataset.tau !== undefined && tauValue(JSON.parse(tr.dataset.tau)) === tau);
  drawStrip();
}
function sliderTau() {
  const v = +$("tau").value;
  if (v >= TAU_INF - 0.02) return Infinity;
  const snap = RUNS.map((r) => tauValue(r.tau)).find((t) => Math.abs(t - v) < 0.03);
  return snap !== undefined ? snap : v;
}
$("tau").addEventListener("input", () => setTau(sliderTau()));
function setColour() {
  S.colour = document.querySelector('input[name="colour"]:checked').value;
  S.bitsRun = +$("bits-tau").value;
  $("ramp-label").textContent = S.colour === "bits" ? `0 – ${MAX_BITS}+ bits` : `0 – ${MAX_NATS.toFixed(2)} nats`;
  eachRendered((el, i) => { el.style.background = shade(i); el.dataset.bits = bitsText(i); });
}
for (const el of document.querySelectorAll('input[name="colour"]')) el.addEventListener("change", setColour);
$("bits-tau").addEventListener("change", setColour);

// ---- hover details
$("text").addEventListener("mouseover", (ev) => {
  const el = ev.target.closest(".b");
  if (!el) return;
  const i = +el.dataset.i, bits = bitsText(i), c = BYTES[i];
  const what = KIND[i] === "cont" ? "continuation byte" : KIND[i] === "bad" ? "not UTF-8" : JSON.stringify(GLYPH[i]);
  $("info").textContent = `byte ${i}: 0x${hex(c, 2)} ${what} · patch ${PATCH[i]}` +
    (bits ? ` · ${bits} bits at τ = ${tauText(RUNS[S.bitsRun].tau)} (predicted after byte ${i - 1}, ${i > 0 ? S.offset[i - 1] : "-"} bytes since a trunk output)` : " · first byte: nothing predicts it") +
    ` · aux entropy after it ${ENTROPY[i].toFixed(3)} nats` + (ENDS[i]
      ? " · closes its patch: the commit refreshes the context, no scratchpad needed"
      : S.scratch[i] ? ` · scratchpad after it (entropy > τ = ${tauText(S.tau)}` +
        `${D.every && OPEN[i] % D.every === 0 ? `, or byte ${OPEN[i]} of its patch` : ""}): fresh trunk context for byte ${i + 1}`
      : ` · no scratchpad (entropy ≤ τ = ${tauText(S.tau)})`);
});

// ---- static parts: header, notes, run table, lag profile
$("meta").textContent = `${N.toLocaleString("en")} bytes · model ${D.model.name} (${D.model.label}) · patcher ` +
  `${D.model.patcher}, P = ${D.model.patch_size} · context ${D.model.max_seq_len} bytes · page τ = ${tauText(D.tau)}` +
  (D.every ? ` · stride trigger: every ${D.every}th byte of a patch` : "");
for (const note of D.notes) { const p = document.createElement("div"); p.className = "note"; p.textContent = note; $("notes").appendChild(p); }
RUNS.forEach((r, k) => {
  const o = document.createElement("option"); o.value = k; o.textContent = "τ = " + tauText(r.tau);
  $("bits-tau").appendChild(o);
  const t = document.createElement("option"); t.value = r.tau === "inf" ? TAU_INF : r.tau; $("run-taus").appendChild(t);
});
$("bits-tau").value = D.chosen;
{
  const head = ["τ", "scratchpads", "rate", "trunk calls/byte", "FLOPs vs byte", "KV vs byte", "BPB"];
  const rows = RUNS.map((r) => `<tr data-tau='${JSON.stringify(r.tau)}'><td>${tauText(r.tau)}</td><td>${r.scratchpads}</td>` +
    `<td>${(100 * r.scratchpad_rate).toFixed(1)}%</td><td>${r.trunk_calls_per_byte.toFixed(3)}</td>` +
    `<td>${r.flops_ratio_vs_byte.toFixed(3)}×</td><td>${r.kv_ratio_vs_byte.toFixed(4)}×</td><td>${r.bpb.toFixed(4)}</td></tr>`);
  $("runs").innerHTML = `<tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr>` + rows.join("");
}
{
  const W = 420, H = 200, L = 40, B = 24, pal = ["#1f2933", "#dc2626", "#2563eb", "#16a34a", "#9333ea", "#ea580c"];
  const pts = D.lag.flatMap((l) => l.rows);
  const xmax = Math.max(1, ...pts.map((p) => p.offset)), ys = pts.map((p) => p.bpb);
  const ylo = Math.min(...ys), yhi = Math.max(...ys) + 1e-9;
  const X = (o) => L + (o / xmax) * (W - L - 10), Y = (v) => H - B - ((v - ylo) / (yhi - ylo)) * (H - B - 10);
  const lines = D.lag.map((l, k) => `<polyline fill="none" stroke="${pal[k % pal.length]}" stroke-width="1.5" points="` +
    l.rows.map((p) => `${X(p.offset).toFixed(1)},${Y(p.bpb).toFixed(1)}`).join(" ") + `"/>`);
  const key = D.lag.map((l, k) => `<b style="color:${pal[k % pal.length]}">— τ = ${tauText(l.tau)}</b>`).join(" ");
  $("lag").insertAdjacentHTML("beforeend", `<svg width="${W}" height="${H}" role="img" aria-label="lag profile">` +
    `<line x1="${L}" y1="${H - B}" x2="${W - 10}" y2="${H - B}" stroke="#9aa5b1"/><line x1="${L}" y1="10" x2="${L}" y2="${H - B}" stroke="#9aa5b1"/>` +
    `<text x="${L}" y="${H - 6}">0</text><text x="${W - 30}" y="${H - 6}">${xmax}</text>` +
    `<text x="${L + 60}" y="${H - 6}">offset (bytes since the latest commit)</text>` +
    `<text x="2" y="14">${yhi.toFixed(2)}</text><text x="2" y="${H - B}">${ylo.toFixed(2)}</text>` + lines.join("") +
    `</svg><div>${key}</div><div class="meta">bits of byte i + 1 by the offset at byte i; ${(N - 1).toLocaleString("en")} predicted bytes in all, ` +
    `so a short text gives a noisy profile.</div>`);
}
$("howto").textContent = "Each byte is one element. The aux entropy, the patch end (black bar) and the scratchpad " +
  "(blue underline) belong to the position after reading that byte: a scratchpad after byte i refreshes the trunk " +
  "context that predicts byte i + 1. Bits are the cost of the byte itself. The slider re-marks scratchpads from the " +
  "stored entropies and prices them with scratchpad/accounting.py's numbers; bits exist only for the τ in the table.";

// ---- start
const q = new URLSearchParams(location.search);
$("tau").value = D.tau === "inf" ? TAU_INF : D.tau;
S.offset = offsets(S.scratch);
if (q.get("colour") === "bits") document.querySelector('input[value="bits"]').checked = true;
setColour();
renderChunk(0);
if (q.get("all") === "1") chunks.forEach((_, k) => renderChunk(k));
setTau(tauValue(D.tau), RUNS[D.chosen].scratch);   // the page opens with the model's own marks at its τ
if (q.has("tau")) { $("tau").value = q.get("tau") === "inf" ? TAU_INF : q.get("tau"); $("tau").dispatchEvent(new Event("input")); }
