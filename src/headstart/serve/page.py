"""The web page at ``/``: choose or drop images, see each with its top-k classes as bars.

Self-contained (inline CSS and JS, no CDN, no external fonts): it works offline and leaks
nothing to third parties. Thumbnails are local object URLs; only the image bytes are sent.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>headstart</title>
<style>
 body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
 h1{font-size:1.4rem;margin-bottom:.2rem} #meta{color:#666;margin-bottom:1rem}
 #drop{border:2px dashed #999;border-radius:8px;padding:2rem;text-align:center;cursor:pointer}
 #drop.over{background:#eef6ff;border-color:#2b7de9}
 #results{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:1rem;margin-top:1rem}
 .card{border:1px solid #ddd;border-radius:8px;padding:.6rem}
 .card img{width:100%;height:10rem;object-fit:contain;background:#f6f6f6}
 .name{font-size:.8rem;color:#555;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
 .row{display:flex;align-items:center;gap:.4rem;font-size:.85rem;margin:.15rem 0}
 .label{width:40%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
 .bar{flex:1;background:#eee;height:.8rem;border-radius:3px}
 .fill{background:#2b7de9;height:100%;border-radius:3px}
 .pct{width:3.2rem;text-align:right;font-variant-numeric:tabular-nums}
 .error{color:#b00020;font-size:.85rem}
</style></head>
<body>
<h1>headstart classifier</h1>
<div id="meta">loading model facts...</div>
<label id="drop">Drop images here or <u>choose files</u>
 <input id="files" type="file" accept="image/*" multiple hidden></label>
<div id="results"></div>
<script>
"use strict";
const drop = document.getElementById("drop"), input = document.getElementById("files");
const results = document.getElementById("results");
fetch("info").then(r => r.json()).then(info => {
  document.getElementById("meta").textContent =
    `${info.arch} (${info.backend}), ${info.task}, ${info.classes.length} classes: ${info.classes.join(", ")}`;
});
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;   // textContent: names are never parsed as HTML
  return e;
}
async function classify(file) {
  const card = el("div", "card"), img = el("img"), body = el("div", "out", "classifying...");
  img.src = URL.createObjectURL(file); img.alt = file.name;
  card.append(img, el("div", "name", file.name), body);
  results.prepend(card);
  const form = new FormData(); form.append("file", file, file.name);
  try {
    const r = await fetch("predict?top_k=3", {method: "POST", body: form});
    const data = await r.json();
    body.textContent = "";
    if (!r.ok) { body.append(el("div", "error", data.error || r.statusText)); card.dataset.state = "error"; return; }
    for (const t of data.predictions[0].top) {
      const row = el("div", "row"), bar = el("div", "bar"), fill = el("div", "fill");
      fill.style.width = (100 * t.probability).toFixed(1) + "%";
      bar.append(fill);
      row.append(el("span", "label", t.class), bar, el("span", "pct", (100 * t.probability).toFixed(1) + "%"));
      body.append(row);
    }
    card.dataset.state = "done";
  } catch (e) { body.textContent = ""; body.append(el("div", "error", String(e))); card.dataset.state = "error"; }
}
function handle(files) { for (const f of files) classify(f); }
input.addEventListener("change", () => handle(input.files));
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); handle(e.dataTransfer.files); });
</script>
</body></html>
"""
