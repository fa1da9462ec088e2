// Smoke test: light load; p95 < 500 ms and no errors.
import { config, dashboardRequest } from './common.js';

const smoke = config.smoke || {};
export const options = {
  scenarios: {
    smoke: {
      executor: 'constant-arrival-rate',
      rate: smoke.rate || 3,
      timeUnit: '1s',
      duration: smoke.duration || '30s',
      preAllocatedVUs: 5,
      maxVUs: 20,
    },
  },
  thresholds: {
    http_req_duration: [`p(95)<${smoke.p95_ms || 500}`],
    http_req_failed: ['rate==0'],
  },
};

export default dashboardRequest;
