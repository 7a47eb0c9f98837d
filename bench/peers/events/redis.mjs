// Redis Streams as an event log: XADD per event (a pipeline of XADDs for a
// batch), a consumer group read with XREADGROUP and acknowledged with one
// XACK per read. The server runs with appendonly yes and appendfsync
// always (bench/compare.sh): it fsyncs the AOF before it answers.
import Redis from 'ioredis';
import { run } from './phases.mjs';

const port = Number(process.env.REDIS_PORT ?? 6391);
const redis = new Redis({ host: '127.0.0.1', port });
const xadd = (target, stream, obj) => target.xadd(stream, '*', 'd', JSON.stringify(obj));

await run({
  name: 'redis-streams(appendfsync=always)',
  reset: (stream) => redis.del(stream),
  publish: (stream, _key, obj) => xadd(redis, stream, obj),
  publishBatch(stream, items) {
    const pipeline = redis.pipeline();
    for (const { obj } of items) xadd(pipeline, stream, obj);
    return pipeline.exec();
  },
  async consume(stream, group, inFlight, handle) {
    await redis.xgroup('CREATE', stream, group, '0', 'MKSTREAM');
    const reader = new Redis({ host: '127.0.0.1', port });
    let running = true;
    const loop = (async () => {
      while (running) {
        const answer = await reader.xreadgroup('GROUP', group, 'c1', 'COUNT', inFlight, 'BLOCK', 100, 'STREAMS', stream, '>');
        if (!answer) continue;
        const entries = answer[0][1];
        for (const [, fields] of entries) handle(JSON.parse(fields[1]));
        await reader.xack(stream, group, ...entries.map(([id]) => id));
      }
    })();
    return { stop: async () => { running = false; await loop; reader.disconnect(); } };
  },
  close: () => redis.quit(),
});
