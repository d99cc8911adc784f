// Runtime server benchmark, every figure measured in this run beside its baseline:
//   through the server   C++ client -> WebSocket -> server -> worker -> back, N connections
//                        each making sequential `process` calls;
//   direct               the same calls made by N threads directly on runtime::Instance,
//                        in process (no server, no socket);
// for a trivial Python actor at 1, 16 and 128 connections, over min(N, 16) instances.
// Printed: calls/s, p50 and p99 round trip, and server/direct ratios.
// Targets (issue "Runtime server"): p50 <= 200 us; >= 20,000 calls/s over 16 connections.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "core/log.hpp"
#include "rpc/ws_server.hpp"
#include "runtime/instance.hpp"
#include "sandbox/none/none_backend.hpp"
#include "sandflow/client.hpp"
#include "server/server.hpp"

using namespace sandflow;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

const char* kActor = R"(@actor({"component": "trivial", "inports": ["x"], "outports": ["y"]})
def process(context):
    return {"y": context.get_input("x")}
)";

struct Figures {
    double calls_per_s = 0, p50_us = 0, p99_us = 0;
    int errors = 0;
};

Figures summarise(std::vector<double> us, double secs, int errors) {
    std::sort(us.begin(), us.end());
    auto at = [&](double q) {
        return us.empty() ? 0.0
                          : us[static_cast<std::size_t>(q * static_cast<double>(us.size() - 1))];
    };
    return {static_cast<double>(us.size()) / secs, at(0.5), at(0.99), errors};
}

// Runs `threads` threads, each calling `one(thread, i)` `calls` times after `warmup`.
template <class F>
Figures drive(int threads, int calls, int warmup, F one) {
    std::vector<std::vector<double>> lat(static_cast<std::size_t>(threads));
    std::vector<int> errs(static_cast<std::size_t>(threads), 0);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
            for (int i = 0; i < warmup; ++i) one(t, i);
        });
    for (auto& t : ts) t.join();
    ts.clear();
    const auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
            auto& mine = lat[static_cast<std::size_t>(t)];
            mine.reserve(static_cast<std::size_t>(calls));
            for (int i = 0; i < calls; ++i) {
                const auto s = Clock::now();
                if (!one(t, i)) ++errs[static_cast<std::size_t>(t)];
                mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
            }
        });
    for (auto& t : ts) t.join();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::vector<double> all;
    int errors = 0;
    for (std::size_t t = 0; t < lat.size(); ++t) {
        all.insert(all.end(), lat[t].begin(), lat[t].end());
        errors += errs[t];
    }
    return summarise(std::move(all), secs, errors);
}

long rss_kb() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return 0;
}

}  // namespace

int main() {
    init_logging("warn");
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    char tmpl[] = "/tmp/sandflow-server-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    const fs::path dir = tmpl;
    std::ofstream(dir / "trivial.actor.py") << kActor;

    sandbox::NoneBackend backend;
    server::ServerOptions so;
    so.actor_roots = {dir};
    so.threads = 16;
    so.warm_discovered = false;
    server::Server srv(backend, so, server::make_memory_store());
    if (!srv.discover()) return 1;
    rpc::WsServerOptions wo;
    wo.port = 0;
    rpc::WsHandler h;
    h.on_open = [&srv](const auto& c) { srv.on_open(c); };
    h.on_message = [&srv](const auto& c, std::string_view t, bool b) { srv.on_message(c, t, b); };
    h.on_close = [&srv](const auto& c) { srv.on_close(c); };
    auto ws = rpc::WsServer::listen(wo, h);
    if (!ws) {
        std::fprintf(stderr, "bench: %s\n", ws.error().message.c_str());
        return 1;
    }
    (*ws)->start(1);
    const std::string url = "ws://127.0.0.1:" + std::to_string((*ws)->port());

    auto spec = runtime::spec_from_file(dir / "trivial.actor.py");
    if (!spec) return 1;

    std::printf(
        "sandflow server benchmark (backend: none; trivial Python actor; server: 1 I/O "
        "thread, 16 call threads; %u cores)\n\n",
        std::thread::hardware_concurrency());
    std::printf("%-6s %-9s %12s %10s %10s | %12s %10s %10s | %8s %8s\n", "conns", "instances",
                "server c/s", "p50", "p99", "direct c/s", "p50", "p99", "c/s", "p50");
    bool p50_ok = false, rate_ok = false;
    for (int conns : {1, 16, 128}) {
        const int instances = std::min(conns, 16);
        const int calls = conns == 1 ? 4000 : conns == 16 ? 800 : 120;
        // Through the server.
        std::vector<std::unique_ptr<client::Client>> clients;
        for (int i = 0; i < conns; ++i) {
            auto c = client::Client::connect(url);
            if (!c) {
                std::fprintf(stderr, "bench: %s\n", c.error().message.c_str());
                return 1;
            }
            clients.push_back(std::move(*c));
        }
        std::vector<client::ProcessOptions> opts(static_cast<std::size_t>(instances));
        for (int i = 0; i < instances; ++i)
            opts[static_cast<std::size_t>(i)].instance_id =
                "b" + std::to_string(conns) + "-" + std::to_string(i);
        const Figures s = drive(conns, calls, 50, [&](int t, int i) {
            auto r = clients[static_cast<std::size_t>(t)]->process(
                "trivial", {{"x", i}}, {}, opts[static_cast<std::size_t>(t % instances)]);
            return r && r->outputs.at("y") == i;
        });
        clients.clear();
        // Directly on the runtime, same shape.
        std::vector<std::unique_ptr<runtime::Instance>> insts;
        std::vector<std::mutex> locks(static_cast<std::size_t>(instances));
        for (int i = 0; i < instances; ++i) {
            auto inst = runtime::Instance::create(backend, *spec);
            if (!inst) return 1;
            insts.push_back(std::move(*inst));
        }
        const Figures d = drive(conns, calls, 50, [&](int t, int i) {
            const auto k = static_cast<std::size_t>(t % instances);
            std::lock_guard lk(locks[k]);
            runtime::CallRequest req;
            req.inputs = {{"x", i}};
            auto r = insts[k]->call(req, {});
            return r && r->outputs.at("y") == i;
        });
        insts.clear();
        std::printf("%-6d %-9d %12.0f %8.0fus %8.0fus | %12.0f %8.0fus %8.0fus | %7.2fx %7.2fx%s\n",
                    conns, instances, s.calls_per_s, s.p50_us, s.p99_us, d.calls_per_s, d.p50_us,
                    d.p99_us, s.calls_per_s / d.calls_per_s, s.p50_us / d.p50_us,
                    s.errors + d.errors ? "  ERRORS" : "");
        if (conns == 1) p50_ok = s.p50_us <= 200;
        if (conns == 16) rate_ok = s.calls_per_s >= 20000;
    }
    std::printf("\nratios: server / direct (calls/s lower is worse; p50 higher is worse)\n");
    std::printf("target p50 <= 200us at 1 connection: %s\n", p50_ok ? "met" : "NOT met");
    std::printf("target >= 20,000 calls/s over 16 connections: %s\n", rate_ok ? "met" : "NOT met");
    std::printf("benchmark process RSS (server + clients, no sandboxes): %ld MB\n",
                rss_kb() / 1024);
    (*ws)->stop();
    srv.shutdown();
    fs::remove_all(dir);
    return 0;
}
