// Flow engine benchmarks, every figure measured in this run and printed beside a baseline:
//   native   messages/s through a 10-node pipeline (range -> 9 x passthrough -> exported
//            outport), against the same 10 components called directly in one loop on one
//            thread (no queues, no threads: the cost of the work itself);
//   python   messages/s through a 3-node pipeline of sandboxed Python actors on the
//            embedded runtime, against the same 3 instances called one after the other
//            from one thread (no network: what pipelining must beat);
//   remote   the same 3-node pipeline on a runtime server (`sandflow serve` on loopback,
//            through the C++ client), against the embedded figure.
// Targets (issue 5): native >= 500,000 messages/s; python (embedded) >= 10,000 messages/s.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "core/log.hpp"
#include "flow/graph.hpp"
#include "flow/network.hpp"
#include "flow/remote.hpp"
#include "runtime/instance.hpp"
#include "sandbox/backend.hpp"
// Shared with the flow suites; bench/ has no include path into tests/, so relative.
#include "support/flow_support.hpp"

using namespace sandflow;
using namespace sandflow::flow;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

constexpr int kNativeMessages = 1'000'000;
constexpr int kScriptMessages = 5'000;

// range -> stages... ; the last stage's outport is exported as "out".
std::string pipeline(const std::vector<std::string>& components, int messages,
                     const std::string& in = "in", const std::string& out = "out") {
    std::string procs = R"("gen": {"component": "range"})";
    std::string conns = R"({"to": {"nodeId": "gen", "portName": "start"}, "data": )" +
                        std::to_string(messages) + "}";
    std::string prev = "gen";
    for (std::size_t i = 0; i < components.size(); ++i) {
        const std::string id = "n" + std::to_string(i);
        procs += R"(, ")" + id + R"(": {"component": ")" + components[i] + R"("})";
        conns += "," + testing::conn(prev, prev == "gen" ? "out" : out, id, in);
        prev = id;
    }
    return R"({"processes": {)" + procs + R"(}, "connections": [)" + conns +
           R"(], "outports": {"out": {"nodeId": ")" + prev + R"(", "portName": ")" + out +
           R"("}}})";
}

struct Timed {
    double per_second = 0;
    std::uint64_t received = 0;
    std::string error;
};

Timed run_graph(const std::string& text, int messages, const ScriptCatalog* cat, ScriptHost* host) {
    std::atomic<std::uint64_t> got{0};
    NetworkOptions opts;
    opts.on_output = [&](std::string_view, const json::value&) { got.fetch_add(1); };
    opts.on_log = [](std::string_view, std::string_view) {};
    const auto run = testing::run_flow(text, Registry::standard(), cat, host, std::move(opts));
    if (!run.result) return {0, 0, run.result.error().message};
    // The run's own clock: from the start of run() to its end, not the build.
    const double s = std::chrono::duration<double>(run.result->elapsed).count();
    return {messages / s, got.load(), {}};
}

// The same 10 native components called directly, one message at a time.
double native_baseline() {
    const Registry reg = Registry::standard();
    std::vector<std::unique_ptr<Component>> stages;
    for (int i = 0; i < 10; ++i) stages.push_back(*reg.find("passthrough")->make({}));
    struct Direct final : Context {
        json::value v, next;
        json::object cfg, in;
        std::string_view node_id() const override { return "n"; }
        const json::object& config() const override { return cfg; }
        std::string_view port() const override { return "in"; }
        json::value& value() override { return v; }
        json::object& inputs() override { return in; }
        Result<void> send(std::string_view, json::value x) override {
            next = std::move(x);
            return {};
        }
        Result<void> send_after(std::string_view, json::value x,
                                std::chrono::milliseconds) override {
            next = std::move(x);
            return {};
        }
        void again() override {}
        void log(std::string_view) override {}
    } ctx;
    std::int64_t sum = 0;
    const auto start = Clock::now();
    for (int i = 0; i < kNativeMessages; ++i) {
        ctx.next = i;
        for (auto& s : stages) {
            ctx.v = std::move(ctx.next);
            (void)s->process(ctx);
        }
        sum += ctx.next.as_int64();
    }
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    if (sum < 0) std::printf("impossible\n");
    return kNativeMessages / s;
}

const char* kPyStage = R"(@actor({"component": "py_stage", "inports": ["in"], "outports": ["out"]})
def process(context):
    return {"out": context.get_input("in")}
)";

// The same 3 Python instances, called one after the other per message.
double python_baseline(sandbox::Backend& backend, const fs::path& script, int messages) {
    std::vector<std::unique_ptr<runtime::Instance>> insts;
    for (int i = 0; i < 3; ++i) {
        auto spec = runtime::spec_from_file(script);
        if (!spec) return 0;
        auto inst = runtime::Instance::create(backend, std::move(*spec));
        if (!inst) return 0;
        insts.push_back(std::move(*inst));
    }
    runtime::CallEvents ev;
    const auto start = Clock::now();
    for (int i = 0; i < messages; ++i) {
        json::value v = i;
        for (auto& inst : insts) {
            runtime::CallRequest req;
            req.inputs = {{"in", v}};
            auto r = inst->call(req, ev);
            if (!r) return 0;
            v = r->outputs.at("out");
        }
    }
    return messages / std::chrono::duration<double>(Clock::now() - start).count();
}

void line(const char* what, const Timed& t, double baseline, const char* base_what) {
    if (!t.error.empty()) {
        std::printf("  %-34s failed: %s\n", what, t.error.c_str());
        return;
    }
    std::printf("  %-34s %12.0f msg/s   %-26s %12.0f msg/s   ratio %.2f\n", what, t.per_second,
                base_what, baseline, baseline > 0 ? t.per_second / baseline : 0.0);
}

}  // namespace

int main() {
    init_logging("error");
    std::printf("sandflow flow benchmark (%u cores)\n\n", std::thread::hardware_concurrency());

    // Native pipeline.
    const std::vector<std::string> tenth(9, "passthrough");
    const auto native =
        run_graph(pipeline(tenth, kNativeMessages), kNativeMessages, nullptr, nullptr);
    const double native_base = native_baseline();
    std::printf("10-node native pipeline, %d messages (target >= 500000 msg/s):\n",
                kNativeMessages);
    line("engine (range + 9 passthrough)", native, native_base, "direct calls, 1 thread");
    if (native.error.empty() && native.received != static_cast<std::uint64_t>(kNativeMessages))
        std::printf("  LOST MESSAGES: %llu of %d\n",
                    static_cast<unsigned long long>(native.received), kNativeMessages);

    // Sandboxed Python pipeline.
    const fs::path dir =
        fs::temp_directory_path() / ("sandflow-flow-bench-" + std::to_string(getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "stage.actor.py") << kPyStage;
    const auto cat = ScriptCatalog::discover({dir});
    sandbox::BackendOptions bo;
    bo.allow_insecure = true;
    const char* backend_name = "namespace";
    auto backend = sandbox::make_backend(backend_name, bo);
    if (backend) {
        // The namespace backend may be built but unable to start here: try one instance.
        auto spec = runtime::spec_from_file(dir / "stage.actor.py");
        if (!spec || !runtime::Instance::create(**backend, std::move(*spec)))
            backend = fail(Errc::sandbox_unavailable, "probe failed");
    }
    if (!backend) {
        backend_name = "none";
        backend = sandbox::make_backend(backend_name, bo);
    }
    if (!backend) {
        std::printf("no sandbox backend: %s\n", backend.error().message.c_str());
        return 1;
    }
    const std::string py = pipeline({"py_stage", "py_stage", "py_stage"}, kScriptMessages);
    auto host = embedded_host(**backend);
    const auto embedded = run_graph(py, kScriptMessages, &cat, host.get());
    const double py_base = python_baseline(**backend, dir / "stage.actor.py", kScriptMessages);
    std::printf(
        "\n3-node Python pipeline, backend %s, %d messages (target >= 10000 msg/s "
        "embedded):\n",
        backend_name, kScriptMessages);
    line("embedded runtime", embedded, py_base, "3 calls in turn, 1 thread");

    testing::ServeProcess server(backend_name);
    if (server.url().empty()) {
        std::printf("  remote: `sandflow serve` did not start\n");
    } else {
        auto rhost = remote_host({server.url(), "", {}});
        const auto remote = run_graph(py, kScriptMessages, &cat, rhost.get());
        line("remote runtime (loopback)", remote, embedded.per_second, "embedded runtime");
    }
    fs::remove_all(dir);
    return 0;
}
