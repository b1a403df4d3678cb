/**
 * The control plane's HTTP API: the seed's Ambassador 0.8 endpoints (`/ambassador/...`, HTTP 200 with an
 * `ok` envelope, as the original) and the versioned JSON API (`/api/v1/...`, real status codes, ETags, every
 * validation problem with its path), and the dashboard that uses them (`/`, `/ui/`). See docs/control-plane.md.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { type AddressInfo, isIPv4 } from 'node:net';
import { hostname } from 'node:os';
import type { ConfigError } from '../config/errors.js';
import type { RateLimitService } from '../ratelimit/service.js';
import type { Logger } from '../util/logger.js';
import { VERSION } from '../version.js';
import type { ControlPlane } from './control-plane.js';
import { parseDocuments } from './documents.js';
import { API_VERSION, KINDS, kindOfPlural, type MappingSpec, nameProblem, parseResource, type Resource, resourceKey } from './resources.js';
import { type Change, type ChangeResult, etag, key } from './store/store.js';
import type { ResourceError } from './translate.js';
import { ambassadorStats } from './ambassador-stats.js';
import { emptySnapshot, type StatsSnapshot } from '../stats/store.js';
import type { XdsServer } from './xds/server.js';
import { closeServer, listenOn } from '../util/http-server.js';
import { uiAsset } from './ui/assets.js';

export interface ApiOptions {
  log: Logger;
  /** Bearer token mutating calls must present; none means no authentication. */
  token: string | undefined;
  maxBodyBytes: number;
  /** The rate limit service the RateLimit resources configure, whose counts `/api/v1/stats/ratelimits` shows. */
  rateLimits?: RateLimitService;
  /** The stats of this process's own data plane, which the seed's `/ambassador/stats` reports per Mapping. */
  dataPlaneStats?: () => StatsSnapshot;
  /** The xDS server, whose data planes `/api/v1/nodes` lists. */
  xds?: XdsServer;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors: ResourceError[] = [],
  ) {
    super(message);
  }
}

type Handler = (req: IncomingMessage, res: ServerResponse, params: string[]) => Promise<void>;
interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
}

const NAME = '([^/]+)';
const UI_FILE = '(app\\.js|style\\.css)';

export class ApiServer {
  private readonly server: http.Server;
  private readonly routes: Route[];
  /** Set when bound to a loopback address: only loopback Host names are answered then (no DNS rebinding). */
  private loopbackOnly = false;

  constructor(
    private readonly cp: ControlPlane,
    private readonly options: ApiOptions,
  ) {
    const r = (method: string, path: string, handler: Handler): Route => ({ method, pattern: new RegExp(`^${path}$`), handler });
    this.routes = [
      r('GET', '/', (_q, s) => this.ui(s, 'index.html')),
      r('GET', '/ui', (_q, s) => this.ui(s, 'index.html')),
      r('GET', `/ui/${UI_FILE}`, (_q, s, [file]) => this.ui(s, file!)),
      r('GET', '/ambassador/health', (_q, s) => this.seedHealth(s)),
      r('GET', '/ambassador/mappings', (_q, s) => this.seedList(s)),
      r('GET', `/ambassador/mapping/${NAME}`, (_q, s, [n]) => this.seedGet(s, 'Mapping', n!)),
      r('POST', `/ambassador/mapping/${NAME}`, (q, s, [n]) => this.seedPost(q, s, n!)),
      r('DELETE', `/ambassador/mapping/${NAME}`, (_q, s, [n]) => this.seedDelete(s, 'Mapping', n!)),
      r('GET', '/ambassador/stats', (_q, s) => this.seedStats(s)),
      // AuthService and RateLimitService in the seed's style (0.8 had neither): the JSON body is the spec.
      r('GET', '/ambassador/authservices', (_q, s) => this.seedServiceList(s, 'AuthService')),
      r('GET', `/ambassador/authservice/${NAME}`, (_q, s, [n]) => this.seedGet(s, 'AuthService', n!)),
      r('POST', `/ambassador/authservice/${NAME}`, (q, s, [n]) => this.seedServicePost(q, s, 'AuthService', n!)),
      r('DELETE', `/ambassador/authservice/${NAME}`, (_q, s, [n]) => this.seedDelete(s, 'AuthService', n!)),
      r('GET', '/ambassador/ratelimitservices', (_q, s) => this.seedServiceList(s, 'RateLimitService')),
      r('GET', `/ambassador/ratelimitservice/${NAME}`, (_q, s, [n]) => this.seedGet(s, 'RateLimitService', n!)),
      r('POST', `/ambassador/ratelimitservice/${NAME}`, (q, s, [n]) => this.seedServicePost(q, s, 'RateLimitService', n!)),
      r('DELETE', `/ambassador/ratelimitservice/${NAME}`, (_q, s, [n]) => this.seedDelete(s, 'RateLimitService', n!)),
      r('GET', '/api/v1/history', (q, s) => this.history(q, s)),
      r('GET', '/api/v1/history/(\\d+)', (_q, s, [v]) => this.historyVersion(s, Number(v))),
      r('POST', '/api/v1/rollback/(\\d+)', (q, s, [v]) => this.rollback(q, s, Number(v))),
      r('POST', '/api/v1/apply', (q, s) => this.apply(q, s)),
      r('POST', '/api/v1/validate', (q, s) => this.validate(q, s)),
      r('GET', '/api/v1/bindings', (_q, s) => this.bindings(s)),
      r('GET', '/api/v1/nodes', (_q, s) => this.nodes(s)),
      // Under /stats, not /ratelimits: "stats" stays free as a RateLimit's name.
      r('GET', '/api/v1/stats/ratelimits', (_q, s) => this.rateLimitStats(s)),
      r('GET', '/api/v1/([a-z]+)', (_q, s, [p]) => this.list(s, p!)),
      r('POST', '/api/v1/([a-z]+)', (q, s, [p]) => this.put(q, s, p!, undefined)),
      r('GET', `/api/v1/([a-z]+)/${NAME}`, (_q, s, [p, n]) => this.get(s, p!, n!)),
      r('PUT', `/api/v1/([a-z]+)/${NAME}`, (q, s, [p, n]) => this.put(q, s, p!, n!)),
      r('DELETE', `/api/v1/([a-z]+)/${NAME}`, (q, s, [p, n]) => this.delete(q, s, p!, n!)),
    ];
    this.server = http.createServer((req, res) => void this.dispatch(req, res));
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    const bound = await listenOn(this.server, host, port);
    this.loopbackOnly = isLoopbackAddress(bound.address);
    return bound;
  }

  close(): Promise<void> {
    return closeServer(this.server);
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://api');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const seed = path.startsWith('/ambassador/');
    try {
      const matching = this.routes.filter((route) => route.pattern.test(path));
      const route = matching.find((m) => m.method === req.method);
      if (route === undefined) {
        if (matching.length) throw new HttpError(405, `${req.method} is not allowed on ${path} (allowed: ${matching.map((m) => m.method).join(', ')})`);
        throw new HttpError(404, `no such endpoint: ${path}`);
      }
      if (this.loopbackOnly) checkLoopbackHost(req);
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        refuseCrossOrigin(req);
        this.authorize(req);
      }
      const params = route.pattern.exec(path)!.slice(1).map((p) => decodeURIComponent(p));
      await route.handler(req, res, params);
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, `internal error: ${(err as Error).message}`);
      if (e.status === 500) this.options.log.error(`${req.method} ${path}: ${(err as Error).stack ?? String(err)}`);
      // The seed's handlers answer 200 with ok: false, as the original did (they throw HttpError(200, …));
      // authentication, size and routing errors keep their status everywhere.
      if (seed) sendSeed(res, { ok: false, error: e.message, ...(e.errors.length ? { errors: e.errors } : {}) }, e.status);
      else sendJson(res, e.status, { message: e.message, errors: e.errors });
    }
  }

  private authorize(req: IncomingMessage): void {
    const token = this.options.token;
    if (token === undefined) return;
    const header = req.headers.authorization ?? '';
    // Digests of equal length: the comparison takes the same time whatever the token given, its length included.
    const given = createHash('sha256').update(header.startsWith('Bearer ') ? header.slice(7).trim() : '').digest();
    const expected = createHash('sha256').update(token).digest();
    if (!timingSafeEqual(given, expected)) {
      throw new HttpError(401, header ? 'invalid bearer token' : 'this call changes the configuration and needs Authorization: Bearer <token>');
    }
  }

  private async body(req: IncomingMessage): Promise<string> {
    const limit = this.options.maxBodyBytes;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      throw new HttpError(413, `request body larger than ${limit} bytes`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw new HttpError(413, `request body larger than ${limit} bytes`);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /** Reads resource documents (JSON or YAML) from the body. */
  private async documents(req: IncomingMessage): Promise<unknown[]> {
    const errors: ConfigError[] = [];
    const docs = parseDocuments(await this.body(req), 'body', errors);
    if (errors.length) throw new HttpError(400, 'the body is not valid JSON or YAML', errors);
    return docs;
  }

  private async ui(res: ServerResponse, file: string): Promise<void> {
    const asset = uiAsset(file);
    res.writeHead(200, {
      'content-type': asset.contentType,
      'content-length': asset.body.length,
      'cache-control': 'no-cache',
      // Everything the page loads comes from this server; it may not be framed (clickjacking).
      'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    });
    res.end(asset.body);
  }

  // ---- the seed's API -------------------------------------------------------------------------------------

  private async seedHealth(res: ServerResponse): Promise<void> {
    sendSeed(res, { ok: true, msg: 'ambassador health check OK' });
  }

  private async seedList(res: ServerResponse): Promise<void> {
    const mappings = this.stored('Mapping')
      .map((r) => seedMapping(r.resource))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.prefix < b.prefix ? -1 : 1));
    // 0.8 named the list "mappings"; the walk-through (written against 0.6) shows "services".
    sendSeed(res, { ok: true, mappings, services: mappings, count: mappings.length });
  }

  private async seedGet(res: ServerResponse, kind: string, name: string): Promise<void> {
    const stored = this.cp.store.snapshot.resources.get(key(kind, name));
    if (!stored) throw new HttpError(200, `${name}: GET failed: no ${kind.toLowerCase()} named "${name}"`);
    sendSeed(res, { ok: true, ...seedView(stored.resource) });
  }

  private async seedBody(req: IncomingMessage): Promise<Record<string, unknown>> {
    const text = await this.body(req);
    const isJson = /\bjson\b/i.test(req.headers['content-type'] ?? '') || text.trimStart().startsWith('{');
    if (!isJson || text.trim() === '') return {};
    try {
      const parsed: unknown = JSON.parse(text);
      return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
    } catch (err) {
      throw new HttpError(200, `invalid JSON: ${(err as Error).message}`);
    }
  }

  private async seedPost(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    const body = await this.seedBody(req);
    const missing = ['prefix', 'service'].filter((f) => body[f] === undefined || body[f] === null || body[f] === '');
    if (missing.length) throw new HttpError(200, `Required fields missing: ${missing.join(' ')}`);
    // Extra keys are ignored, as the original did; the three it knew become a Mapping.
    const spec: Record<string, unknown> = { prefix: body.prefix, service: body.service };
    if (body.rewrite !== undefined) spec.rewrite = body.rewrite;
    await this.seedSave(res, 'Mapping', name, spec);
  }

  /** Unlike a Mapping's three fields, the whole spec: unknown fields are refused as in the v1 API. */
  private async seedServicePost(req: IncomingMessage, res: ServerResponse, kind: string, name: string): Promise<void> {
    await this.seedSave(res, kind, name, await this.seedBody(req));
  }

  private async seedSave(res: ServerResponse, kind: string, name: string, spec: Record<string, unknown>): Promise<void> {
    const errors: ResourceError[] = [];
    const resource = parseResource({ kind, metadata: { name }, spec }, errors);
    if (!resource) throw new HttpError(200, `${name}: could not save info: ${describe(errors)}`, errors);
    const result = await this.cp.change([{ op: 'put', resource }], `api: POST /ambassador/${kind.toLowerCase()}`);
    if (!result.ok) throw new HttpError(200, `${name}: could not save info: ${describe(result.errors)}`, result.errors);
    sendSeed(res, { ok: true, name });
  }

  private async seedServiceList(res: ServerResponse, kind: string): Promise<void> {
    const items = this.stored(kind)
      .map((r) => seedView(r.resource))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    sendSeed(res, { ok: true, [`${kind.toLowerCase()}s`]: items, count: items.length });
  }

  private async seedDelete(res: ServerResponse, kind: string, name: string): Promise<void> {
    const problem = nameProblem(name);
    if (problem === undefined) {
      const result = await this.cp.change([{ op: 'delete', kind, name }], `api: DELETE /ambassador/${kind.toLowerCase()}`);
      if (!result.ok) throw new HttpError(200, `${name}: DELETE failed: ${describe(result.errors)}`);
    }
    // 0.8 answered ok whether or not the mapping existed.
    sendSeed(res, { ok: true, name });
  }

  /** The Filters each Mapping runs in the configuration being served, as FilterPolicies bound them. */
  private async bindings(res: ServerResponse): Promise<void> {
    const { version, config } = this.cp.current;
    const mappings: Record<string, string[]> = {};
    for (const [mapping, filters] of [...config.filtersOf].sort(([a], [b]) => (a < b ? -1 : 1))) mappings[mapping.slice('Mapping/'.length)] = filters;
    sendJson(res, 200, { version, mappings });
  }

  /** The data planes subscribed over xDS: what each acknowledged, and what it refused (NACK) with the reason. */
  private async nodes(res: ServerResponse): Promise<void> {
    const nodes = [...(this.options.xds?.nodes.values() ?? [])].sort((a, b) => (a.id < b.id ? -1 : 1));
    sendJson(res, 200, { version: String(this.cp.current.version), nodes });
  }

  private async seedStats(res: ServerResponse): Promise<void> {
    sendJson(res, 200, ambassadorStats(this.options.dataPlaneStats?.() ?? emptySnapshot(), this.cp.current.config.clustersOf, Date.now()));
  }

  // ---- the v1 API -----------------------------------------------------------------------------------------

  private kind(plural: string): string {
    const kind = kindOfPlural(plural);
    if (kind === undefined) throw new HttpError(404, `no resource kind "${plural}" (known: ${Object.values(KINDS).map((k) => k.plural).join(', ')})`);
    return kind;
  }

  private stored(kind: string) {
    return [...this.cp.store.snapshot.resources.values()].filter((r) => r.resource.kind === kind);
  }

  private async list(res: ServerResponse, plural: string): Promise<void> {
    const kind = this.kind(plural);
    const version = this.cp.store.snapshot.version;
    const items = this.stored(kind)
      .sort((a, b) => (a.resource.metadata.name < b.resource.metadata.name ? -1 : 1))
      .map((r) => withVersion(r.resource, r.version));
    sendJson(res, 200, { apiVersion: API_VERSION, kind: `${kind}List`, version, items }, { etag: etag(version) });
  }

  private async get(res: ServerResponse, plural: string, name: string): Promise<void> {
    const kind = this.kind(plural);
    const stored = this.cp.store.snapshot.resources.get(key(kind, name));
    if (!stored) throw new HttpError(404, `${kind}/${name} does not exist`);
    sendJson(res, 200, withVersion(stored.resource, stored.version), { etag: etag(stored.version) });
  }

  /** PUT creates or replaces; POST to the collection creates only. */
  private async put(req: IncomingMessage, res: ServerResponse, plural: string, name: string | undefined): Promise<void> {
    const kind = this.kind(plural);
    const docs = await this.documents(req);
    if (docs.length !== 1) throw new HttpError(400, `expected one ${kind}, got ${docs.length} documents (use POST /api/v1/apply for several)`);
    const errors: ResourceError[] = [];
    const resource = parseResource(docs[0], errors, { kind, ...(name !== undefined ? { name } : {}) });
    if (!resource) throw new HttpError(400, `invalid ${kind}: ${describe(errors)}`, errors.map((e) => ({ resource: `${kind}/${name ?? '?'}`, ...e })));
    const ifMatch = header(req, 'if-match');
    const change: Change = { op: 'put', resource, ...(ifMatch !== undefined ? { ifMatch } : {}), ...(name === undefined || header(req, 'if-none-match') === '*' ? { ifNoneMatch: true } : {}) };
    const existed = this.cp.store.snapshot.resources.has(key(kind, resource.metadata.name));
    const result = await this.run(req, [change], `api: ${req.method} /api/v1/${plural}`);
    const stored = result.snapshot.resources.get(key(kind, resource.metadata.name))!;
    sendJson(res, existed ? 200 : 201, withVersion(stored.resource, stored.version), { etag: etag(stored.version), 'x-portico-config-version': String(result.version) });
  }

  private async delete(req: IncomingMessage, res: ServerResponse, plural: string, name: string): Promise<void> {
    const kind = this.kind(plural);
    if (!this.cp.store.snapshot.resources.has(key(kind, name)) && header(req, 'if-match') === undefined) {
      throw new HttpError(404, `${kind}/${name} does not exist`);
    }
    const ifMatch = header(req, 'if-match') ?? '*';
    const result = await this.run(req, [{ op: 'delete', kind, name, ifMatch }], `api: DELETE /api/v1/${plural}`);
    sendJson(res, 200, { version: result.version, deleted: `${kind}/${name}` }, { 'x-portico-config-version': String(result.version) });
  }

  /** Several resources in one atomic change: what `portico apply -f` sends. */
  private async apply(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const changes = this.parseAll(await this.documents(req)).map((resource): Change => ({ op: 'put', resource }));
    const result = await this.run(req, changes, 'api: POST /api/v1/apply');
    const changed = new Set(result.diff.map((d) => key(d.kind, d.name)));
    sendJson(res, 200, {
      version: result.version,
      changes: result.diff.map((d) => ({ op: d.op, resource: `${d.kind}/${d.name}` })),
      unchanged: changes.flatMap((c) => (c.op === 'put' && !changed.has(resourceKey(c.resource)) ? [resourceKey(c.resource)] : [])),
    }, { 'x-portico-config-version': String(result.version) });
  }

  private async validate(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const changes = this.parseAll(await this.documents(req)).map((resource): Change => ({ op: 'put', resource }));
    const result = this.cp.preview(changes);
    if (!result.ok) throw new HttpError(result.status, `the configuration would be rejected: ${describe(result.errors)}`, result.errors);
    sendJson(res, 200, { valid: true, resources: changes.length, changes: result.diff.map((d) => ({ op: d.op, resource: `${d.kind}/${d.name}` })) });
  }

  private parseAll(docs: unknown[]): Resource[] {
    const errors: ResourceError[] = [];
    const resources: Resource[] = [];
    const seen = new Set<string>();
    docs.forEach((doc, i) => {
      const docErrors: ConfigError[] = [];
      const resource = parseResource(doc, docErrors);
      const label = resource ? resourceKey(resource) : describeDoc(doc, i);
      errors.push(...docErrors.map((e) => ({ resource: label, ...e })));
      if (!resource) return;
      if (seen.has(label)) errors.push({ resource: label, code: 'duplicate_name', path: 'metadata.name', message: `${label} appears more than once` });
      seen.add(label);
      resources.push(resource);
    });
    if (errors.length) throw new HttpError(400, `invalid resources: ${describe(errors)}`, errors);
    return resources;
  }

  private async history(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://api');
    const limit = Math.min(Number(url.searchParams.get('limit') ?? 20), 1000);
    const before = url.searchParams.get('before');
    if (!Number.isInteger(limit) || limit < 1) throw new HttpError(400, 'limit must be a positive integer');
    const versions = await this.cp.store.history(limit, before === null ? undefined : Number(before));
    sendJson(res, 200, { version: this.cp.store.snapshot.version, served: this.cp.current.version, versions });
  }

  private async historyVersion(res: ServerResponse, version: number): Promise<void> {
    const info = await this.cp.store.version(version);
    if (!info) throw new HttpError(404, `no version ${version}`);
    sendJson(res, 200, info);
  }

  private async rollback(req: IncomingMessage, res: ServerResponse, version: number): Promise<void> {
    const changes = await this.cp.store.rollbackChanges(version);
    if (!changes) throw new HttpError(404, `no version ${version} (the current version is ${this.cp.store.snapshot.version})`);
    const result = await this.run(req, changes, `api: rollback to version ${version}`);
    sendJson(res, 200, { version: result.version, rolled_back_to: version, changes: result.diff.map((d) => ({ op: d.op, resource: `${d.kind}/${d.name}` })) });
  }

  /** Each limit of the served RateLimits with its counts in this process's service since it started. */
  private async rateLimitStats(res: ServerResponse): Promise<void> {
    const served = this.cp.current;
    const service = this.options.rateLimits;
    const limits = served.config.rateLimits.limits.map(({ statKey, ...limit }) => {
      const stats = service?.statsOf(statKey);
      const over = stats?.over_limit ?? 0;
      // LogOnly limits are counted over their rate too, but let every request through.
      return { ...limit, hits: stats?.total_hits ?? 0, near_limit: stats?.near_limit ?? 0, over_limit: over, rejected: limit.action === 'Enforce' ? over : 0 };
    });
    sendJson(res, 200, { version: served.version, domain: served.config.rateLimits.domain ?? null, limits });
  }

  /** Commits changes (or, with `?dry_run=true`, only checks them) and turns a refusal into its HTTP error. */
  private async run(req: IncomingMessage, changes: Change[], source: string): Promise<Extract<ChangeResult<unknown>, { ok: true }>> {
    const dryRun = new URL(req.url ?? '/', 'http://api').searchParams.get('dry_run') === 'true';
    const result = dryRun ? this.cp.preview(changes) : await this.cp.change(changes, source);
    if (!result.ok) {
      const what = result.status === 412 ? 'precondition failed' : result.status === 404 ? 'not found' : 'the configuration was rejected, nothing changed';
      throw new HttpError(result.status === 412 && changes.some((c) => c.op === 'put' && c.ifNoneMatch) ? 409 : result.status, `${what}: ${describe(result.errors)}`, result.errors);
    }
    return result;
  }
}

/**
 * Browsers may send a cross-origin POST (a form, or fetch in no-cors mode) without asking first, with the
 * user's network position: a page on the internet, or one served through the proxy on another port of this
 * host, could change routing. Browsers say where a request comes from (`Sec-Fetch-Site`, else `Origin`);
 * requests without either come from other clients (curl, `portico apply`) and are not affected.
 */
function refuseCrossOrigin(req: IncomingMessage): void {
  const site = header(req, 'sec-fetch-site');
  if (site !== undefined) {
    if (site === 'same-origin' || site === 'none') return;
    throw new HttpError(403, `cross-origin ${req.method} refused (Sec-Fetch-Site: ${site}): the API takes changes from its own pages and from non-browser clients`);
  }
  const origin = header(req, 'origin');
  if (origin === undefined) return;
  let originHost: string | undefined;
  try {
    originHost = new URL(origin).host;
  } catch {
    // "null" (sandboxed frames, file: pages) and anything unparsable are cross-origin
  }
  if (originHost === undefined || originHost !== req.headers.host) {
    throw new HttpError(403, `cross-origin ${req.method} refused (Origin ${origin} is not this server, ${req.headers.host ?? 'no Host'})`);
  }
}

/**
 * A page on any domain can point its name at 127.0.0.1 (DNS rebinding) and then talk to a local API as if it
 * were its own origin; the Host header still names the page's domain, so a loopback API answers loopback names only.
 */
function checkLoopbackHost(req: IncomingMessage): void {
  const host = req.headers.host;
  if (host === undefined) return; // browsers always send one
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '');
  if (name === 'localhost' || name.endsWith('.localhost') || isLoopbackAddress(name)) return;
  throw new HttpError(421, `this API listens on a loopback address and answers only for localhost, 127.0.0.1 or [::1], not Host "${host}"`);
}

function isLoopbackAddress(address: string): boolean {
  return address === '::1' || (isIPv4(address) && address.startsWith('127.')) || /^::ffff:127\./i.test(address);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function seedMapping(r: Resource): { name: string; prefix: string; service: string; rewrite: string } {
  const spec = r.spec as MappingSpec;
  return { name: r.metadata.name, prefix: spec.prefix, service: spec.service, rewrite: spec.rewrite ?? '/' };
}

/** A resource as the seed's endpoints show it: a Mapping's three fields, other kinds' whole spec, with the name. */
function seedView(r: Resource): { name: string } {
  return r.kind === 'Mapping' ? seedMapping(r) : { name: r.metadata.name, ...r.spec };
}

function withVersion(r: Resource, version: number): Resource & { metadata: { resourceVersion: string } } {
  return { ...r, metadata: { ...r.metadata, resourceVersion: String(version) } };
}

function describeDoc(doc: unknown, i: number): string {
  const d = doc as { kind?: unknown; metadata?: { name?: unknown } } | undefined;
  return typeof d?.kind === 'string' && typeof d.metadata?.name === 'string' ? `${d.kind}/${d.metadata.name}` : `document ${i}`;
}

/** One line naming every problem: what the seed's `error` string and the v1 `message` say. */
function describe(errors: readonly ResourceError[]): string {
  return errors.map((e) => `${e.resource ? `${e.resource} ` : ''}${e.path ? `${e.path}: ` : ''}${e.message}`).join('; ');
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = `${JSON.stringify(value, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  res.end(body);
}

function sendSeed(res: ServerResponse, fields: Record<string, unknown>, status = 200): void {
  sendJson(res, status, { ...fields, hostname: hostname(), version: VERSION });
}
