// State stores: calls/s and p50 of a state-writing Python actor (it increments a counter
// each call) through the runtime server, with the state in memory, sqlite (synchronous
// NORMAL and FULL, a file in a temp folder) and Redis (a redis-server of its own on a unix
// socket, append-only with fsync every second, Redis's default), on 1 connection and on 16
// (one instance each). Printed as ratios to memory; the issue's targets: sqlite NORMAL
// >= 0.8x memory's calls/s on 16 connections, Redis >= 0.6x.
//
// The sandbox backend is `none`: the figures are the store's cost on top of a call, not
// the sandbox's (bench/server_bench.cpp measures that).
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "core/log.hpp"
#include "sandbox/none/none_backend.hpp"
#include "sandflow/client.hpp"
#include "server/running_server.hpp"
#include "state/redis_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

const char* kActor = R"(@actor({"component": "tally", "inports": ["x"], "outports": ["n"]})
async def process(context):
    n = await context.state.increment("n")
    await context.state.set("last", context.get_input("x"))
    return {"n": n}
)";

struct Figures {
    double rate = 0, p50_us = 0;
    int errors = 0;
};

Figures run(std::shared_ptr<runtime::StateStore> store, const fs::path& dir, int conns,
            int calls_each) {
    sandbox::NoneBackend backend;
    server::RunningServerOptions ro;
    ro.server.actor_roots = {dir};
    ro.server.warm_discovered = false;
    ro.transport.port = 0;
    ro.transport.io_threads = 2;
    auto rs = server::RunningServer::start(backend, std::move(ro), std::move(store));
    if (!rs) return {};
    const std::string url = (*rs)->url();
    std::vector<std::vector<double>> lat(static_cast<std::size_t>(conns));
    std::vector<int> errors(static_cast<std::size_t>(conns), 0);
    std::vector<std::unique_ptr<client::Client>> clients;
    for (int i = 0; i < conns; ++i) {
        auto c = client::Client::connect(url);
        if (!c) return {};
        clients.push_back(std::move(*c));
    }
    auto one = [&](int i, int n, bool record) {
        client::ProcessOptions po;
        po.instance_id = "i" + std::to_string(i);
        for (int k = 0; k < n; ++k) {
            const auto t0 = std::chrono::steady_clock::now();
            auto r = clients[static_cast<std::size_t>(i)]->process("tally", {{"x", k}}, {}, po);
            const double us =
                std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                    .count();
            if (!r) errors[static_cast<std::size_t>(i)]++;
            if (record) lat[static_cast<std::size_t>(i)].push_back(us);
        }
    };
    {  // warm-up: every instance started
        std::vector<std::thread> ts;
        for (int i = 0; i < conns; ++i) ts.emplace_back(one, i, 20, false);
        for (auto& t : ts) t.join();
    }
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int i = 0; i < conns; ++i) ts.emplace_back(one, i, calls_each, true);
    for (auto& t : ts) t.join();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::vector<double> all;
    for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
    std::sort(all.begin(), all.end());
    Figures f;
    f.rate = static_cast<double>(all.size()) / secs;
    f.p50_us = all.empty() ? 0 : all[all.size() / 2];
    for (int e : errors) f.errors += e;
    clients.clear();
    (*rs)->stop();
    return f;
}

}  // namespace

int main() {
    init_logging("error");
    server::prepare_process_for_serving();
    char tmpl[] = "/tmp/sandflow-state-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    const fs::path dir = tmpl;
    std::ofstream(dir / "tally.actor.py") << kActor;
    testing::RedisServer redis(false);

    struct Config {
        std::string name;
        std::function<Result<std::unique_ptr<runtime::StateStore>>(int)> open;
    };
    std::vector<Config> configs = {
        {"memory",
         [](int) {
             return Result<std::unique_ptr<runtime::StateStore>>(runtime::make_memory_store());
         }},
        {"sqlite NORMAL",
         [&](int n) {
             return runtime::open_sqlite_store(
                 (dir / ("n" + std::to_string(n) + ".sqlite")).string(), {false});
         }},
        {"sqlite FULL",
         [&](int n) {
             return runtime::open_sqlite_store(
                 (dir / ("f" + std::to_string(n) + ".sqlite")).string(), {true});
         }},
    };
    if (redis.available())
        configs.push_back({"redis", [&](int n) {
                               return runtime::open_state_store(
                                   redis.url("namespace=bench" + std::to_string(n)), {});
                           }});
    std::printf(
        "sandflow state bench (backend none; a Python actor writing 2 keys per call; "
        "%u cores)\n\n",
        std::thread::hardware_concurrency());
    std::printf("%-14s %5s %10s %9s %8s %10s\n", "store", "conns", "calls/s", "p50 us", "errors",
                "x memory");
    double memory_rate[2] = {0, 0};
    double rate16[4] = {0, 0, 0, 0};
    for (std::size_t ci = 0; ci < configs.size(); ++ci) {
        int idx = 0;
        for (int conns : {1, 16}) {
            auto store = configs[ci].open(conns);
            if (!store) {
                std::printf("%-14s %5d  (%s)\n", configs[ci].name.c_str(), conns,
                            store.error().message.c_str());
                continue;
            }
            std::shared_ptr<runtime::StateStore> shared = std::move(*store);
            const Figures f = run(shared, dir, conns, conns == 1 ? 2000 : 400);
            if (ci == 0) memory_rate[idx] = f.rate;
            if (conns == 16) rate16[ci] = f.rate;
            std::printf("%-14s %5d %10.0f %9.0f %8d %9.2fx\n", configs[ci].name.c_str(), conns,
                        f.rate, f.p50_us, f.errors,
                        memory_rate[idx] > 0 ? f.rate / memory_rate[idx] : 0.0);
            ++idx;
        }
    }
    std::printf("\ntargets (16 connections): sqlite NORMAL >= 0.80x memory: %.2fx %s",
                rate16[1] / rate16[0], rate16[1] / rate16[0] >= 0.8 ? "met" : "NOT met");
    if (redis.available())
        std::printf("; redis >= 0.60x memory: %.2fx %s\n", rate16[3] / rate16[0],
                    rate16[3] / rate16[0] >= 0.6 ? "met" : "NOT met");
    else
        std::printf("; redis: not measured (%s)\n", redis.why_not().c_str());
    fs::remove_all(dir);
    return 0;
}
