/**
 * `portico apply`, `get` and `delete`: kubectl-style clients of the v1 API of a running `portico start`.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import YAML from 'yaml';
import { KINDS } from '../controlplane/resources.js';

const COMMON = {
  server: { type: 'string', short: 's' },
  'api-token': { type: 'string' },
} as const;

interface ApiReply {
  status: number;
  json: { message?: string; errors?: { resource?: string; path?: string; message: string }[] } & Record<string, unknown>;
}

function server(values: { server?: string | undefined }): string {
  return (values.server ?? process.env.PORTICO_SERVER ?? 'http://127.0.0.1:8888').replace(/\/+$/, '');
}

async function call(values: { server?: string | undefined; 'api-token'?: string | undefined }, method: string, path: string, body?: string): Promise<ApiReply> {
  const token = values['api-token'] ?? process.env.PORTICO_API_TOKEN;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/yaml';
  const res = await request(`${server(values)}${path}`, { method: method as 'GET', headers, body: body ?? null });
  const text = await res.body.text();
  try {
    return { status: res.statusCode, json: JSON.parse(text) };
  } catch {
    return { status: res.statusCode, json: { message: text.trim() } };
  }
}

/** Prints an error reply, every problem on its own line; returns the exit code. */
function fail(reply: ApiReply): number {
  const problems = reply.json.errors ?? [];
  if (problems.length === 0) process.stderr.write(`error (HTTP ${reply.status}): ${reply.json.message ?? ''}\n`);
  else process.stderr.write(`error (HTTP ${reply.status}), ${problems.length} problem${problems.length > 1 ? 's' : ''}:\n`);
  for (const p of problems) process.stderr.write(`  ${[p.resource, p.path].filter(Boolean).join(' ')}: ${p.message}\n`);
  return 1;
}

/** `mapping`, `mappings` or `Mapping` → the API's plural. */
function plural(kind: string | undefined): string {
  const lower = (kind ?? '').toLowerCase();
  const found = Object.entries(KINDS).find(([name, info]) => lower === name.toLowerCase() || lower === info.plural);
  if (!found) throw new Error(`unknown kind "${kind ?? ''}" (one of ${Object.keys(KINDS).join(', ')})`);
  return found[1].plural;
}

/** `portico apply -f FILE…`: every document of every file in one atomic change. */
export async function applyCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...COMMON, filename: { type: 'string', short: 'f', multiple: true }, 'dry-run': { type: 'boolean' } }, strict: true });
  const files = values.filename ?? [];
  if (files.length === 0) throw new Error('apply needs -f FILE (or -f - for standard input)');
  const text = files.map((f) => readFileSync(f === '-' ? 0 : f, 'utf8')).join('\n---\n');
  const reply = await call(values, 'POST', `/api/v1/apply${values['dry-run'] ? '?dry_run=true' : ''}`, text);
  if (reply.status !== 200) return fail(reply);
  const changes = reply.json.changes as { op: string; resource: string }[];
  for (const c of changes) process.stdout.write(`${c.resource} ${c.op === 'create' ? 'created' : c.op === 'update' ? 'configured' : 'deleted'}${values['dry-run'] ? ' (dry run)' : ''}\n`);
  for (const u of reply.json.unchanged as string[]) process.stdout.write(`${u} unchanged\n`);
  if (!values['dry-run']) process.stdout.write(`configuration version ${reply.json.version as number}\n`);
  return 0;
}

/** `portico get KIND [NAME]`: YAML by default, `-o json` for JSON. */
export async function getCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { ...COMMON, output: { type: 'string', short: 'o', default: 'yaml' } }, strict: true, allowPositionals: true });
  if (positionals.length < 1 || positionals.length > 2) throw new Error('usage: portico get KIND [NAME]');
  if (values.output !== 'yaml' && values.output !== 'json') throw new Error(`invalid --output "${values.output}" (yaml or json)`);
  const [kind, name] = positionals;
  const reply = await call(values, 'GET', `/api/v1/${plural(kind)}${name ? `/${encodeURIComponent(name)}` : ''}`);
  if (reply.status !== 200) return fail(reply);
  const docs = name ? [reply.json] : (reply.json.items as unknown[]);
  if (values.output === 'json') process.stdout.write(`${JSON.stringify(name ? reply.json : docs, null, 2)}\n`);
  else process.stdout.write(docs.map((d) => YAML.stringify(d)).join('---\n'));
  return 0;
}

/** `portico delete KIND NAME`. */
export async function deleteCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: COMMON, strict: true, allowPositionals: true });
  if (positionals.length !== 2) throw new Error('usage: portico delete KIND NAME');
  const [kind, name] = positionals as [string, string];
  const reply = await call(values, 'DELETE', `/api/v1/${plural(kind)}/${encodeURIComponent(name)}`);
  if (reply.status !== 200) return fail(reply);
  process.stdout.write(`${reply.json.deleted as string} deleted\nconfiguration version ${reply.json.version as number}\n`);
  return 0;
}
