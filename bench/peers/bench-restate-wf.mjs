// Restate, the workflow phase: a 3-step handler whose steps are journaled
// no-op side effects (ctx.run), the equivalent of Keel's 3-step task workflow.
// "workflow(3 steps)": N invocations sent with CONC in flight, counted when
// the third step has run. "workflow_latency": paced sends, send -> third step.
import http2 from 'node:http2';
import * as restate from '@restatedev/restate-sdk';
import { N, CONC, RATE, SECS, now, pool, paced, makeCounter, latencyReport, rate, log, waitFor, sleep } from './common.mjs';

const S = 'restate';
const INGRESS = 'http://127.0.0.1:8080', ADMIN = 'http://127.0.0.1:9070';
const ctr = makeCounter();
const noop = async () => null;
const svc = restate.service({
  name: 'Wf3',
  handlers: {
    run: async (ctx, input) => {
      await ctx.run('a', noop);
      await ctx.run('b', noop);
      await ctx.run('c', noop);
      ctr.hit(input?.t0);
      return null;
    },
  },
});
const server = http2.createServer(restate.createEndpointHandler({ services: [svc] }));
await new Promise((r) => server.listen(9081, '127.0.0.1', r));
const res = await fetch(`${ADMIN}/deployments`, { method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ uri: 'http://127.0.0.1:9081', force: true }) });
if (!res.ok) throw new Error('register failed ' + res.status + ' ' + (await res.text()));
await sleep(1000);

const send = async (body) => {
  const r = await fetch(`${INGRESS}/Wf3/run/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (r.status !== 202 && r.status !== 200) throw new Error('send ' + r.status + ' ' + (await r.text()));
  await r.arrayBuffer();
};

let done = ctr.reset(100); await pool(100, CONC, (i) => send({ i })); await waitFor(done, 30000, 'warmup');

done = ctr.reset(N);
const t = now();
await pool(N, CONC, (i) => send({ i }));
const end = await waitFor(done, 300000, 'runs');
log(S, 'workflow(3 steps)', { runs: N, runs_per_s: rate(N, end - t) });

await sleep(2000);
done = ctr.reset(RATE * SECS, true);
await paced(RATE, SECS, () => send({ t0: now() }));
await waitFor(done, 120000, 'latency');
log(S, 'workflow_latency(start->finish)', { rate: RATE, secs: SECS, ...latencyReport(ctr.lats) });
server.close();
process.exit(0);
