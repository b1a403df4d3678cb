import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type EchoServer, startEchoServer } from '../../src/echo/echo-server.js';
import { BIN, startProcess, type StartedProcess } from '../support/start-process.js';
import { httpRequest } from '../support/upstreams.js';

describe('portico start, apply, get and delete', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-cp-cli-'));
  let echo: EchoServer;
  let portico: StartedProcess;
  const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args, '--server', portico.api], { encoding: 'utf8' });

  before(async () => {
    echo = await startEchoServer({ name: 'cli-echo' });
    portico = await startProcess(['--data-dir', join(dir, 'data'), '--api-token', 'tok']);
  });
  after(async () => {
    await portico?.stop();
    await echo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('applies a multi-document file atomically and serves it', async () => {
    const file = join(dir, 'mappings.yaml');
    writeFileSync(
      file,
      `apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: { name: one }\nspec: { prefix: /one/, service: "127.0.0.1:${echo.port}" }\n---\n` +
        `kind: Mapping\nmetadata: { name: two }\nspec: { prefix: /two/, service: "127.0.0.1:${echo.port}", rewrite: /two/ }\n`,
    );
    const denied = cli('apply', '-f', file);
    assert.equal(denied.status, 1);
    assert.match(denied.stderr, /HTTP 401/);
    const applied = cli('apply', '-f', file, '--api-token', 'tok');
    assert.equal(applied.status, 0, applied.stderr);
    assert.match(applied.stdout, /Mapping\/one created\nMapping\/two created\nconfiguration version 1\n/);
    assert.equal(JSON.parse((await httpRequest(`${portico.proxy}/two/x`)).body).path, '/two/x');
    assert.match(cli('apply', '-f', file, '--api-token', 'tok').stdout, /Mapping\/one unchanged/);
  });

  it('prints every problem of an invalid file with its resource and path, and exits 1', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify([{ kind: 'Mapping', metadata: { name: 'bad' }, spec: { prefix: '/b/', service: 'x', timeout_ms: 'soon', weight: 500 } }]));
    const result = cli('apply', '-f', file, '--api-token', 'tok');
    assert.equal(result.status, 1);
    assert.match(result.stderr, /2 problems/);
    assert.match(result.stderr, /Mapping\/bad spec\.timeout_ms: expected an integer/);
    assert.match(result.stderr, /Mapping\/bad spec\.weight: must be between 0 and 100/);
  });

  it('gets resources as YAML or JSON and deletes them', async () => {
    const list = cli('get', 'mappings', '-o', 'json');
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout).map((m: { metadata: { name: string } }) => m.metadata.name), ['one', 'two']);
    const one = cli('get', 'Mapping', 'one');
    assert.match(one.stdout, /^apiVersion: getambassador.io\/v3alpha1\nkind: Mapping\nmetadata:\n  name: one\n/);
    assert.equal(cli('get', 'mapping', 'nope').status, 1);
    const deleted = cli('delete', 'mapping', 'one', '--api-token', 'tok');
    assert.equal(deleted.status, 0, deleted.stderr);
    assert.match(deleted.stdout, /Mapping\/one deleted/);
    assert.equal((await httpRequest(`${portico.proxy}/one/x`)).status, 404);
  });

  it('applies, gets and deletes an AuthService by kind name', () => {
    const file = join(dir, 'auth.yaml');
    writeFileSync(file, 'kind: AuthService\nmetadata: { name: authn }\nspec: { auth_service: "auth.example:3000", proto: grpc }\n');
    const applied = cli('apply', '-f', file, '--api-token', 'tok');
    assert.equal(applied.status, 0, applied.stderr);
    assert.match(applied.stdout, /AuthService\/authn created/);
    assert.match(cli('get', 'authservice', 'authn').stdout, /kind: AuthService\n[\s\S]*auth_service: auth\.example:3000/);
    assert.deepEqual(JSON.parse(cli('get', 'authservices', '-o', 'json').stdout).map((a: { metadata: { name: string } }) => a.metadata.name), ['authn']);
    assert.match(cli('delete', 'AuthService', 'authn', '--api-token', 'tok').stdout, /AuthService\/authn deleted/);
  });

  it('stops on SIGTERM with exit code 0', async () => {
    assert.equal(await portico.stop(), 0);
  });
});
