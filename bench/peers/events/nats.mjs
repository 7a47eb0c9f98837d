// NATS JetStream as an event log: one file-storage stream per topic (limits
// retention), subject `<topic>.<key>`, PubAck awaited per publish. A
// consumer is a durable pull consumer with explicit acks and at most
// `inFlight` unacked messages. NATS_SYNC names the server's sync_interval
// (set in its config by bench/compare.sh) for the label only.
import { connect, AckPolicy, DeliverPolicy, StorageType } from 'nats';
import { run } from './phases.mjs';

const nc = await connect({ servers: `127.0.0.1:${process.env.NATS_PORT ?? 4222}` });
const jsm = await nc.jetstreamManager();
const js = nc.jetstream();
const enc = (o) => new TextEncoder().encode(JSON.stringify(o));
const dec = new TextDecoder();
const subject = (stream, key) => `${stream}.${key ?? '_'}`;

await run({
  name: `nats-jetstream(file,sync_interval=${process.env.NATS_SYNC ?? 'default'})`,
  async reset(stream) {
    try { await jsm.streams.delete(stream); } catch {}
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], storage: StorageType.File });
  },
  publish: (stream, key, obj) => js.publish(subject(stream, key), enc(obj)),
  publishBatch: (stream, items) => Promise.all(items.map(({ key, obj }) => js.publish(subject(stream, key), enc(obj)))),
  async consume(stream, group, inFlight, handle) {
    await jsm.consumers.add(stream, { durable_name: group, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_ack_pending: inFlight });
    const messages = await (await js.consumers.get(stream, group)).consume({ max_messages: inFlight });
    (async () => { for await (const m of messages) { handle(JSON.parse(dec.decode(m.data))); m.ack(); } })();
    return { stop: () => messages.close() };
  },
  close: () => nc.drain(),
});
