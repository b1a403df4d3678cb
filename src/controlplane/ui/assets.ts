/**
 * The dashboard's files, served by the API server at `/` and `/ui/`: the page and its style sheet live here as
 * strings, the script is app.ts compiled next to this file (so `npm run build` produces all three in dist/).
 */
import { readFileSync } from 'node:fs';

export interface UiAsset {
  contentType: string;
  body: Buffer;
}

const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Portico</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/style.css">
<script type="module" src="/ui/app.js"></script>
</head>
<body>
<header class="top">
  <h1>Portico <span class="sub">control plane</span></h1>
  <form id="token-form" class="token" autocomplete="off">
    <label for="token-input">API token</label>
    <input id="token-input" type="password" autocomplete="off" placeholder="--api-token, if set" spellcheck="false">
    <button type="submit">Use</button>
    <button type="button" id="token-clear">Forget</button>
    <span id="token-state" class="muted"></span>
  </form>
</header>
<main>
  <div id="alert" class="alert" role="alert" hidden></div>
  <div id="notice" class="notice" role="status" aria-live="polite"></div>
  <section aria-labelledby="overview-title">
    <div class="section-head">
      <h2 id="overview-title">Overview</h2>
      <span id="updated" class="muted"></span>
      <button type="button" id="refresh">Refresh</button>
    </div>
    <div id="overview" class="cards"></div>
  </section>
  <section aria-labelledby="mappings-title">
    <div class="section-head">
      <h2 id="mappings-title">Mappings</h2>
      <input id="filter" type="search" placeholder="Filter by name, prefix, service or label" aria-label="Filter mappings">
      <button type="button" id="new-mapping" class="primary">New mapping</button>
    </div>
    <div class="table-wrap">
      <table id="mappings">
        <thead><tr>
          <th>Name</th><th>Prefix</th><th>Service</th><th class="num">Weight</th><th>Labels</th>
          <th class="num" title="2xx responses from the upstream">OK</th><th class="num">4xx</th><th class="num">5xx</th>
          <th class="num" title="healthy / total upstream members">Healthy</th>
          <th title="whether the AuthService checks this mapping's requests">Auth</th>
          <th title="rate limit label groups of the RateLimitService's domain, each one descriptor">Rate limits</th>
          <th><span class="visually-hidden">Actions</span></th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
  <section aria-labelledby="ratelimits-title">
    <div class="section-head">
      <h2 id="ratelimits-title">Rate limits</h2>
      <span id="ratelimits-note" class="muted"></span>
      <button type="button" id="new-ratelimit" class="primary">New rate limit</button>
    </div>
    <div class="table-wrap">
      <table id="ratelimits">
        <thead><tr>
          <th>RateLimit</th><th>Limit</th><th>Domain</th><th title="descriptor entries, in order; * counts each value on its own">Pattern</th>
          <th class="num">Rate</th><th title="LogOnly counts but never refuses">Action</th>
          <th class="num" title="requests counted against the limit since this process started">Hits</th>
          <th class="num" title="requests answered 429 since this process started">Rejected</th>
          <th><span class="visually-hidden">Actions</span></th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
  <section aria-labelledby="nodes-title">
    <div class="section-head">
      <h2 id="nodes-title">Data planes</h2>
      <span id="nodes-note" class="muted"></span>
    </div>
    <div class="table-wrap">
      <table id="nodes">
        <thead><tr>
          <th>Node</th><th>Cluster</th><th class="num" title="open xDS streams">Streams</th>
          <th class="num" title="the configuration version it has acknowledged in every type">Serving</th>
          <th title="the last configuration it refused (NACK), with its reason">Refused</th><th>Last seen</th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
  <section aria-labelledby="history-title">
    <div class="section-head"><h2 id="history-title">History</h2></div>
    <ol id="history" class="history"></ol>
    <button type="button" id="history-more" hidden>Older versions</button>
  </section>
</main>
<dialog id="editor" aria-labelledby="editor-title">
  <form id="editor-form" method="dialog" novalidate>
    <h2 id="editor-title">Mapping</h2>
    <ul id="editor-errors" class="form-errors" role="alert"></ul>
    <div class="field"><label for="ed-name">Name</label><input id="ed-name" name="name" required spellcheck="false"><p class="error" data-error-for="name"></p></div>
    <div class="field"><label for="ed-prefix">Prefix</label><input id="ed-prefix" name="prefix" placeholder="/user/" spellcheck="false"><p class="error" data-error-for="prefix"></p></div>
    <div class="field"><label for="ed-service">Service</label><input id="ed-service" name="service" placeholder="usersvc:8080 or https://api.example.com" spellcheck="false"><p class="error" data-error-for="service"></p></div>
    <div class="field"><label for="ed-rewrite">Rewrite</label><input id="ed-rewrite" name="rewrite" placeholder="/ (the default)" spellcheck="false"><p class="error" data-error-for="rewrite"></p></div>
    <div class="field"><label for="ed-labels">Labels</label><input id="ed-labels" name="labels" placeholder="team=payments, tier=1" spellcheck="false"><p class="error" data-error-for="labels"></p></div>
    <div class="field"><label for="ed-extra">Other spec fields (JSON)</label>
      <textarea id="ed-extra" name="extra" rows="8" spellcheck="false" placeholder='{ "timeout_ms": 10000, "weight": 10 }'></textarea>
      <p class="hint">Any other Mapping field (docs/control-plane.md), e.g. <code>"rewrite": ""</code> to keep the path.</p>
      <p class="error" data-error-for="extra"></p></div>
    <div class="buttons">
      <button type="button" id="editor-validate">Validate</button>
      <span class="spacer"></span>
      <button type="button" id="editor-cancel">Cancel</button>
      <button type="submit" id="editor-save" class="primary">Save</button>
    </div>
  </form>
</dialog>
<dialog id="rl-editor" aria-labelledby="rl-editor-title">
  <form id="rl-editor-form" method="dialog" novalidate>
    <h2 id="rl-editor-title">Rate limit</h2>
    <ul id="rl-editor-errors" class="form-errors" role="alert"></ul>
    <div class="field"><label for="rl-name">Name</label><input id="rl-name" name="name" required spellcheck="false"><p class="error" data-error-for="name"></p></div>
    <div class="field"><label for="rl-domain">Domain</label><input id="rl-domain" name="domain" placeholder="ambassador (the default)" spellcheck="false"><p class="error" data-error-for="domain"></p></div>
    <div class="field"><label for="rl-limits">Limits (JSON)</label>
      <textarea id="rl-limits" name="limits" rows="8" spellcheck="false" placeholder='[{ "pattern": [{ "remote_address": "*" }], "rate": 10, "unit": "minute" }]'></textarea>
      <p class="hint">Each <code>{name, pattern, rate, unit, action}</code>: the pattern's keys are those Mapping labels produce (docs/control-plane.md).</p>
      <p class="error" data-error-for="limits"></p></div>
    <div class="buttons">
      <span class="spacer"></span>
      <button type="button" id="rl-editor-cancel">Cancel</button>
      <button type="submit" id="rl-editor-save" class="primary">Save</button>
    </div>
  </form>
</dialog>
<dialog id="confirm" aria-labelledby="confirm-title">
  <form method="dialog">
    <h2 id="confirm-title"></h2>
    <p id="confirm-text"></p>
    <div class="buttons"><span class="spacer"></span><button value="cancel">Cancel</button><button value="ok" id="confirm-ok" class="danger">OK</button></div>
  </form>
</dialog>
<noscript>The dashboard needs JavaScript. The API itself is at /api/v1/ and /ambassador/ (docs/control-plane.md).</noscript>
</body>
</html>
`;

const STYLE_CSS = `:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --panel: #fff; --text: #1c2230; --muted: #687086; --line: #dde1e8;
  --accent: #2f5fd0; --ok: #1b7f4b; --warn: #a86400; --bad: #c0352b;
  --on-accent: #fff; --add: #e3f6e8; --del: #fbe5e3; --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #14171d; --panel: #1c2028; --text: #e3e6ec; --muted: #99a1b3; --line: #2e3440;
    --accent: #7fa2ff; --on-accent: #0b1020; --ok: #4cc38a; --warn: #e0a33a; --bad: #ff7a6e; --add: #173524; --del: #3d1d1b; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
.top { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; justify-content: space-between;
  padding: 10px 24px; background: var(--panel); border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; }
h1 .sub { font-weight: 400; color: var(--muted); }
h2 { font-size: 16px; margin: 0; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 24px 48px; }
section { margin-top: 20px; }
.section-head { display: flex; gap: 12px; align-items: center; margin-bottom: 10px; }
.section-head h2 { margin-right: auto; }
.muted, .hint { color: var(--muted); }
.hint { font-size: 12px; margin: 4px 0 0; }
code, pre, td.mono { font-family: var(--mono); font-size: 12.5px; }
input, textarea, button { font: inherit; color: inherit; }
input, textarea { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 5px 8px; }
textarea { width: 100%; font-family: var(--mono); font-size: 12.5px; resize: vertical; }
input:focus-visible, textarea:focus-visible, button:focus-visible { outline: 2px solid var(--accent); outline-offset: 1px; }
[aria-invalid="true"] { border-color: var(--bad); }
button { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 5px 12px; cursor: pointer; }
button:hover { border-color: var(--accent); }
button.primary { background: var(--accent); border-color: var(--accent); color: var(--on-accent); }
button.danger { background: var(--bad); border-color: var(--bad); color: #fff; }
button.small { padding: 2px 8px; font-size: 12px; }
button:disabled { opacity: .6; cursor: default; }
.token { display: flex; gap: 6px; align-items: center; }
.token input { width: 200px; }
#filter { width: 300px; max-width: 40vw; }
.token.needed input { border-color: var(--bad); }
.alert { padding: 10px 14px; border-radius: 8px; background: var(--del); border: 1px solid var(--bad); margin-bottom: 8px; }
.notice:empty { display: none; }
.notice { padding: 8px 14px; border-radius: 8px; background: var(--add); border: 1px solid var(--ok); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(190px, 1fr)); gap: 12px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 22px; font-weight: 600; margin: 2px 0; }
.card .detail { color: var(--muted); font-size: 12px; }
.good { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); }
.table-wrap { overflow-x: auto; background: var(--panel); border: 1px solid var(--line); border-radius: 10px; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
tbody tr:last-child td { border-bottom: 0; }
tbody tr:hover { background: color-mix(in srgb, var(--accent) 6%, transparent); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.actions { white-space: nowrap; text-align: right; }
td.empty { color: var(--muted); text-align: center; padding: 24px; }
.chip.inactive { opacity: 0.55; text-decoration: line-through; }
.chip { display: inline-block; font-family: var(--mono); font-size: 11.5px; padding: 0 6px; margin: 1px 2px 1px 0;
  border: 1px solid var(--line); border-radius: 10px; }
.history { list-style: none; padding: 0; margin: 0; display: grid; gap: 8px; }
.history > li { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 8px 12px; }
.history summary { cursor: pointer; display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; }
.history summary .version { font-weight: 600; min-width: 90px; }
.history summary .summary { flex: 1; }
.badge { font-size: 11px; padding: 1px 7px; border-radius: 10px; border: 1px solid currentColor; }
.op { font-family: var(--mono); font-size: 12px; font-weight: 600; margin-right: 6px; }
.op-create { color: var(--ok); } .op-update { color: var(--warn); } .op-delete { color: var(--bad); }
.diff-entry h3 { font-size: 13px; margin: 12px 0 4px; font-weight: 500; }
pre.diff { margin: 0; padding: 6px 0; overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
pre.diff span { display: block; padding: 0 10px; white-space: pre; }
pre.diff .add { background: var(--add); } pre.diff .del { background: var(--del); }
pre.diff .gap { color: var(--muted); }
dialog { border: 1px solid var(--line); border-radius: 12px; padding: 18px 20px; width: min(640px, 94vw);
  background: var(--panel); color: var(--text); }
dialog::backdrop { background: rgb(0 0 0 / .35); }
.field { margin: 10px 0; }
.field label { display: block; font-weight: 600; font-size: 13px; margin-bottom: 3px; }
.field input { width: 100%; }
.error { color: var(--bad); font-size: 12.5px; margin: 3px 0 0; white-space: pre-wrap; }
.error:empty { display: none; }
.form-errors { color: var(--bad); padding-left: 18px; margin: 8px 0; }
.form-errors:empty { display: none; }
.buttons { display: flex; gap: 8px; margin-top: 14px; align-items: center; }
.spacer { flex: 1; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); }
`;

const SOURCES: Record<string, [contentType: string, load: () => string | Buffer]> = {
  'index.html': ['text/html; charset=utf-8', () => INDEX_HTML],
  'style.css': ['text/css; charset=utf-8', () => STYLE_CSS],
  'app.js': ['text/javascript; charset=utf-8', () => readFileSync(new URL('./app.js', import.meta.url))],
};
const loaded = new Map<string, UiAsset>();

/** One of the dashboard's files by name (the API server routes only these names here). */
export function uiAsset(file: string): UiAsset {
  let asset = loaded.get(file);
  if (asset === undefined) {
    const source = SOURCES[file];
    if (source === undefined) throw new Error(`no dashboard file ${file}`);
    asset = { contentType: source[0], body: Buffer.from(source[1]()) };
    loaded.set(file, asset);
  }
  return asset;
}
