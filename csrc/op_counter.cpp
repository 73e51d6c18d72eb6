// Counts the ATen ops that launch work, from LibTorch's own RecordFunction events (the events
// torch.profiler is built on). The rule is in src/op_count.rs's doc comment and the README
// ("Counting kernels"); the op classes come from assets/op_count_rules.txt through
// triadapt_ops_rule. The callback is registered only while counting: when off, no op pays for it.
#include <ATen/record_function.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

// How an op is counted (the numbers are the `kind` of triadapt_ops_rule).
enum Kind : int {
  // Counts when no op other than silent ones starts inside it (a leaf once silent ops are
  // removed).
  LEAF = 0,
  // Launches nothing itself (views, metadata, empty*): never counts; its children still can.
  SILENT = 1,
  // One launch whatever it dispatches inside: a multi-tensor op (_foreach_*, _fused_*, a
  // per-tensor loop on CPU), a GEMM with its bias (addmm: CPU copies the bias first, CUDA adds
  // it in the GEMM's epilogue). Counts once; nothing inside it counts.
  WHOLE = 2,
};

struct Rules {
  std::unordered_map<std::string, Kind> exact;
  std::vector<std::pair<std::string, Kind>> prefixes;
};

// Set before counting starts; read-only while the callback is registered.
Rules rules;
std::mutex control;
at::CallbackHandle handle = 0;

std::atomic<int64_t> total{0};
std::atomic<bool> keep_names{false};
std::mutex names_lock;
std::unordered_map<std::string, int64_t> by_name;

struct Frame {
  Kind kind;
  bool counted_child;
};
// Ops are entered and left on one thread (the autograd engine's threads included).
thread_local std::vector<Frame> stack;
thread_local int inside_whole = 0;

Kind classify(const char* name) {
  // Only ATen ops are ops: the autograd engine's ranges (`autograd::engine::evaluate_function:
  // MmBackward0`), `detach` and user ranges of the same scope launch nothing themselves.
  if (std::strncmp(name, "aten::", 6) != 0) return SILENT;
  auto it = rules.exact.find(name);
  if (it != rules.exact.end()) return it->second;
  for (const auto& p : rules.prefixes) {
    if (std::strncmp(name, p.first.c_str(), p.first.size()) == 0) return p.second;
  }
  return LEAF;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  Kind kind = classify(fn.name());
  if (kind != SILENT) {
    // The nearest enclosing op that is not silent now has a child that may launch work.
    for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
      if (it->kind != SILENT) {
        it->counted_child = true;
        break;
      }
    }
  }
  stack.push_back(Frame{kind, false});
  if (kind == WHOLE) ++inside_whole;
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (stack.empty()) return;
  Frame f = stack.back();
  stack.pop_back();
  if (f.kind == WHOLE) --inside_whole;
  if (f.kind == SILENT || inside_whole > 0) return;
  bool counts = f.kind == WHOLE || !f.counted_child;
  if (counts) total.fetch_add(1, std::memory_order_relaxed);
  if (keep_names.load(std::memory_order_relaxed)) {
    // Composite ops (not counted: their children are) are kept as "~name", to check the rules.
    std::string key = counts ? std::string(fn.name()) : std::string("~") + fn.name();
    std::lock_guard<std::mutex> g(names_lock);
    ++by_name[key];
  }
}

}  // namespace

extern "C" {

// Forgets every rule (only while not counting).
void triadapt_ops_clear_rules() {
  std::lock_guard<std::mutex> g(control);
  rules = Rules{};
}

// Classes `name` (a prefix of op names when `prefix` is non-zero) as `kind` (see Kind).
int triadapt_ops_rule(const char* name, int kind, int prefix) {
  if (kind < LEAF || kind > WHOLE) return -1;
  std::lock_guard<std::mutex> g(control);
  if (handle != 0) return -2;
  if (prefix) {
    rules.prefixes.emplace_back(name, static_cast<Kind>(kind));
  } else {
    rules.exact[name] = static_cast<Kind>(kind);
  }
  return 0;
}

// Starts counting on the calling thread (registers the callback); `names` non-zero also keeps a count per op
// name. Returns 0, or 1 when already counting.
int triadapt_ops_enable(int names) {
  std::lock_guard<std::mutex> g(control);
  keep_names.store(names != 0);
  if (handle != 0) return 1;
  // Thread-local: only this thread's ops, and the backward work it hands to the autograd
  // engine (the engine carries the caller's RecordFunction callbacks to its threads, as it does
  // for the profiler); other threads of the process (other tests, other trainers) are not seen.
  handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(on_start, on_end).needsInputs(false).scopes({at::RecordScope::FUNCTION}));
  return 0;
}

// Stops counting (removes the callback; on the thread that started it); the counts stay readable.
void triadapt_ops_disable() {
  std::lock_guard<std::mutex> g(control);
  if (handle != 0) {
    at::removeCallback(handle);
    handle = 0;
  }
}

void triadapt_ops_reset() {
  total.store(0);
  std::lock_guard<std::mutex> g(names_lock);
  by_name.clear();
}

int64_t triadapt_ops_read() { return total.load(); }

// Writes "name\tcount\n" lines of the per-name counts into buf (at most cap bytes, not
// terminated) and returns the length the whole text needs.
size_t triadapt_ops_names(char* buf, size_t cap) {
  std::string text;
  {
    std::lock_guard<std::mutex> g(names_lock);
    for (const auto& kv : by_name) {
      text += kv.first;
      text += '\t';
      text += std::to_string(kv.second);
      text += '\n';
    }
  }
  std::memcpy(buf, text.data(), text.size() < cap ? text.size() : cap);
  return text.size();
}

}  // extern "C"
