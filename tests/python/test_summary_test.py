"""tools/test_summary.py on hand-made build event files: counts, a skipped case listed, a target that ran no
test case counted as failed, a target that did not build counted once, a run whose build failed counted."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "test_summary.py")

XML = {
    "ok": '<testsuites><testsuite><testcase classname="A" name="one"/><testcase classname="A" name="two"/>'
          '</testsuite></testsuites>',
    "mixed": '<testsuites><testsuite><testcase classname="B" name="bad"><failure message="x"/></testcase>'
             '<testcase classname="B" name="later"><skipped/></testcase></testsuite></testsuites>',
    "empty": '<testsuites><testsuite name="none" tests="0"/></testsuites>',
}


class TestSummaryTest(absltest.TestCase):

    def test_counts_skips_and_empty_targets(self):
        d = tempfile.mkdtemp()
        events = []
        for name, xml in XML.items():
            path = os.path.join(d, f"{name}.xml")
            with open(path, "w") as f:
                f.write(xml)
            status = "FAILED" if name == "mixed" else "PASSED"
            events.append({"id": {"testResult": {"label": f"//t:{name}"}},
                           "testResult": {"status": status,
                                          "testActionOutput": [{"name": "test.xml", "uri": f"file://{path}"}]}})
        events.append({"id": {"targetCompleted": {"label": "//t:broken"}},
                       "completed": {"success": False, "testSize": "SMALL"}})
        events.append({"id": {"buildFinished": {}}, "finished": {"exitCode": {"name": "TESTS_FAILED"}}})
        bep = os.path.join(d, "run.json")
        with open(bep, "w") as f:
            f.write("\n".join(json.dumps(e) for e in events) + "\n")
        # A second run whose build failed: its tests never ran, which must not pass as "0 failed".
        broken_build = os.path.join(d, "arm.json")
        with open(broken_build, "w") as f:
            f.write(json.dumps({"id": {"buildFinished": {}}, "finished": {"exitCode": {"name": "BUILD_FAILURE"}}}))
        result = subprocess.run([sys.executable, SCRIPT, bep, broken_build], capture_output=True, text=True)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout.splitlines(), [
            "ran no test case (counted as failed): //t:empty",
            f"ran no test case (counted as failed): {broken_build} (build BUILD_FAILURE)",
            "skipped: //t:mixed: B.later",
            "2 passed, 4 failed",  # bad, empty, broken, the failed build
        ])


if __name__ == "__main__":
    absltest.main()
