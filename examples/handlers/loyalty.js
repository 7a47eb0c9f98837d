// Loyalty points, kept per customer by Keel itself: each purchase job on
// the `purchases` queue names its customer as the object, so a customer's
// purchases run one at a time and see each other's points. The points and
// the event are committed with the job, or not at all.
export default async function (job, ctx) {
  const points = (await ctx.state.get("points")) ?? 0;
  const earned = Math.floor(job.payload.amount / 10);
  await ctx.state.put("points", points + earned);
  if (points < 100 && points + earned >= 100) {
    await ctx.publish("loyalty", { type: "customer.gold", key: job.object.key, data: { points: points + earned } });
  }
  ctx.log("customer", job.object.key, "earned", earned);
  return { points: points + earned };
}
