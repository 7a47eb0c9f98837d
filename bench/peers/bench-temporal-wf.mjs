// Temporal, the workflow phase: workflow wf3 runs three no-op activities in
// sequence, the equivalent of Keel's 3-step task workflow. "workflow(3 steps)":
// N workflows started with CONC in flight while the worker runs, counted when
// the third activity starts. "workflow_latency": paced starts, start -> third activity.
import { Connection, Client } from '@temporalio/client';
import { Worker, NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { N, CONC, RATE, SECS, now, pool, paced, makeCounter, latencyReport, rate, log, waitFor, sleep } from './common.mjs';

Runtime.install({ logger: new DefaultLogger('WARN') });
const S = 'temporal(dev-server,sqlite)';
const address = '127.0.0.1:7233', taskQueue = 'bench-wf-' + Date.now();
const client = new Client({ connection: await Connection.connect({ address }) });
const ctr = makeCounter();
const activities = { async noop(arg) { if (arg?.last) ctr.hit(arg?.t0); } };
const worker = await Worker.create({
  connection: await NativeConnection.connect({ address }), taskQueue,
  workflowsPath: fileURLToPath(new URL('./temporal/workflows.mjs', import.meta.url)), activities,
  maxConcurrentActivityTaskExecutions: CONC, maxConcurrentWorkflowTaskExecutions: CONC,
});
const running = worker.run();
const start = (i, arg) => client.workflow.start('wf3', { taskQueue, workflowId: `${taskQueue}-${i}`, args: [arg] });

let done = ctr.reset(N);
const t = now();
await pool(N, CONC, (i) => start(i, {}));
const end = await waitFor(done, 600000, 'runs');
log(S, 'workflow(3 steps)', { runs: N, runs_per_s: rate(N, end - t) });

await sleep(2000);
done = ctr.reset(RATE * SECS, true);
await paced(RATE, SECS, (i) => start('lat-' + i, { t0: now() }));
await waitFor(done, 300000, 'latency');
log(S, 'workflow_latency(start->finish)', { rate: RATE, secs: SECS, ...latencyReport(ctr.lats) });
worker.shutdown(); await running;
process.exit(0);
