// Sandbox benchmarks (bench/README.md). Every figure is measured in this run and printed
// beside its baseline, as a ratio, for each isolating tier in kTiers (namespace, landlock,
// gvisor; made by name, and skipped with the reason where this build or host has none):
//   a0   the sandbox's set-up alone: Backend::spawn of /usr/bin/true until its execve;
//   a/b  cold start to first result, Python and Node: each tier (Instance::create + first
//        call) against a bare interpreter running an equivalent one-shot script, against
//        Debian's bubblewrap (`bwrap --unshare-all`) and gVisor's `runsc do` running that
//        script, and against the same instance on the `none` backend (which splits the
//        sandbox's cost from the worker protocol's);
//   c    load to first result from the warm pool, Python and Node, against a cold start on
//        the same tier, a worker started beforehand with no pool refilling, and a pool on
//        `none`;
//   d    a warm call on each tier's instance against the same call on a `none` instance,
//        interleaved;
//   e    PSS per idle instance, against bare interpreters, bwrap and `runsc do` idling the
//        same way;
//   f    creating a network namespace per sandbox against joining one that already exists,
//        measured in a forked child with its own user namespace, and whether sharing one
//        would be safe.
// a0, a/b and d also run the namespace and landlock tiers with one layer off at a time, to
// show where a cost comes from. `--timeline` prints instead, per variant and language, where
// one cold start's time goes: each step (clone, cgroups, mounts, seccomp, execve, the
// interpreter's start, the SDK, the load, the first call) at its median offset and duration.
// Runs: a number among the arguments or SANDFLOW_BENCH_RUNS (set-up, cold and pool
// samples, default 15), SANDFLOW_BENCH_IDLE (idle instances for PSS, default 8),
// SANDFLOW_BENCH_NETNS_RUNS (default 400). Percentiles are nearest-rank, so with 15 samples
// p90 is the 14th smallest. The machine's other work inflates every figure; the load average
// is printed with them. Nothing here is asserted by the tests.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "actor/metadata.hpp"
#include "actor/sdk.hpp"
#include "core/log.hpp"
#include "runtime/instance.hpp"
#include "runtime/warm_pool.hpp"
#include "runtime/worker.hpp"
#include "sandbox/landlock/landlock_backend.hpp"
#include "sandbox/namespace/namespace_backend.hpp"
#include "sandbox/none/none_backend.hpp"

using namespace sandflow;
using Clock = std::chrono::steady_clock;
using actor::Language;

namespace {

constexpr int kWarmCalls = 3000;
constexpr int kWarmup = 300;
constexpr int kNetnsRuns = 400;
constexpr const char* kBwrap = "/usr/bin/bwrap";

// ---------------------------------------------------------------------------------------
// Samples and their summary.

struct Dist {
    double p50 = 0, p90 = 0, p99 = 0;
    std::size_t n = 0;
};

Dist dist(std::vector<double> v) {
    Dist d;
    d.n = v.size();
    if (v.empty()) return d;
    std::sort(v.begin(), v.end());
    auto rank = [&](double q) {
        auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
        return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
    };
    d.p50 = rank(0.50);
    d.p90 = rank(0.90);
    d.p99 = rank(0.99);
    return d;
}

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// A measured column, or why it could not be measured.
struct Column {
    std::string name;
    std::vector<double> samples;
    std::string skipped;  // non-empty: not measured, and why
    bool ok() const { return skipped.empty() && !samples.empty(); }
    Dist d() const { return dist(samples); }
};

// The order of one round of interleaved variants: a fresh shuffle each round, so that no
// variant always runs right after the same other one (a fixed rotation would keep each
// variant's predecessor the same). Seeded, so runs are comparable.
std::vector<std::size_t> round_order(std::size_t n) {
    static std::mt19937 rng(20260101);
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    return order;
}

int env_int(const char* name, int fallback) {
    const char* v = std::getenv(name);
    if (!v || !*v) return fallback;
    const int n = std::atoi(v);
    return n > 0 ? n : fallback;
}

std::string last_line(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    const auto nl = s.rfind('\n');
    return nl == std::string::npos ? s : s.substr(nl + 1);
}

// ---------------------------------------------------------------------------------------
// Plain processes: the bare and bubblewrap baselines.

struct Spawned {
    pid_t pid = -1;
    int out = -1;  // stdout and stderr, merged
};

// posix_spawn with a cleared environment (as the sandbox gives its workers), stdin on
// /dev/null, stdout and stderr on one pipe, or on /dev/null when `capture` is false.
std::optional<Spawned> spawn(const std::vector<std::string>& argv, bool capture,
                             std::string* error) {
    std::vector<char*> av, ev;
    for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
    static const std::vector<std::string> env = sandbox::clean_worker_env();
    for (const auto& e : env) ev.push_back(const_cast<char*>(e.c_str()));
    ev.push_back(nullptr);

    int p[2] = {-1, -1};
    if (capture && ::pipe2(p, O_CLOEXEC) != 0) {
        *error = std::string("pipe: ") + std::strerror(errno);
        return std::nullopt;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (capture) {
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    } else {
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    }
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, av[0], &fa, nullptr, av.data(), ev.data());
    posix_spawn_file_actions_destroy(&fa);
    if (capture) ::close(p[1]);
    if (rc != 0) {
        if (capture) ::close(p[0]);
        *error = argv[0] + ": " + std::strerror(rc);
        return std::nullopt;
    }
    return Spawned{pid, capture ? p[0] : -1};
}

void kill_and_reap(pid_t pid) {
    ::kill(pid, SIGKILL);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
}

// True once `pid` has ended and been reaped, within `ms`.
bool reaped_within(pid_t pid, int ms) {
    for (int waited = 0;; ++waited) {
        int st = 0;
        const pid_t r = ::waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) return true;
        if (waited >= ms) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

// Lets `pid` end on its own for `ms`, then asks it to (SIGTERM), then kills it: `runsc do`
// removes its state folder (/tmp/runsc-do*) when it exits or on SIGTERM, and leaves it behind
// on SIGKILL.
void end_and_reap(pid_t pid, int ms) {
    if (reaped_within(pid, ms)) return;
    ::kill(pid, SIGTERM);
    if (!reaped_within(pid, 5'000)) kill_and_reap(pid);
}

// Milliseconds from spawn until the one-shot script's result line ("42") has arrived;
// the exit and the reaping are outside the timing, as the sandbox's teardown is.
std::optional<double> one_shot(const std::vector<std::string>& argv, std::string* error) {
    const auto t0 = Clock::now();
    auto s = spawn(argv, true, error);
    if (!s) return std::nullopt;
    std::string out;
    std::optional<double> ms;
    for (;;) {
        pollfd pf{s->out, POLLIN, 0};
        if (::poll(&pf, 1, 10'000) <= 0) {
            out += "(no result within 10 s)";
            break;
        }
        char buf[4096];
        const ssize_t n = ::read(s->out, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
        if (out.find('\n') != std::string::npos) {
            if (out.rfind("42\n", 0) == 0) ms = ms_since(t0);
            break;
        }
    }
    // Whatever else it prints (an error) is kept for the reason.
    for (char buf[4096];;) {
        pollfd pf{s->out, POLLIN, 0};
        if (ms || ::poll(&pf, 1, 2'000) <= 0) break;
        const ssize_t n = ::read(s->out, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(s->out);
    end_and_reap(s->pid, ms ? 5'000 : 0);
    if (!ms) *error = argv[0] + " did not print the result: " + last_line(out);
    return ms;
}

std::vector<std::string> bare_argv(Language lang, const std::string& code) {
    if (lang == Language::python)
        return {std::string(actor::sdk::kPythonInterpreter), "-I", "-S", "-c", code};
    return {std::string(actor::sdk::kNodeInterpreter), "-e", code};
}

std::string one_shot_code(Language lang) {
    return lang == Language::python ? "print(2 * 21, flush=True)" : "console.log(2 * 21)";
}

// Debian's bubblewrap, unsharing every namespace it can, with what the interpreters need:
// /usr read-only (lib, lib64 and bin are symlinks into it on Debian 12), /proc, /dev, /tmp.
std::vector<std::string> bwrap_argv(Language lang, const std::string& code) {
    std::vector<std::string> a = {kBwrap,      "--unshare-all", "--die-with-parent",
                                  "--ro-bind", "/usr",          "/usr",
                                  "--symlink", "usr/lib",       "/lib",
                                  "--symlink", "usr/lib64",     "/lib64",
                                  "--symlink", "usr/bin",       "/bin",
                                  "--proc",    "/proc",         "--dev",
                                  "/dev",      "--tmpfs",       "/tmp",
                                  "--chdir",   "/tmp"};
    for (auto& s : bare_argv(lang, code)) a.push_back(std::move(s));
    return a;
}

// runsc from the benchmark's PATH; empty when gVisor is not installed.
std::string find_runsc() {
    const char* path = std::getenv("PATH");
    std::istringstream dirs(path && *path ? path : "/usr/local/bin:/usr/bin");
    for (std::string dir; std::getline(dirs, dir, ':');) {
        const std::string f = dir + "/runsc";
        if (!dir.empty() && ::access(f.c_str(), X_OK) == 0) return f;
    }
    return {};
}

// gVisor's `runsc do`: the interpreter on the host's root (an overlay runsc puts over it), no
// network, the ptrace platform (no KVM needed; the platform the gvisor backend defaults to).
// As root runsc makes its own cgroups; an ordinary user cannot, and needs --rootless.
std::vector<std::string> runsc_argv(const std::string& runsc, Language lang,
                                    const std::string& code) {
    std::vector<std::string> a = {runsc};
    if (::geteuid() != 0) a.push_back("--rootless");
    for (const char* s : {"--network=none", "--platform=ptrace", "do"}) a.push_back(s);
    for (auto& s : bare_argv(lang, code)) a.push_back(std::move(s));
    return a;
}

std::string runsc_label(const std::string& what) {
    return std::string("runsc") + (::geteuid() != 0 ? " --rootless" : "") +
           " --platform=ptrace do + " + what;
}

// ---------------------------------------------------------------------------------------
// Actor instances.

const char* kPyActor = R"(@actor({"component": "double", "inports": ["x"], "outports": ["y"]})
def process(context):
    return {"y": 2 * context.get_input("x")}
)";
const char* kJsActor = R"(const metadata = {component: 'double', inports: ['x'], outports: ['y']};
function process(context) {
    return {y: 2 * context.getInput('x')};
}
)";

runtime::InstanceSpec make_spec(Language lang) {
    runtime::InstanceSpec s;
    const bool py = lang == Language::python;
    s.source = py ? kPyActor : kJsActor;
    s.filename = py ? "double.py" : "double.js";
    auto m = actor::extract_metadata(s.source, s.filename, lang);
    if (!m) {
        std::fprintf(stderr, "sandbox_bench: %s\n", m.error().message.c_str());
        std::exit(1);
    }
    s.metadata = std::move(*m);
    s.actor_id = s.metadata.component;
    return s;
}

bool call_doubles(runtime::Instance& inst, int x, std::string* error) {
    runtime::CallRequest req;
    req.inputs = {{"x", x}};
    auto r = inst.call(req, {});
    if (!r) {
        *error = r.error().message;
        return false;
    }
    const auto* y = r->outputs.if_contains("y");
    if (!y || !y->is_int64() || y->as_int64() != 2 * x) {
        *error = "unexpected outputs: " + to_json_string(r->outputs);
        return false;
    }
    return true;
}

// Milliseconds from Instance::create until the first call's result; the instance is torn
// down after the timing.
std::optional<double> instance_first_result(sandbox::Backend& backend,
                                            const runtime::InstanceSpec& spec, std::string* error) {
    runtime::InstanceSpec copy = spec;
    const auto t0 = Clock::now();
    auto inst = runtime::Instance::create(backend, std::move(copy));
    if (!inst) {
        *error = inst.error().message;
        return std::nullopt;
    }
    if (!call_doubles(**inst, 21, error)) return std::nullopt;
    return ms_since(t0);
}

// ---------------------------------------------------------------------------------------
// Printing.

void print_header(const char* title) {
    std::printf("\n%s\n", title);
}

void print_column(const Column& c, const Column* base, const char* unit = "ms") {
    if (!c.ok()) {
        std::printf("  %-46s skipped: %s\n", c.name.c_str(), c.skipped.c_str());
        return;
    }
    const Dist d = c.d();
    std::printf("  %-46s p50 %8.2f%s  p90 %8.2f%s", c.name.c_str(), d.p50, unit, d.p90, unit);
    if (base && base->ok() && base->d().p50 > 0)
        std::printf("  %6.2fx %s", d.p50 / base->d().p50, base->name.c_str());
    std::printf("\n");
}

double ratio(const Column& a, const Column& b) {
    return a.ok() && b.ok() && b.d().p50 > 0 ? a.d().p50 / b.d().p50 : -1;
}

struct Target {
    std::string what, target, measured;
    int met = -1;     // 1 met, 0 not met, -1 not measured or no target
    std::string why;  // not measured: why
};
std::vector<Target> g_targets;

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

// Why a column has no figure ("" when it has one).
std::string why_not(const Column& c) {
    if (c.ok()) return "";
    return c.skipped.empty() ? c.name + ": no samples" : c.skipped;
}

// Why a ratio of two columns has no figure: the measured one's reason, else the baseline's.
std::string why_not(const Column& a, const Column& b) {
    if (!a.ok()) return why_not(a);
    return b.ok() ? "" : b.name + ": " + why_not(b);
}

// A summary line: `value` (<= 0: not measured, for the reason `why`) against `limit`
// (<= 0: no target, the figure is shown only), met when value <= limit (< with `strict`).
void add_target(std::string what, std::string goal, const char* f, double value, double limit,
                std::string why, bool strict = false) {
    Target t{std::move(what), std::move(goal), value > 0 ? fmt(f, value) : "-", -1, {}};
    if (value > 0 && limit > 0) t.met = (strict ? value < limit : value <= limit) ? 1 : 0;
    if (value <= 0) t.why = why.empty() ? "not measured" : std::move(why);
    g_targets.push_back(std::move(t));
}

// A backend to compare, by name; the first of a list is `none`, the baseline.
struct Variant {
    std::string name;
    sandbox::Backend* backend = nullptr;  // null: not available, and `skipped` says why
    std::string skipped;
    bool tier = false;  // an isolating tier as production runs it, not one with a layer off
};

// The index of the variant called `name`; variants.size() when there is none.
std::size_t find_variant(const std::vector<Variant>& variants, std::string_view name) {
    std::size_t i = 0;
    while (i < variants.size() && variants[i].name != name) ++i;
    return i;
}

// ---------------------------------------------------------------------------------------
// --timeline: where one cold start's time goes, step by step.

// One cold start (Worker::start + the first call + teardown) with its steps marked on `tl`:
// offsets from "spawn begin" in milliseconds, by mark, and the teardown after the result.
struct TimedStart {
    std::vector<std::pair<sandbox::StartMark, double>> marks;  // in time order
    double teardown_ms = 0;
};

std::optional<TimedStart> timed_start(sandbox::Backend& backend, const runtime::InstanceSpec& spec,
                                      sandbox::StartTimeline& tl, std::string* error) {
    tl.clear();
    runtime::LoadSpec load;
    load.metadata = spec.metadata;
    load.source = spec.source;
    load.filename = spec.filename;
    load.actor_id = spec.actor_id;
    auto w = runtime::Worker::start(backend, load, std::chrono::seconds(10), std::nullopt, &tl);
    if (!w) {
        *error = w.error().message;
        return std::nullopt;
    }
    runtime::CallRequest req;
    req.inputs = {{"x", 21}};
    auto r = (*w)->call(req, {});
    if (!r) {
        *error = r.error().message;
        return std::nullopt;
    }
    const auto t0 = Clock::now();
    w->reset();
    TimedStart out;
    out.teardown_ms = ms_since(t0);
    const auto entries = tl.entries();
    std::int64_t begin = -1;
    for (const auto& e : entries)
        if (e.mark == sandbox::StartMark::spawn_begin) begin = e.ns;
    if (begin < 0) {
        *error = "no spawn mark";
        return std::nullopt;
    }
    for (const auto& e : entries)
        out.marks.emplace_back(e.mark, static_cast<double>(e.ns - begin) / 1e6);
    return out;
}

// Per variant and language: the median offset of each step from "spawn begin" and the median
// time since the step before it (in the same run), in the order of the median offsets. A
// variant that fails a start is shown with the error instead.
void timeline(int runs, const std::vector<Variant>& variants) {
    auto tl = sandbox::StartTimeline::create();
    if (!tl) {
        std::printf("timeline: %s\n", tl.error().message.c_str());
        return;
    }
    constexpr auto kMarks = static_cast<std::size_t>(sandbox::StartMark::count_);
    struct Samples {
        std::vector<std::vector<double>> at = std::vector<std::vector<double>>(kMarks),
                                         step = std::vector<std::vector<double>>(kMarks);
        std::vector<double> teardown;
        std::string skipped;
    };
    for (Language lang : {Language::python, Language::javascript}) {
        const auto spec = make_spec(lang);
        std::vector<Samples> samples(variants.size());
        for (std::size_t v = 0; v < variants.size(); ++v)
            if (!variants[v].backend) samples[v].skipped = variants[v].skipped;
        // Rounds of every variant in a shuffled order, as in the cold-start figures, so that
        // the machine's other work weighs on each variant alike; round 0 warms up.
        for (int r = 0; r <= runs; ++r) {
            for (std::size_t v : round_order(variants.size())) {
                Samples& s = samples[v];
                if (!s.skipped.empty()) continue;
                auto t = timed_start(*variants[v].backend, spec, **tl, &s.skipped);
                if (!t || r == 0) continue;
                double prev = 0;
                for (const auto& [m, ms] : t->marks) {
                    s.at[static_cast<std::size_t>(m)].push_back(ms);
                    s.step[static_cast<std::size_t>(m)].push_back(ms - prev);
                    prev = ms;
                }
                s.teardown.push_back(t->teardown_ms);
            }
        }
        for (std::size_t v = 0; v < variants.size(); ++v) {
            const Samples& s = samples[v];
            std::printf("\ntimeline of one cold start, %s, %s (medians of %d runs; ms)\n",
                        lang == Language::python ? "Python" : "Node", variants[v].name.c_str(),
                        runs);
            if (!s.skipped.empty()) {
                std::printf("  skipped: %s\n", s.skipped.c_str());
                continue;
            }
            std::vector<std::pair<double, std::size_t>> order;
            for (std::size_t m = 0; m < kMarks; ++m)
                if (!s.at[m].empty()) order.emplace_back(dist(s.at[m]).p50, m);
            std::sort(order.begin(), order.end());
            std::printf("  %-20s %9s %9s\n", "step", "at", "took");
            for (const auto& [p50, m] : order)
                std::printf(
                    "  %-20s %9.3f %9.3f\n",
                    std::string(sandbox::start_mark_name(static_cast<sandbox::StartMark>(m)))
                        .c_str(),
                    p50, dist(s.step[m]).p50);
            std::printf("  %-20s %9s %9.3f  (after the result; not in `at`)\n", "teardown", "",
                        dist(s.teardown).p50);
        }
    }
}

// ---------------------------------------------------------------------------------------
// a, b: cold start to first result.

void cold_start(Language lang, int runs, const std::vector<Variant>& variants) {
    const bool py = lang == Language::python;
    const std::string interp = py ? "python3" : "node";
    const auto spec = make_spec(lang);
    // Columns: bare, bwrap, then one per variant (none, each tier, a tier with a layer off).
    std::vector<Column> cols;
    cols.push_back({"bare " + interp + (py ? " -I -S" : "") + " (posix_spawn)", {}, {}});
    cols.push_back({"bwrap --unshare-all + " + interp, {}, {}});
    if (::access(kBwrap, X_OK) != 0)
        cols[1].skipped = "bubblewrap is not installed (apt-get install bubblewrap)";
    static const std::string runsc = find_runsc();
    cols.push_back({runsc_label(interp), {}, {}});
    if (runsc.empty()) cols[2].skipped = "gVisor's runsc is not installed (apt-get install runsc)";
    constexpr std::size_t kFirstVariant = 3;
    for (const auto& v : variants)
        cols.push_back({v.name + ": create + first call", {}, v.skipped});
    const auto bare_cmd = bare_argv(lang, one_shot_code(lang));
    const auto bwrap_cmd = bwrap_argv(lang, one_shot_code(lang));
    const auto runsc_cmd = runsc_argv(runsc, lang, one_shot_code(lang));
    auto once = [&](std::size_t c) {
        Column& col = cols[c];
        if (!col.skipped.empty()) return;
        std::string e;
        std::optional<double> ms;
        if (c == 0)
            ms = one_shot(bare_cmd, &e);
        else if (c == 1)
            ms = one_shot(bwrap_cmd, &e);
        else if (c == 2)
            ms = one_shot(runsc_cmd, &e);
        else
            ms = instance_first_result(*variants[c - kFirstVariant].backend, spec, &e);
        if (ms)
            col.samples.push_back(*ms);
        else
            col.skipped = (c == 1   ? "bwrap cannot run here: "
                           : c == 2 ? "runsc do cannot run here: "
                                    : "") +
                          e;
    };
    // One warm-up round (page cache, first-use costs), then rounds in a shuffled order.
    const std::size_t n = cols.size();
    for (std::size_t c = 0; c < n; ++c) once(c);
    for (auto& c : cols) c.samples.clear();
    for (int r = 0; r < runs; ++r)
        for (std::size_t c : round_order(n)) once(c);

    print_header(py ? "a. cold start to first result, Python (medians over the runs)"
                    : "b. cold start to first result, Node");
    const Column& bare = cols[0];
    const Column& bwrap = cols[1];
    const Column& runsc_col = cols[2];
    for (std::size_t c = 0; c < n; ++c) print_column(cols[c], c == 0 ? nullptr : &bare);
    const Column& none_col = cols[kFirstVariant];
    if (none_col.ok())
        std::printf("  %-46s %+8.2fms\n",
                    "worker protocol + SDK (none - bare):", none_col.d().p50 - bare.d().p50);
    for (std::size_t v = 0; v < variants.size(); ++v) {
        const Column& t = cols[kFirstVariant + v];
        if (!variants[v].tier || !t.ok()) continue;
        if (bwrap.ok())
            std::printf("  %-46s %6.2fx (< 1 = the sandbox is faster)\n",
                        (variants[v].name + " vs bwrap:").c_str(), ratio(t, bwrap));
        if (runsc_col.ok())
            std::printf("  %-46s %6.2fx\n", (variants[v].name + " vs runsc do:").c_str(),
                        ratio(t, runsc_col));
        if (none_col.ok())
            std::printf("  %-46s %+8.2fms (%.2fx)\n",
                        ("sandbox cost (" + variants[v].name + " - none):").c_str(),
                        t.d().p50 - none_col.d().p50, ratio(t, none_col));
    }
    // The issue's targets: namespace and landlock against the bare interpreter (and the
    // namespace tier against bwrap), gvisor against `runsc do`. Node's are shown only.
    const Column missing{"", {}, "not in this build's list of tiers"};
    auto tier = [&](std::string_view name) -> const Column& {
        const std::size_t v = find_variant(variants, name);
        return v < variants.size() ? cols[kFirstVariant + v] : missing;
    };
    const std::string l = py ? "cold python: " : "cold node: ";
    const struct {
        const char* tier;
        const Column& base;
        std::string base_name, goal;
        double limit;
        bool strict;
    } lines[] = {
        {"namespace", bare, "bare " + interp, py ? "<= 1.15x" : "(none)", py ? 1.15 : 0, false},
        {"namespace", bwrap, "bwrap", py ? "< 1.00x" : "(none)", py ? 1.0 : 0, true},
        {"landlock", bare, "bare " + interp, py ? "<= 1.10x" : "(none)", py ? 1.10 : 0, false},
        {"gvisor", runsc_col, "runsc do + " + interp, py ? "<= 1.00x" : "(none)", py ? 1.0 : 0,
         false},
    };
    for (const auto& t : lines) {
        const Column& c = tier(t.tier);
        add_target(l + t.tier + " / " + t.base_name, t.goal, "%.2fx", ratio(c, t.base), t.limit,
                   why_not(c, t.base), t.strict);
    }
}

// The sandbox's own set-up, without an interpreter: Backend::spawn of /usr/bin/true, which
// returns once the worker has reached execve. Splits a cold start into set-up and the rest.
void setup_alone(int runs, const std::vector<Variant>& variants) {
    std::vector<Column> cols;
    for (const auto& v : variants) cols.push_back({v.name, {}, v.skipped});
    sandbox::WorkerSpec spec;
    spec.argv = {"/usr/bin/true"};
    const std::size_t n = variants.size();
    for (int r = -1; r < runs; ++r) {
        for (std::size_t v : round_order(n)) {
            if (!cols[v].skipped.empty()) continue;
            const auto t0 = Clock::now();
            auto proc = variants[v].backend->spawn(spec);
            const double ms = ms_since(t0);
            if (!proc)
                cols[v].skipped = proc.error().message;
            else if (r >= 0)
                cols[v].samples.push_back(ms);  // round -1 warms up
        }
    }
    print_header("a0. sandbox set-up alone: Backend::spawn of /usr/bin/true until its execve");
    for (const auto& c : cols) print_column(c, &c == &cols[0] ? nullptr : &cols[0]);
}

// ---------------------------------------------------------------------------------------
// c: load to first result from the warm pool.

// Load to first result, `runs` times (after one warm-up), from a pool of size 1 on `backend`
// that is full before each timed load: as on a server that does not load faster than the
// pool refills. The refill after the take runs during the timed load, as it would there.
// With `sets`, the pool's sandboxes and the instance get every set of the language (what an
// actor that names none draws from).
Column pool_column(const std::string& name, sandbox::Backend& backend, Language lang, int runs,
                   std::size_t* missed, const actor::PackageCatalog* sets = nullptr) {
    const bool py = lang == Language::python;
    Column col{name, {}, {}};
    // The default sizes, as `serve` runs them: with more than one idle sandbox the refill
    // waits for the take to settle (limits::kPoolRefillDelay).
    runtime::PoolOptions po;
    po.python = py ? limits::kDefaultPythonPool : 0;
    po.node = py ? 0 : limits::kDefaultNodePool;
    auto spec = make_spec(lang);
    if (sets) {
        po.python_packages = runtime::default_package_dirs(*sets, Language::python);
        po.node_packages = runtime::default_package_dirs(*sets, Language::javascript);
        if (auto ok = runtime::resolve_packages(spec, *sets, false); !ok) {
            col.skipped = ok.error().message;
            return col;
        }
    }
    auto pool = runtime::WarmPool::create(backend, po);
    if (!pool) {
        col.skipped = pool.error().message;
        return col;
    }
    spec.pool = pool->get();
    for (int r = 0; r <= runs; ++r) {
        if (!(*pool)->wait_full(Clock::now() + std::chrono::seconds(20))) {
            col.skipped = "the pool did not fill within 20 s";
            break;
        }
        std::string e;
        auto ms = instance_first_result(backend, spec, &e);
        if (!ms) {
            col.skipped = e;
            break;
        }
        if (r > 0) col.samples.push_back(*ms);
    }
    const auto st = (*pool)->stats();
    *missed = py ? st.python.missed : st.node.missed;
    return col;
}

// The same load and first call on a worker started beforehand by hand, with no pool and so
// no refill competing for the cores: what the pool path costs by itself.
Column prestarted_column(const std::string& name, sandbox::Backend& backend, Language lang,
                         int runs) {
    Column col{name, {}, {}};
    const auto spec = make_spec(lang);
    runtime::LoadSpec load;
    load.metadata = spec.metadata;
    load.source = spec.source;
    load.filename = spec.filename;
    load.actor_id = spec.actor_id;
    for (int r = 0; r <= runs; ++r) {
        auto w = runtime::Worker::spawn(backend, lang, spec.start_timeout);
        if (!w) {
            col.skipped = w.error().message;
            break;
        }
        // Idle as a pooled worker would be, so the spawn's own work has settled.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const auto t0 = Clock::now();
        auto loaded = (*w)->load(load, spec.start_timeout);
        runtime::CallRequest req;
        req.inputs = {{"x", 21}};
        auto res = loaded ? (*w)->call(req, {}) : Result<runtime::CallResult>();
        const double ms = ms_since(t0);
        if (!loaded || !res) {
            col.skipped = loaded ? res.error().message : loaded.error().message;
            break;
        }
        if (r > 0) col.samples.push_back(ms);
    }
    return col;
}

void from_pool(int runs, const std::vector<Variant>& variants) {
    print_header(
        "c. load to first result from the warm pool (Instance::create with a pool + first call)");
    sandbox::Backend* none = variants[0].backend;
    // The host's own packages as a set (docs/actors.md#packages): a pooled sandbox with a
    // package set mounted should start as fast as one without.
    const auto system = actor::PackageCatalog::create({"system"}, false);
    for (Language lang : {Language::python, Language::javascript}) {
        const bool py = lang == Language::python;
        const std::string l = py ? "python, " : "node, ";
        std::size_t missed = 0;
        for (const auto& v : variants) {
            if (!v.tier) continue;
            Column cold{l + v.name + ", cold", {}, v.skipped};
            Column col{l + v.name + ", from the pool", {}, v.skipped};
            Column pre{l + v.name + ", pre-started, no refill", {}, v.skipped};
            Column with_set{l + v.name + ", from the pool, set 'system'", {},
                            v.skipped.empty() && !system ? system.error().message : v.skipped};
            if (v.backend) {
                const auto spec = make_spec(lang);
                std::string e;
                for (int r = 0; r <= runs && cold.skipped.empty(); ++r) {
                    auto ms = instance_first_result(*v.backend, spec, &e);
                    if (!ms)
                        cold.skipped = e;
                    else if (r > 0)
                        cold.samples.push_back(*ms);
                }
                std::size_t m = 0;
                col = pool_column(col.name, *v.backend, lang, runs, &m);
                missed += m;
                pre = prestarted_column(pre.name, *v.backend, lang, runs);
                if (system) {
                    with_set = pool_column(with_set.name, *v.backend, lang, runs, &m, system->get());
                    missed += m;
                }
            }
            print_column(cold, nullptr);
            print_column(col, &cold);
            print_column(pre, &cold);
            print_column(with_set, &col);  // against the pool without a set
            // The issue's targets in ms, Python and Node; the gvisor tier's one figure is for both.
            const struct {
                const char* tier;
                double python, node;
            } limits[] = {{"namespace", 2, 3}, {"gvisor", 5, 5}};
            for (const auto& t : limits) {
                if (v.name != t.tier) continue;
                const double limit = py ? t.python : t.node;
                add_target("pool load->first result p50, " + l + v.name, fmt("<= %.0f ms", limit),
                           "%.2f ms", col.ok() ? col.d().p50 : -1, limit, why_not(col));
            }
        }
        std::size_t none_missed = 0;
        print_column(pool_column(l + "none, from the pool", *none, lang, runs, &none_missed),
                     nullptr);
        if (missed + none_missed > 0)
            std::printf("  (%zu of the takes found the pool empty and started cold)\n",
                        missed + none_missed);
    }
}

// ---------------------------------------------------------------------------------------
// d: the sandbox's overhead on a warm call.

void warm_overhead(const std::vector<Variant>& variants) {
    print_header("d. warm call (trivial actor) against the none backend, interleaved call by call");
    for (Language lang : {Language::python, Language::javascript}) {
        const bool py = lang == Language::python;
        const std::string prefix = py ? "python, " : "node, ";
        std::vector<Column> cols;
        std::vector<std::unique_ptr<runtime::Instance>> insts;
        for (std::size_t v = 0; v < variants.size(); ++v) {
            cols.push_back({prefix + variants[v].name, {}, variants[v].skipped});
            insts.emplace_back();
            if (!cols[v].skipped.empty()) continue;
            auto inst = runtime::Instance::create(*variants[v].backend, make_spec(lang));
            if (inst)
                insts[v] = std::move(*inst);
            else
                cols[v].skipped = inst.error().message;
        }
        std::string e;
        const std::size_t n = variants.size();
        for (int i = 0; i < kWarmCalls + kWarmup; ++i) {
            for (std::size_t v : round_order(n)) {
                if (!insts[v] || !cols[v].skipped.empty()) continue;
                const auto t0 = Clock::now();
                if (!call_doubles(*insts[v], i, &e)) {
                    cols[v].skipped = e;
                    continue;
                }
                const double us = ms_since(t0) * 1000.0;
                if (i >= kWarmup) cols[v].samples.push_back(us);
            }
        }
        const Column& base = cols[0];
        for (const auto& c : cols) {
            if (!c.ok()) {
                print_column(c, nullptr, "us");
                continue;
            }
            const Dist d = c.d();
            std::printf("  %-46s p50 %8.1fus  p99 %8.1fus", c.name.c_str(), d.p50, d.p99);
            if (&c != &base && base.ok())
                std::printf("  %5.2fx p50, %5.2fx p99", d.p50 / base.d().p50, d.p99 / base.d().p99);
            std::printf("\n");
        }
        // The tiers against each other: the same call, interleaved with the namespace tier's.
        const std::size_t ns = find_variant(variants, "namespace");
        for (std::size_t v = 0; v < n && ns < n; ++v) {
            if (!variants[v].tier || v == ns || !cols[v].ok() || !cols[ns].ok()) continue;
            std::printf("  %-46s %5.2fx p50, %5.2fx p99\n",
                        (variants[v].name + " / namespace:").c_str(), ratio(cols[v], cols[ns]),
                        cols[v].d().p99 / cols[ns].d().p99);
        }
        // The issue's targets: the namespace tier within 10 % of `none`, the landlock tier
        // within 10 % of the namespace tier, the gvisor tier's p50 in microseconds.
        const Column missing{"namespace", {}, "not in this build's list of tiers"};
        const Column& ns_col = ns < n ? cols[ns] : missing;
        add_target("warm call p50, " + prefix + "namespace / none", "<= 1.10x", "%.2fx",
                   ratio(ns_col, base), 1.10, why_not(ns_col, base));
        const std::size_t ll = find_variant(variants, "landlock");
        const Column& ll_col = ll < n ? cols[ll] : missing;
        add_target("warm call p50, " + prefix + "landlock / namespace", "<= 1.10x", "%.2fx",
                   ratio(ll_col, ns_col), 1.10, why_not(ll_col, ns_col));
        const std::size_t gv = find_variant(variants, "gvisor");
        const Column& gv_col = gv < n ? cols[gv] : missing;
        add_target("warm call p50, " + prefix + "gvisor", "<= 150 us", "%.1f us",
                   gv_col.ok() ? gv_col.d().p50 : -1, 150, why_not(gv_col));
    }
}

// ---------------------------------------------------------------------------------------
// e: PSS per idle instance.

struct Memory {
    double pss_kb = 0, private_kb = 0, root_pss_kb = 0;
    int processes = 0;
};

void read_rollup(pid_t pid, Memory& m, bool root) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/smaps_rollup");
    bool any = false;
    // The first line names the range ("... [rollup]"); then "Key:   <n> kB" lines.
    for (std::string line; std::getline(f, line);) {
        std::istringstream in(line);
        std::string key;
        double kb = 0;
        if (!(in >> key >> kb)) continue;
        if (key == "Pss:") {
            m.pss_kb += kb;
            if (root) m.root_pss_kb += kb;
            any = true;
        } else if (key == "Private_Clean:" || key == "Private_Dirty:") {
            m.private_kb += kb;
        }
    }
    if (any) ++m.processes;
}

// `pid` and every descendant (each thread lists its own children).
void add_tree(pid_t pid, Memory& m, bool root = true) {
    read_rollup(pid, m, root);
    std::error_code ec;
    const std::filesystem::path tasks = "/proc/" + std::to_string(pid) + "/task";
    for (const auto& t : std::filesystem::directory_iterator(tasks, ec)) {
        std::ifstream c(t.path() / "children");
        for (pid_t child; c >> child;) add_tree(child, m, false);
    }
}

void print_memory(const std::string& name, const Memory& m, int k, const Memory* base) {
    std::printf("  %-46s PSS %6.2f MB  private %6.2f MB  (%d processes)", name.c_str(),
                m.pss_kb / 1024.0 / k, m.private_kb / 1024.0 / k, m.processes);
    if (base && base->pss_kb > 0) std::printf("  %5.2fx PSS", m.pss_kb / base->pss_kb);
    std::printf("\n");
}

std::optional<Memory> idle_instances(sandbox::Backend& backend, Language lang, int k,
                                     std::string* error) {
    std::vector<std::unique_ptr<runtime::Instance>> insts;
    for (int i = 0; i < k; ++i) {
        auto inst = runtime::Instance::create(backend, make_spec(lang));
        if (!inst) {
            *error = inst.error().message;
            return std::nullopt;
        }
        if (!call_doubles(**inst, i, error)) return std::nullopt;
        insts.push_back(std::move(*inst));
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
    Memory m;
    for (auto& inst : insts) add_tree(inst->worker_pid(), m);
    return m;
}

// True once a whole line has arrived on `fd` within `ms`; what arrived is in *out.
bool wait_line(int fd, int ms, std::string* out) {
    const auto until = Clock::now() + std::chrono::milliseconds(ms);
    while (out->find('\n') == std::string::npos) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
        pollfd pf{fd, POLLIN, 0};
        if (left <= 0 || ::poll(&pf, 1, static_cast<int>(left)) <= 0) return false;
        char buf[4096];
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        out->append(buf, static_cast<std::size_t>(n));
    }
    return true;
}

// K processes of `argv` (a script that prints a line, then idles), measured once each has
// printed (runsc takes a second or more to start one under load) and a second has passed.
std::optional<Memory> idle_bare(const std::vector<std::string>& argv, int k, std::string* error) {
    std::vector<Spawned> procs;
    for (int i = 0; i < k; ++i) {
        auto s = spawn(argv, true, error);
        if (!s) break;
        procs.push_back(*s);
    }
    bool ready = static_cast<int>(procs.size()) == k;
    for (const auto& p : procs) {
        std::string out;
        if (ready && !wait_line(p.out, 30'000, &out)) {
            *error = argv[0] + " did not start within 30 s: " + last_line(out);
            ready = false;
        }
    }
    std::optional<Memory> m;
    if (ready) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        m = Memory{};
        for (const auto& p : procs) add_tree(p.pid, *m);
    }
    for (const auto& p : procs) ::kill(p.pid, SIGTERM);
    for (const auto& p : procs) {
        end_and_reap(p.pid, 5'000);
        ::close(p.out);
    }
    return m;
}

// What Process::pid() is in a tier's sandbox: the root of the tree the PSS rows sum.
std::string root_process(std::string_view tier) {
    if (tier == "namespace") return "the sandbox's init";
    if (tier == "landlock") return "the sandbox's supervisor";
    if (tier == "gvisor") return "the sandbox's runsc";
    return "Process::pid()";
}

void idle_memory(int k, const std::vector<Variant>& variants) {
    char title[160];
    std::snprintf(title, sizeof title,
                  "e. memory per idle instance (%d at once, 1 s idle; sum of Pss over each "
                  "sandbox's processes, / %d)",
                  k, k);
    print_header(title);
    sandbox::Backend& none = *variants[0].backend;
    for (Language lang : {Language::python, Language::javascript}) {
        const bool py = lang == Language::python;
        const std::string l = py ? "python, " : "node, ";
        std::string e;
        const std::string idle_code = py ? "import time; print('idle', flush=True); time.sleep(60)"
                                         : "console.log('idle'); setTimeout(() => {}, 60000)";
        auto bare = idle_bare(bare_argv(lang, idle_code), k, &e);
        const std::string bare_name =
            py ? "bare python3 -I -S -c 'sleep(60)'" : "bare node -e 'setTimeout(60 s)'";
        if (bare)
            print_memory(bare_name, *bare, k, nullptr);
        else
            std::printf("  %-46s skipped: %s\n", bare_name.c_str(), e.c_str());
        if (py) {
            // The brief's baseline: the plain command line, with the site module.
            auto site =
                idle_bare({std::string(actor::sdk::kPythonInterpreter), "-c", idle_code}, k, &e);
            if (site) print_memory("bare python3 -c 'sleep(60)' (with site)", *site, k, nullptr);
        }
        // The one-shot sandboxes, idling the same way: bwrap with its children; runsc with its
        // gofer, its sandbox (gVisor's kernel) and the ptrace stubs the interpreter runs in.
        const std::string interp = py ? "python3" : "node";
        const std::string bwrap_name = "bwrap --unshare-all + " + interp;
        if (::access(kBwrap, X_OK) != 0)
            std::printf("  %-46s skipped: bubblewrap is not installed\n", bwrap_name.c_str());
        else if (auto m = idle_bare(bwrap_argv(lang, idle_code), k, &e))
            print_memory(bwrap_name, *m, k, bare ? &*bare : nullptr);
        else
            std::printf("  %-46s skipped: %s\n", bwrap_name.c_str(), e.c_str());
        static const std::string runsc = find_runsc();
        if (runsc.empty())
            std::printf("  %-46s skipped: gVisor's runsc is not installed\n",
                        runsc_label(interp).c_str());
        else if (auto m = idle_bare(runsc_argv(runsc, lang, idle_code), k, &e))
            print_memory(runsc_label(interp), *m, k, bare ? &*bare : nullptr);
        else
            std::printf("  %-46s skipped: %s\n", runsc_label(interp).c_str(), e.c_str());
        auto nm = idle_instances(none, lang, k, &e);
        if (nm)
            print_memory(l + "none backend", *nm, k, bare ? &*bare : nullptr);
        else
            std::printf("  %-46s skipped: %s\n", "none backend", e.c_str());
        for (const auto& v : variants) {
            if (!v.tier) continue;
            const std::string name = l + v.name + " sandbox";
            std::optional<Memory> sm;
            e = v.skipped;
            if (!v.backend) {
                std::printf("  %-46s skipped: %s\n", name.c_str(), v.skipped.c_str());
            } else if ((sm = idle_instances(*v.backend, lang, k, &e))) {
                print_memory(name, *sm, k, bare ? &*bare : nullptr);
                const std::string root = root_process(v.name);
                // The namespace tier's init and the landlock tier's supervisor never call
                // execve: their pages are the runtime's, shared copy-on-write.
                std::printf("  %-46s PSS %6.2f MB per sandbox%s\n", ("  of which " + root).c_str(),
                            sm->root_pss_kb / 1024.0 / k,
                            v.name == "namespace" || v.name == "landlock"
                                ? " (a copy-on-write fork of this process: its pages are shared "
                                  "with the runtime, so they scale with the runtime's size / "
                                  "(sandboxes + 1))"
                                : "");
            } else {
                std::printf("  %-46s skipped: %s\n", name.c_str(), e.c_str());
            }
            if (v.name != "namespace") continue;
            add_target(
                std::string("PSS per idle ") + (py ? "python" : "node") + " instance: namespace",
                py ? "<= 8 MB" : "(none)", "%.2f MB", sm ? sm->pss_kb / 1024.0 / k : -1,
                py ? 8.0 : 0, e);
        }
    }
    std::printf(
        "  (PSS divides each shared page among every process mapping it: the K instances and any\n"
        "   other process of the same binaries on this host; it leaves out kernel memory: page\n"
        "   tables, namespaces, sockets, tmpfs contents)\n");
}

// ---------------------------------------------------------------------------------------
// f: a network namespace per sandbox.
//
// All of it runs in a forked child that first unshares its own user namespace, so that it
// may create and join network namespaces without touching the benchmark's own (or the
// host's) namespaces. The child neither allocates nor throws: the benchmark may have
// threads, and only async-signal-safe calls are safe in a fork of a threaded process. It
// writes its samples into a buffer allocated before the fork and sends them over a pipe.

enum NetnsVariant { kFork, kCloneNewnet, kForkSetns, kUnshareCall, kNetnsVariants };

struct NetnsHeader {
    int failed_step = 0;  // 0: all measured
    int err = 0;
    int same_ns_connect = -1;   // errno of connect() from a process joined to the same netns
    int fresh_ns_connect = -1;  // the same from a process in a fresh netns
};

enum NetnsStep {
    kStepNone,
    kStepUserns,
    kStepNetns,
    kStepOpen,
    kStepFork,
    kStepChildFailed,
    kStepMmap,
};

bool write_all(int fd, const void* p, std::size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
        const ssize_t w = ::write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        c += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

double now_us() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

long raw_clone(unsigned long flags) {
    return ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
}

bool reaped_ok(long pid) {
    int st = 0;
    while (::waitpid(static_cast<pid_t>(pid), &st, 0) < 0)
        if (errno != EINTR) return false;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// errno of connect() to the abstract unix socket `addr` (0: it connected).
int try_connect(const sockaddr_un& addr, socklen_t len) {
    const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return errno;
    const int r = ::connect(s, reinterpret_cast<const sockaddr*>(&addr), len);
    const int e = r == 0 ? 0 : errno;
    ::close(s);
    return e;
}

// Reports the header (and, when every step worked, the samples) and ends the child.
[[noreturn]] void netns_finish(int out, NetnsHeader& h, int step, const double* samples, int runs) {
    h.failed_step = step;
    h.err = step ? errno : 0;
    write_all(out, &h, sizeof h);
    if (!step)
        write_all(out, samples, sizeof(double) * static_cast<std::size_t>(runs) * kNetnsVariants);
    ::_exit(0);
}

[[noreturn]] void netns_child(int out, double* samples, int runs) {
    NetnsHeader h;
    auto finish = [&](int step) { netns_finish(out, h, step, samples, runs); };
    if (::unshare(CLONE_NEWUSER) != 0) finish(kStepUserns);
    // The one netns that the "reuse" variant joins; this child lives in it from now on.
    if (::unshare(CLONE_NEWNET) != 0) finish(kStepNetns);
    const int shared = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (shared < 0) finish(kStepOpen);
    auto* slot = static_cast<double*>(
        ::mmap(nullptr, sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    if (slot == MAP_FAILED) finish(kStepMmap);

    // A shuffled order each round (as round_order, which allocates): xorshift + Fisher-Yates.
    unsigned rng = 2463534242u;
    int order[kNetnsVariants];
    for (int r = 0; r < runs; ++r) {
        for (int i = 0; i < kNetnsVariants; ++i) order[i] = i;
        for (int i = kNetnsVariants - 1; i > 0; --i) {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            std::swap(order[i], order[rng % static_cast<unsigned>(i + 1)]);
        }
        for (int i = 0; i < kNetnsVariants; ++i) {
            const int v = order[i];
            const double t0 = now_us();
            long pid = -1;
            switch (v) {
                case kFork:
                    pid = raw_clone(0);
                    if (pid == 0) ::_exit(0);
                    break;
                case kCloneNewnet:
                    pid = raw_clone(CLONE_NEWNET);
                    if (pid == 0) ::_exit(0);
                    break;
                case kForkSetns:
                    pid = raw_clone(0);
                    if (pid == 0) ::_exit(::setns(shared, CLONE_NEWNET) == 0 ? 0 : 1);
                    break;
                default:
                    pid = raw_clone(0);
                    if (pid == 0) {
                        const double s = now_us();
                        const int rc = ::unshare(CLONE_NEWNET);
                        *slot = now_us() - s;
                        ::_exit(rc == 0 ? 0 : 1);
                    }
                    break;
            }
            if (pid < 0) finish(kStepFork);
            if (!reaped_ok(pid)) finish(kStepChildFailed);
            samples[static_cast<std::size_t>(v) * static_cast<std::size_t>(runs) +
                    static_cast<std::size_t>(r)] = v == kUnshareCall ? *slot : now_us() - t0;
        }
    }

    // Would sharing one be safe? A listener on an abstract unix socket in the shared netns
    // (abstract names are scoped by network namespace), then a connect from a second
    // process joined to it and from one in a fresh netns.
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    static constexpr char kName[] = "sandflow-bench-netns-probe";
    std::memcpy(addr.sun_path + 1, kName, sizeof kName - 1);
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + sizeof kName);
    const int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l >= 0 && ::bind(l, reinterpret_cast<const sockaddr*>(&addr), len) == 0 &&
        ::listen(l, 4) == 0) {
        for (int fresh = 0; fresh < 2; ++fresh) {
            const long pid = raw_clone(fresh ? CLONE_NEWNET : 0);
            if (pid == 0) {
                if (!fresh && ::setns(shared, CLONE_NEWNET) != 0) ::_exit(255);
                ::_exit(try_connect(addr, len));
            }
            int st = 0;
            if (pid > 0 && ::waitpid(static_cast<pid_t>(pid), &st, 0) > 0 && WIFEXITED(st))
                (fresh ? h.fresh_ns_connect : h.same_ns_connect) = WEXITSTATUS(st);
        }
    }
    netns_finish(out, h, kStepNone, samples, runs);
}

void netns_cost() {
    print_header("f. network namespace per sandbox (forked child with its own user namespace)");
    const int runs = env_int("SANDFLOW_BENCH_NETNS_RUNS", kNetnsRuns);
    std::vector<double> samples(static_cast<std::size_t>(runs) * kNetnsVariants, 0.0);
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
        std::printf("  skipped: pipe: %s\n", std::strerror(errno));
        return;
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
        std::printf("  skipped: fork: %s\n", std::strerror(errno));
        return;
    }
    if (pid == 0) {
        ::close(p[0]);
        netns_child(p[1], samples.data(), runs);
    }
    ::close(p[1]);
    NetnsHeader h;
    std::string bytes;
    for (char buf[65536];;) {
        const ssize_t n = ::read(p[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        bytes.append(buf, static_cast<std::size_t>(n));
    }
    ::close(p[0]);
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (bytes.size() < sizeof h) {
        std::printf("  skipped: the measuring child ended without a result (%s)\n",
                    WIFSIGNALED(st) ? "killed by a signal" : "no output");
        return;
    }
    std::memcpy(&h, bytes.data(), sizeof h);
    if (h.failed_step != kStepNone) {
        static const char* steps[] = {"",
                                      "unshare(CLONE_NEWUSER)",
                                      "unshare(CLONE_NEWNET)",
                                      "open /proc/self/ns/net",
                                      "clone",
                                      "a measured child failed",
                                      "mmap"};
        std::printf("  skipped: %s failed here: %s\n", steps[h.failed_step], std::strerror(h.err));
        return;
    }
    std::memcpy(samples.data(), bytes.data() + sizeof h,
                std::min(bytes.size() - sizeof h, samples.size() * sizeof(double)));
    auto slice = [&](int v) {
        auto b = samples.begin() + static_cast<std::ptrdiff_t>(v) * runs;
        return dist(std::vector<double>(b, b + runs));
    };
    const Dist fork_d = slice(kFork), newnet = slice(kCloneNewnet), join = slice(kForkSetns),
               call = slice(kUnshareCall);
    std::printf("  %d runs of each, interleaved; us, from clone to reaped\n", runs);
    auto row = [](const char* name, const Dist& d, const Dist* base) {
        std::printf("  %-46s p50 %8.1fus  p99 %8.1fus", name, d.p50, d.p99);
        if (base)
            std::printf("  %+8.1fus p50  %+8.1fus p99 vs fork", d.p50 - base->p50,
                        d.p99 - base->p99);
        std::printf("\n");
    };
    row("fork + exit (baseline)", fork_d, nullptr);
    row("clone(CLONE_NEWNET) + exit (fresh netns)", newnet, &fork_d);
    row("fork + setns(shared netns) + exit (reuse)", join, &fork_d);
    std::printf("  %-46s p50 %8.1fus  p99 %8.1fus  (the syscall alone, timed inside)\n",
                "unshare(CLONE_NEWNET)", call.p50, call.p99);
    std::printf(
        "  (a fresh netns is also torn down later by the kernel's cleanup worker, off this "
        "path but on a core)\n");
    std::printf(
        "  reuse would save %.2f ms p50 of a cold start (p99: fresh %.2f ms, reuse %.2f ms)\n",
        (newnet.p50 - join.p50) / 1000.0, newnet.p99 / 1000.0, join.p99 / 1000.0);
    auto said = [](int e) -> std::string {
        if (e < 0) return "not measured";
        if (e == 0) return "connected";
        return std::string("refused: ") + std::strerror(e);
    };
    std::printf(
        "  isolation check: connect to an abstract unix socket bound in the shared netns: "
        "from a process joined to it: %s; from a fresh netns: %s\n",
        said(h.same_ns_connect).c_str(), said(h.fresh_ns_connect).c_str());
    std::printf(
        "  verdict: reusing one network namespace is NOT safe without per-sandbox isolation: "
        "sandboxes sharing it share its abstract unix socket names and its loopback "
        "(127.0.0.1 once lo is up), so they could talk to each other; keep one fresh netns "
        "per sandbox\n");
}

// Other work on the machine inflates every figure (2 cores here): the load is printed so a
// reader can tell a quiet run from a busy one.
void print_load(const char* what) {
    std::ifstream f("/proc/loadavg");
    std::string a, b, c;
    if (f >> a >> b >> c)
        std::printf("%s: %s %s %s (%u cores)\n", what, a.c_str(), b.c_str(), c.c_str(),
                    std::thread::hardware_concurrency());
}

void print_summary() {
    std::printf("\nsummary\n  %-50s %-10s %-12s %s\n", "figure", "target", "measured", "met");
    for (const auto& t : g_targets)
        std::printf("  %-50s %-10s %-12s %s%s%s\n", t.what.c_str(), t.target.c_str(),
                    t.measured.c_str(), t.met < 0 ? "-" : (t.met ? "yes" : "NO"),
                    t.why.empty() ? "" : "    ", t.why.c_str());
}

// ---------------------------------------------------------------------------------------
// The backends compared.

// The isolating tiers, each made by name through sandbox::make_backend with its default
// options. A name this build does not know, or a backend that cannot run here, stays in the
// list with the reason, which every section prints in place of its figures.
constexpr const char* kTiers[] = {"namespace", "landlock", "gvisor"};

// Empty when a sandbox of `backend` runs /usr/bin/true to a clean exit, else why not: what
// the backends' own probes check, for any backend made by name.
std::string probe(sandbox::Backend& backend) {
    sandbox::WorkerSpec spec;
    spec.argv = {"/usr/bin/true"};
    auto proc = backend.spawn(spec);
    if (!proc) return proc.error().message;
    for (int i = 0; i < 5000; ++i) {
        if (auto st = (*proc)->try_wait())
            return WIFEXITED(st->raw) && WEXITSTATUS(st->raw) == 0
                       ? ""
                       : "a test sandbox running /usr/bin/true " + st->describe();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return "a test sandbox running /usr/bin/true did not end within 5 s (" +
           (*proc)->kill_and_wait().describe() + ")";
}

// The tier with one layer off at a time, to show where an overhead comes from. The switches
// exist for the escape suite; nothing in production reaches them.
void add_layers_off(std::string_view tier, std::vector<Variant>& variants,
                    std::vector<std::unique_ptr<sandbox::Backend>>& owned) {
    auto add = [&](const char* name, auto made) {
        if (!made) return;
        owned.push_back(std::move(*made));
        variants.push_back({name, owned.back().get(), "", false});
    };
    if (tier == "namespace") {
        const std::pair<const char*, void (*)(sandbox::NamespaceOptions&)> off[] = {
            {"namespace, cgroups off", [](sandbox::NamespaceOptions& o) { o.use_cgroups = false; }},
            {"namespace, seccomp off",
             [](sandbox::NamespaceOptions& o) { o.layers.seccomp = false; }},
            {"namespace, landlock off",
             [](sandbox::NamespaceOptions& o) { o.layers.landlock = false; }},
            {"namespace, netns off",
             [](sandbox::NamespaceOptions& o) { o.layers.network_namespace = false; }},
        };
        for (const auto& [name, apply] : off) {
            sandbox::NamespaceOptions o;
            apply(o);
            add(name, sandbox::NamespaceBackend::create(o));
        }
    } else if (tier == "landlock") {
        const std::pair<const char*, void (*)(sandbox::LandlockOptions&)> off[] = {
            {"landlock, cgroups off", [](sandbox::LandlockOptions& o) { o.use_cgroups = false; }},
            {"landlock, seccomp off",
             [](sandbox::LandlockOptions& o) { o.layers.seccomp = false; }},
            {"landlock, landlock off",
             [](sandbox::LandlockOptions& o) { o.layers.landlock = false; }},
        };
        for (const auto& [name, apply] : off) {
            sandbox::LandlockOptions o;
            apply(o);
            add(name, sandbox::LandlockBackend::create(o));
        }
    }
}

// `none` (the baseline), then each tier followed by its variants with a layer off.
std::vector<Variant> make_variants(sandbox::NoneBackend& none,
                                   std::vector<std::unique_ptr<sandbox::Backend>>& owned) {
    std::vector<Variant> variants = {{"none", &none, "", false}};
    for (const char* tier : kTiers) {
        Variant v{tier, nullptr, "", true};
        auto b = sandbox::make_backend(tier, {});
        if (!b) {
            v.skipped = b.error().message;
        } else if (const std::string why = probe(**b); !why.empty()) {
            v.skipped = "the " + v.name + " backend cannot run here: " + why;
        } else {
            owned.push_back(std::move(*b));
            v.backend = owned.back().get();
        }
        variants.push_back(std::move(v));
        if (variants.back().backend) add_layers_off(tier, variants, owned);
    }
    return variants;
}

}  // namespace

int main(int argc, char** argv) {
    init_logging("error");
    int runs = env_int("SANDFLOW_BENCH_RUNS", 15);
    bool only_timeline = false;
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--timeline")
            only_timeline = true;
        else if (std::atoi(argv[i]) > 0)
            runs = std::atoi(argv[i]);
    }
    const int idle = env_int("SANDFLOW_BENCH_IDLE", 8);

    sandbox::NoneBackend none;
    std::vector<std::unique_ptr<sandbox::Backend>> owned;
    const std::vector<Variant> variants = make_variants(none, owned);
    if (only_timeline) {
        print_load("load average at start");
        timeline(runs, variants);
        print_load("load average at end");
        return 0;
    }

    std::printf("sandflow sandbox benchmark: %d runs per cold/pool figure, %d idle instances\n",
                runs, idle);
    print_load("load average at start");
    setup_alone(runs, variants);
    cold_start(Language::python, runs, variants);
    cold_start(Language::javascript, runs, variants);
    from_pool(runs, variants);
    warm_overhead(variants);
    idle_memory(idle, variants);
    netns_cost();
    print_summary();
    print_load("load average at end");
    return 0;
}
