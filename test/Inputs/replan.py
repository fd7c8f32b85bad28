"""Re-derives a memory plan from the IR alone, to check the planner's figures.

Reads a module printed in MLIR's generic form (--mlir-print-op-generic)
after --blpa-plan-memory on stdin (the first module in the stream; a
--mlir-print-ir-after dump works too) and restates, from the tensor types
and the op order only, what docs/design.md ("Memory plan") says a plan is:

  * a buffer per op result that is not a view (blpa.reshape) of another
    value, the parameter (blpa.param) or a function argument, of
    numel * element bytes (packed codes: ceil(numel * bits / 8));
  * live from its defining op to its last reader (a view's readers count),
    the function's return included;
  * an in-place result (the planner's choice, which --blpa-verify-memory-plan
    checks is allowed) continues its operand's buffer: taken from the IR
    where a result has the recorded offset and the size of an operand buffer
    that dies at that op;
  * lower bound: the largest sum of live buffer bytes at one op (plus the
    workspace); saved activation: a buffer a forward-phase op defines and a
    backward-phase op reads;
  * placement: greedy by size (largest first, ties by first op), each at the
    lowest ALIGNMENT-aligned offset clear of the placed buffers live at the
    same time, then everything moved up by the workspace.

It checks every recorded offset, blpa.arena_size, blpa.lower_bound_bytes
and blpa.saved_activation_bytes against its own figures and prints, per
planned function, `@NAME: arena A, lower bound L, saved S, buffers B, peak
op P` and then the executable's totals (the entry function's arena, each
parameter once: parameters, gradients and momenta of trainable ones, state
of the others; batch: the entry's arguments and @forward's results) as
`total T = arena A + persistent P + batch B`; with --limit N also `fits`
or `over`. Exits 1 with `error: ...` on the first disagreement.

With --buffers N it lists each function's N largest buffers (bytes,
offset, first and last op).

usage: replan.py [--alignment N] [--limit BYTES] [--buffers N] < planned.mlir
"""

import argparse
import re
import sys

VIEW_OPS = {"blpa.reshape"}
OPERATION = re.compile(
    r'^\s*(?:(%[\w.$-]+)(?::(\d+))? = )?"([\w.]+)"\((.*?)\)(.*)$')
FUNC_NAME = re.compile(r'sym_name = "([\w.$-]+)"')
OFFSETS = re.compile(r"blpa\.offsets = array<i64(?:: ([-\d, ]*))?>")
PHASE = re.compile(r'blpa\.phase = "(\w+)"')
INT_ATTR = re.compile(r"(blpa\.\w+) = (-?\d+) : i64")
PARAM_NAME = re.compile(r'name = "([^"]*)"')
ARGUMENTS = re.compile(r"^\^bb0\((.*)\):$")


def fail(message):
    print("error: " + message)
    sys.exit(1)


def split_top(text):
    """`text` split at the commas outside <>, () and []."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "<(["
        depth -= ch in ">)]"
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def type_bytes(type_text):
    """Bytes of a ranked tensor or !blpa.packed type: numel times the
    element's bits, packed codes rounded up to whole bytes."""
    match = (re.match(r"!blpa\.packed<((?:\d+x)*)i(\d+),", type_text) or
             re.match(r"tensor<((?:\d+x)*)(?:f|i|si|ui)(\d+)>", type_text))
    if not match:
        fail("cannot size type " + type_text)
    numel = 1
    for d in match.group(1).split("x")[:-1]:
        numel *= int(d)
    return (numel * int(match.group(2)) + 7) // 8


def result_types(rest):
    """The result types of an operation line's trailing function type."""
    arrow = rest.rfind(") -> ")
    if arrow < 0:
        return []
    results = rest[arrow + len(") -> "):].strip()
    if results.startswith("(") and results.endswith(")"):
        results = results[1:-1]
    return split_top(results)


class Op:
    def __init__(self, index, name, results, operands, rest):
        self.index, self.name = index, name
        self.results, self.operands = results, operands
        self.types = result_types(rest)
        offsets = OFFSETS.search(rest)
        self.offsets = ([int(v) for v in offsets.group(1).split(",")]
                        if offsets and offsets.group(1) else None)
        phase = PHASE.search(rest)
        self.phase = phase.group(1) if phase else None
        param = PARAM_NAME.search(rest)
        self.param_name = param.group(1) if param else None
        self.trainable = "trainable" in rest


class Function:
    def __init__(self, name, arguments):
        self.name, self.arguments = name, arguments
        self.ops, self.attrs = [], {}


def parse_module(lines):
    """[Function] of the module in `lines`."""
    functions, current, pending_name = [], None, None
    for line in lines:
        stripped = line.strip()
        if '"func.func"()' in stripped:
            pending_name = FUNC_NAME.search(stripped).group(1)
            if stripped.endswith("({"):
                current = Function(pending_name, [])
                functions.append(current)
            continue
        arguments = ARGUMENTS.match(stripped)
        if arguments and current is not None:
            current.arguments = [split_top(a)[0].split(":", 1)
                                 for a in split_top(arguments.group(1))]
            current.arguments = [(n.strip(), t.strip())
                                 for n, t in current.arguments]
            continue
        if stripped.startswith("})") and current is not None:
            current.attrs = {k: int(v) for k, v in INT_ATTR.findall(stripped)}
            current = None
            continue
        op = OPERATION.match(line)
        if not op or current is None:
            continue
        name, count = op.group(1), op.group(2)
        if name is None:
            results = []
        elif count is None:
            results = [name]
        else:
            results = ["%s#%d" % (name, i) for i in range(int(count))]
        operands = re.findall(r"%[\w.$#-]+", op.group(4))
        current.ops.append(Op(len(current.ops), op.group(3), results,
                              operands, op.group(5)))
    return functions


class Buffer:
    def __init__(self, values, bytes_, start):
        self.values, self.bytes, self.start, self.end = values, bytes_, start, start
        self.saved, self.offset = False, None


def analyze(func, recorded):
    """(buffers, {value: buffer or None}) of a planned function;
    `recorded`: each op result's recorded offset."""
    defining, root = {}, {}
    for op in func.ops:
        for i, value in enumerate(op.results):
            defining[value] = (op, i)
            if op.name in VIEW_OPS:
                root[value] = root.get(op.operands[0])
            elif op.name == "blpa.param":
                root[value] = None
            else:
                root[value] = value
    last_read = {}
    for op in func.ops:
        for operand in op.operands:
            last_read[operand] = op.index
    value_end = {}
    for value, (op, _) in defining.items():
        end = max(last_read.get(value, op.index), op.index)
        if root.get(value):
            r = root[value]
            value_end[r] = max(value_end.get(r, 0), end)
    buffers, buffer_of = [], {}
    for op in func.ops:
        for i, value in enumerate(op.results):
            if not root.get(value):
                continue
            if root[value] == value:
                bytes_ = type_bytes(op.types[i])
                shared = in_place_buffer(op, i, bytes_, root, buffer_of,
                                         recorded)
                if shared is None:
                    shared = Buffer([], bytes_, op.index)
                    buffers.append(shared)
                shared.values.append(value)
                shared.end = max(shared.end, value_end[value])
                buffer_of[value] = shared
            buffer = buffer_of[root[value]]
            readers = [o for o in func.ops if value in o.operands]
            if op.phase == "forward" and any(o.phase == "backward"
                                             for o in readers):
                buffer.saved = True
    return buffers, {v: buffer_of.get(r) if r else None
                     for v, r in root.items()}


def in_place_buffer(op, index, bytes_, root, buffer_of, recorded):
    """The operand buffer result `index` of `op` continues (see above)."""
    for operand in op.operands:
        buffer = buffer_of.get(root.get(operand))
        if (buffer and buffer.end == op.index and buffer.bytes == bytes_ and
                recorded[buffer.values[0]] == op.offsets[index]):
            return buffer
    return None


def align(value, alignment):
    return (value + alignment - 1) // alignment * alignment


def place(buffers, alignment, workspace):
    """Greedy by size; returns the arena's size."""
    placed, arena = [], 0
    for buffer in sorted(buffers, key=lambda b: (-b.bytes, b.start)):
        size = align(buffer.bytes, alignment)
        rivals = [p for p in placed
                  if p.start <= buffer.end and buffer.start <= p.end]
        for offset in sorted({0} | {align(p.offset + p.bytes, alignment)
                                    for p in rivals}):
            if all(offset + size <= p.offset or p.offset + p.bytes <= offset
                   for p in rivals):
                break
        buffer.offset = offset
        placed.append(buffer)
        arena = max(arena, offset + size)
    for buffer in buffers:
        buffer.offset += workspace
    return arena + workspace


def check_function(func, alignment, largest):
    """Re-plans `func`, checks its recorded plan, prints its figures and
    its `largest` largest buffers; returns its arena."""
    for op in func.ops:
        if op.results and op.offsets is None:
            fail("@%s: %s has no blpa.offsets" % (func.name, op.name))
    recorded = {v: op.offsets[i] for op in func.ops
                for i, v in enumerate(op.results)}
    buffers, buffer_of = analyze(func, recorded)
    workspace = func.attrs.get("blpa.workspace_bytes", 0)
    arena = place(buffers, alignment, workspace)
    live = [workspace] * len(func.ops)
    for buffer in buffers:
        for i in range(buffer.start, buffer.end + 1):
            live[i] += buffer.bytes
    lower_bound = max(live) if live else 0
    saved = sum(b.bytes for b in buffers if b.saved)
    for value, buffer in buffer_of.items():
        want = buffer.offset if buffer else -1
        if recorded[value] != want:
            fail("@%s: %s recorded at offset %d, re-planned at %d" %
                 (func.name, value, recorded[value], want))
    for attr, want in (("blpa.arena_size", arena),
                       ("blpa.lower_bound_bytes", lower_bound),
                       ("blpa.saved_activation_bytes", saved)):
        if func.attrs.get(attr) != want:
            fail("@%s: %s is %s, re-planned %d" %
                 (func.name, attr, func.attrs.get(attr), want))
    print("@%s: arena %d, lower bound %d, saved %d, buffers %d, peak op %d"
          % (func.name, arena, lower_bound, saved, len(buffers),
             live.index(lower_bound)))
    for b in sorted(buffers, key=lambda b: (-b.bytes, b.start))[:largest]:
        print("  buffer %d bytes at %d, ops %d..%d" %
              (b.bytes, b.offset, b.start, b.end))
    return arena


def totals(functions, arenas):
    """(entry arena, persistent bytes, batch bytes) of the executable."""
    by_name = {f.name: f for f in functions}
    entry = by_name.get("train_step") or by_name.get("forward")
    if entry is None or entry.name not in arenas:
        return None
    params = {}
    for func in functions:
        for op in func.ops:
            if op.name == "blpa.param":
                params.setdefault(op.param_name,
                                  (type_bytes(op.types[0]), op.trainable))
    copies = 3 if "train_step" in by_name else 1
    persistent = sum(b * (copies if trainable else 1)
                     for b, trainable in params.values())
    batch = sum(type_bytes(t) for _, t in entry.arguments)
    forward = by_name.get("forward")
    if forward:
        ret = [op for op in forward.ops if op.name == "func.return"][0]
        defined = {v: op.types[i] for op in forward.ops
                   for i, v in enumerate(op.results)}
        defined.update(dict(forward.arguments))
        batch += sum(type_bytes(defined[v]) for v in ret.operands)
    return arenas[entry.name], persistent, batch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--alignment", type=int, default=64)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--buffers", type=int, default=0)
    args = parser.parse_args()
    # Modules of -split-input-file output, or the first of IR dumps.
    text = sys.stdin.read().split("\n// -----// IR Dump")[0]
    for module in re.split(r"^// -----$", text, flags=re.M):
        functions = parse_module(module.splitlines())
        planned = [f for f in functions if "blpa.arena_size" in f.attrs]
        if not planned:
            fail("no planned function (blpa.arena_size) in a module")
        arenas = {f.name: check_function(f, args.alignment, args.buffers) for f in planned}
        parts = totals(functions, arenas)
        if parts is None:
            continue
        print("total %d = arena %d + persistent %d + batch %d" %
              ((sum(parts),) + parts))
        if args.limit is not None:
            print("fits" if sum(parts) <= args.limit else "over")
    return 0


if __name__ == "__main__":
    sys.exit(main())
