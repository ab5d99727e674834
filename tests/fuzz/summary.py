"""Summaries for run.sh.

  summary.py statuses STATS_FILE SPEC...
      what the run's requests got, per documented operation and status (the
      `after_call` tally in hooks.py), so that a CI log shows how deep the
      generated requests reached (2xx) and how many were refused (4xx).
  summary.py junit REPORT_DIR...
      the closing line, over schemathesis' JUnit reports (one test case per
      operation): `schemathesis: N passed, N failed`.
"""

import collections
import glob
import os
import sys
import xml.etree.ElementTree as ET

import yaml


def statuses(stats: str, specs: list[str]) -> None:
    documented = set()
    for f in specs:
        with open(f) as fh:
            for path, ops in yaml.safe_load(fh)["paths"].items():
                documented.update(f"{m.upper()} {path}" for m in ops)
    seen = collections.defaultdict(collections.Counter)
    with open(stats) as fh:
        for line in fh:
            method, path, status = line.split()
            op = f"{method} {path}"
            seen[op if op in documented else "(methods the spec does not list)"][status] += 1
    for op in sorted(seen):
        counts = " ".join(f"{s}:{n}" for s, n in sorted(seen[op].items()))
        print(f"  {op:<72} {counts}")


def junit(dirs: list[str]) -> None:
    passed = failed = 0
    for d in dirs:
        for f in glob.glob(os.path.join(d, "*.xml")):
            for case in ET.parse(f).getroot().iter("testcase"):
                if case.find("failure") is not None or case.find("error") is not None:
                    failed += 1
                elif case.find("skipped") is None:
                    passed += 1
    print(f"schemathesis: {passed} passed, {failed} failed")


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "statuses":
        statuses(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 2 and sys.argv[1] == "junit":
        junit(sys.argv[2:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
