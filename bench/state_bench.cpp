// State stores: calls/s and p50 of a state-writing Python actor (it increments a counter
// and sets a key each call) through the runtime server, with the state in memory, sqlite
// (synchronous NORMAL and FULL, a file in a temp folder) and Redis (a redis-server of its
// own on a unix socket, append-only with fsync every second, Redis's default), on 1
// connection and on 16 (one instance each), as ratios to memory; the issue's targets:
// sqlite NORMAL >= 0.8x memory's calls/s on 16 connections, Redis >= 0.6x.
//
// One server per store runs throughout, its instances warm; the figures are taken in
// rounds, each store once per round in a shuffled order, so that a burst of load from
// other work on the machine falls on every store alike. Each ratio printed is the median
// of the rounds' own ratios (a store against memory in the same round), with their range.
// Rounds: argv[1] or SANDFLOW_BENCH_RUNS (default 9); calls per connection per round:
// SANDFLOW_BENCH_CALLS (default 300 at 16 connections, 5x that at 1).
//
// The sandbox backend is `none`: the figures are the store's cost on top of a call, not
// the sandbox's (bench/server_bench.cpp measures that).
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
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

constexpr int kConns = 16;

struct Figures {
    double rate = 0, p50_us = 0;
    double cpu_us = 0;  // per call: this process (server, store, clients) and redis-server
    int errors = 0;
};

// CPU time of this process (every thread), microseconds.
double self_cpu_us() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto us = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec);
    };
    return us(ru.ru_utime) + us(ru.ru_stime);
}

// CPU time of another process (redis-server), microseconds; 0 when it cannot be read.
double pid_cpu_us(pid_t pid) {
    if (pid <= 0) return 0;
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(in)), {});
    const auto close = all.rfind(')');  // the name may hold spaces
    if (close == std::string::npos) return 0;
    std::istringstream rest(all.substr(close + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stod(field);
        if (i == 15) stime = std::stod(field);
    }
    return (utime + stime) * 1e6 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// One store's server, its clients (one per instance) and their instances, warm.
class Rig {
  public:
    Rig(std::string name, std::shared_ptr<runtime::StateStore> store, const fs::path& dir,
        pid_t store_pid)
        : name_(std::move(name)), store_pid_(store_pid) {
        server::RunningServerOptions ro;
        ro.server.actor_roots = {dir};
        ro.server.warm_discovered = false;
        ro.transport.port = 0;
        ro.transport.io_threads = 2;
        auto rs = server::RunningServer::start(backend_, std::move(ro), std::move(store));
        if (!rs) {
            why_ = rs.error().message;
            return;
        }
        rs_ = std::move(*rs);
        for (int i = 0; i < kConns; ++i) {
            auto c = client::Client::connect(rs_->url());
            if (!c) {
                why_ = c.error().message;
                return;
            }
            clients_.push_back(std::move(*c));
        }
        // Every instance started, and its state written a few times.
        Figures w = measure(kConns, 20);
        if (w.errors) why_ = std::to_string(w.errors) + " calls failed while warming up";
    }
    ~Rig() {
        clients_.clear();
        if (rs_) rs_->stop();
    }
    const std::string& name() const { return name_; }
    bool ok() const { return why_.empty(); }
    const std::string& why_not() const { return why_; }

    // `conns` connections (instances i0..), each making `calls` calls one after another.
    Figures measure(int conns, int calls) {
        std::vector<std::vector<double>> lat(static_cast<std::size_t>(conns));
        std::vector<int> errors(static_cast<std::size_t>(conns), 0);
        auto one = [&](int i) {
            client::ProcessOptions po;
            po.instance_id = "i" + std::to_string(i);
            auto& l = lat[static_cast<std::size_t>(i)];
            l.reserve(static_cast<std::size_t>(calls));
            for (int k = 0; k < calls; ++k) {
                const auto t0 = std::chrono::steady_clock::now();
                auto r =
                    clients_[static_cast<std::size_t>(i)]->process("tally", {{"x", k}}, {}, po);
                l.push_back(
                    std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                        .count());
                if (!r) errors[static_cast<std::size_t>(i)]++;
            }
        };
        const double cpu0 = self_cpu_us() + pid_cpu_us(store_pid_);
        const auto start = std::chrono::steady_clock::now();
        std::vector<std::thread> ts;
        for (int i = 0; i < conns; ++i) ts.emplace_back(one, i);
        for (auto& t : ts) t.join();
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double cpu = self_cpu_us() + pid_cpu_us(store_pid_) - cpu0;
        std::vector<double> all;
        for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
        std::sort(all.begin(), all.end());
        Figures f;
        f.rate = static_cast<double>(all.size()) / secs;
        f.p50_us = all.empty() ? 0 : all[all.size() / 2];
        f.cpu_us = all.empty() ? 0 : cpu / static_cast<double>(all.size());
        for (int e : errors) f.errors += e;
        return f;
    }

  private:
    std::string name_;
    pid_t store_pid_;
    sandbox::NoneBackend backend_;
    std::unique_ptr<server::RunningServer> rs_;
    std::vector<std::unique_ptr<client::Client>> clients_;
    std::string why_;
};

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int env_int(const char* name, int dflt) {
    const char* v = std::getenv(name);
    const int n = v ? std::atoi(v) : 0;
    return n > 0 ? n : dflt;
}

std::string loadavg() {
    std::ifstream in("/proc/loadavg");
    std::string a, b, c;
    in >> a >> b >> c;
    return a + " " + b + " " + c;
}

}  // namespace

int main(int argc, char** argv) {
    init_logging("error");
    server::prepare_process_for_serving();
    const int rounds =
        argc > 1 && std::atoi(argv[1]) > 0 ? std::atoi(argv[1]) : env_int("SANDFLOW_BENCH_RUNS", 9);
    const int calls16 = env_int("SANDFLOW_BENCH_CALLS", 300);
    const int calls1 = 5 * calls16;
    char tmpl[] = "/tmp/sandflow-state-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    const fs::path dir = tmpl;
    std::ofstream(dir / "tally.actor.py") << kActor;
    testing::RedisServer redis(false);

    std::printf(
        "sandflow state bench (backend none; a Python actor writing 2 keys per call; %u cores; "
        "%d rounds, stores in a shuffled order each round; load average %s)\n",
        std::thread::hardware_concurrency(), rounds, loadavg().c_str());
    std::vector<std::unique_ptr<Rig>> rigs;
    auto add = [&](const std::string& name, Result<std::unique_ptr<runtime::StateStore>> store,
                   pid_t pid) {
        if (!store) {
            std::printf("%-14s not measured: %s\n", name.c_str(), store.error().message.c_str());
            return;
        }
        auto rig = std::make_unique<Rig>(name, std::move(*store), dir, pid);
        if (!rig->ok()) {
            std::printf("%-14s not measured: %s\n", name.c_str(), rig->why_not().c_str());
            return;
        }
        rigs.push_back(std::move(rig));
    };
    add("memory", runtime::make_memory_store(), 0);
    if (rigs.empty()) return 1;
    add("sqlite NORMAL", runtime::open_sqlite_store((dir / "normal.sqlite").string(), {false}), 0);
    add("sqlite FULL", runtime::open_sqlite_store((dir / "full.sqlite").string(), {true}), 0);
    if (redis.available())
        add("redis", runtime::open_state_store(redis.url("namespace=bench"), {}), redis.pid());
    else
        std::printf("redis          not measured: %s\n", redis.why_not().c_str());

    // figs[rig][0 or 1][round]: 1 connection, 16 connections.
    std::vector<std::array<std::vector<Figures>, 2>> figs(rigs.size());
    std::mt19937 rng(std::random_device{}());
    std::vector<std::size_t> order(rigs.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (int r = 0; r < rounds; ++r) {
        for (int c = 0; c < 2; ++c) {
            std::shuffle(order.begin(), order.end(), rng);
            for (std::size_t i : order)
                figs[i][c].push_back(c ? rigs[i]->measure(kConns, calls16)
                                       : rigs[i]->measure(1, calls1));
        }
    }

    std::printf("\n%-14s %5s %10s %9s %9s %8s %9s %15s\n", "store", "conns", "calls/s", "p50 us",
                "cpu/call", "errors", "x memory", "range");
    std::vector<std::array<double, 2>> ratio(rigs.size());
    for (int c = 0; c < 2; ++c) {
        for (std::size_t i = 0; i < rigs.size(); ++i) {
            std::vector<double> rate, p50, cpu, ratios;
            int errors = 0;
            for (int r = 0; r < rounds; ++r) {
                const Figures& f = figs[i][c][static_cast<std::size_t>(r)];
                rate.push_back(f.rate);
                p50.push_back(f.p50_us);
                cpu.push_back(f.cpu_us);
                errors += f.errors;
                const double m = figs[0][c][static_cast<std::size_t>(r)].rate;
                ratios.push_back(m > 0 ? f.rate / m : 0);
            }
            ratio[i][c] = median(ratios);
            std::printf("%-14s %5d %10.0f %9.0f %9.0f %8d %8.2fx %7.2f-%.2fx\n",
                        rigs[i]->name().c_str(), c ? kConns : 1, median(rate), median(p50),
                        median(cpu), errors, ratio[i][c],
                        *std::min_element(ratios.begin(), ratios.end()),
                        *std::max_element(ratios.begin(), ratios.end()));
        }
    }
    std::printf(
        "\ncalls/s, p50, cpu/call: medians over the rounds; cpu/call: CPU time per call of this "
        "process (server, store, clients; not the Python workers) plus redis-server's; x memory: "
        "the median of each round's ratio to memory in that round, and their range.\n"
        "load average at the end: %s\n\ntargets (16 connections, calls/s against memory):\n",
        loadavg().c_str());
    auto target = [&](const std::string& name, double want) {
        for (std::size_t i = 0; i < rigs.size(); ++i)
            if (rigs[i]->name() == name) {
                std::printf("  %-14s >= %.2fx: %.2fx %s\n", name.c_str(), want, ratio[i][1],
                            ratio[i][1] >= want ? "met" : "NOT met");
                return;
            }
        std::printf("  %-14s >= %.2fx: not measured (see above)\n", name.c_str(), want);
    };
    target("sqlite NORMAL", 0.80);
    target("redis", 0.60);
    rigs.clear();
    fs::remove_all(dir);
    return 0;
}
