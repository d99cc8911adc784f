// Worker benchmarks, every figure measured in this run and printed beside its baseline:
//   warm call   host -> worker -> host round trip on a persistent worker (in-process C++
//               driver), against the same trivial function called in-process inside that
//               interpreter;
//   first call  start a worker, load the script, first result, against a bare
//               `python3 -c pass` / `node -e 0` started the same way.
// Targets (issue "Foundation"): warm Python call p50 < 100 us.
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "actor/sdk.hpp"
#include "core/log.hpp"
#include "runtime/instance.hpp"
#include "sandbox/none/none_backend.hpp"

using namespace sandflow;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

constexpr int kWarmCalls = 5000;
constexpr int kWarmup = 300;
constexpr int kColdRuns = 15;

struct Stats {
    double p50_us = 0, p99_us = 0;
};

Stats stats(std::vector<double> us) {
    std::sort(us.begin(), us.end());
    auto at = [&](double q) {
        return us[static_cast<std::size_t>(q * static_cast<double>(us.size() - 1))];
    };
    return {at(0.50), at(0.99)};
}

const char* kPyActor = R"(@actor({"component": "trivial", "inports": ["x"], "outports": ["y"]})
def process(context):
    return {"y": context.get_input("x")}
)";
const char* kJsActor = R"(const metadata = {component: 'trivial', inports: ['x'], outports: ['y']};
function process(context) {
    return {y: context.getInput('x')};
}
)";

// The same function, called in-process by the interpreter itself; prints "p50 p99" in us.
const char* kPyInProcess = R"(import time
class Ctx:
    def __init__(self, inputs): self.inputs = inputs
    def get_input(self, port, default=None): return self.inputs.get(port, default)
def process(context):
    return {"y": context.get_input("x")}
t = []
for i in range(%d):
    s = time.perf_counter_ns(); process(Ctx({"x": i})); t.append(time.perf_counter_ns() - s)
t = sorted(t[%d:])
print(t[len(t) // 2] / 1000, t[int(len(t) * 0.99)] / 1000)
)";
const char* kJsInProcess =
    R"(class Ctx { constructor(i) { this.inputs = i; } getInput(p) { return this.inputs[p]; } }
function trivial(context) { return {y: context.getInput('x')}; }
const t = [];
for (let i = 0; i < %d; i++) {
    const s = process.hrtime.bigint(); trivial(new Ctx({x: i})); t.push(Number(process.hrtime.bigint() - s));
}
const u = t.slice(%d).sort((a, b) => a - b);
console.log(u[Math.floor(u.length / 2)] / 1000, u[Math.floor(u.length * 0.99)] / 1000);
)";

Stats in_process(actor::Language lang, const fs::path& dir) {
    const bool py = lang == actor::Language::python;
    char code[2048];
    std::snprintf(code, sizeof code, py ? kPyInProcess : kJsInProcess, kWarmCalls + kWarmup,
                  kWarmup);
    const fs::path file = dir / (py ? "inprocess.py" : "inprocess.js");
    std::ofstream(file) << code;
    const std::string cmd = std::string("env -i ") +
                            (py ? std::string(actor::sdk::kPythonInterpreter) + " -I -S "
                                : std::string(actor::sdk::kNodeInterpreter) + " ") +
                            file.string();
    FILE* p = ::popen(cmd.c_str(), "r");
    Stats s;
    if (p) {
        if (std::fscanf(p, "%lf %lf", &s.p50_us, &s.p99_us) != 2) s = {};
        ::pclose(p);
    }
    return s;
}

double bare_start_ms(actor::Language lang) {
    sandbox::SpawnSpec spec;
    spec.argv =
        lang == actor::Language::python
            ? std::vector<std::string>{std::string(actor::sdk::kPythonInterpreter), "-I", "-S",
                                       "-c", "pass"}
            : std::vector<std::string>{std::string(actor::sdk::kNodeInterpreter), "-e", "0"};
    spec.env = sandbox::clean_worker_env();
    std::vector<double> ms;
    for (int i = 0; i < kColdRuns; ++i) {
        const auto t0 = Clock::now();
        auto proc = sandbox::spawn_process(spec, {});
        if (!proc) return -1;
        (*proc)->try_wait();
        int st = 0;
        ::waitpid((*proc)->pid(), &st, 0);
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    return stats(ms).p50_us;
}

struct Measured {
    Stats warm;
    double first_call_ms = -1;
};

Measured measure(sandbox::Backend& backend, const fs::path& script) {
    Measured m;
    runtime::CallEvents events;
    std::vector<double> first;
    for (int i = 0; i < kColdRuns; ++i) {
        const auto t0 = Clock::now();
        auto spec = runtime::spec_from_file(script);
        if (!spec) return m;
        auto inst = runtime::Instance::create(backend, std::move(*spec));
        if (!inst) {
            std::fprintf(stderr, "bench: %s\n", inst.error().message.c_str());
            return m;
        }
        runtime::CallRequest req;
        req.inputs = {{"x", 1}};
        if (!(*inst)->call(req, events)) return m;
        first.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    m.first_call_ms = stats(first).p50_us;

    auto spec = runtime::spec_from_file(script);
    auto inst = runtime::Instance::create(backend, std::move(*spec));
    if (!inst) return m;
    std::vector<double> us;
    us.reserve(kWarmCalls);
    runtime::CallRequest req;
    for (int i = 0; i < kWarmCalls + kWarmup; ++i) {
        req.inputs = {{"x", i}};
        const auto t0 = Clock::now();
        auto r = (*inst)->call(req, events);
        const auto t1 = Clock::now();
        if (!r) return m;
        if (i >= kWarmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    m.warm = stats(us);
    return m;
}

}  // namespace

int main() {
    init_logging("error");
    char tmpl[] = "/tmp/sandflow-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    const fs::path dir = tmpl;
    std::ofstream(dir / "trivial.py") << kPyActor;
    std::ofstream(dir / "trivial.js") << kJsActor;
    sandbox::NoneBackend backend;

    std::printf("sandflow worker benchmark (backend: none; %d warm calls, %d cold starts)\n\n",
                kWarmCalls, kColdRuns);
    std::printf("%-34s %10s %10s %12s %10s %8s\n", "measure", "p50", "p99", "baseline p50", "ratio",
                "target");
    bool ok = true;
    for (auto lang : {actor::Language::python, actor::Language::javascript}) {
        const bool py = lang == actor::Language::python;
        const auto m = measure(backend, dir / (py ? "trivial.py" : "trivial.js"));
        const auto base = in_process(lang, dir);
        const double bare = bare_start_ms(lang);
        const char* name = py ? "python" : "node";
        std::printf("%-34s %8.1fus %8.1fus %10.2fus %9.0fx %8s\n",
                    (std::string(name) + " warm call (host<->worker)").c_str(), m.warm.p50_us,
                    m.warm.p99_us, base.p50_us, base.p50_us > 0 ? m.warm.p50_us / base.p50_us : 0,
                    py ? "<100us" : "");
        std::printf("%-34s %8.1fms %10s %10.1fms %9.2fx\n",
                    (std::string(name) + " first call (start+load+call)").c_str(), m.first_call_ms,
                    "", bare, bare > 0 ? m.first_call_ms / bare : 0);
        if (py && !(m.warm.p50_us > 0 && m.warm.p50_us < 100)) ok = false;
    }
    std::printf(
        "\nbaselines: warm = the same function called in-process by the interpreter;\n"
        "           first call = bare `python3 -I -S -c pass` / `node -e 0`, spawned the same "
        "way.\n");
    std::printf("target warm python p50 < 100us: %s\n", ok ? "met" : "NOT met");
    fs::remove_all(dir);
    return 0;
}
