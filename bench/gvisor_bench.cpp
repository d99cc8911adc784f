// gvisor backend benchmarks (docs/sandbox.md, "The gvisor backend"). Every figure is
// measured in this run and printed beside its baseline:
//   a  gVisor's own start: `runsc do /usr/bin/true`, and `runsc do` running python3 (node) on
//      a one-shot script that prints a result, from spawn to exit;
//   b  cold start to first result: Instance::create on the gvisor backend plus the first
//      call of a doubling actor, against (a) and against the same on `none`;
//   c  load to first result from the warm pool (pool full before each load, at `serve`'s
//      default sizes), against (b);
//   d  a warm call round trip on a gvisor instance against the same call on a `none`
//      instance, interleaved call by call.
// Then the microvm backend (docs/sandbox.md, "The microvm backend"), under KVM or TCG as the
// backend detects:
//   e  load to first result (Instance::create + the first call of the doubling actor) of a
//      VM restored from its snapshot against the same VM booted cold, interleaved;
//   f  load to first result from the warm pool on restored VMs;
//   g  a warm call round trip over the VM's channel.
// Each microVM sample costs seconds under TCG: SANDFLOW_BENCH_VM_RUNS (default 4) and
// SANDFLOW_BENCH_VM_CALLS (default 300).
// Runs: argv[1] or SANDFLOW_BENCH_RUNS (cold and pool samples, default 8), SANDFLOW_BENCH_CALLS
// (warm calls, default 2000). The machine's other work inflates every figure; the load
// average is printed with them. Nothing here is asserted by the tests.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "actor/metadata.hpp"
#include "actor/sdk.hpp"
#include "core/log.hpp"
#include "runtime/instance.hpp"
#include "runtime/warm_pool.hpp"
#include "sandbox/gvisor/gvisor_backend.hpp"
#include "sandbox/microvm/microvm_backend.hpp"
#include "sandbox/none/none_backend.hpp"

using namespace sandflow;
using actor::Language;
using Clock = std::chrono::steady_clock;

extern char** environ;

namespace {

constexpr int kWarmup = 50;

int env_int(const char* name, int fallback) {
    const char* v = std::getenv(name);
    return v && std::atoi(v) > 0 ? std::atoi(v) : fallback;
}

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Column {
    std::string name;
    std::vector<double> samples;
    std::string skipped;
    bool ok() const { return skipped.empty() && !samples.empty(); }
    // Nearest-rank percentile.
    double pct(double p) const {
        std::vector<double> s = samples;
        std::sort(s.begin(), s.end());
        const auto rank =
            static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(s.size())));
        return s[std::min(s.size(), std::max<std::size_t>(rank, 1)) - 1];
    }
};

void print_column(const Column& c, const Column* base, const char* unit) {
    if (!c.ok()) {
        std::printf("  %-52s skipped: %s\n", c.name.c_str(), c.skipped.c_str());
        return;
    }
    std::printf("  %-52s p50 %9.3f%s  p90 %9.3f%s  min %9.3f%s", c.name.c_str(), c.pct(50), unit,
                c.pct(90), unit, c.pct(0), unit);
    if (base && base->ok()) std::printf("  %6.2fx p50", c.pct(50) / base->pct(50));
    std::printf("\n");
}

void print_load(const char* when) {
    std::ifstream in("/proc/loadavg");
    std::string a, b, c;
    in >> a >> b >> c;
    std::printf("%s: %s %s %s\n", when, a.c_str(), b.c_str(), c.c_str());
}

// Spawns argv with stdin, stdout and stderr on /dev/null and waits for it: milliseconds,
// or nothing when it failed.
std::optional<double> run_to_exit(const std::vector<std::string>& argv) {
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    for (int fd = 0; fd <= 2; ++fd)
        posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);
    const auto t0 = Clock::now();
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, a[0], &fa, nullptr, a.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return std::nullopt;
    int st = 0;
    if (::waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return std::nullopt;
    return ms_since(t0);
}

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
    const bool py = lang == Language::python;
    auto s =
        runtime::spec_from_source(py ? kPyActor : kJsActor, py ? "double.py" : "double.js", lang);
    if (!s) {
        std::fprintf(stderr, "gvisor_bench: %s\n", s.error().message.c_str());
        std::exit(1);
    }
    return std::move(*s);
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

std::optional<double> first_result(sandbox::Backend& backend, runtime::InstanceSpec spec,
                                   std::string* error) {
    const auto t0 = Clock::now();
    auto inst = runtime::Instance::create(backend, std::move(spec));
    if (!inst) {
        *error = inst.error().message;
        return std::nullopt;
    }
    if (!call_doubles(**inst, 21, error)) return std::nullopt;
    return ms_since(t0);
}

struct Target {
    std::string what, target, measured;
    int met;  // 1 yes, 0 no, -1 not measured
};
std::vector<Target> g_targets;

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

// a + b, one language: `runsc do` baselines and cold starts, interleaved in a shuffled order.
void cold(Language lang, int runs, sandbox::Backend* gvisor, const std::string& gvisor_skip,
          const std::string& runsc_root) {
    const bool py = lang == Language::python;
    const std::string interp(py ? actor::sdk::kPythonInterpreter : actor::sdk::kNodeInterpreter);
    const std::string runsc(sandbox::gvisor::kRunscPath);
    const std::vector<std::string> do_true = {runsc, "--root=" + runsc_root, "--network=none", "do",
                                              "/usr/bin/true"};
    std::vector<std::string> do_interp = {runsc, "--root=" + runsc_root, "--network=none", "do"};
    if (py) {
        for (const char* a : {"-I", "-S", "-c", "print(2 * 21)"}) do_interp.push_back(a);
        do_interp.insert(do_interp.begin() + 4, interp);
    } else {
        do_interp.push_back(interp);
        do_interp.push_back("-e");
        do_interp.push_back("console.log(2 * 21)");
    }
    sandbox::NoneBackend none;
    std::vector<Column> cols = {{"runsc do /usr/bin/true", {}, {}},
                                {"runsc do " + interp + " (one-shot print)", {}, {}},
                                {"gvisor: create + first call", {}, gvisor_skip},
                                {"none: create + first call", {}, {}}};
    const auto spec = make_spec(lang);
    std::mt19937 rng(42);
    std::vector<std::size_t> order = {0, 1, 2, 3};
    for (int r = 0; r <= runs; ++r) {  // round 0 warms the page cache
        std::shuffle(order.begin(), order.end(), rng);
        for (std::size_t c : order) {
            Column& col = cols[c];
            if (!col.skipped.empty()) continue;
            std::string e;
            std::optional<double> ms;
            if (c == 0) ms = run_to_exit(do_true);
            if (c == 1) ms = run_to_exit(do_interp);
            if (c == 2) ms = first_result(*gvisor, spec, &e);
            if (c == 3) ms = first_result(none, spec, &e);
            if (!ms)
                col.skipped = e.empty() ? "it failed (run it by hand to see why)" : e;
            else if (r > 0)
                col.samples.push_back(*ms);
        }
    }
    std::printf("\n%s cold start to first result (%d runs)\n", py ? "python" : "node", runs);
    for (const auto& c : cols) print_column(c, &c == &cols[0] ? nullptr : &cols[1], "ms");
    if (py) {
        const bool ok = cols[1].ok() && cols[2].ok();
        g_targets.push_back(
            {"cold start, python, p50", "<= runsc do + python3",
             ok ? fmt("%.0f ms", cols[2].pct(50)) + " vs " + fmt("%.0f ms", cols[1].pct(50)) : "-",
             ok ? (cols[2].pct(50) <= cols[1].pct(50) ? 1 : 0) : -1});
    }
}

// c: load to first result from a full pool.
void from_pool(Language lang, int runs, sandbox::Backend* gvisor, const std::string& gvisor_skip) {
    const bool py = lang == Language::python;
    Column col{std::string(py ? "python" : "node") + ", gvisor, from the pool", {}, gvisor_skip};
    std::size_t missed = 0;
    if (gvisor) {
        runtime::PoolOptions po;
        po.python = py ? limits::kDefaultPythonPool : 0;
        po.node = py ? 0 : limits::kDefaultNodePool;
        auto pool = runtime::WarmPool::create(*gvisor, po);
        if (!pool) col.skipped = pool.error().message;
        auto spec = make_spec(lang);
        for (int r = 0; r <= runs && col.skipped.empty(); ++r) {
            if (!(*pool)->wait_full(Clock::now() + std::chrono::seconds(60))) {
                col.skipped = "the pool did not fill within 60 s";
                break;
            }
            // Idle as a pooled worker would be between loads on a server.
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            spec.pool = pool->get();
            std::string e;
            auto ms = first_result(*gvisor, spec, &e);
            if (!ms)
                col.skipped = e;
            else if (r > 0)
                col.samples.push_back(*ms);
        }
        if (pool) {
            const auto st = (*pool)->stats();
            missed = py ? st.python.missed : st.node.missed;
        }
    }
    std::printf("\n%s load to first result from the warm pool (%d runs)\n", py ? "python" : "node",
                runs);
    print_column(col, nullptr, "ms");
    if (missed) std::printf("  (%zu takes found the pool empty and started cold)\n", missed);
    g_targets.push_back(
        {std::string("pool load -> first result, ") + (py ? "python" : "node") + " p50", "<= 5 ms",
         col.ok() ? fmt("%.2f ms", col.pct(50)) : "-",
         col.ok() ? (col.pct(50) <= 5.0 ? 1 : 0) : -1});
}

// d: warm calls, gvisor against none, interleaved.
void warm(Language lang, int calls, sandbox::Backend* gvisor, const std::string& gvisor_skip) {
    const bool py = lang == Language::python;
    sandbox::NoneBackend none;
    std::vector<Column> cols = {{"none", {}, {}}, {"gvisor", {}, gvisor_skip}};
    std::vector<std::unique_ptr<runtime::Instance>> insts(2);
    sandbox::Backend* backends[2] = {&none, gvisor};
    for (std::size_t v = 0; v < 2; ++v) {
        if (!cols[v].skipped.empty()) continue;
        auto inst = runtime::Instance::create(*backends[v], make_spec(lang));
        if (inst)
            insts[v] = std::move(*inst);
        else
            cols[v].skipped = inst.error().message;
    }
    std::mt19937 rng(7);
    std::vector<std::size_t> order = {0, 1};
    for (int i = 0; i < calls + kWarmup; ++i) {
        std::shuffle(order.begin(), order.end(), rng);
        for (std::size_t v : order) {
            if (!insts[v] || !cols[v].skipped.empty()) continue;
            std::string e;
            const auto t0 = Clock::now();
            if (!call_doubles(*insts[v], i, &e)) {
                cols[v].skipped = e;
                continue;
            }
            if (i >= kWarmup) cols[v].samples.push_back(ms_since(t0) * 1000.0);
        }
    }
    std::printf("\n%s warm call round trip (%d calls, interleaved)\n", py ? "python" : "node",
                calls);
    for (const auto& c : cols) print_column(c, &c == &cols[0] ? nullptr : &cols[0], "us");
    if (cols[1].ok())
        std::printf("  %-52s p99 %9.1fus (none: %.1fus)\n", "", cols[1].pct(99),
                    cols[0].ok() ? cols[0].pct(99) : 0.0);
    g_targets.push_back({std::string("warm call, ") + (py ? "python" : "node") + " p50",
                         "<= 150 us", cols[1].ok() ? fmt("%.0f us", cols[1].pct(50)) : "-",
                         cols[1].ok() ? (cols[1].pct(50) <= 150.0 ? 1 : 0) : -1});
}

// e, f, g: the microvm backend, Python.
void microvm_section(int runs, int calls) {
    std::unique_ptr<sandbox::MicrovmBackend> restore, cold;
    std::string skip;
    if (auto ok = sandbox::MicrovmBackend::probe(); !ok) {
        skip = "the microvm backend cannot run here: " + ok.error().message;
    } else {
        sandbox::MicrovmOptions no_snapshot;
        no_snapshot.snapshot = false;
        auto r = sandbox::MicrovmBackend::create();
        auto c = sandbox::MicrovmBackend::create(no_snapshot);
        if (!r || !c)
            skip = (!r ? r.error() : c.error()).message;
        else
            restore = std::move(*r), cold = std::move(*c);
    }
    std::printf("\nmicrovm, python: %s\n",
                restore ? sandbox::MicrovmBackend::probe_note().c_str() : skip.c_str());
    const auto spec = make_spec(Language::python);
    std::vector<Column> cols = {{"microvm: cold boot, create + first call", {}, skip},
                                {"microvm: restored from its snapshot, same", {}, skip}};
    sandbox::Backend* backends[2] = {cold.get(), restore.get()};
    std::mt19937 rng(11);
    std::vector<std::size_t> order = {0, 1};
    for (int r = 0; r <= runs; ++r) {  // round 0 takes the snapshot and warms the page cache
        std::shuffle(order.begin(), order.end(), rng);
        for (std::size_t c : order) {
            if (!cols[c].skipped.empty()) continue;
            std::string e;
            auto ms = first_result(*backends[c], spec, &e);
            if (!ms)
                cols[c].skipped = e;
            else if (r > 0)
                cols[c].samples.push_back(*ms);
        }
    }
    std::printf("load to first result (%d runs, interleaved)\n", runs);
    print_column(cols[0], nullptr, "ms");
    print_column(cols[1], &cols[0], "ms");

    // The VM alone: spawn of /usr/bin/true to QEMU's exit, without the interpreter's start.
    std::vector<Column> vm = {{"microvm: cold boot, /usr/bin/true to exit", {}, skip},
                              {"microvm: restored, /usr/bin/true to exit", {}, skip}};
    for (int r = 0; r < runs; ++r) {
        std::shuffle(order.begin(), order.end(), rng);
        for (std::size_t c : order) {
            if (!vm[c].skipped.empty()) continue;
            sandbox::WorkerSpec ws;
            ws.argv = {"/usr/bin/true"};
            const auto t0 = Clock::now();
            auto p = backends[c]->spawn(ws);
            if (!p) {
                vm[c].skipped = p.error().message;
                continue;
            }
            const sandbox::ExitStatus st = sandbox::wait_or_kill(**p, 120'000);
            if (!WIFEXITED(st.raw) || WEXITSTATUS(st.raw) != 0)
                vm[c].skipped = "/usr/bin/true " + st.describe();
            else
                vm[c].samples.push_back(ms_since(t0));
        }
    }
    print_column(vm[0], nullptr, "ms");
    print_column(vm[1], &vm[0], "ms");
    const bool both = cols[0].ok() && cols[1].ok();
    g_targets.push_back({"microvm restore / cold boot, p50", "< 1 (the boot saved)",
                         both ? fmt("%.2fx", cols[1].pct(50) / cols[0].pct(50)) : "-",
                         both ? (cols[1].pct(50) < cols[0].pct(50) ? 1 : 0) : -1});
    g_targets.push_back({"microvm restore -> first result p50", "<= 150 ms (TCG)",
                         cols[1].ok() ? fmt("%.0f ms", cols[1].pct(50)) : "-",
                         cols[1].ok() ? (cols[1].pct(50) <= 150.0 ? 1 : 0) : -1});

    Column pooled{"microvm: from the warm pool (restored VMs)", {}, skip};
    if (restore) {
        runtime::PoolOptions po;
        po.python = 1;
        po.node = 0;
        auto pool = runtime::WarmPool::create(*restore, po);
        if (!pool) pooled.skipped = pool.error().message;
        auto s = spec;
        for (int r = 0; r < runs && pooled.skipped.empty(); ++r) {
            if (!(*pool)->wait_full(Clock::now() + std::chrono::seconds(120))) {
                pooled.skipped = "the pool did not fill within 120 s";
                break;
            }
            s.pool = pool->get();
            std::string e;
            auto ms = first_result(*restore, s, &e);
            if (!ms)
                pooled.skipped = e;
            else
                pooled.samples.push_back(*ms);
        }
    }
    print_column(pooled, cols[1].ok() ? &cols[1] : nullptr, "ms");

    Column warm_col{"microvm: warm call round trip", {}, skip};
    if (restore) {
        auto inst = runtime::Instance::create(*restore, make_spec(Language::python));
        if (!inst) warm_col.skipped = inst.error().message;
        for (int i = 0; i < calls + kWarmup && warm_col.skipped.empty(); ++i) {
            std::string e;
            const auto t0 = Clock::now();
            if (!call_doubles(**inst, i, &e))
                warm_col.skipped = e;
            else if (i >= kWarmup)
                warm_col.samples.push_back(ms_since(t0) * 1000.0);
        }
    }
    print_column(warm_col, nullptr, "us");
    g_targets.push_back({"microvm warm call p50", "<= 1 ms (TCG)",
                         warm_col.ok() ? fmt("%.0f us", warm_col.pct(50)) : "-",
                         warm_col.ok() ? (warm_col.pct(50) <= 1000.0 ? 1 : 0) : -1});
}

}  // namespace

int main(int argc, char** argv) {
    init_logging("error");
    int runs = env_int("SANDFLOW_BENCH_RUNS", 8);
    if (argc > 1 && std::atoi(argv[1]) > 0) runs = std::atoi(argv[1]);
    const int calls = env_int("SANDFLOW_BENCH_CALLS", 2000);

    std::unique_ptr<sandbox::GvisorBackend> gvisor;
    std::string skip;
    if (auto ok = sandbox::GvisorBackend::probe(); !ok) {
        skip = "gVisor cannot run here: " + ok.error().message;
    } else if (auto b = sandbox::GvisorBackend::create(); !b) {
        skip = b.error().message;
    } else {
        gvisor = std::move(*b);
    }
    char tmpl[] = "/tmp/sandflow-gvisor-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) {
        std::perror("mkdtemp");
        return 1;
    }
    const std::string runsc_root = tmpl;

    std::printf("sandflow gvisor benchmark: platform %s, %d cold/pool runs, %d warm calls\n",
                gvisor ? gvisor->options().platform.c_str() : "-", runs, calls);
    print_load("load average at start");
    // SANDFLOW_BENCH_ONLY=microvm: the microvm section alone.
    const char* only = std::getenv("SANDFLOW_BENCH_ONLY");
    if (!only || std::string(only) != "microvm") {
        for (Language lang : {Language::python, Language::javascript})
            cold(lang, runs, gvisor.get(), skip, runsc_root);
        for (Language lang : {Language::python, Language::javascript})
            from_pool(lang, runs, gvisor.get(), skip);
        for (Language lang : {Language::python, Language::javascript})
            warm(lang, calls, gvisor.get(), skip);
    }
    microvm_section(env_int("SANDFLOW_BENCH_VM_RUNS", 4), env_int("SANDFLOW_BENCH_VM_CALLS", 300));

    std::printf("\ntargets\n");
    for (const auto& t : g_targets)
        std::printf("  %-40s %-24s %-24s %s\n", t.what.c_str(), t.target.c_str(),
                    t.measured.c_str(),
                    t.met == 1   ? "met"
                    : t.met == 0 ? "NOT met"
                                 : "not measured");
    print_load("load average at end");
    std::error_code ec;
    std::filesystem::remove_all(runsc_root, ec);
    return 0;
}
