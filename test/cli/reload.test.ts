/**
 * SIGHUP makes `portico run` read its `-c` file again and swap it in, in every worker: a changed route answers
 * from the new configuration, a new listener serves, and a file with problems leaves the configuration in force
 * and logs every problem. The gateway is a real process with two workers.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { httpListener, type Json } from '../support/portico.js';
import { freePort } from '../support/ports.js';
import { childrenOf, startRun, type LiveProcess } from '../support/start-process.js';
import { httpRequest, type HttpResponse } from '../support/upstreams.js';
import { eventually } from '../support/wait.js';

const file = join(mkdtempSync(join(tmpdir(), 'portico-reload-')), 'bootstrap.json');

/** A route answering `body`. */
const answer = (body: string): Json => ({ match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: body } } });

/** A listener named `name` on `port` serving `routes`; each response names the worker that answered. */
function listener(name: string, port: number, routes: Json[]): Json {
  const l = httpListener({
    response_headers_to_add: [{ header: { key: 'x-worker', value: '%ENVIRONMENT(PORTICO_WORKER_INDEX)%' } }],
    virtual_hosts: [{ name: 'all', domains: ['*'], routes }],
  });
  return { ...l, name, address: { socket_address: { address: '127.0.0.1', port_value: port } } };
}

function write(...listeners: Json[]): void {
  writeFileSync(file, JSON.stringify({ static_resources: { listeners } }));
}

/** Six requests, each on a connection of its own: the workers take connections in turn. */
async function answers(port: number): Promise<HttpResponse[]> {
  return Promise.all(Array.from({ length: 6 }, () => httpRequest(`http://127.0.0.1:${port}/`)));
}

describe('portico run: SIGHUP reloads the configuration file', { timeout: 120_000 }, () => {
  let gateway: LiveProcess;
  let port: number;

  before(async () => {
    port = await freePort();
    write(listener('main', port, [answer('one')]));
    gateway = await startRun(file, ['--concurrency', '2', '--drain-time-s', '1']);
  });

  after(async () => {
    assert.equal(await gateway?.stop(), 0);
  });

  it('swaps the new file in, in every worker, new listeners included', async () => {
    assert.deepEqual(new Set((await answers(port)).map((r) => r.body)), new Set(['one']));
    const added = await freePort();
    write(listener('main', port, [answer('two')]), listener('added', added, [answer('added')]));
    gateway.child.kill('SIGHUP');
    await eventually(async () => {
      const responses = await answers(port);
      assert.deepEqual(new Set(responses.map((r) => r.body)), new Set(['two']));
      assert.deepEqual(new Set(responses.map((r) => r.headers['x-worker'])), new Set(['0', '1']));
    }, 30_000);
    assert.equal((await httpRequest(`http://127.0.0.1:${added}/`)).body, 'added');
    await eventually(() => assert.match(gateway.output(), /configuration reloaded/), 30_000);
  });

  it('gives a worker started after the reload (one that died) the new configuration', async () => {
    const [victim] = childrenOf(gateway.child.pid!);
    process.kill(victim!, 'SIGKILL');
    await eventually(() => {
      const workers = childrenOf(gateway.child.pid!);
      assert.equal(workers.length, 2);
      assert.ok(!workers.includes(victim!));
    }, 30_000);
    await eventually(async () => {
      const responses = await answers(port);
      assert.deepEqual(new Set(responses.map((r) => r.body)), new Set(['two']));
      assert.deepEqual(new Set(responses.map((r) => r.headers['x-worker'])), new Set(['0', '1']));
    }, 30_000);
  });

  it('keeps the configuration in force when the file has problems, and logs each of them', async () => {
    const before = gateway.output().length;
    write(listener('main', port, [{ match: { safe_regex: { regex: '/(a)\\1' } }, route: { cluster: 'nope' } }, answer('three')]));
    gateway.child.kill('SIGHUP');
    // The refusal and its problems may come in separate writes: wait for all of them.
    await eventually(() => {
      const log = gateway.output().slice(before);
      assert.match(log, /reload refused/);
      assert.match(log, /routes\[0\]\.route\.cluster: route names unknown cluster "nope"/);
      assert.match(log, /routes\[0\]\.match\.safe_regex\.regex: invalid regex '\/\(a\)\\1'/);
    }, 30_000);
    assert.doesNotMatch(gateway.output().slice(before), /configuration reloaded/);
    assert.deepEqual(new Set((await answers(port)).map((r) => r.body)), new Set(['two']));
    assert.equal(gateway.child.exitCode, null, 'still running');
  });
});
