// Step test: ramp up to the peak rate, then hold it; p95 < 800 ms at the peak, < 1% errors.
import { config, dashboardRequest } from './common.js';

const step = config.step || {};
const peak = step.peak_rate || 100;
const ramp = step.ramp_duration || '60s';
export const options = {
  scenarios: {
    ramp: {
      executor: 'ramping-arrival-rate',
      startRate: Math.max(1, Math.floor(peak / 10)),
      timeUnit: '1s',
      preAllocatedVUs: 20,
      maxVUs: step.max_vus || 200,
      stages: [{ target: peak, duration: ramp }],
    },
    peak: {
      executor: 'constant-arrival-rate',
      rate: peak,
      timeUnit: '1s',
      duration: step.peak_duration || '60s',
      startTime: ramp,
      preAllocatedVUs: 50,
      maxVUs: step.max_vus || 200,
    },
  },
  thresholds: {
    'http_req_duration{scenario:peak}': [`p(95)<${step.p95_ms || 800}`],
    http_req_failed: [`rate<${step.max_error_rate || 0.01}`],
  },
};

export default dashboardRequest;
