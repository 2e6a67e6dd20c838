"""Counts test cases from the test.xml files of Bazel runs and prints "N passed, N failed".

Reads each run's build event protocol file (--build_event_json_file) to find the test.xml of
every test that ran (cached or not); a target that failed to build counts as one failure, a
target skipped as incompatible with the platform (host-only under --config=aarch64) not at all.
A skipped test case is listed and counts as neither; a test target that ran no test case at all
(a filter that matched nothing, registrations dropped by the linker) counts as a failure, since it
would otherwise pass silently; so does a run whose build failed (its tests are reported as skipped).
Exits non-zero if anything failed or nothing ran.
"""

import json
import sys
import urllib.parse
import xml.etree.ElementTree as ET


def count_xml(path):
    """(passed, failed, names of skipped cases) of one test.xml."""
    root = ET.parse(path).getroot()
    passed, failed, skipped = 0, 0, []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is None and case.get("status") != "notrun":
            passed += 1
        else:
            skipped.append(f"{case.get('classname', '')}.{case.get('name', '')}")
    return passed, failed, skipped


def count_run(bep_path, skipped: list, empty: list):
    """(passed, failed) of one Bazel run; appends "label: case" of skipped cases to `skipped` and the labels
    of test targets that ran no case (or the run, if its build failed) to `empty`."""
    passed = failed = 0
    tested = set()
    completed_tests = {}
    for line in open(bep_path):
        event = json.loads(line)
        ident = event.get("id", {})
        if "testResult" in ident:
            label = ident["testResult"]["label"]
            tested.add(label)
            result = event.get("testResult", {})
            xml = [o for o in result.get("testActionOutput", []) if o.get("name") == "test.xml"]
            if xml:
                p, f, s = count_xml(urllib.parse.urlparse(xml[0]["uri"]).path)
                skipped.extend(f"{label}: {case}" for case in s)
                if p + f + len(s) == 0 and result.get("status") == "PASSED":
                    empty.append(label)
                    f = 1
            else:
                p, f = 0, 0
            if result.get("status") != "PASSED" and f == 0:
                f = 1  # crashed or timed out before writing a failing test case
            passed, failed = passed + p, failed + f
        elif "buildFinished" in ident:
            code = event.get("finished", {}).get("exitCode", {}).get("name", "SUCCESS")
            if code not in ("SUCCESS", "TESTS_FAILED"):
                empty.append(f"{bep_path} (build {code})")
                failed += 1
        elif "targetCompleted" in ident and event.get("completed", {}).get("testSize"):
            completed_tests[ident["targetCompleted"]["label"]] = event["completed"].get("success", False)
        elif "targetCompleted" in ident and event.get("aborted", {}).get("reason", "SKIPPED") != "SKIPPED":
            completed_tests[ident["targetCompleted"]["label"]] = False  # incompatible ones are SKIPPED
    for label, success in completed_tests.items():
        if not success and label not in tested:
            failed += 1  # did not build
    return passed, failed


def main(paths):
    passed = failed = 0
    skipped, empty = [], []
    for path in paths:
        p, f = count_run(path, skipped, empty)
        passed, failed = passed + p, failed + f
    for label in empty:
        print(f"ran no test case (counted as failed): {label}")
    for case in skipped:
        print(f"skipped: {case}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
