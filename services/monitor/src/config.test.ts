import { loadMonitorEnv } from './config';

describe('the dashboard settings', () => {
  it('default to actions on and no trace link', () => {
    const env = loadMonitorEnv({});
    expect(env.JOBMESH_DASHBOARD_READ_ONLY).toBe(false);
    expect(env.JOBMESH_TRACE_UI_URL).toBeUndefined();
  });

  it('read JOBMESH_DASHBOARD_READ_ONLY as a boolean word', () => {
    expect(loadMonitorEnv({ JOBMESH_DASHBOARD_READ_ONLY: 'true' }).JOBMESH_DASHBOARD_READ_ONLY).toBe(true);
    expect(loadMonitorEnv({ JOBMESH_DASHBOARD_READ_ONLY: '1' }).JOBMESH_DASHBOARD_READ_ONLY).toBe(true);
    expect(loadMonitorEnv({ JOBMESH_DASHBOARD_READ_ONLY: 'false' }).JOBMESH_DASHBOARD_READ_ONLY).toBe(false);
    expect(() => loadMonitorEnv({ JOBMESH_DASHBOARD_READ_ONLY: 'maybe' })).toThrow(/JOBMESH_DASHBOARD_READ_ONLY/);
  });

  it('take a trace link only with {trace_id} in it', () => {
    expect(loadMonitorEnv({ JOBMESH_TRACE_UI_URL: 'http://jaeger:16686/trace/{trace_id}' }).JOBMESH_TRACE_UI_URL).toBe('http://jaeger:16686/trace/{trace_id}');
    expect(() => loadMonitorEnv({ JOBMESH_TRACE_UI_URL: 'http://jaeger:16686/trace/' })).toThrow(/must contain \{trace_id\}/);
  });
});
