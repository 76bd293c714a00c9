"""
Run critest in every configuration and print the table:

    .venv/bin/python -m tests.conformance [REPORT_DIR] [--runtime LABEL]... [--mode MODE]...

Reports and logs stay in REPORT_DIR (default /tmp/ics-conformance).
"""

import argparse
import os
import sys

from tests.conformance import critest


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.conformance")
    parser.add_argument("report_dir", nargs="?", default="/tmp/ics-conformance")
    parser.add_argument("--runtime", action="append", choices=list(critest.RUNTIMES))
    parser.add_argument("--mode", action="append", choices=critest.MODES)
    parser.add_argument("--focus", action="append", default=[],
                        help="ginkgo focus regular expression (repeatable)")
    options = parser.parse_args(argv)
    results = []
    for runtime in options.runtime or critest.RUNTIMES:
        reason = critest.skip_reason(critest.RUNTIMES[runtime])
        if reason:
            print(f"{runtime}: skipped: {reason}")
            continue
        for mode in options.mode or critest.MODES:
            result = critest.run(runtime, mode, os.path.abspath(options.report_dir),
                                 focus=options.focus)
            results.append(result)
            print(f"{runtime} {mode}: {result.summary()} in {result.duration:.0f} s",
                  flush=True)
    print()
    print(critest.table(results))
    for result in results:
        if result.failures:
            print(f"\n{result.runtime} {result.mode} failures:")
            print("\n".join(critest.failure_reasons(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
