// RabbitMQ streams as an event log: one stream queue (x-queue-type stream)
// per topic, published with publisher confirms, read from the first offset
// by a consumer with prefetch `inFlight` that acks what it handled. Over
// AMQP 0.9.1: the stream protocol's Node client (rabbitmq-stream-js-client
// 0.4–1.0) is refused by the RabbitMQ 3.10 that Debian ships (the server
// closes on its command-version exchange).
import amqp from 'amqplib';
import { run } from './phases.mjs';

const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${process.env.RABBIT_PORT ?? 5673}`);
const pub = await conn.createConfirmChannel();
const publish = (stream, obj) => new Promise((resolve, reject) =>
  pub.sendToQueue(stream, Buffer.from(JSON.stringify(obj)), { persistent: true }, (err) => (err ? reject(err) : resolve())));

await run({
  name: 'rabbitmq-streams(stream queue,confirms)',
  async reset(stream) {
    // Deleting a stream that is not there fails its channel: use one of its own.
    const scratch = await conn.createChannel();
    scratch.on('error', () => {});
    try { await scratch.deleteQueue(stream); await scratch.close(); } catch {}
    await pub.assertQueue(stream, { durable: true, arguments: { 'x-queue-type': 'stream' } });
  },
  publish: (stream, _key, obj) => publish(stream, obj),
  publishBatch: (stream, items) => Promise.all(items.map(({ obj }) => publish(stream, obj))),
  async consume(stream, _group, inFlight, handle) {
    const channel = await conn.createChannel();
    await channel.prefetch(inFlight);
    const { consumerTag } = await channel.consume(stream, (msg) => {
      handle(JSON.parse(msg.content));
      channel.ack(msg);
    }, { noAck: false, arguments: { 'x-stream-offset': 'first' } });
    return { stop: async () => { await channel.cancel(consumerTag); await channel.close(); } };
  },
  close: () => conn.close(),
});
