// The checklist's step 7 as the deploy runs it: MODE=smoke or MODE=step, thresholds from
// group_vars passed as -e variables. k6 exits non-zero when a threshold is crossed.
import http from 'k6/http';
import { check } from 'k6';

const E = __ENV;
const types = ['cpu', 'memory', 'disk', 'network'];
const durations = ['1h', '6h', '24h'];

function scenarios() {
  if (E.MODE === 'smoke') {
    return {
      smoke: {
        executor: 'constant-arrival-rate', rate: Number(E.RATE), timeUnit: '1s',
        duration: E.DURATION, preAllocatedVUs: 5, maxVUs: 20,
      },
    };
  }
  return {
    ramp: {
      executor: 'ramping-arrival-rate', startRate: Math.max(1, Math.floor(E.RATE / 10)),
      timeUnit: '1s', preAllocatedVUs: 20, maxVUs: 200,
      stages: [{ target: Number(E.RATE), duration: E.RAMP }],
    },
    peak: {
      executor: 'constant-arrival-rate', rate: Number(E.RATE), timeUnit: '1s',
      duration: E.HOLD, startTime: E.RAMP, preAllocatedVUs: 50, maxVUs: 200,
    },
  };
}

export const options = {
  scenarios: scenarios(),
  thresholds: E.MODE === 'smoke'
    ? { http_req_duration: [`p(95)<${E.P95_MS}`], http_req_failed: ['rate==0'] }
    : {
      'http_req_duration{scenario:peak}': [`p(95)<${E.P95_MS}`],
      http_req_failed: [`rate<${E.MAX_ERROR_RATE}`],
    },
  summaryTrendStats: ['avg', 'med', 'p(95)', 'max'],
};

export default function () {
  const type = types[Math.floor(Math.random() * types.length)];
  const duration = durations[Math.floor(Math.random() * durations.length)];
  const res = http.get(`${E.BASE_URL}/api/v1/metrics/history?type=${type}&duration=${duration}`,
    { timeout: '10s' });
  check(res, { 'status is 200': (r) => r.status === 200 });
}
