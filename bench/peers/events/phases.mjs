// The event phases of keel-bench, run against a peer through a small driver
// (events/nats.mjs, events/redis.mjs, events/rabbit-stream.mjs). Phase names
// and fields match keel-bench's, so bench/report.py lays them side by side.
//
// A driver is `{ name, reset(stream), publish(stream, key, obj),
// publishBatch(stream, items), consume(stream, group, inFlight, handle),
// close() }`: publish resolves once the server acknowledged the write;
// consume delivers every event of the stream from its start to
// `handle(obj)` and commits or acks what was handled; it returns
// `{ stop() }`.
import { readFileSync } from 'node:fs';
import { N, CONC, BATCH, SECS, now, pool, paced, makeCounter, latencyReport, rate, log, waitFor } from '../common.mjs';

const EVENT_RATE = Number(process.env.EVENT_RATE ?? 1000);     // latency phase: events/s
const HOUR_SECS = Number(process.env.HOUR_SECS ?? 300);        // the 10M/h phase: seconds
const KEYS = 1000;

// CPU seconds of the server processes (SERVER_PIDS, space-separated) and of
// this client, so a phase can say what it cost.
function serverCpu() {
  const pids = (process.env.SERVER_PIDS ?? '').split(/\s+/).filter(Boolean);
  return pids.reduce((sum, pid) => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return sum + (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in ticks of 10 ms
  }, 0);
}
// Without SERVER_PIDS there is no server figure, rather than a zero.
function cpuMeter() {
  const known = Boolean(process.env.SERVER_PIDS?.trim());
  const server = known ? serverCpu() : 0, client = process.cpuUsage(), t = now();
  return () => {
    const c = process.cpuUsage(client);
    return {
      secs: (now() - t) / 1000,
      ...(known ? { server_cpu_s: +(serverCpu() - server).toFixed(2) } : {}),
      client_cpu_s: +((c.user + c.system) / 1e6).toFixed(2),
    };
  };
}

// Counts handled events and the ones that ran before an earlier event of
// their key (each keyed event carries its publish index `i` and key `k`).
function orderedCounter() {
  const ctr = makeCounter();
  const last = new Map();
  ctr.violations = 0;
  ctr.handle = (obj) => {
    if (obj.k !== undefined) {
      if ((last.get(obj.k) ?? -1) > obj.i) ctr.violations++;
      last.set(obj.k, obj.i);
    }
    ctr.hit(obj.t0);
  };
  return ctr;
}

const keyed = (i, extra = {}) => ({ key: `k${i % KEYS}`, obj: { i, k: `k${i % KEYS}`, ...extra } });

export async function run(driver) {
  const S = driver.name;
  const phases = (process.env.PHASES ?? 'publish_single,drain_pulled,publish_batch,keyed_target,event_latency,events_10m_per_hour').split(',');
  const wants = (p) => phases.includes(p);

  if (wants('publish_single') || wants('drain_pulled')) {
    await driver.reset('ev');
    const cpu = cpuMeter();
    await pool(N, CONC, (i) => driver.publish('ev', null, { i }));
    const m = cpu();
    log(S, 'publish_single', { n: N, conc: CONC, events_per_s: rate(N, m.secs * 1000), ...m });
  }
  if (wants('drain_pulled')) {
    const ctr = orderedCounter();
    const done = ctr.reset(N);
    const cpu = cpuMeter();
    const c = await driver.consume('ev', 'pulled', BATCH, ctr.handle);
    await waitFor(done, 170000, 'drain_pulled');
    const m = cpu();
    await c.stop();
    log(S, 'drain_pulled', { n: N, events_per_s: rate(N, m.secs * 1000), ...m });
  }
  if (wants('publish_batch') || wants('keyed_target')) {
    await driver.reset('keyed');
    const cpu = cpuMeter();
    await pool(Math.ceil(N / BATCH), 4, (b) => {
      const from = b * BATCH;
      return driver.publishBatch('keyed', Array.from({ length: Math.min(BATCH, N - from) }, (_, k) => keyed(from + k)));
    });
    const m = cpu();
    log(S, 'publish_batch', { n: N, batch: BATCH, events_per_s: rate(N, m.secs * 1000), ...m });
  }
  if (wants('keyed_target')) {
    const ctr = orderedCounter();
    const done = ctr.reset(N);
    const cpu = cpuMeter();
    const c = await driver.consume('keyed', 'workers', CONC, ctr.handle);
    await waitFor(done, 170000, 'keyed_target');
    const m = cpu();
    await c.stop();
    log(S, 'keyed_target(1000 keys)', { n: N, keys: KEYS, events_per_s: rate(N, m.secs * 1000), order_violations: ctr.violations, ...m });
  }
  for (const [phase, perSec, secs] of [['event_latency(publish->handler)', EVENT_RATE, SECS], ['events_10m_per_hour', 2778, HOUR_SECS]]) {
    if (!wants(phase.split('(')[0])) continue;
    const stream = phase.startsWith('event_latency') ? 'lat' : 'hour';
    await driver.reset(stream);
    const ctr = orderedCounter();
    const done = ctr.reset(perSec * secs, true);
    const c = await driver.consume(stream, 'workers', CONC, ctr.handle);
    const cpu = cpuMeter();
    await paced(perSec, secs, (i) => { const e = keyed(i, { t0: now() }); return driver.publish(stream, e.key, e.obj); });
    await waitFor(done, 120000, phase);
    const m = cpu();
    await c.stop();
    log(S, phase, { rate: perSec, ...latencyReport(ctr.lats), order_violations: ctr.violations, ...m, secs });
  }
  await driver.close();
  process.exit(0);
}
