// Byte rendering shared by `scratchpad show` (eval/show_page.js) and the serve playground
// (infer/playground.html): every byte gets a glyph and a kind, nothing is dropped.
// Valid UTF-8 shows its character on the lead byte and a thin bar on each continuation byte;
// control and invisible characters a picture or U+XXXX; bytes that are not UTF-8 \xNN.
"use strict";
const hex = (v, w) => v.toString(16).toUpperCase().padStart(w, "0");
const escapeHtml = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}]|(?! )\p{Zs}/u;

function utf8Length(bytes, i) {
  // length of the valid UTF-8 sequence starting at bytes[i], 0 if none starts there
  const c = bytes[i], n = bytes.length;
  if (c < 0x80) return 1;
  let len, lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) { len = 3; if (c === 0xe0) lo = 0xa0; if (c === 0xed) hi = 0x9f; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; if (c === 0xf0) lo = 0x90; if (c === 0xf4) hi = 0x8f; }
  else return 0;
  if (i + len > n || bytes[i + 1] < lo || bytes[i + 1] > hi) return 0;
  for (let k = 2; k < len; k++) if (bytes[i + k] < 0x80 || bytes[i + k] > 0xbf) return 0;
  return len;
}

function byteGlyphs(bytes) {
  // Uint8Array [n] -> {glyph: string[n], kind: string[n]}; kind is "" | cont | ctrl | bad | nl
  const n = bytes.length, glyph = new Array(n), kind = new Array(n);
  for (let i = 0; i < n;) {
    const len = utf8Length(bytes, i);
    if (len === 0) { glyph[i] = "\\x" + hex(bytes[i], 2); kind[i] = "bad"; i++; continue; }
    let cp = len === 1 ? bytes[i] : bytes[i] & (0xff >> (len + 1));
    for (let k = 1; k < len; k++) { cp = (cp << 6) | (bytes[i + k] & 0x3f); glyph[i + k] = ""; kind[i + k] = "cont"; }
    const ch = String.fromCodePoint(cp);
    kind[i] = "ctrl";
    if (cp === 10) { glyph[i] = "↵"; kind[i] = "nl"; }
    else if (cp === 9) glyph[i] = "⇥";
    else if (cp < 32) glyph[i] = String.fromCharCode(0x2400 + cp);
    else if (cp === 127) glyph[i] = "␡";
    else if (INVISIBLE.test(ch)) glyph[i] = "U+" + hex(cp, 4);
    else { glyph[i] = /\p{M}/u.test(ch) ? "◌" + ch : ch; kind[i] = ""; }
    i += len;
  }
  return { glyph, kind };
}

function heat(v, max) {
  // white -> amber -> red as v goes 0 -> max; transparent where there is no value
  if (!Number.isFinite(v)) return "transparent";
  const t = Math.min(Math.max(v / max, 0), 1);
  const [a, c] = t < 0.5 ? [[255, 255, 255], [255, 214, 102]] : [[255, 214, 102], [220, 38, 38]];
  const u = t < 0.5 ? t * 2 : t * 2 - 1;
  return `rgb(${a.map((x, j) => Math.round(x + (c[j] - x) * u)).join(",")})`;
}
