// The one-step workflow bench-temporal.mjs starts: run the no-op activity once.
import { proxyActivities } from '@temporalio/workflow';

const { noop } = proxyActivities({ startToCloseTimeout: '1 minute' });

export async function jobWf(arg) {
  await noop(arg);
}

// The 3-step workflow bench-temporal-wf.mjs starts: three no-op activities in order.
export async function wf3(arg) {
  await noop({});
  await noop({});
  await noop({ ...arg, last: true });
}
