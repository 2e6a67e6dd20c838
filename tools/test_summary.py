"""Counts test cases from the test.xml files of Bazel runs and prints "N passed, N failed".

Reads each run's build event protocol file (--build_event_json_file) to find the test.xml of
every test that ran (cached or not); a target that failed to build counts as one failure, a
target skipped as incompatible with the platform (host-only under --config=aarch64) not at all.
Exits non-zero if anything failed or nothing ran.
"""

import json
import sys
import urllib.parse
import xml.etree.ElementTree as ET


def count_xml(path):
    root = ET.parse(path).getroot()
    passed = failed = 0
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is None and case.get("status") != "notrun":
            passed += 1
    return passed, failed


def count_run(bep_path):
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
                p, f = count_xml(urllib.parse.urlparse(xml[0]["uri"]).path)
            else:
                p, f = 0, 0
            if result.get("status") != "PASSED" and f == 0:
                f = 1  # crashed or timed out before writing a failing test case
            passed, failed = passed + p, failed + f
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
    for path in paths:
        p, f = count_run(path)
        passed, failed = passed + p, failed + f
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
