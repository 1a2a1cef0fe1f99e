import { settlesWithin } from './within';

describe('settlesWithin', () => {
  it('is true for work that settles in time, and throws its rejection', async () => {
    await expect(settlesWithin(Promise.resolve(1), 1000)).resolves.toBe(true);
    await expect(settlesWithin(Promise.reject(new Error('boom')), 1000)).rejects.toThrow('boom');
  });

  it('is false once the time runs out on work that never settles', async () => {
    await expect(settlesWithin(new Promise(() => undefined), 10)).resolves.toBe(false);
  });
});
