"""tools/test_summary.py on hand-made build event files: counts, a skipped case listed, a target that ran no
test case counted as failed, a target that did not build counted once."""

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
        bep = os.path.join(d, "run.json")
        with open(bep, "w") as f:
            f.write("\n".join(json.dumps(e) for e in events) + "\n")
        result = subprocess.run([sys.executable, SCRIPT, bep], capture_output=True, text=True)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout.splitlines(), [
            "ran no test case (counted as failed): //t:empty",
            "skipped: //t:mixed: B.later",
            "2 passed, 3 failed",  # bad, empty, broken
        ])


if __name__ == "__main__":
    absltest.main()
