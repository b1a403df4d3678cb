/** Starts `portico start`'s gateway in the test process, on free ports, with a fresh PGlite data directory. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Gateway, type GatewayOptions, startGateway } from '../../src/cli/start.js';
import { createLogger } from '../../src/util/logger.js';
import { httpRequest, type HttpResponse } from './upstreams.js';

export interface TestGateway extends Gateway {
  dataDir: string;
  api(path: string, init?: { method?: string; body?: unknown; headers?: Record<string, string> }): Promise<HttpResponse & { json: any }>;
  proxy(path: string, headers?: Record<string, string>): Promise<HttpResponse>;
  /** Stops the gateway and removes its data directory (unless kept for a restart). */
  close(keepData?: boolean): Promise<void>;
}

export async function startTestGateway(options: Partial<GatewayOptions> = {}): Promise<TestGateway> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'portico-gw-'));
  const gateway = await startGateway({
    dataDir,
    databaseUrl: undefined,
    proxyHost: '127.0.0.1',
    proxyPort: 0,
    apiHost: '127.0.0.1',
    apiPort: 0,
    adminHost: '127.0.0.1',
    adminPort: 0,
    token: undefined,
    maxBodyBytes: 1024 * 1024,
    resyncIntervalMs: 5000,
    drainTimeoutMs: 1000,
    log: createLogger('off'),
    ...options,
  });
  return {
    ...gateway,
    dataDir,
    async api(path, init = {}) {
      const body = init.body === undefined ? null : typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
      const headers = { ...(body !== null && typeof init.body !== 'string' ? { 'content-type': 'application/json' } : {}), ...init.headers };
      const res = await httpRequest(`http://127.0.0.1:${gateway.apiPort}${path}`, { method: init.method ?? 'GET', body, headers });
      let json: unknown;
      try {
        json = JSON.parse(res.body);
      } catch {
        json = undefined;
      }
      return { ...res, json };
    },
    proxy: (path, headers = {}) => httpRequest(`http://127.0.0.1:${gateway.proxyPort}${path}`, { headers }),
    async close(keepData = false) {
      await gateway.stop();
      if (!keepData && options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
