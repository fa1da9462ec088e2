import xml.etree.ElementTree as ET

from tasks.records import junit_xml


def _record(failure: str, status: str, metrics: list[tuple[str, str, str, bool]]) -> dict:
    return {
        "failure": failure,
        "status": status,
        "seconds": 42.5,
        "phases": [
            {"phase": "preflight", "seconds": 1.0},
            {"phase": "verify", "seconds": 2.5},
        ],
        "success_metrics": [
            {"metric": m, "threshold": t, "measured": v, "pass": ok} for m, t, v, ok in metrics
        ],
    }


def test_junit_has_a_case_per_phase_and_metric_and_says_what_failed():
    records = {
        "app1": _record(
            "verify: verification failed: history endpoint 900 ms",
            "failed, rolled back",
            [
                ("history endpoint", "200, < 500 ms", "[200], max 900 ms", False),
                ("backup verified (pg_restore --list)", "readable", "10 bytes", True),
            ],
        ),
        "app2": _record("", "success", [("history endpoint", "200, < 500 ms", "3 ms", True)]),
    }
    root = ET.fromstring(junit_xml("staging", records))
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"staging.app1", "staging.app2"}
    app1 = suites["staging.app1"]
    assert (app1.get("tests"), app1.get("failures")) == ("4", "2")
    failed = {
        (c.get("classname"), c.get("name")): c.find("failure").get("message")
        for c in app1.findall("testcase")
        if c.find("failure") is not None
    }
    assert failed == {
        ("staging.app1.phases", "verify"): "verify: verification failed: history endpoint 900 ms",
        (
            "staging.app1.success_metrics",
            "history endpoint",
        ): "measured [200], max 900 ms, threshold 200, < 500 ms",
    }
    assert suites["staging.app2"].get("failures") == "0"


def test_the_hand_offs_show_in_the_reports_facts_as_they_did():
    from tasks.context import Artifact, Backup, Migrations, Run

    run = Run(host="app1", env="lab")
    run.facts["serving"] = "v2"
    assert run.report_facts() == {"serving": "v2"} and run.applied_migrations() == []
    run.backup = Backup(taken=False, reason="nothing will change")
    run.migrations = Migrations(applied=["003"], contract_pending=["006"])
    run.artifact = Artifact(sha256="ab" * 32, built_on="app1")
    facts = run.report_facts()
    assert facts["backup"] == {"taken": False, "reason": "nothing will change"}
    assert facts["migrations"] == {"applied": ["003"], "contract_pending": ["006"]}
    assert facts["artifact"] == {"sha256": "ab" * 32, "built_on": "app1"}
    assert run.applied_migrations() == ["003"]
