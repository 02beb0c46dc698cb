//! The aggregator's web page, served whole by the binary (no build step): a search box with
//! the selectors, a time range, a histogram of the matching lines over time (SVG bars drawn
//! from `/api/histogram`), the lines from `/api/query` with a "more" button that follows the
//! cursor, and a live-tail toggle that opens `/api/tail` (Server-Sent Events).

pub const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Logs</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; }
 header { background: #1d3557; color: #fff; padding: .6em 1em; }
 header h1 { font-size: 1.1em; margin: 0; display: inline; }
 form { padding: .6em 1em; display: flex; flex-wrap: wrap; gap: .4em; align-items: center;
        background: #f1f4f8; border-bottom: 1px solid #ccd; }
 input[name=q] { flex: 1 1 20em; padding: .35em; }
 input, select, button { font: inherit; }
 #summary { padding: .4em 1em; color: #555; }
 #histogram { display: block; width: calc(100% - 2em); height: 90px; margin: 0 1em; }
 #histogram rect { fill: #457b9d; }
 #histogram rect:hover { fill: #e63946; }
 table { border-collapse: collapse; width: 100%; font: 12.5px/1.35 ui-monospace, monospace; }
 td { padding: .15em .6em; vertical-align: top; border-bottom: 1px solid #eee; }
 td.ts { white-space: nowrap; color: #666; }
 td.lv { white-space: nowrap; font-weight: bold; }
 .emergency, .alert, .critical, .error { color: #c1121f; }
 .warning { color: #b7791f; }
 .debug { color: #888; }
 td.msg { white-space: pre-wrap; word-break: break-word; }
 #more { margin: .6em 1em; }
 .err { color: #c1121f; padding: .4em 1em; }
</style>
</head>
<body>
<header><h1>Logs</h1> · <a style="color:#cde" href="/metrics">metrics</a> · <a style="color:#cde" href="/health">health</a></header>
<form id="f">
 <input name="q" placeholder='words, "a phrase", -not, prefix*' autofocus>
 <input name="service" placeholder="service" size="10">
 <input name="host" placeholder="host" size="10">
 <select name="level">
  <option value="">any level</option><option>debug</option><option>info</option>
  <option>notice</option><option>warning</option><option>error</option><option>critical</option>
 </select>
 <input name="regex" placeholder="regex" size="12">
 <select name="range">
  <option value="now-15m">last 15 minutes</option><option value="now-1h" selected>last hour</option>
  <option value="now-6h">last 6 hours</option><option value="now-1d">last day</option>
  <option value="now-7d">last 7 days</option>
 </select>
 <button type="submit">Search</button>
 <label><input type="checkbox" id="live"> live tail</label>
</form>
<div id="summary"></div>
<svg id="histogram" preserveAspectRatio="none"></svg>
<div id="error" class="err"></div>
<table><tbody id="lines"></tbody></table>
<button id="more" hidden>more</button>
<script>
const f = document.getElementById('f');
const linesEl = document.getElementById('lines');
const more = document.getElementById('more');
let cursor = null, tail = null;

function params(extra) {
  const p = new URLSearchParams();
  for (const name of ['q', 'service', 'host', 'level', 'regex']) {
    const v = f.elements[name].value.trim();
    if (v) p.set(name, v);
  }
  p.set('from', f.elements.range.value);
  p.set('to', String(Date.now() + 60000));
  for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
  return p;
}

function row(l, top) {
  const tr = document.createElement('tr');
  const cells = [[new Date(l.ts).toISOString().replace('T', ' ').replace('Z', ''), 'ts'],
                 [l.level, 'lv ' + l.level], [l.service + '@' + l.host, 'ts'], [l.message, 'msg']];
  for (const [text, cls] of cells) {
    const td = document.createElement('td');
    td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
  }
  if (top) linesEl.insertBefore(tr, linesEl.firstChild); else linesEl.appendChild(tr);
}

async function get(path, p) {
  const r = await fetch(path + '?' + p.toString());
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
  return body;
}

function drawHistogram(h) {
  const svg = document.getElementById('histogram');
  const max = Math.max(1, ...h.counts);
  const w = 1000 / h.counts.length;
  svg.setAttribute('viewBox', '0 0 1000 100');
  svg.innerHTML = h.counts.map((c, i) => {
    const height = 100 * c / max;
    const t = new Date(h.from + i * h.step).toISOString();
    return `<rect x="${i * w}" y="${100 - height}" width="${Math.max(w - 1, 1)}" height="${height}"><title>${t}: ${c}</title></rect>`;
  }).join('');
}

// Each search has a number: the answers of one overtaken by a newer are dropped.
let generation = 0;
async function search(append) {
  const mine = ++generation;
  document.getElementById('error').textContent = '';
  try {
    if (!append) {
      cursor = null;
      linesEl.innerHTML = '';
      const h = await get('/api/histogram', params());
      if (mine !== generation) return;
      drawHistogram(h);
    }
    const a = await get('/api/query', params(cursor ? {cursor} : {}));
    if (mine !== generation) return;
    document.getElementById('summary').textContent = `${a.total} matching lines`;
    a.lines.forEach(l => row(l, false));
    cursor = a.cursor || null;
    more.hidden = !cursor;
  } catch (e) {
    document.getElementById('error').textContent = e.message;
  }
}

f.addEventListener('submit', e => { e.preventDefault(); search(false); if (tail) startTail(); });
more.addEventListener('click', () => search(true));

function startTail() {
  if (tail) tail.close();
  const p = params();
  p.delete('from'); p.delete('to');
  tail = new EventSource('/api/tail?' + p.toString());
  tail.addEventListener('line', e => row(JSON.parse(e.data), true));
}
document.getElementById('live').addEventListener('change', e => {
  if (e.target.checked) startTail(); else if (tail) { tail.close(); tail = null; }
});
search(false);
</script>
</body>
</html>
"##;
