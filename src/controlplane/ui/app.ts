/**
 * The dashboard (runs in the browser; compiled by the project's tsc and served as /ui/app.js). It uses only
 * the JSON API of the server that serves it: /ambassador/health and /ambassador/stats, and /api/v1/* (with
 * /api/v1/stats/ratelimits for the rate limits' counts).
 * Everything shown is set as text (textContent, attributes), never parsed as HTML.
 */

interface Resource {
  apiVersion?: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; resourceVersion?: string; [key: string]: unknown };
  spec: Record<string, unknown>;
}
interface ApiProblem {
  resource?: string;
  path?: string;
  code?: string;
  message: string;
}
interface ApiErrorBody {
  message?: string;
  errors?: ApiProblem[];
}
interface DiffEntry {
  op: 'create' | 'update' | 'delete';
  kind: string;
  name: string;
  before?: Resource;
  after?: Resource;
}
interface VersionInfo {
  version: number;
  created_at: string;
  source: string;
  summary: string;
  diff: DiffEntry[];
}
interface History {
  version: number;
  served: number;
  versions: VersionInfo[];
}
interface MappingStats {
  healthy_members: number;
  total_members: number;
  upstream_ok: number;
  upstream_4xx: number;
  upstream_5xx: number;
}
/** One limit of a RateLimit with its counts, as /api/v1/stats/ratelimits gives it. */
interface LimitStats {
  resource: string;
  index: number;
  hits: number;
  rejected: number;
}
/** A data plane subscribed over xDS, as /api/v1/nodes gives it. */
interface NodeInfo {
  id: string;
  cluster: string;
  streams: number;
  appliedVersion?: string;
  lastSeenAt: string;
  rejected: Record<string, { version: string; message: string; at: string }>;
}
interface Answer<T> {
  status: number;
  body: T;
  etag: string | null;
}

const TOKEN_KEY = 'portico.apiToken';
const REFRESH_MS = 5000;
const HISTORY_PAGE = 20;

const state = {
  reachable: true,
  health: undefined as { hostname: string; version: string } | undefined,
  version: -1,
  served: -1,
  mappings: [] as Resource[],
  /** The AuthService and RateLimitService in use (one of each at most: the translation refuses a second). */
  authService: undefined as Resource | undefined,
  rateLimitService: undefined as Resource | undefined,
  hosts: [] as Resource[],
  tlsContexts: [] as Resource[],
  /** Filter name → its kind (`JWT`, `APIKey`); Mapping name → the Filters it runs (`/api/v1/bindings`). */
  filterKinds: new Map<string, string>(),
  bindings: {} as Record<string, string[]>,
  rateLimits: [] as Resource[],
  limitStats: [] as LimitStats[],
  stats: {} as Record<string, MappingStats>,
  nodes: [] as NodeInfo[],
  history: [] as VersionInfo[],
  historyComplete: false,
  openVersions: new Set<number>(),
  filter: '',
  updatedAt: undefined as Date | undefined,
};

// ---- DOM helpers ------------------------------------------------------------------------------------------

type Child = Node | string | number | null | undefined | false;
type Props = Record<string, string | number | boolean | undefined | ((event: Event) => void)>;

/** Creates an element; strings become text nodes, `on…` props listeners, other props attributes. */
function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, '');
    else if (value !== undefined && value !== false) el.setAttribute(name, String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) el.append(typeof child === 'number' ? String(child) : child);
  return el;
}

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`#${id} missing from the page`);
  return el as T;
}

let noticeTimer: number | undefined;
function notify(message: string): void {
  const notice = byId('notice');
  notice.textContent = message;
  clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => (notice.textContent = ''), 8000);
}

function showAlert(message: string | undefined): void {
  const alert = byId('alert');
  alert.textContent = message ?? '';
  alert.hidden = message === undefined;
}

// ---- the API ----------------------------------------------------------------------------------------------

async function call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer<T>> {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const res = await fetch(path, {
    method,
    cache: 'no-store',
    headers: {
      accept: 'application/json',
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = { message: text };
  }
  if (res.status === 401) needToken((parsed as ApiErrorBody | undefined)?.message);
  return { status: res.status, body: parsed as T, etag: res.headers.get('etag') };
}

function problemsOf(answer: Answer<unknown>): ApiProblem[] {
  const body = answer.body as ApiErrorBody | undefined;
  if (body?.errors?.length) return body.errors;
  return [{ message: body?.message ?? `HTTP ${answer.status}` }];
}

function describeProblem(p: ApiProblem): string {
  return [p.resource, p.path].filter(Boolean).join(' ') + (p.resource || p.path ? ': ' : '') + p.message;
}

// ---- the token --------------------------------------------------------------------------------------------

function needToken(message: string | undefined): void {
  const hasToken = Boolean(sessionStorage.getItem(TOKEN_KEY));
  showAlert(
    `401 Unauthorized: ${message ?? 'this call needs the API token'}. ` +
      (hasToken ? 'The token entered above was refused; check it.' : 'Enter the token (portico start --api-token) above and try again.'),
  );
  byId('token-form').classList.add('needed');
  byId('token-input').focus();
}

function renderTokenState(): void {
  const set = Boolean(sessionStorage.getItem(TOKEN_KEY));
  byId('token-state').textContent = set ? 'token set for this tab' : '';
  byId('token-clear').hidden = !set;
}

function setupToken(): void {
  const input = byId<HTMLInputElement>('token-input');
  byId('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    input.value = '';
    byId('token-form').classList.remove('needed');
    showAlert(undefined);
    renderTokenState();
  });
  byId('token-clear').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    renderTokenState();
  });
  renderTokenState();
}

// ---- loading ----------------------------------------------------------------------------------------------

/** The mappings and the first page of history: after a change, and whenever the version moved. */
async function loadConfig(): Promise<void> {
  const [list, auth, rls, rateLimits, filters, bindings, history, hosts, tlsContexts] = await Promise.all([
    call<{ version: number; items: Resource[] }>('GET', '/api/v1/mappings'),
    call<{ items: Resource[] }>('GET', '/api/v1/authservices'),
    call<{ items: Resource[] }>('GET', '/api/v1/ratelimitservices'),
    call<{ items: Resource[] }>('GET', '/api/v1/ratelimits'),
    call<{ items: Resource[] }>('GET', '/api/v1/filters'),
    call<{ mappings: Record<string, string[]> }>('GET', '/api/v1/bindings'),
    call<History>('GET', `/api/v1/history?limit=${HISTORY_PAGE}`),
    call<{ items: Resource[] }>('GET', '/api/v1/hosts'),
    call<{ items: Resource[] }>('GET', '/api/v1/tlscontexts'),
  ]);
  if (hosts.status === 200) state.hosts = hosts.body.items;
  if (tlsContexts.status === 200) state.tlsContexts = tlsContexts.body.items;
  if (list.status === 200) state.mappings = list.body.items;
  if (filters.status === 200) state.filterKinds = new Map(filters.body.items.map((f) => [f.metadata.name, Object.keys(f.spec)[0] ?? '']));
  if (bindings.status === 200) state.bindings = bindings.body.mappings;
  if (auth.status === 200) state.authService = auth.body.items[0];
  if (rls.status === 200) state.rateLimitService = rls.body.items[0];
  if (rateLimits.status === 200) state.rateLimits = rateLimits.body.items;
  if (history.status === 200) {
    state.version = history.body.version;
    state.served = history.body.served;
    state.history = history.body.versions;
    state.historyComplete = history.body.versions.length < HISTORY_PAGE;
  }
  renderMappings();
  renderRateLimits();
  renderHistory();
  renderOverview();
}

async function refresh(): Promise<void> {
  try {
    const [health, modules, stats, limitStats, nodes] = await Promise.all([
      call<{ ok: boolean; hostname: string; version: string }>('GET', '/ambassador/health'),
      call<{ version: number }>('GET', '/api/v1/modules'),
      call<{ mappings: Record<string, MappingStats> }>('GET', '/ambassador/stats'),
      call<{ limits: LimitStats[] }>('GET', '/api/v1/stats/ratelimits'),
      call<{ nodes: NodeInfo[] }>('GET', '/api/v1/nodes'),
    ]);
    if (nodes.status === 200) state.nodes = nodes.body.nodes;
    renderNodes();
    state.reachable = health.status === 200 && health.body.ok;
    state.health = health.body;
    if (stats.status === 200) state.stats = stats.body.mappings;
    if (limitStats.status === 200) state.limitStats = limitStats.body.limits;
    // The modules list is the smallest answer that carries the configuration version.
    if (modules.status === 200 && (modules.body.version !== state.version || state.served !== state.version)) await loadConfig();
    else {
      renderMappings();
      renderRateLimits();
    }
  } catch {
    state.reachable = false;
  }
  state.updatedAt = new Date();
  renderOverview();
}

// ---- overview ---------------------------------------------------------------------------------------------

function card(label: string, value: Child, detail: Child, tone?: 'good' | 'warn' | 'bad'): HTMLElement {
  return h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: `value ${tone ?? ''}` }, value), h('div', { class: 'detail' }, detail));
}

function renderOverview(): void {
  const stats = Object.values(state.stats);
  const sum = (f: (s: MappingStats) => number) => stats.reduce((total, s) => total + f(s), 0);
  const healthy = sum((s) => s.healthy_members);
  const total = sum((s) => s.total_members);
  const inSync = state.served === state.version;
  byId('overview').replaceChildren(
    card(
      'Gateway',
      state.reachable ? 'healthy' : 'unreachable',
      state.health ? `${state.health.hostname} · Portico ${state.health.version}` : 'the API does not answer',
      state.reachable ? 'good' : 'bad',
    ),
    card('Mappings', state.mappings.length, `${new Set(state.mappings.map((m) => String(m.spec.service))).size} services`),
    card(
      'Configuration',
      state.version < 0 ? '–' : `version ${state.version}`,
      inSync ? 'served by the data plane' : `data plane serves version ${state.served}, applying…`,
      inSync ? undefined : 'warn',
    ),
    nodesCard(),
    hostsCard(),
    authCard(),
    rateLimitCard(),
    card('Upstream members', `${healthy} / ${total}`, 'healthy / total, over all mappings', total === 0 ? undefined : healthy === total ? 'good' : healthy === 0 ? 'bad' : 'warn'),
    card(
      'Upstream responses',
      `${sum((s) => s.upstream_ok)} OK`,
      `${sum((s) => s.upstream_4xx)} 4xx · ${sum((s) => s.upstream_5xx)} 5xx, since the process started`,
      sum((s) => s.upstream_5xx) ? 'warn' : undefined,
    ),
  );
  byId('updated').textContent = state.updatedAt ? `updated ${state.updatedAt.toLocaleTimeString()}` : '';
}

function nodesCard(): HTMLElement {
  const connected = state.nodes.filter((n) => n.streams > 0);
  const current = connected.filter((n) => n.appliedVersion === String(state.version)).length;
  const refusing = connected.filter((n) => Object.keys(n.rejected).length > 0).length;
  return card(
    'Data planes',
    `${connected.length} connected`,
    refusing > 0 ? `${refusing} refused a configuration (see Data planes)` : `${current} serving version ${state.version}`,
    refusing > 0 ? 'bad' : current === connected.length ? 'good' : 'warn',
  );
}

/** The data planes over xDS: what each serves, and what it refused and why. */
function renderNodes(): void {
  const rows = state.nodes.map((n) => {
    const refusals = Object.entries(n.rejected).map(([typeUrl, r]) => `${typeUrl.slice(typeUrl.lastIndexOf('.') + 1)} version ${r.version}: ${r.message}`);
    return h(
      'tr',
      { 'data-node': n.id },
      h('td', { class: 'mono' }, n.id),
      h('td', {}, n.cluster),
      h('td', { class: 'num' }, n.streams),
      h('td', { class: `num ${n.appliedVersion === String(state.version) ? '' : 'warn'}` }, n.appliedVersion ?? '–'),
      h('td', { class: refusals.length > 0 ? 'bad' : 'muted' }, refusals.length > 0 ? refusals.join('; ') : 'none'),
      h('td', {}, new Date(n.lastSeenAt).toLocaleTimeString()),
    );
  });
  if (rows.length === 0) rows.push(h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No data plane has connected.')));
  byId('nodes').querySelector('tbody')!.replaceChildren(...rows);
  byId('nodes-note').textContent = `xDS: ${state.nodes.filter((n) => n.streams > 0).length} connected`;
}

/** The Hosts and whether each has TLS (its own settings, or a TLSContext listing its name). */
function hostsCard(): HTMLElement {
  if (state.hosts.length === 0) return card('Hosts', 'none', 'no Host: every mapping serves every host name');
  const tlsNames = new Set(state.tlsContexts.flatMap((c) => (Array.isArray(c.spec.hosts) ? c.spec.hosts.map(String) : [])));
  const names = state.hosts.map((host) => {
    const name = String(host.spec.hostname ?? '*');
    const tls = host.spec.tlsSecret !== undefined || host.spec.tlsContext !== undefined || host.spec.tls !== undefined || tlsNames.has(name);
    return tls ? `${name} (TLS)` : name;
  });
  return card('Hosts', `${state.hosts.length} hosts`, names.join(', '));
}

function authCard(): HTMLElement {
  const auth = state.authService;
  if (auth === undefined) return card('Authentication', 'none', 'no AuthService: every mapping is open');
  const bypassing = state.mappings.filter((m) => m.spec.bypass_auth === true).length;
  return card(
    'Authentication',
    `AuthService ${auth.metadata.name}`,
    `${String(auth.spec.proto ?? 'http')} ${String(auth.spec.auth_service)} · ${state.mappings.length - bypassing} protected, ${bypassing} bypass`,
    'good',
  );
}

function rateLimitCard(): HTMLElement {
  const rls = state.rateLimitService;
  const limited = state.mappings.filter((m) => rateLimitGroups(m).some((g) => g.active)).length;
  if (rls !== undefined) return card('Rate limits', `RateLimitService ${rls.metadata.name}`, `${String(rls.spec.service)} · domain ${rateLimitDomain()} · ${limited} mappings labelled`);
  const limits = state.rateLimits.reduce((n, r) => n + limitsOf(r).length, 0);
  if (limits === 0) return card('Rate limits', 'none', 'no RateLimitService or RateLimit: labels are not sent');
  return card('Rate limits', `${limits} limits`, `Portico's own service · domain ${rateLimitDomain()} · ${limited} mappings labelled`);
}

// ---- mappings ---------------------------------------------------------------------------------------------

/** The domain the gateway sends: the RateLimitService's, else that of the RateLimits (the first by name: all share it). */
function rateLimitDomain(): string | undefined {
  const source = state.rateLimitService ?? state.rateLimits[0];
  return source ? String(source.spec.domain ?? 'ambassador') : undefined;
}

/** A label action as the descriptor entry it makes: `"literal"`, `user=header x-user`, `remote_address`. */
function describeAction(action: unknown): string {
  if (typeof action === 'string') return ['source_cluster', 'destination_cluster', 'remote_address'].includes(action) ? action : `"${action}"`;
  const [kind, value] = Object.entries((action ?? {}) as Record<string, Record<string, unknown> | null>)[0] ?? ['?', null];
  if (kind === 'generic_key') return `${String(value?.key ?? 'generic_key')}="${String(value?.value)}"`;
  if (kind === 'request_headers') return `${String(value?.key)}=header ${String(value?.header_name)}${value?.omit_if_not_present ? '?' : ''}`;
  return kind;
}

/** Each label group of a Mapping; active when its domain is the RateLimitService's (only those are sent). */
function rateLimitGroups(m: Resource): { text: string; active: boolean }[] {
  const domain = rateLimitDomain();
  const labels = (m.spec.labels ?? {}) as Record<string, Record<string, unknown[]>[]>;
  return Object.entries(labels).flatMap(([d, groups]) =>
    groups.flatMap((group) =>
      Object.entries(group).map(([name, actions]) => ({ text: `${d === domain ? '' : `${d}/`}${name}: ${actions.map(describeAction).join(', ')}`, active: d === domain })),
    ),
  );
}

const FILTER_KIND_NAMES: Record<string, string> = { JWT: 'JWT', APIKey: 'API key' };

/** The Filters a FilterPolicy binds to the Mapping, then whether the AuthService checks it. */
function authCell(m: Resource): HTMLElement {
  const filters = (state.bindings[m.metadata.name] ?? []).map((key) => {
    const name = key.slice('Filter/'.length);
    const kind = state.filterKinds.get(name);
    return h('span', { class: 'chip' }, `${kind === undefined ? 'Filter' : (FILTER_KIND_NAMES[kind] ?? kind)} ${name}`);
  });
  if (state.authService === undefined) return h('td', {}, ...(filters.length ? filters : ['–']));
  return m.spec.bypass_auth === true ? h('td', { class: 'warn' }, ...filters, 'bypass') : h('td', { class: 'good' }, ...filters, 'protected');
}

function labelsOf(m: Resource): string[] {
  return Object.entries(m.metadata.labels ?? {}).map(([k, v]) => `${k}=${v}`);
}

function renderMappings(): void {
  const filter = state.filter.toLowerCase();
  const shown = state.mappings.filter((m) =>
    filter === '' || [m.metadata.name, String(m.spec.prefix), String(m.spec.service), ...labelsOf(m)].some((s) => s.toLowerCase().includes(filter)),
  );
  const rows = shown.map((m) => {
    const name = m.metadata.name;
    const s = state.stats[name];
    const members = s === undefined ? '–' : `${s.healthy_members} / ${s.total_members}`;
    const tone = s === undefined || s.total_members === 0 ? '' : s.healthy_members === s.total_members ? 'good' : s.healthy_members === 0 ? 'bad' : 'warn';
    return h(
      'tr',
      { 'data-name': name },
      h('td', {}, name),
      h('td', { class: 'mono' }, String(m.spec.prefix ?? ''), m.spec.prefix_regex === true ? h('span', { class: 'chip' }, 'regex') : null),
      h('td', { class: 'mono' }, String(m.spec.service ?? '')),
      h('td', { class: 'num' }, m.spec.weight === undefined ? '' : String(m.spec.weight)),
      h('td', {}, ...labelsOf(m).map((l) => h('span', { class: 'chip' }, l))),
      h('td', { class: 'num' }, s?.upstream_ok ?? '–'),
      h('td', { class: 'num' }, s?.upstream_4xx ?? '–'),
      h('td', { class: `num ${s?.upstream_5xx ? 'warn' : ''}` }, s?.upstream_5xx ?? '–'),
      h('td', { class: `num ${tone}` }, members),
      authCell(m),
      h(
        'td',
        {},
        ...rateLimitGroups(m).map((g) =>
          h('span', { class: g.active ? 'chip' : 'chip inactive', title: g.active ? undefined : 'not sent: not the RateLimitService\'s domain' }, g.text),
        ),
      ),
      h(
        'td',
        { class: 'actions' },
        h('button', { type: 'button', class: 'small', 'aria-label': `Edit ${name}`, onclick: () => openEditor(m) }, 'Edit'),
        ' ',
        h('button', { type: 'button', class: 'small', 'aria-label': `Delete ${name}`, onclick: () => void deleteMapping(m) }, 'Delete'),
      ),
    );
  });
  if (rows.length === 0) {
    const empty = state.mappings.length === 0 ? 'No mappings yet: create one with “New mapping”.' : 'No mapping matches the filter.';
    rows.push(h('tr', {}, h('td', { colspan: 12, class: 'empty' }, empty)));
  }
  byId('mappings').querySelector('tbody')!.replaceChildren(...rows);
}

function deleteMapping(m: Resource): Promise<void> {
  const consequence = `Requests to ${String(m.spec.prefix)} stop being routed to ${String(m.spec.service)} at once.`;
  return deleteResource(m, 'mappings', `Delete mapping ${m.metadata.name}?`, consequence);
}

/** Deletes after a confirmation, with If-Match: a resource changed since it was shown is not deleted. */
async function deleteResource(r: Resource, plural: string, title: string, consequence: string): Promise<void> {
  const name = r.metadata.name;
  if (!(await confirmAction(title, `${consequence} History keeps it, so a rollback can restore it.`, 'Delete'))) return;
  const rv = r.metadata.resourceVersion;
  const answer = await call<{ version: number }>('DELETE', `/api/v1/${plural}/${encodeURIComponent(name)}`, undefined, rv ? { 'if-match': `"${rv}"` } : {});
  if (answer.status === 200) notify(`Deleted ${r.kind}/${name}: configuration version ${answer.body.version}.`);
  else if (answer.status !== 401) showAlert(`Could not delete ${name}: ${problemsOf(answer).map(describeProblem).join('; ')}`);
  await loadConfig();
}

// ---- rate limits ------------------------------------------------------------------------------------------

interface Limit {
  name?: string;
  pattern?: Record<string, string>[];
  rate?: number;
  unit?: string;
  action?: string;
}

function limitsOf(r: Resource): Limit[] {
  return Array.isArray(r.spec.limits) ? (r.spec.limits as Limit[]) : [];
}

/** One row per limit, with the counts of this process's rate limit service. */
function renderRateLimits(): void {
  const rows = state.rateLimits.flatMap((r) => {
    const name = r.metadata.name;
    return limitsOf(r).map((limit, index) => {
      const counts = state.limitStats.find((s) => s.resource === `RateLimit/${name}` && s.index === index);
      const logOnly = limit.action === 'LogOnly';
      return h(
        'tr',
        { 'data-name': name, 'data-index': index },
        h('td', {}, index === 0 ? name : ''),
        h('td', {}, limit.name ?? ''),
        h('td', { class: 'mono' }, String(r.spec.domain ?? 'ambassador')),
        h('td', {}, ...(limit.pattern ?? []).map((entry) => h('span', { class: 'chip' }, Object.entries(entry).map(([k, v]) => `${k}=${v === '' ? '*' : v}`).join()))),
        h('td', { class: 'num' }, `${limit.rate} / ${limit.unit}`),
        h('td', { class: logOnly ? 'warn' : '' }, logOnly ? 'LogOnly' : 'Enforce'),
        h('td', { class: 'num' }, counts?.hits ?? '–'),
        h('td', { class: `num ${counts?.rejected ? 'warn' : ''}` }, counts?.rejected ?? '–'),
        h(
          'td',
          { class: 'actions' },
          index === 0 ? h('button', { type: 'button', class: 'small', 'aria-label': `Edit rate limit ${name}`, onclick: () => openRateLimitEditor(r) }, 'Edit') : null,
          ' ',
          index === 0
            ? h('button', { type: 'button', class: 'small', 'aria-label': `Delete rate limit ${name}`, onclick: () => void deleteResource(r, 'ratelimits', `Delete rate limit ${name}?`, 'Its limits stop applying at once.') }, 'Delete')
            : null,
        ),
      );
    });
  });
  if (rows.length === 0) rows.push(h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No rate limits: create one with “New rate limit”.')));
  byId('ratelimits').querySelector('tbody')!.replaceChildren(...rows);
  byId('ratelimits-note').textContent = state.rateLimitService
    ? `not applied: RateLimitService ${state.rateLimitService.metadata.name} is in use`
    : state.rateLimits.length
      ? 'counted by Portico\'s own service since this process started'
      : '';
}

// ---- confirmation -----------------------------------------------------------------------------------------

function confirmAction(title: string, text: string, action: string): Promise<boolean> {
  const dialog = byId<HTMLDialogElement>('confirm');
  byId('confirm-title').textContent = title;
  byId('confirm-text').textContent = text;
  byId('confirm-ok').textContent = action;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

// ---- the editor -------------------------------------------------------------------------------------------

/**
 * An editor dialog: its id (`#editor`, its inputs `ed-FIELD`), the kind it edits, which field a problem's path
 * is about, and the fields that hold raw JSON (whose problems show their path).
 */
interface EditorForm {
  id: string;
  inputPrefix: string;
  kind: string;
  plural: string;
  noun: string;
  fieldOf(path: string): string | undefined;
  jsonFields: readonly string[];
}

const FORM_SPEC_FIELDS = ['prefix', 'service', 'rewrite'] as const;
const MAPPING_FORM: EditorForm = {
  id: 'editor',
  inputPrefix: 'ed',
  kind: 'Mapping',
  plural: 'mappings',
  noun: 'mapping',
  fieldOf: (path) =>
    path === 'metadata.name'
      ? 'name'
      : path.startsWith('metadata.labels')
        ? 'labels'
        : (FORM_SPEC_FIELDS.find((f) => path === `spec.${f}` || path.startsWith(`spec.${f}.`)) ?? (path.startsWith('spec.') || path.startsWith('metadata.') ? 'extra' : undefined)),
  jsonFields: ['extra'],
};
const RATE_LIMIT_FORM: EditorForm = {
  id: 'rl-editor',
  inputPrefix: 'rl',
  kind: 'RateLimit',
  plural: 'ratelimits',
  noun: 'rate limit',
  fieldOf: (path) => (path === 'metadata.name' ? 'name' : path === 'spec.domain' ? 'domain' : path.startsWith('spec') ? 'limits' : undefined),
  jsonFields: ['limits'],
};
/** The resource being edited in each form; undefined while creating one. */
const editingIn = new Map<EditorForm, Resource | undefined>();

function input(field: string, form: EditorForm = MAPPING_FORM): HTMLInputElement | HTMLTextAreaElement {
  return byId<HTMLInputElement | HTMLTextAreaElement>(`${form.inputPrefix}-${field}`);
}

function clearErrors(form: EditorForm = MAPPING_FORM): void {
  byId(`${form.id}-errors`).replaceChildren();
  for (const el of document.querySelectorAll<HTMLElement>(`#${form.id} [data-error-for]`)) el.textContent = '';
  for (const el of document.querySelectorAll(`#${form.id} [aria-invalid]`)) el.removeAttribute('aria-invalid');
}

function fieldError(field: string, message: string, form: EditorForm = MAPPING_FORM): void {
  const el = document.querySelector<HTMLElement>(`#${form.id} [data-error-for="${field}"]`)!;
  el.textContent = el.textContent ? `${el.textContent}\n${message}` : message;
  const id = `err-${form.inputPrefix}-${field}`;
  input(field, form).setAttribute('aria-invalid', 'true');
  input(field, form).setAttribute('aria-describedby', id);
  el.id = id;
}

/** Puts each problem the API names next to the form field it is about; the rest above the form. */
function showProblems(problems: ApiProblem[], name: string, form: EditorForm = MAPPING_FORM): void {
  clearErrors(form);
  const general: string[] = [];
  for (const p of problems) {
    const path = p.path ?? '';
    const own = p.resource === undefined || p.resource === `${form.kind}/${name}`;
    const field = own ? form.fieldOf(path) : undefined;
    if (field === undefined) general.push(describeProblem(p));
    else fieldError(field, form.jsonFields.includes(field) ? `${path}: ${p.message}` : p.message, form);
  }
  byId(`${form.id}-errors`).replaceChildren(...general.map((m) => h('li', {}, m)));
}

/** Saves what a form describes: creating never replaces a resource of the same name, editing only the version opened. */
async function saveResource(form: EditorForm, doc: Resource): Promise<void> {
  const name = doc.metadata.name;
  const editing = editingIn.get(form);
  const rv = editing?.metadata.resourceVersion;
  const precondition: Record<string, string> = editing ? (rv ? { 'if-match': `"${rv}"` } : {}) : { 'if-none-match': '*' };
  const save = byId<HTMLButtonElement>(`${form.id}-save`);
  save.disabled = true;
  try {
    const answer = await call<Resource>('PUT', `/api/v1/${form.plural}/${encodeURIComponent(name)}`, doc, precondition);
    if (answer.status === 200 || answer.status === 201) {
      byId<HTMLDialogElement>(form.id).close();
      notify(`${answer.status === 201 ? 'Created' : 'Saved'} ${form.kind}/${name}: configuration version ${answer.body.metadata.resourceVersion ?? '?'}.`);
      await loadConfig();
    } else if (answer.status === 409) {
      showProblems([{ path: 'metadata.name', message: `a ${form.noun} named ${name} already exists` }], name, form);
    } else if (answer.status === 412) {
      showProblems([{ message: `${form.kind}/${name} was changed or deleted since you opened it; close, refresh, and edit the current version` }], name, form);
    } else if (answer.status === 401) {
      showProblems([{ message: '401 Unauthorized: enter the API token at the top of the page, then save again' }], name, form);
    } else {
      showProblems(problemsOf(answer), name, form);
    }
  } finally {
    save.disabled = false;
  }
}

function openEditor(existing: Resource | undefined): void {
  editingIn.set(MAPPING_FORM, existing);
  clearErrors();
  const spec = { ...(existing?.spec ?? {}) };
  const rewrite = typeof spec.rewrite === 'string' && spec.rewrite !== '' ? spec.rewrite : '';
  for (const f of ['prefix', 'service'] as const) {
    input(f).value = typeof spec[f] === 'string' ? (spec[f] as string) : '';
    delete spec[f];
  }
  input('rewrite').value = rewrite;
  if (rewrite !== '') delete spec.rewrite;
  input('name').value = existing?.metadata.name ?? '';
  input('name').disabled = existing !== undefined;
  input('labels').value = existing ? labelsOf(existing).join(', ') : '';
  input('extra').value = Object.keys(spec).length ? JSON.stringify(spec, null, 2) : '';
  byId('editor-title').textContent = existing ? `Edit mapping ${existing.metadata.name}` : 'New mapping';
  byId<HTMLDialogElement>('editor').showModal();
  input(existing ? 'prefix' : 'name').focus();
}

/** The resource the form describes, or undefined after marking what is wrong with it. */
function documentFromForm(): Resource | undefined {
  clearErrors();
  const name = input('name').value.trim();
  let ok = true;
  const fail = (field: string, message: string) => {
    fieldError(field, message);
    ok = false;
  };
  if (name === '') fail('name', 'required');
  let extra: Record<string, unknown> = {};
  const extraText = input('extra').value.trim();
  if (extraText !== '') {
    try {
      const parsed: unknown = JSON.parse(extraText);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) fail('extra', 'must be a JSON object of Mapping fields');
      else extra = parsed as Record<string, unknown>;
    } catch (err) {
      fail('extra', `not valid JSON: ${(err as Error).message}`);
    }
  }
  const spec: Record<string, unknown> = { ...extra };
  for (const f of FORM_SPEC_FIELDS) {
    const value = input(f).value.trim();
    if (value === '') continue;
    if (f in extra) fail('extra', `${f} is set in the ${f} field above; remove it here`);
    spec[f] = value;
  }
  const labels: Record<string, string> = {};
  for (const item of input('labels').value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf('=');
    if (eq <= 0) fail('labels', `"${item}" is not key=value`);
    else labels[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  if (!ok) return undefined;
  // Editing keeps the rest of the metadata (namespace, annotations) as it was.
  const { resourceVersion: _version, labels: _labels, ...metadata } = editingIn.get(MAPPING_FORM)?.metadata ?? { name };
  return {
    apiVersion: 'getambassador.io/v3alpha1',
    kind: 'Mapping',
    metadata: { ...metadata, name, ...(Object.keys(labels).length ? { labels } : {}) },
    spec,
  };
}

async function validateForm(): Promise<void> {
  const doc = documentFromForm();
  if (!doc) return;
  const answer = await call<{ changes: { op: string; resource: string }[] }>('POST', '/api/v1/validate', doc);
  if (answer.status === 200) {
    const changes = answer.body.changes.map((c) => `${c.op} ${c.resource}`).join(', ');
    byId('editor-errors').replaceChildren(h('li', { class: 'good' }, `Valid${changes ? `: would ${changes}` : ': nothing would change'}.`));
  } else {
    showProblems(problemsOf(answer), doc.metadata.name);
  }
}

async function saveForm(): Promise<void> {
  const doc = documentFromForm();
  if (doc) await saveResource(MAPPING_FORM, doc);
}

function openRateLimitEditor(existing: Resource | undefined): void {
  editingIn.set(RATE_LIMIT_FORM, existing);
  clearErrors(RATE_LIMIT_FORM);
  input('name', RATE_LIMIT_FORM).value = existing?.metadata.name ?? '';
  input('name', RATE_LIMIT_FORM).disabled = existing !== undefined;
  input('domain', RATE_LIMIT_FORM).value = typeof existing?.spec.domain === 'string' ? existing.spec.domain : '';
  input('limits', RATE_LIMIT_FORM).value = existing ? JSON.stringify(existing.spec.limits ?? [], null, 2) : '';
  byId('rl-editor-title').textContent = existing ? `Edit rate limit ${existing.metadata.name}` : 'New rate limit';
  byId<HTMLDialogElement>('rl-editor').showModal();
  input(existing ? 'limits' : 'name', RATE_LIMIT_FORM).focus();
}

/** The RateLimit the form describes, or undefined after marking what is wrong with it. */
function rateLimitFromForm(): Resource | undefined {
  const form = RATE_LIMIT_FORM;
  clearErrors(form);
  const name = input('name', form).value.trim();
  const domain = input('domain', form).value.trim();
  let ok = true;
  if (name === '') {
    fieldError('name', 'required', form);
    ok = false;
  }
  let limits: unknown;
  try {
    limits = JSON.parse(input('limits', form).value.trim() || '[]');
    if (!Array.isArray(limits)) throw new Error('a JSON list of limits is expected');
  } catch (err) {
    fieldError('limits', `not a JSON list of limits: ${(err as Error).message}`, form);
    ok = false;
  }
  if (!ok) return undefined;
  const { resourceVersion: _version, ...metadata } = editingIn.get(form)?.metadata ?? { name };
  return { apiVersion: 'getambassador.io/v3alpha1', kind: 'RateLimit', metadata: { ...metadata, name }, spec: { ...(domain ? { domain } : {}), limits } };
}

function setupRateLimitEditor(): void {
  byId('new-ratelimit').addEventListener('click', () => openRateLimitEditor(undefined));
  byId('rl-editor-cancel').addEventListener('click', () => byId<HTMLDialogElement>('rl-editor').close());
  byId('rl-editor-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const doc = rateLimitFromForm();
    if (doc) void saveResource(RATE_LIMIT_FORM, doc);
  });
}

function setupEditor(): void {
  byId('new-mapping').addEventListener('click', () => openEditor(undefined));
  byId('editor-cancel').addEventListener('click', () => byId<HTMLDialogElement>('editor').close());
  byId('editor-validate').addEventListener('click', () => void validateForm());
  byId('editor-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void saveForm();
  });
}

// ---- history ----------------------------------------------------------------------------------------------

type DiffLine = ['add' | 'del' | 'same', string];

/**
 * A line diff by longest common subsequence; lines compare without their trailing comma, so a property that
 * merely stopped being the last one does not show as changed. Large documents are shown whole, before then after.
 */
function lineDiff(before: string[], after: string[]): DiffLine[] {
  const n = before.length;
  const m = after.length;
  if (n * m > 250_000) return [...before.map((l): DiffLine => ['del', l]), ...after.map((l): DiffLine => ['add', l])];
  const a = before.map((l) => l.replace(/,$/, ''));
  const b = after.map((l) => l.replace(/,$/, ''));
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) out.push(['same', after[j++]!]), i++;
    else if (i < n && (j === m || lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) out.push(['del', before[i++]!]);
    else out.push(['add', after[j++]!]);
  }
  return out;
}

/** The changed lines with two lines of context; longer unchanged runs fold to "…". */
function renderDiff(entry: DiffEntry): HTMLElement {
  const text = (r: Resource | undefined) => (r === undefined ? [] : JSON.stringify(r, null, 2).split('\n'));
  const lines = lineDiff(text(entry.before), text(entry.after));
  const near = (k: number) => lines.slice(Math.max(0, k - 2), k + 3).some(([kind]) => kind !== 'same');
  const spans: HTMLElement[] = [];
  lines.forEach(([kind, line], k) => {
    if (kind !== 'same' || near(k)) spans.push(h('span', { class: kind }, `${kind === 'add' ? '+' : kind === 'del' ? '-' : ' '} ${line}`));
    else if (spans.at(-1)?.className !== 'gap') spans.push(h('span', { class: 'gap' }, '  …'));
  });
  return h('div', { class: 'diff-entry' }, h('h3', {}, h('span', { class: `op op-${entry.op}` }, entry.op), `${entry.kind}/${entry.name}`), h('pre', { class: 'diff' }, ...spans));
}

function renderHistory(): void {
  const items = state.history.map((v) => {
    const current = v.version === state.version;
    const details = h(
      'details',
      { open: state.openVersions.has(v.version) },
      h(
        'summary',
        {},
        h('span', { class: 'version' }, `version ${v.version}`),
        h('span', { class: 'summary' }, v.summary),
        h('span', { class: 'muted' }, v.source),
        h('time', { datetime: v.created_at, class: 'muted' }, new Date(v.created_at).toLocaleString()),
        current ? h('span', { class: 'badge good' }, v.version === state.served ? 'current · served' : 'current') : null,
        current ? null : h('button', { type: 'button', class: 'small', 'aria-label': `Roll back to version ${v.version}`, onclick: (e: Event) => void rollback(e, v.version) }, 'Roll back'),
      ),
      ...v.diff.map(renderDiff),
    );
    details.addEventListener('toggle', () => (details.open ? state.openVersions.add(v.version) : state.openVersions.delete(v.version)));
    return h('li', { 'data-version': v.version }, details);
  });
  if (items.length === 0) items.push(h('li', { class: 'muted' }, 'No configuration versions yet.'));
  byId('history').replaceChildren(...items);
  byId('history-more').hidden = state.historyComplete;
}

async function loadOlderHistory(): Promise<void> {
  const oldest = state.history.at(-1)?.version;
  if (oldest === undefined) return;
  const answer = await call<History>('GET', `/api/v1/history?limit=${HISTORY_PAGE}&before=${oldest}`);
  if (answer.status !== 200) return;
  state.history.push(...answer.body.versions);
  state.historyComplete = answer.body.versions.length < HISTORY_PAGE;
  renderHistory();
}

async function rollback(event: Event, version: number): Promise<void> {
  event.preventDefault(); // the button sits in a <summary>: do not toggle it
  const text = `This makes a new version (${state.version + 1}) whose mappings and modules equal version ${version}'s; the data plane serves it at once.`;
  if (!(await confirmAction(`Roll back to version ${version}?`, text, 'Roll back'))) return;
  const answer = await call<{ version: number; changes: { op: string; resource: string }[] }>('POST', `/api/v1/rollback/${version}`);
  if (answer.status === 200) {
    const changes = answer.body.changes.map((c) => `${c.op} ${c.resource}`).join(', ') || 'nothing to change';
    notify(`Rolled back to version ${version} as version ${answer.body.version}: ${changes}.`);
  } else if (answer.status !== 401) {
    showAlert(`Rollback to version ${version} refused: ${problemsOf(answer).map(describeProblem).join('; ')}`);
  }
  await loadConfig();
}

// ---- start ------------------------------------------------------------------------------------------------

function start(): void {
  setupToken();
  setupEditor();
  setupRateLimitEditor();
  byId('history-more').addEventListener('click', () => void loadOlderHistory());
  byId('refresh').addEventListener('click', () => void refresh());
  byId('filter').addEventListener('input', (event) => {
    state.filter = (event.target as HTMLInputElement).value.trim();
    renderMappings();
  });
  void refresh();
  window.setInterval(() => document.hidden || void refresh(), REFRESH_MS);
}

start();
