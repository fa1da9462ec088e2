"""The deployment checklist as code: `pyinfra -y inventories/<env>.py deploy.py`.

Phases run in the checklist's order; each lives in tasks/<phase>.py. The new release is built
before the backup (its migrations decide whether one is needed) and goes live only after the
database, Redis and .env are ready.
"""

from tasks import (
    backup,
    env_file,
    loadtest,
    migrate,
    monitor,
    preflight,
    redis,
    release,
    report,
    verify,
)
from tasks.runtime import DeployError, run_for, settings

s = settings()
try:
    plan = release.make_plan(s)
except DeployError as exc:
    raise SystemExit(f"{exc}\nNothing was changed.") from None
run = run_for()

report.start_phase("preflight")
preflight.preflight(s, plan)
report.start_phase("build")
run.ops["release built"] = release.build(s, plan)
report.start_phase("backup")
backup.backup(s, plan)
report.start_phase("migrate")
migrate.migrate(s, plan)
report.start_phase("redis")
redis_op = redis.redis(s, plan)
if redis_op is not None:
    run.ops["redis container"] = redis_op
report.start_phase("env_file")
run.ops[".env"] = env_file.env_file(s)
report.start_phase("release")
run.ops.update(release.switch(s, plan, run.ops[".env"]))
report.start_phase("verify")
verify.verify(s, plan)
report.start_phase("loadtest")
loadtest.loadtest(s, plan)
report.start_phase("monitor")
monitor.monitor(s, plan)
report.report(s, plan)
