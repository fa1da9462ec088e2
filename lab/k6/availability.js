// Open-loop load for the availability figures: RATE requests/s for DURATION, whatever the
// service does meanwhile. Nine requests in ten read the history endpoint; one in ten asks
// /api/v1/version, so that an answer from a release that must serve no one (FORBIDDEN, a
// version string) is counted. k6's own http_req_failed counts the failed requests.
import http from 'k6/http';
import { Counter } from 'k6/metrics';

const E = __ENV;
const forbidden = new Counter('forbidden_version_answers');

export const options = {
  scenarios: {
    open_loop: {
      executor: 'constant-arrival-rate', rate: Number(E.RATE || 100), timeUnit: '1s',
      duration: E.DURATION || '30s', preAllocatedVUs: 50, maxVUs: 400,
    },
  },
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
};

export default function () {
  const version = __ITER % 10 === 0;
  const path = version ? '/api/v1/version' : '/api/v1/metrics/history?type=cpu&duration=1h';
  const res = http.get(`${E.BASE_URL}${path}`, { timeout: '10s' });
  const served = version && res.status === 200 && E.FORBIDDEN
    && res.body.includes(`"version":"${E.FORBIDDEN}"`);
  forbidden.add(served ? 1 : 0);
}
