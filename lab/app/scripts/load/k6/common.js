// Shared by the load tests: the configuration and one request of the dashboard's mix.
import http from 'k6/http';
import { check } from 'k6';

export const config = JSON.parse(open(__ENV.CONFIG));
const types = ['cpu', 'memory', 'disk', 'network'];
const durations = ['1h', '6h', '24h'];

export function dashboardRequest() {
  const type = types[Math.floor(Math.random() * types.length)];
  const duration = durations[Math.floor(Math.random() * durations.length)];
  const res = http.get(`${config.base_url}/api/v1/metrics/history?type=${type}&duration=${duration}`,
    { timeout: '10s' });
  check(res, { 'status is 200': (r) => r.status === 200 });
}
