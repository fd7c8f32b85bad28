"""Checks that no test can plan memory without the independent check.

Scans the lit tests under the directory given as the first argument for
RUN lines that run --blpa-plan-memory without --blpa-verify-memory-plan
(lines expecting failure, `not blpa-opt ...`, are exempt: they plan
nothing), and scans every test file (lit and pytest) under it and the
benchmark scripts under the second argument for --no-verify-memory-plan,
which only measurements may pass. Prints each offence and exits 1, else
prints how many RUN lines plan and 'OK'."""

import os
import re
import sys

RUN = re.compile(r"^\s*(?://|#)\s*RUN:\s*(.*)$")
TEST_SUFFIXES = (".mlir", ".onnxtext", ".test", ".py")


def files_under(root):
    for directory, _, names in os.walk(root):
        for name in sorted(names):
            if name.endswith(TEST_SUFFIXES):
                yield os.path.join(directory, name)


def main():
    test_root, bench_root = sys.argv[1], sys.argv[2]
    this_file = os.path.abspath(__file__)
    offences, planning = [], 0
    for root in (test_root, bench_root):
        for path in files_under(root):
            if os.path.abspath(path) == this_file:
                continue
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
            for number, line in enumerate(lines, 1):
                where = "%s:%d" % (os.path.relpath(path, test_root), number)
                if "--no-verify-memory-plan" in line:
                    offences.append(where + ": passes --no-verify-memory-plan")
                run = RUN.match(line)
                if not run or "--blpa-plan-memory" not in run.group(1):
                    continue
                if run.group(1).startswith("not "):
                    continue
                planning += 1
                if "--blpa-verify-memory-plan" not in run.group(1):
                    offences.append(where + ": plans without "
                                    "--blpa-verify-memory-plan")
    for offence in offences:
        print("error: " + offence)
    if offences:
        return 1
    print("%d RUN lines plan memory, all verified" % planning)
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
