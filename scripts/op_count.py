"""The kernel counter of `triadapt bench --ops` (src/op_count.rs) for the PEFT peer, from
torch.profiler's events: the same RecordFunction events, the same rule, the same op classes
(assets/op_count_rules.txt).

An ATen op (RecordFunction scope FUNCTION, any thread) counts when no op other than a silent one
starts inside it (a leaf once silent ops are removed); silent ops never count; "one" ops count
once and nothing inside them counts. Autograd node events (scope BACKWARD_FUNCTION) and user
annotations are not ops: only the ops inside them are seen.

    with OpCounter() as c:
        step()
    c.count, c.by_name
"""

import collections
import pathlib

import torch
from torch.profiler import ProfilerActivity, profile

RULES_PATH = pathlib.Path(__file__).resolve().parent.parent / "assets" / "op_count_rules.txt"
FUNCTION = 0  # at::RecordScope::FUNCTION


def load_rules(path=RULES_PATH):
    """{name: class} and [(prefix, class)] from the rules file (`CLASS OP` lines)."""
    exact, prefixes = {}, []
    for i, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) != 2 or words[0] not in ("silent", "one"):
            raise ValueError(f"{path} line {i}: expected `silent|one OP`, found {line!r}")
        cls, name = words
        if name.endswith("*"):
            prefixes.append((name[:-1], cls))
        else:
            exact[name] = cls
    return exact, prefixes


def classify(name, rules):
    # Only ATen ops are ops: the engine's `autograd::engine::evaluate_function: ...` ranges,
    # `detach` and user ranges of the same scope launch nothing themselves.
    if not name.startswith("aten::"):
        return "silent"
    exact, prefixes = rules
    if name in exact:
        return exact[name]
    for prefix, cls in prefixes:
        if name.startswith(prefix):
            return cls
    return "leaf"


def counted_events(events, rules):
    """The FunctionEvents that count, by the rule."""
    ops = [e for e in events if e.scope == FUNCTION]
    cls = {id(e): classify(e.name, rules) for e in ops}

    def op_parent(e):
        """The nearest enclosing op (skipping autograd nodes and annotations)."""
        p = e.cpu_parent
        while p is not None and id(p) not in cls:
            p = p.cpu_parent
        return p

    has_counted_child, inside_one = set(), set()
    for e in ops:
        p = op_parent(e)
        if cls[id(e)] != "silent":
            q = p
            while q is not None and cls[id(q)] == "silent":
                q = op_parent(q)
            if q is not None:
                has_counted_child.add(id(q))
        while p is not None:
            if cls[id(p)] == "one":
                inside_one.add(id(e))
                break
            p = op_parent(p)
    counted = []
    for e in ops:
        c = cls[id(e)]
        if c == "silent" or id(e) in inside_one:
            continue
        if c == "one" or id(e) not in has_counted_child:
            counted.append(e)
    return counted


def count_events(events, rules):
    """(count, Counter of counted names) over a profiler's FunctionEvents."""
    names = collections.Counter(e.name for e in counted_events(events, rules))
    return sum(names.values()), names


PHASE = "phase::"


def count_by_phase(events, rules):
    """{phase: count} of the counted ops inside `record_function("phase::NAME")` ranges (the
    innermost range that holds an op's start, on any thread); ops outside every range are left
    out."""
    ranges = sorted((e.time_range.start, e.time_range.end, e.name[len(PHASE):]) for e in events if e.name.startswith(PHASE))
    counts = collections.Counter()
    for e in counted_events(events, rules):
        t = e.time_range.start
        inside = [r for r in ranges if r[0] <= t <= r[1]]
        if inside:
            counts[max(inside)[2]] += 1
    return counts


class OpCounter:
    """Counts the ops run inside a `with` block (CPU activity: every op is recorded there)."""

    def __init__(self, rules=None):
        self.rules = rules or load_rules()
        self.count, self.by_name = 0, collections.Counter()

    def __enter__(self):
        self._prof = profile(activities=[ProfilerActivity.CPU], record_shapes=False)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc):
        self._prof.__exit__(*exc)
        if exc[0] is None:
            events = self._prof.events()
            self.count, self.by_name = count_events(events, self.rules)
            self.by_phase = count_by_phase(events, self.rules)
        return False


def hand_sequence():
    """The sequence the tests count by hand (tests/op_count.rs runs the same in Rust): a linear
    with bias, a softmax, a sum, backward, and an in-place update of the weight."""
    torch.manual_seed(0)
    x = torch.randn(4, 3)
    w = torch.randn(2, 3, requires_grad=True)
    b = torch.randn(2, requires_grad=True)
    with OpCounter() as c:
        loss = torch.nn.functional.linear(x, w, b).softmax(-1).sum()
        loss.backward()
        with torch.no_grad():
            w.sub_(w.grad * 0.1)
    return c


if __name__ == "__main__":
    c = hand_sequence()
    print(c.count)
    for name, n in sorted(c.by_name.items()):
        print(f"{name}\t{n}")
