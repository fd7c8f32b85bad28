"""Checks the chunk structure of lowered modules (blpa-lower-to-llvm with
chunk-size=N, N the first argument) read from stdin, split at '// -----':
every entry point only calls its chunks @<entry>_chunk0, 1, ... in order,
passing its own arguments; every chunk is internal, is called once and holds
1 to N runtime calls (the profiling hooks, blpa_profile_begin/_end around
each op of the training step, are not counted). Prints '<entry>: <calls> calls in <chunks> chunks' per
entry point and 'OK' at the end; exits non-zero on the first violation."""

import re
import sys

FUNC = re.compile(r"^\s*llvm\.func (internal )?@(\w+)\((.*?)\)( attributes .*)? \{$")
CALL = re.compile(r"llvm\.call @(\w+)\(([^)]*)\)")


def fail(message):
    print("error: " + message)
    sys.exit(1)


def functions(text):
    """{name: (internal, argument names, [(callee, args)])} of the function
    definitions in `text`."""
    result, current = {}, None
    for line in text.splitlines():
        match = FUNC.match(line)
        if match:
            args = [a.split(":")[0].strip()
                    for a in match.group(3).split(",") if a.strip()]
            current = (bool(match.group(1)), args, [])
            result[match.group(2)] = current
        elif current is not None and line.strip() == "}":
            current = None
        elif current is not None:
            for callee, args in CALL.findall(line):
                if callee.startswith("blpa_profile_"):
                    continue
                current[2].append(
                    (callee, [a.strip() for a in args.split(",") if a.strip()]))
    return result


def main():
    limit = int(sys.argv[1])
    for module in sys.stdin.read().split("// -----"):
        funcs = functions(module)
        entries = [n for n in funcs if n.startswith("blpa_") and
                   not re.search(r"_chunk\d+$", n)]
        chunks = {n for n in funcs if re.search(r"_chunk\d+$", n)}
        called = set()
        for entry in entries:
            internal, args, calls = funcs[entry]
            if internal:
                fail("entry point %s is internal" % entry)
            if not calls:
                fail("%s calls no chunk" % entry)
            total = 0
            for k, (callee, call_args) in enumerate(calls):
                if callee != "%s_chunk%d" % (entry, k):
                    fail("%s calls %s, expected %s_chunk%d" %
                         (entry, callee, entry, k))
                if call_args != args:
                    fail("%s passes %s to %s, not its arguments %s" %
                         (entry, call_args, callee, args))
                if callee not in funcs:
                    fail("%s is not defined" % callee)
                chunk_internal, chunk_args, chunk_calls = funcs[callee]
                if not chunk_internal:
                    fail("%s is not internal" % callee)
                if len(chunk_args) != len(args):
                    fail("%s takes %d arguments, %s %d" %
                         (callee, len(chunk_args), entry, len(args)))
                if not 1 <= len(chunk_calls) <= limit:
                    fail("%s makes %d calls, limit %d" %
                         (callee, len(chunk_calls), limit))
                if any(c in funcs for c, _ in chunk_calls):
                    fail("%s calls a generated function" % callee)
                called.add(callee)
                total += len(chunk_calls)
            print("%s: %d calls in %d chunks" % (entry, total, len(calls)))
        if chunks != called:
            fail("chunks never called: %s" % sorted(chunks - called))
    print("OK")


main()
