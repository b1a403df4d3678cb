// Load and what it costs: wrk runs with the proxy's CPU time and RSS measured over exactly the same window,
// interleaved rounds over several targets, idle keep-alive connections, and 1 GiB bodies.
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { request } from 'undici';
import { cpuDelta, cpuSeconds, processTree, rss, run, stealTicks } from './processes.mjs';

/** Parses wrk's report; latencies in ms. */
export function parseWrk(out) {
  const num = (re) => Number(re.exec(out)?.[1] ?? 0);
  const toMs = (s) => {
    const v = parseFloat(s);
    if (s.endsWith('us')) return v / 1000;
    if (s.endsWith('ms')) return v;
    if (s.endsWith('m')) return v * 60_000;
    return v * 1000; // seconds
  };
  const pct = (p) => {
    const m = new RegExp(`^\\s*${p}%\\s+(\\S+)`, 'm').exec(out);
    return m ? toMs(m[1]) : NaN;
  };
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    requests: num(/(\d+) requests in/),
    p50: pct(50),
    p99: pct(99),
    // A proxy answering 502 fast would otherwise look like a fast proxy.
    errors: num(/Non-2xx or 3xx responses:\s+(\d+)/) + (socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
  };
}

/**
 * One wrk run against `url` while reading the CPU time of `pid`'s process tree before and after, and sampling its
 * RSS. CPU µs per request = (utime + stime delta of every process in the tree) / requests wrk completed.
 */
export async function measure(url, pid, { wrkCpus, seconds, connections, threads = 1 }) {
  const pids = pid ? processTree(pid) : [];
  let peakRss = rss(pids);
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rss(pids))), 250);
  const before = cpuSeconds(pids);
  const stealBefore = stealTicks();
  const started = performance.now();
  let out;
  try {
    out = await run(wrkCpus, 'wrk', [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--latency', url]);
  } finally {
    clearInterval(sampler);
  }
  const wall = (performance.now() - started) / 1000;
  // Time the hypervisor gave to other machines: on a shared host this is the noise, so every row reports it.
  const stealAfter = stealTicks();
  const result = { ...parseWrk(out), stealPct: ((stealAfter.steal - stealBefore.steal) / (stealAfter.total - stealBefore.total)) * 100 };
  if (!pid) return { ...result, cpuUs: NaN, cpuPct: NaN, rss: NaN };
  // Re-read the tree: a worker (re)started during the window counts too.
  const cpu = cpuDelta(before, cpuSeconds(new Set([...pids, ...processTree(pid)])));
  return {
    ...result,
    cpuUs: result.requests ? (cpu * 1e6) / result.requests : NaN,
    cpuPct: (cpu / wall) * 100,
    rss: Math.max(peakRss, rss(pids)),
  };
}

/**
 * Warms every target up, then measures them in rounds (A B C, A B C, ...) rather than one after the other, so
 * that a noisy neighbour on this shared machine hits all targets alike instead of skewing one of them.
 * targets: [{ key, url, pid }]; returns Map key -> [samples].
 */
export async function rounds(targets, opts, log = () => {}) {
  const samples = new Map(targets.map((t) => [t.key, []]));
  for (const t of targets) {
    log(`  warm-up ${t.key}`);
    await run(opts.wrkCpus, 'wrk', ['-t1', `-c${opts.connections}`, `-d${opts.warmup}s`, t.url]);
  }
  for (let i = 0; i < opts.runs; i++) {
    for (const t of targets) {
      const s = await measure(t.url, t.pid, opts);
      samples.get(t.key).push(s);
      log(`  run ${i + 1}/${opts.runs} ${t.key}: ${Math.round(s.rps)} req/s, ${s.cpuUs.toFixed(1)} CPU µs/req${s.errors ? `, ${s.errors} errors` : ''}`);
    }
  }
  return samples;
}

const median = (xs) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Medians of each metric over the runs, the req/s range, the peak RSS and the total error count. */
export function summarize(samples) {
  const pick = (k) => samples.map((s) => s[k]);
  return {
    rps: median(pick('rps')),
    rpsMin: Math.min(...pick('rps')),
    rpsMax: Math.max(...pick('rps')),
    p50: median(pick('p50')),
    p99: median(pick('p99')),
    cpuUs: median(pick('cpuUs')),
    cpuPct: median(pick('cpuPct')),
    stealPct: median(pick('stealPct')),
    rss: Math.max(...pick('rss')),
    errors: pick('errors').reduce((a, b) => a + b, 0),
    runs: samples.length,
  };
}

/**
 * Opens `count` connections to 127.0.0.1:port, sends one keep-alive GET on each, reads the whole answer and
 * leaves the connection open and idle. Source addresses rotate over 127.0.0.1-4 so that ephemeral ports (about
 * 28k per source address) never run short. At most `parallel` handshakes are in flight, to stay inside the
 * listen backlog. Returns the open sockets (close them with closeAll) and how many failed.
 */
export async function openIdleConnections(port, count, { path = '/', parallel = 200 } = {}) {
  const sockets = [];
  let failed = 0;
  let next = 0;
  const one = (i) =>
    new Promise((resolve) => {
      const socket = connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${(i % 4) + 1}` });
      let buffered = '';
      const fail = () => {
        failed++;
        socket.destroy();
        resolve();
      };
      socket.setEncoding('latin1');
      socket.once('error', fail);
      socket.once('connect', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: bench\r\n\r\n`));
      socket.on('data', function onData(chunk) {
        buffered += chunk;
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffered.slice(0, end);
        if (!head.startsWith('HTTP/1.1 200')) return fail();
        const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1];
        if (length !== undefined ? buffered.length < end + 4 + Number(length) : !buffered.endsWith('0\r\n\r\n')) return;
        socket.off('data', onData);
        socket.removeListener('error', fail);
        socket.on('error', () => {}); // counted as closed by stillOpen()
        sockets.push(socket);
        resolve();
      });
    });
  const worker = async () => {
    while (next < count) await one(next++);
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return { sockets, failed };
}

export const stillOpen = (sockets) => sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
export const closeAll = (sockets) => sockets.forEach((s) => s.destroy());

/**
 * 1 GiB uploaded to `portico echo` through the proxy (the echo answers with the size it saw), then 1 GiB
 * downloaded from it and hashed, sampling the proxy tree's RSS every 50 ms: bodies must stream, so the peak stays
 * near the idle RSS.
 */
export async function transfers(proxyPort, pid, size = 1024 ** 3) {
  const results = {};
  for (const direction of ['upload', 'download']) {
    const pids = processTree(pid);
    const baseline = rss(pids);
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rss(pids))), 50);
    const started = performance.now();
    try {
      if (direction === 'upload') {
        const chunk = Buffer.alloc(1 << 20, 7);
        async function* body() {
          for (let sent = 0; sent < size; sent += chunk.length) yield chunk;
        }
        const res = await request(`http://127.0.0.1:${proxyPort}/upload`, { method: 'POST', body: body(), headers: { 'content-length': String(size) } });
        const echoed = await res.body.json();
        if (echoed.body?.size !== size) throw new Error(`upload: echo saw ${echoed.body?.size} bytes`);
      } else {
        const res = await request(`http://127.0.0.1:${proxyPort}/bytes/${size}`);
        const hash = createHash('sha256');
        let received = 0;
        for await (const chunk of res.body) {
          received += chunk.length;
          hash.update(chunk);
        }
        if (received !== size) throw new Error(`download: got ${received} bytes`);
      }
    } finally {
      clearInterval(sampler);
    }
    const seconds = (performance.now() - started) / 1000;
    results[direction] = { seconds, mibPerSecond: size / 2 ** 20 / seconds, baseline, peak };
  }
  return results;
}
