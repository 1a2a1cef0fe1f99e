import { isStalledOut } from './failed-jobs';

describe('isStalledOut', () => {
  it("knows BullMQ's message for a job that stalled too often, as either version stores it", () => {
    expect(isStalledOut('job stalled more than allowable limit')).toBe(true);
    expect(isStalledOut('Job Stalled More Than Allowable Limit')).toBe(true);
  });

  it('is false for any other failure', () => {
    expect(isStalledOut('boom')).toBe(false);
    expect(isStalledOut('')).toBe(false);
  });
});
