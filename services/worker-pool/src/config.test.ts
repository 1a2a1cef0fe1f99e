import { loadWorkerPoolEnv } from './config';

describe('JOBMESH_SHARED_CONNECTIONS', () => {
  it('is off unless set to true', () => {
    expect(loadWorkerPoolEnv({}).JOBMESH_SHARED_CONNECTIONS).toBe(false);
    expect(loadWorkerPoolEnv({ JOBMESH_SHARED_CONNECTIONS: 'false' }).JOBMESH_SHARED_CONNECTIONS).toBe(false);
    expect(loadWorkerPoolEnv({ JOBMESH_SHARED_CONNECTIONS: 'true' }).JOBMESH_SHARED_CONNECTIONS).toBe(true);
  });

  it('refuses anything but true or false, naming the variable', () => {
    expect(() => loadWorkerPoolEnv({ JOBMESH_SHARED_CONNECTIONS: 'yes' })).toThrow(/JOBMESH_SHARED_CONNECTIONS must be true or false/);
  });
});
