"""The page `vaekit serve` shows at /: plain HTML and JavaScript, no build step, nothing from the network."""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vaekit</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:960px;margin:1.5em auto;padding:0 1em;color:#222}
header{display:flex;gap:1em;align-items:center;flex-wrap:wrap} h1{margin:0 1em 0 0;font-size:1.6em}
nav button{border:1px solid #ccc;background:#f6f6f6;padding:.4em .9em;cursor:pointer;border-radius:4px}
nav button.active{background:#2b6cb0;color:#fff;border-color:#2b6cb0}
section{display:none;margin-top:1em} section.active{display:block}
textarea,input[type=text]{width:100%;box-sizing:border-box;font:inherit;padding:.4em}
label{display:inline-block;margin:.4em 1em .4em 0} .row{margin:.5em 0}
button.go{background:#2b6cb0;color:#fff;border:0;padding:.5em 1.2em;border-radius:4px;cursor:pointer;font-size:1em}
ol li,ul li{margin:.35em 0} .sim{display:inline-block;min-width:3.2em;text-align:center;border-radius:3px;
padding:0 .3em;margin-right:.5em;font-size:.85em;background:#edf2f7} .muted{color:#777} .error{color:#c53030}
#explorer{border:1px solid #ccc;cursor:crosshair;touch-action:none} img.grid{image-rendering:pixelated;max-width:100%}
</style></head>
<body>
<header><h1>vaekit</h1>
<label>model <select id="model"></select></label>
<label>API key <input id="apikey" type="password" size="18" placeholder="if the server wants one"></label>
</header>
<p id="about" class="muted"></p>
<nav id="tabs"></nav>

<section id="tab-vary">
  <div class="row"><textarea id="text" rows="3" placeholder="Paste a text to vary"></textarea></div>
  <div class="row">
    <label>n <input id="n" type="number" min="1" value="5" style="width:4em"></label>
    <label>temperature <input id="temperature" type="number" min="0" step="0.1" value="0.5" style="width:4.5em"></label>
    <label>decoding <select id="strategy"><option>sample</option><option>greedy</option><option>beam</option></select></label>
    <label id="label-box" hidden>label <select id="label"></select></label>
    <label id="tags-box" hidden>tags <input id="tags" type="text" placeholder="a, b" style="width:12em"></label>
    <label id="condition-box" hidden>steer toward <input id="condition" type="text" placeholder="a text (default: the input)" style="width:16em"></label>
  </div>
  <div class="row">
    <label>required words <input id="require" type="text" placeholder="comma separated" style="width:14em"></label>
    <label>banned words <input id="ban" type="text" placeholder="comma separated" style="width:14em"></label>
  </div>
  <button id="generate" class="go">Generate</button>
  <p id="vary-status" class="muted"></p>
  <ol id="variations"></ol>
</section>

<section id="tab-interpolate">
  <div class="row"><input id="from" type="text" placeholder="From this text"></div>
  <div class="row"><input id="to" type="text" placeholder="to this text"></div>
  <label>steps <input id="steps" type="number" min="2" value="7" style="width:4em"></label>
  <button id="interpolate" class="go">Interpolate</button>
  <p id="interp-status" class="muted"></p>
  <ol id="path"></ol>
</section>

<section id="tab-samples">
  <label>n <input id="sample-n" type="number" min="1" value="16" style="width:4em"></label>
  <label>temperature <input id="sample-temperature" type="number" min="0" step="0.1" value="1" style="width:4.5em"></label>
  <label id="sample-condition-box" hidden>write like <input id="sample-condition" type="text" placeholder="a text (needed by this model)" style="width:16em"></label>
  <button id="sample" class="go">Sample</button>
  <p id="sample-status" class="muted"></p>
  <div id="samples"></div>
</section>

<section id="tab-explorer">
  <p class="muted">Move over the square: each point is a latent code (dimensions <span id="dims">1 and 2</span>,
  from -3 to 3 prior standard deviations; the others stay at 0), decoded as you go.</p>
  <div style="display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap">
    <canvas id="explorer" width="300" height="300"></canvas>
    <div><img id="decoded" class="grid" alt="decoded image" width="168" height="168"><p id="zval" class="muted"></p></div>
  </div>
</section>

<script>
const $ = (id) => document.getElementById(id);
let models = [], current = null;
const words = (s) => s.split(",").map(w => w.trim()).filter(Boolean);

async function api(path, body) {
  const headers = {"Content-Type": "application/json"};
  const key = $("apikey").value.trim();
  if (key) headers["Authorization"] = "Bearer " + key;
  const response = await fetch(path, body === undefined ? {headers} :
                               {method: "POST", headers, body: JSON.stringify(body)});
  const data = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function show(tabs) {
  const nav = $("tabs"); nav.innerHTML = "";
  tabs.forEach(([id, title], i) => {
    const b = document.createElement("button"); b.textContent = title; b.dataset.tab = id;
    b.onclick = () => activate(id); nav.appendChild(b);
  });
  activate(tabs[0][0]);
}
function activate(id) {
  document.querySelectorAll("section").forEach(s => s.classList.toggle("active", s.id === "tab-" + id));
  document.querySelectorAll("nav button").forEach(b => b.classList.toggle("active", b.dataset.tab === id));
}

function choose(name) {
  current = models.find(m => m.name === name);
  const lim = current.limits;
  $("about").textContent = `${current.type} model, ${current.latent_dim}-dimensional latent` +
    ` (limits: ${lim.max_text_chars} characters, n up to ${lim.max_n})`;
  $("n").max = lim.max_n; $("sample-n").max = lim.max_n;
  const conditions = current.conditions || {};
  $("label-box").hidden = !conditions.labels; $("tags-box").hidden = !conditions.tags;
  $("condition-box").hidden = $("sample-condition-box").hidden = !conditions.text_embedding;
  if (conditions.labels) $("label").innerHTML = '<option value="">(keep)</option>' +
    conditions.labels.map(l => `<option>${l}</option>`).join("");
  if (current.type === "text") show([["vary", "Vary a text"], ["interpolate", "Interpolate"], ["samples", "Samples"]]);
  else show([["samples", "Samples"], ["explorer", "Latent explorer"]]);
  $("dims").textContent = current.latent_dim >= 2 ? "1 and 2" : "1";
}

async function start() {
  try {
    const data = await api("/v1/models");
    models = data.models;
    $("model").innerHTML = models.map(m => `<option>${m.name}</option>`).join("");
    $("model").onchange = () => choose($("model").value);
    choose(models[0].name);
  } catch (e) {
    $("about").innerHTML = `<span class="error">${e.message}</span> (enter the API key, then reload)`;
    $("apikey").onchange = start;
  }
}

function item(text, similarity) {
  const li = document.createElement("li");
  if (similarity !== undefined) {
    const s = document.createElement("span"); s.className = "sim";
    s.title = "similarity to the input"; s.textContent = similarity === null ? "-" : similarity.toFixed(2);
    li.appendChild(s);
  }
  li.appendChild(document.createTextNode(text));
  return li;
}

$("generate").onclick = async () => {
  const out = $("variations"), status = $("vary-status");
  out.innerHTML = ""; status.className = "muted"; status.textContent = "generating...";
  const body = {model: current.name, text: $("text").value, n: parseInt($("n").value || "5"),
                temperature: parseFloat($("temperature").value || "0.5"), strategy: $("strategy").value,
                require: words($("require").value), ban: words($("ban").value)};
  if (!$("label-box").hidden && $("label").value) body.label = $("label").value;
  if (!$("tags-box").hidden && $("tags").value.trim()) body.tags = words($("tags").value);
  if (!$("condition-box").hidden && $("condition").value.trim()) body.condition_text = $("condition").value;
  try {
    const data = await api("/v1/vary", body);
    data.variations.forEach(v => out.appendChild(item(v.text, v.similarity)));
    status.textContent = `${data.variations.length} of ${data.requested} variations` +
      ` (${data.passed} of ${data.drawn} candidates met the constraints)`;
  } catch (e) { status.className = "error"; status.textContent = e.message; }
};

$("interpolate").onclick = async () => {
  const out = $("path"), status = $("interp-status");
  out.innerHTML = ""; status.className = "muted"; status.textContent = "decoding...";
  try {
    const data = await api("/v1/interpolate", {model: current.name, a: $("from").value, b: $("to").value,
                                               steps: parseInt($("steps").value || "7")});
    data.texts.forEach(t => out.appendChild(item(t)));
    status.textContent = "";
  } catch (e) { status.className = "error"; status.textContent = e.message; }
};

$("sample").onclick = async () => {
  const out = $("samples"), status = $("sample-status");
  out.innerHTML = ""; status.className = "muted"; status.textContent = "sampling...";
  try {
    const body = {model: current.name, n: parseInt($("sample-n").value || "16"),
                  temperature: parseFloat($("sample-temperature").value || "1")};
    if (!$("sample-condition-box").hidden) body.condition_text = $("sample-condition").value;
    const data = await api("/v1/sample", body);
    if (data.grid) out.innerHTML = `<img class="grid" alt="samples" src="${data.grid}">`;
    else { const ol = document.createElement("ol"); data.texts.forEach(t => ol.appendChild(item(t))); out.appendChild(ol); }
    status.textContent = "";
  } catch (e) { status.className = "error"; status.textContent = e.message; }
};

const canvas = $("explorer"), ctx = canvas.getContext("2d");
function grid() {
  ctx.fillStyle = "#fafafa"; ctx.fillRect(0, 0, 300, 300); ctx.strokeStyle = "#ddd";
  for (let i = 0; i <= 6; i++) { const p = i * 50; ctx.beginPath(); ctx.moveTo(p, 0); ctx.lineTo(p, 300); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(0, p); ctx.lineTo(300, p); ctx.stroke(); }
}
grid();
let pending = false, queued = null;
async function explore(event) {
  if (!current || current.type !== "image") return;
  const r = canvas.getBoundingClientRect();
  const x = (event.clientX - r.left) / r.width * 6 - 3, y = 3 - (event.clientY - r.top) / r.height * 6;
  const z = new Array(current.latent_dim).fill(0); z[0] = x; if (z.length > 1) z[1] = y;
  if (pending) { queued = event; return; }
  pending = true;
  try {
    const data = await api("/v1/decode", {model: current.name, z});
    $("decoded").src = data.image; $("zval").textContent = `z = (${x.toFixed(2)}, ${y.toFixed(2)})`;
    grid(); ctx.fillStyle = "#2b6cb0"; ctx.beginPath();
    ctx.arc((x + 3) / 6 * 300, (3 - y) / 6 * 300, 4, 0, 7); ctx.fill();
  } catch (e) { $("zval").textContent = e.message; }
  pending = false;
  if (queued) { const next = queued; queued = null; explore(next); }
}
canvas.addEventListener("pointermove", explore);
canvas.addEventListener("pointerdown", explore);
start();
</script>
</body></html>
"""
