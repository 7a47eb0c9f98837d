// The one-step workflow bench-temporal.mjs starts: run the no-op activity once.
import { proxyActivities } from '@temporalio/workflow';

const { noop } = proxyActivities({ startToCloseTimeout: '1 minute' });

export async function jobWf(arg) {
  await noop(arg);
}
