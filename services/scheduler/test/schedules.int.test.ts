import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { deferred, uniqueQueue, useSchedulerHarness, waitFor } from '../src/testing';

const h = useSchedulerHarness();

const sec = (seconds: number) => ({ seconds, nanos: 0 });

describe('UpsertSchedule / GetSchedule', () => {
  it('stores a cron schedule with its time zone and template, and reads it back', async () => {
    const queue = await h.newQueue();
    const schedule = {
      id: 'nightly-report',
      queue,
      cron: '0 3 * * *',
      timezone: 'Europe/Berlin',
      template: { name: 'report', data: { kind: 'daily' }, options: { attempts: 2 } },
    };
    const stored = await h.client.upsertSchedule(schedule);
    expect(stored).toMatchObject({ ...schedule, template: { name: 'report', data: { kind: 'daily' }, options: { attempts: 2 } } });
    expect(stored.every).toBeUndefined();
    expect(stored.nextRunAt!.getTime()).toBeGreaterThan(Date.now());
    // 03:00 in Berlin, whatever the offset of the day.
    const berlin = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    expect(berlin.format(stored.nextRunAt)).toBe('03:00');
    await expect(h.client.getSchedule(queue, 'nightly-report')).resolves.toMatchObject({ id: 'nightly-report', cron: '0 3 * * *', timezone: 'Europe/Berlin' });
  });

  it('stores an every schedule and reads it back', async () => {
    const queue = await h.newQueue();
    await h.client.upsertSchedule({ id: 'poll', queue, every: sec(3600), template: { name: 'poll' } });
    const got = await h.client.getSchedule(queue, 'poll');
    expect(got).toMatchObject({ id: 'poll', queue, every: sec(3600), template: { name: 'poll' } });
    expect(got.cron).toBeUndefined();
  });

  it('replaces a schedule on a second upsert with the same id', async () => {
    const queue = await h.newQueue();
    await h.client.upsertSchedule({ id: 's', queue, every: sec(3600), template: { name: 'a' } });
    await h.client.upsertSchedule({ id: 's', queue, cron: '0 0 * * *', template: { name: 'b' } });
    await expect(h.client.getSchedule(queue, 's')).resolves.toMatchObject({ cron: '0 0 * * *', every: undefined, timezone: 'UTC', template: { name: 'b' } });
    const list = await h.client.listSchedules({ queue });
    expect(list.schedules).toHaveLength(1);
  });

  it('rejects GetSchedule of an unknown id with NOT_FOUND', async () => {
    const queue = await h.newQueue();
    await expect(h.client.getSchedule(queue, 'nope')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });
});

describe('firing', () => {
  it('runs an every: 1s schedule: a worker receives its jobs, again and again', async () => {
    const queue = await h.newQueue();
    const received: { name: string; data: unknown }[] = [];
    const twice = deferred();
    h.worker(queue, async (job) => {
      received.push({ name: job.name, data: job.data });
      if (received.length === 2) twice.resolve();
    });
    await h.client.upsertSchedule({ id: 'tick', queue, every: sec(1), template: { name: 'tick', data: { n: 1 } } });
    await twice.promise;
    expect(received.slice(0, 2)).toEqual([
      { name: 'tick', data: { n: 1 } },
      { name: 'tick', data: { n: 1 } },
    ]);
    await h.client.deleteSchedule(queue, 'tick');
  });

  it('runs a cron schedule with seconds in a time zone: jobs appear every second', async () => {
    const queue = await h.newQueue();
    const seen: number[] = [];
    const twice = deferred();
    h.worker(queue, async (job) => {
      seen.push(job.timestamp);
      if (seen.length === 2) twice.resolve();
    });
    await h.client.upsertSchedule({ id: 'every-second', queue, cron: '*/1 * * * * *', timezone: 'America/New_York', template: { name: 'cron-tick' } });
    await twice.promise;
    await h.client.deleteSchedule(queue, 'every-second');
  });

  it('counts iterations of a schedule that has fired', async () => {
    const queue = await h.newQueue();
    await h.client.upsertSchedule({ id: 'counted', queue, every: sec(1), template: { name: 'c' } });
    h.worker(queue, async () => undefined);
    await waitFor('the schedule to fire', async () => (await h.client.getSchedule(queue, 'counted')).iterationCount >= 1);
    await h.client.deleteSchedule(queue, 'counted');
  });
});

describe('ListSchedules / DeleteSchedule', () => {
  it('pages through schedules without duplicates', async () => {
    const queue = await h.newQueue();
    const ids = ['s1', 's2', 's3', 's4', 's5'];
    for (const id of ids) await h.client.upsertSchedule({ id, queue, every: sec(3600), template: { name: id } });
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await h.client.listSchedules({ queue, pageSize: 2, pageToken });
      expect(page.schedules.length).toBeLessThanOrEqual(2);
      seen.push(...page.schedules.map((s) => s.id));
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken && pages < 20);
    expect(pages).toBe(3);
    expect(seen.sort()).toEqual(ids);
  });

  it('deletes a schedule together with its next, not yet due run', async () => {
    const queue = await h.newQueue();
    await h.client.upsertSchedule({ id: 'gone', queue, cron: '0 0 1 1 *', template: { name: 'x' } });
    const before = await h.client.listJobs({ queue, states: [pb.JobState.JOB_STATE_DELAYED] });
    expect(before.jobs).toHaveLength(1);
    await h.client.deleteSchedule(queue, 'gone');
    await expect(h.client.getSchedule(queue, 'gone')).rejects.toMatchObject({ code: status.NOT_FOUND });
    await expect(h.client.listSchedules({ queue })).resolves.toMatchObject({ schedules: [] });
    await expect(h.client.listJobs({ queue, states: [pb.JobState.JOB_STATE_DELAYED] })).resolves.toMatchObject({ jobs: [] });
  });

  it('rejects a delete of an unknown schedule with NOT_FOUND', async () => {
    const queue = await h.newQueue();
    await expect(h.client.deleteSchedule(queue, 'nope')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });
});

describe('validation', () => {
  it('rejects a bad cron expression with INVALID_ARGUMENT naming schedule.cron, storing nothing', async () => {
    const queue = await h.newQueue();
    await expect(h.client.upsertSchedule({ id: 'bad', queue, cron: 'every tuesday', template: { name: 'x' } })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('schedule.cron'),
    });
    await expect(h.client.getSchedule(queue, 'bad')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('rejects an unknown time zone with INVALID_ARGUMENT naming schedule.timezone', async () => {
    const queue = await h.newQueue();
    await expect(h.client.upsertSchedule({ id: 'tz', queue, cron: '0 * * * *', timezone: 'Mars/Olympus_Mons', template: { name: 'x' } })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('schedule.timezone'),
    });
  });

  it('rejects an every below one second with INVALID_ARGUMENT naming schedule.every', async () => {
    const queue = await h.newQueue();
    await expect(h.client.upsertSchedule({ id: 'fast', queue, every: { seconds: 0, nanos: 500_000_000 }, template: { name: 'x' } })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('schedule.every'),
    });
  });

  it('rejects a schedule without a trigger with INVALID_ARGUMENT', async () => {
    const queue = await h.newQueue();
    await expect(h.client.upsertSchedule({ id: 'none', queue, template: { name: 'x' } })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  });

  it('rejects a template with a delay with INVALID_ARGUMENT naming the option', async () => {
    const queue = await h.newQueue();
    await expect(h.client.upsertSchedule({ id: 'd', queue, every: sec(60), template: { name: 'x', options: { delay: sec(5) } } })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('schedule.template.options.delay'),
    });
  });

  it('rejects a schedule on an unknown queue with NOT_FOUND', async () => {
    await expect(h.client.upsertSchedule({ id: 's', queue: uniqueQueue('missing'), every: sec(60), template: { name: 'x' } })).rejects.toMatchObject({
      code: status.NOT_FOUND,
    });
  });
});
