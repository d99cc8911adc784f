// Runtime server benchmark, every figure measured in this run beside its baseline:
//   through the server   client -> WebSocket -> server -> worker -> back, N connections
//                        each making sequential `process` calls (one call in flight per
//                        connection), driven three ways:
//                          threads     one caller thread per connection, blocking calls;
//                          coroutines  one C++20 coroutine per connection on its client's
//                                      I/O thread (client_asio.hpp), no caller thread;
//                          raw         no client library: raw-socket WebSocket connections
//                                      on one epoll thread, every message parsed and
//                                      checked (drive_raw);
//                          pipelined   4 such coroutines per connection: 4 calls in flight
//                                      per connection, shown apart and not counted for
//                                      the targets;
//                          ping        the coroutines calling `ping`: the transport and the
//                                      client alone, no worker (not counted either);
//   direct               the same calls made by N threads directly on runtime::Instance,
//                        in process (no server, no socket);
// for a trivial Python actor at 1, 16 and 128 connections, over min(N, 16) instances.
// Printed: calls/s, p50 and p99 round trip, and server/direct ratios.
// Targets (issue "Runtime server"): p50 <= 200 us; >= 20,000 calls/s over 16 connections.
// Targets (issue "Speed where users feel it"): server >= 0.8x direct calls/s at 16
// connections; and an independent Python client (server_bench_client.py, python3-websockets)
// doing Reflow's `process` exchange (one streamed output, then the answer): its p50 <= 1.8x
// its own `list` round trip's, both measured interleaved on one connection.
// The clients run in this process and share its cores with the server and the workers:
// every client-side thread switch is CPU the server does not get.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include "core/log.hpp"
#include "runtime/instance.hpp"
#include "sandbox/host_probe.hpp"
#include "sandbox/namespace/namespace_backend.hpp"
#include "sandbox/none/none_backend.hpp"
#include "sandflow/client.hpp"
#include "sandflow/client_asio.hpp"
#include "server/running_server.hpp"

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
    double cpu_us = 0;    // CPU time of this process per call (not the workers')
    double switches = 0;  // context switches of this process's threads per call
    int errors = 0;
};

// CPU time of this process (every thread: server, clients, drivers), microseconds. Unlike
// calls/s it hardly moves when other processes load the machine.
double cpu_now_us(double* switches = nullptr) {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    if (switches) *switches = static_cast<double>(ru.ru_nvcsw + ru.ru_nivcsw);
    auto us = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec);
    };
    return us(ru.ru_utime) + us(ru.ru_stime);
}

Figures summarise(std::vector<double> us, double secs, int errors) {
    std::sort(us.begin(), us.end());
    auto at = [&](double q) {
        return us.empty() ? 0.0
                          : us[static_cast<std::size_t>(q * static_cast<double>(us.size() - 1))];
    };
    Figures f;
    f.calls_per_s = static_cast<double>(us.size()) / secs;
    f.p50_us = at(0.5);
    f.p99_us = at(0.99);
    f.errors = errors;
    return f;
}

// Wall clock, CPU time and context switches of one timed run, from construction to
// finish(), which turns the run's latencies into its figures.
class Meter {
  public:
    Meter() : cpu0_(cpu_now_us(&sw0_)), t0_(Clock::now()) {}
    Figures finish(std::vector<double> us, int errors) const {
        const double secs = std::chrono::duration<double>(Clock::now() - t0_).count();
        double sw1 = 0;
        const double cpu = cpu_now_us(&sw1) - cpu0_;
        const auto n = static_cast<double>(std::max<std::size_t>(1, us.size()));
        Figures f = summarise(std::move(us), secs, errors);
        f.cpu_us = cpu / n;
        f.switches = (sw1 - sw0_) / n;
        return f;
    }

  private:
    double sw0_ = 0;
    double cpu0_;
    Clock::time_point t0_;
};

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
    const Meter meter;
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
    std::vector<double> all;
    int errors = 0;
    for (std::size_t t = 0; t < lat.size(); ++t) {
        all.insert(all.end(), lat[t].begin(), lat[t].end());
        errors += errs[t];
    }
    return meter.finish(std::move(all), errors);
}

struct Run {
    std::vector<double> us;
    int errors = 0;
};

// One connection's sequential calls, on its client's I/O thread. Parameters by value;
// main waits for every coroutine before the clients and runs go.
boost::asio::awaitable<void> call_loop(client::Client* c, client::ProcessOptions po, int first,
                                       int n, std::shared_ptr<Run> out) {
    // Named arguments, no temporaries in the co_await expression (client_asio.hpp: GCC 12).
    const std::string actor = "trivial";
    const client::OutputCallback no_outputs;
    for (int i = first; i < first + n; ++i) {
        const auto s = Clock::now();
        json::object payload{{"x", i}};
        auto r = co_await client::async_process(*c, actor, std::move(payload), no_outputs, po,
                                                boost::asio::use_awaitable);
        const auto* y = r ? r->outputs.if_contains("y") : nullptr;
        if (!out) continue;
        if (!y || *y != i) ++out->errors;
        out->us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
    }
}

// One connection's sequential `ping` calls: the transport and the client alone, no worker.
boost::asio::awaitable<void> ping_loop(client::Client* c, int n, std::shared_ptr<Run> out) {
    const std::string method = "ping";
    const client::NotificationCallback none;
    for (int i = 0; i < n; ++i) {
        const auto s = Clock::now();
        json::value params = json::object{};
        auto r = co_await client::async_call(*c, method, std::move(params), none,
                                             boost::asio::use_awaitable);
        if (!out) continue;
        if (!r) ++out->errors;
        out->us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
    }
}

// Every connection runs `calls` calls as a coroutine after `warmup`.
// With in_flight > 1, each connection runs that many such coroutines at once: calls are
// pipelined on the connection (the per-connection figures of the issue use 1); with 0,
// each connection makes `ping` calls instead.
Figures drive_coroutines(const std::vector<std::unique_ptr<client::Client>>& clients,
                         const std::vector<client::ProcessOptions>& opts, int calls, int warmup,
                         int in_flight = 1) {
    auto round = [&](int n, std::vector<std::shared_ptr<Run>>* runs) {
        std::vector<std::future<void>> done;
        for (std::size_t t = 0; t < clients.size(); ++t) {
            for (int k = 0; k < std::max(in_flight, 1); ++k) {
                std::shared_ptr<Run> out;
                if (runs) out = runs->emplace_back(std::make_shared<Run>());
                done.push_back(
                    in_flight == 0
                        ? boost::asio::co_spawn(clients[t]->io_context(),
                                                ping_loop(clients[t].get(), n, out),
                                                boost::asio::use_future)
                        : boost::asio::co_spawn(clients[t]->io_context(),
                                                call_loop(clients[t].get(), opts[t % opts.size()],
                                                          0, n / in_flight, out),
                                                boost::asio::use_future));
            }
        }
        for (auto& f : done) f.get();
    };
    round(warmup, nullptr);
    std::vector<std::shared_ptr<Run>> runs;
    const Meter meter;
    round(calls, &runs);
    std::vector<double> all;
    int errors = 0;
    for (const auto& r : runs) {
        all.insert(all.end(), r->us.begin(), r->us.end());
        errors += r->errors;
    }
    return meter.finish(std::move(all), errors);
}

// One raw-socket WebSocket connection of drive_raw(): the handshake done, one call in
// flight, the bytes received and not yet parsed.
struct RawConn {
    int fd = -1;
    std::string instance;
    std::string in;
    std::int64_t x = 0;  // the call in flight sends {"x": x} and expects {"y": x}
    int done = 0;        // calls finished in this phase
    Clock::time_point sent;
};

bool send_all(int fd, const std::string& bytes) {
    for (std::size_t off = 0; off < bytes.size();) {
        const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return false;
        off += static_cast<std::size_t>(n);
    }
    return true;
}

// A masked text frame (RFC 6455 5.2), as a client must send.
std::string client_frame(std::string_view payload, std::uint32_t mask) {
    std::string f;
    f.push_back(static_cast<char>(0x81));
    if (payload.size() < 126) {
        f.push_back(static_cast<char>(0x80 | payload.size()));
    } else {
        f.push_back(static_cast<char>(0x80 | 126));
        f.push_back(static_cast<char>(payload.size() >> 8));
        f.push_back(static_cast<char>(payload.size() & 0xff));
    }
    const char key[4] = {static_cast<char>(mask >> 24), static_cast<char>(mask >> 16),
                         static_cast<char>(mask >> 8), static_cast<char>(mask)};
    f.append(key, 4);
    for (std::size_t i = 0; i < payload.size(); ++i) f.push_back(payload[i] ^ key[i % 4]);
    return f;
}

// Connects and upgrades; -1 on failure.
int raw_connect(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int one = 1;
    const std::string upgrade =
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: c2FuZGZsb3ctYmVuY2gtMQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    std::string reply;
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
              ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 &&
              send_all(fd, upgrade);
    char buf[1024];
    while (ok && reply.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        ok = n > 0;
        if (ok) reply.append(buf, static_cast<std::size_t>(n));
    }
    if (ok && reply.rfind("HTTP/1.1 101", 0) == 0) return fd;
    ::close(fd);
    return -1;
}

// The issue's shape without the client library: `conns` raw-socket WebSocket connections
// served by one epoll thread (as a load generator such as wrk works), each making
// sequential `process` calls on its instance. Every message is parsed as JSON and checked:
// each response must carry its call's id and output.
// The C++ client rows above pay for the library's generality (a thread per connection,
// callbacks, futures); this row shows what the server serves when its client is cheap.
Figures drive_raw(std::uint16_t port, int conns, int instances, int calls, int warmup) {
    std::vector<RawConn> cs(static_cast<std::size_t>(conns));
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    auto close_all = [&] {
        ::close(ep);
        for (auto& c : cs)
            if (c.fd >= 0) ::close(c.fd);
    };
    for (int i = 0; i < conns; ++i) {
        auto& c = cs[static_cast<std::size_t>(i)];
        c.fd = raw_connect(port);
        if (c.fd < 0) {
            close_all();
            Figures failed;
            failed.errors = 1;
            return failed;
        }
        c.instance = "r" + std::to_string(conns) + "-" + std::to_string(i % instances);
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.u32 = static_cast<std::uint32_t>(i);
        ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &e);
    }
    std::uint32_t mask = 0x9e3779b9;
    auto send_call = [&](RawConn& c) {
        ++c.x;
        mask = mask * 1664525u + 1013904223u;
        const std::string req = "{\"jsonrpc\":\"2.0\",\"id\":" + std::to_string(c.x) +
                                ",\"method\":\"process\",\"params\":{\"actor_id\":\"trivial\","
                                "\"instance_id\":\"" +
                                c.instance + "\",\"payload\":{\"x\":" + std::to_string(c.x) + "}}}";
        c.sent = Clock::now();
        return send_all(c.fd, client_frame(req, mask));
    };
    // One message: a script_output notification (the trivial actor streams none), or the
    // call's response, which must carry its id and its output.
    enum class Got { notification, result, bad };
    auto on_message = [](const RawConn& c, std::string_view text) {
        boost::system::error_code ec;
        const json::value v = json::parse(text, ec);
        if (ec || !v.is_object()) return Got::bad;
        const auto& o = v.get_object();
        if (const auto* m = o.if_contains("method")) {
            return *m == "script_output" ? Got::notification : Got::bad;
        }
        const auto* id = o.if_contains("id");
        const auto* result = o.if_contains("result");
        if (!id || *id != c.x || !result || !result->is_object()) return Got::bad;
        const auto* outputs = result->get_object().if_contains("outputs");
        const auto* y =
            outputs && outputs->is_object() ? outputs->get_object().if_contains("y") : nullptr;
        return y && *y == c.x ? Got::result : Got::bad;
    };
    char buf[65536];
    epoll_event evs[64];
    // Every connection makes `n` calls; false when something was not as promised.
    auto phase = [&](int n, std::vector<double>* lat) {
        int finished = 0;
        for (auto& c : cs) {
            c.done = 0;
            if (!send_call(c)) return false;
        }
        while (finished < conns) {
            const int ready = ::epoll_wait(ep, evs, 64, 10'000);
            if (ready <= 0) return false;  // the server stopped answering
            for (int k = 0; k < ready; ++k) {
                auto& c = cs[evs[k].data.u32];
                const ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
                if (r <= 0) return false;
                c.in.append(buf, static_cast<std::size_t>(r));
                // Every whole frame received (the server's are unmasked and unfragmented).
                while (c.in.size() >= 2) {
                    std::size_t len = static_cast<unsigned char>(c.in[1]) & 0x7f, head = 2;
                    if (len == 127) return false;  // no message here comes near 64 KiB
                    if (len == 126) {
                        if (c.in.size() < 4) break;
                        len = static_cast<std::size_t>(static_cast<unsigned char>(c.in[2])) << 8 |
                              static_cast<unsigned char>(c.in[3]);
                        head = 4;
                    }
                    if (c.in.size() < head + len) break;
                    const Got got = (c.in[0] & 0x0f) == 1
                                        ? on_message(c, std::string_view(c.in).substr(head, len))
                                        : Got::bad;
                    c.in.erase(0, head + len);
                    if (got == Got::bad) return false;
                    if (got == Got::notification) continue;
                    if (lat)
                        lat->push_back(
                            std::chrono::duration<double, std::micro>(Clock::now() - c.sent)
                                .count());
                    if (++c.done == n) {
                        ++finished;
                    } else if (!send_call(c)) {
                        return false;
                    }
                }
            }
        }
        return true;
    };
    Figures f;
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(conns * calls));
    if (phase(warmup, nullptr)) {
        const Meter meter;
        const bool ok = phase(calls, &us);
        f = meter.finish(std::move(us), ok ? 0 : 1);
    } else {
        f.errors = 1;
    }
    close_all();
    return f;
}

// The machine's floor for the 16-connection shape, with none of Sandflow in it: `conns`
// client threads, each on its own TCP loopback connection to one epoll thread, which relays
// each 120-byte message to its own python3 process that echoes it back over a socketpair
// (no WebSocket, no JSON, no sandbox). Calls per second.
double bare_relay(int conns, int calls) {
    const char* echo =
        "import os\nwhile True:\n    b = os.read(3, 65536)\n    if not b: break\n"
        "    os.write(3, b)\n";
    const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (lfd < 0 || ::bind(lfd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(lfd, conns) != 0 || ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len))
        return 0;
    std::vector<int> worker(static_cast<std::size_t>(conns)), client(worker), served(worker);
    std::vector<pid_t> pids;
    const int one = 1;
    for (int i = 0; i < conns; ++i) {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
        const pid_t pid = ::fork();
        if (pid == 0) {
            ::dup2(sv[1], 3);  // clears close-on-exec on 3
            ::execl("/usr/bin/python3", "python3", "-I", "-S", "-c", echo, nullptr);
            ::_exit(127);
        }
        ::close(sv[1]);
        pids.push_back(pid);
        worker[static_cast<std::size_t>(i)] = sv[0];
        const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 0;
        const int a = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        client[static_cast<std::size_t>(i)] = c;
        served[static_cast<std::size_t>(i)] = a;
    }
    ::close(lfd);
    // The relay: 0..conns-1 are client connections, conns.. the workers.
    std::thread relay([&] {
        const int ep = ::epoll_create1(EPOLL_CLOEXEC);
        for (int i = 0; i < 2 * conns; ++i) {
            epoll_event e{};
            e.events = EPOLLIN;
            e.data.u32 = static_cast<std::uint32_t>(i);
            const auto k = static_cast<std::size_t>(i % conns);
            ::epoll_ctl(ep, EPOLL_CTL_ADD, i < conns ? served[k] : worker[k], &e);
        }
        char buf[4096];
        epoll_event evs[32];
        for (int open = conns; open > 0;) {
            const int n = ::epoll_wait(ep, evs, 32, -1);
            for (int j = 0; j < n; ++j) {
                const auto i = static_cast<int>(evs[j].data.u32);
                const auto k = static_cast<std::size_t>(i % conns);
                const int from = i < conns ? served[k] : worker[k];
                const int to = i < conns ? worker[k] : served[k];
                const ssize_t r = ::read(from, buf, sizeof buf);
                if (r <= 0) {
                    ::epoll_ctl(ep, EPOLL_CTL_DEL, from, nullptr);
                    open -= i < conns;
                    continue;
                }
                (void)::send(to, buf, static_cast<std::size_t>(r), MSG_NOSIGNAL);
            }
        }
        ::close(ep);
    });
    const auto t0 = Clock::now();
    std::vector<std::thread> callers;
    for (int i = 0; i < conns; ++i)
        callers.emplace_back([&, c = client[static_cast<std::size_t>(i)]] {
            char msg[120], in[4096];
            std::memset(msg, 'x', sizeof msg);
            for (int n = 0; n < calls; ++n) {
                if (::send(c, msg, sizeof msg, MSG_NOSIGNAL) != sizeof msg) return;
                for (std::size_t got = 0; got < sizeof msg;) {
                    const ssize_t r = ::recv(c, in, sizeof in, 0);
                    if (r <= 0) return;
                    got += static_cast<std::size_t>(r);
                }
            }
        });
    for (auto& t : callers) t.join();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    for (int c : client) ::close(c);
    relay.join();
    for (int fd : served) ::close(fd);
    for (int fd : worker) ::close(fd);
    for (pid_t pid : pids) ::waitpid(pid, nullptr, 0);
    return conns * static_cast<double>(calls) / secs;
}

// The Python client's p50s (server_bench_client.py): {list, process} in microseconds, or
// {0, 0} with the reason on stderr when it could not run.
std::pair<double, double> python_client(const std::string& url, int rounds) {
    const std::string cmd = "/usr/bin/python3 " SANDFLOW_BENCH_CLIENT_PY " " + url + " double " +
                            std::to_string(rounds) + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return {0, 0};
    std::string out;
    char buf[1024];
    while (const std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    const int st = ::pclose(p);
    double list = 0, process = 0;
    if (st != 0 ||
        std::sscanf(out.c_str(), "list_p50_us=%lf process_p50_us=%lf", &list, &process) != 2) {
        std::fprintf(stderr, "bench: the Python client failed: %s\n", out.c_str());
        return {0, 0};
    }
    return {list, process};
}

long rss_kb() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    // `--coroutines N`: only the coroutine client over N connections, for longer (to run
    // under a profiler). `--io-threads N`: the server's I/O threads (default: as `serve`).
    // `--client-threads N`: the I/O threads the C++ clients share (0: one per client).
    int only = 0;
    int io_threads = 2;
    int client_threads = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view flag = argv[i];
        const int value = std::atoi(argv[i + 1]);
        int* target = flag == "--coroutines"       ? &only
                      : flag == "--io-threads"     ? &io_threads
                      : flag == "--client-threads" ? &client_threads
                                                   : nullptr;
        if (!target || value < (target == &client_threads ? 0 : 1)) {
            std::fprintf(stderr,
                         "usage: %s [--coroutines N] [--io-threads N] [--client-threads N]\n",
                         argv[0]);
            return 2;
        }
        *target = value;
    }
    init_logging("warn");
    server::prepare_process_for_serving();
    char tmpl[] = "/tmp/sandflow-server-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    const fs::path dir = tmpl;
    std::ofstream(dir / "trivial.actor.py") << kActor;
    // Reflow's exchange for the Python client: one output streamed before the answer.
    std::error_code copy_error;
    fs::copy_file(SANDFLOW_BENCH_DOUBLE_ACTOR, dir / "double.actor.py", copy_error);

    // The default backend, as `serve` runs it: the namespace sandbox where it can run here
    // (the issue's target is a round trip through a sandboxed worker), else `none`.
    std::unique_ptr<sandbox::Backend> owned;
    if (auto ns = sandbox::probe_backend("namespace"); ns && ns->runs) {
        if (auto b = sandbox::NamespaceBackend::create()) owned = std::move(*b);
    }
    if (!owned) owned = std::make_unique<sandbox::NoneBackend>();
    sandbox::Backend& backend = *owned;
    server::RunningServerOptions ro;
    ro.server.actor_roots = {dir};
    ro.server.threads = 16;
    ro.server.warm_discovered = false;
    ro.transport.port = 0;
    ro.transport.io_threads = io_threads;
    const std::size_t pool_threads = ro.server.threads;
    auto rs = server::RunningServer::start(backend, std::move(ro), runtime::make_memory_store());
    if (!rs) {
        std::fprintf(stderr, "bench: %s\n", rs.error().message.c_str());
        return 1;
    }
    const std::string url = (*rs)->url();

    auto spec = runtime::spec_from_file(dir / "trivial.actor.py");
    if (!spec) return 1;

    std::printf(
        "sandflow server benchmark (backend: %s; trivial Python actor; server: %d I/O "
        "threads, %zu pool threads; C++ clients: %s; %u cores)\n\n",
        std::string(backend.name()).c_str(), io_threads, pool_threads,
        client_threads > 0 ? (std::to_string(client_threads) + " shared I/O threads").c_str()
                           : "an I/O thread each",
        std::thread::hardware_concurrency());
    std::printf("%-5s %-5s %-10s %10s %8s %8s %8s %7s | %10s %8s %8s %8s | %6s %6s\n", "conns",
                "inst", "client", "server c/s", "p50", "p99", "cpu/call", "cs/call", "direct c/s",
                "p50", "p99", "cpu/call", "c/s", "p50");
    double best_p50 = 0, best_rate = 0, library_rate = 0, relay_rate = 0;
    // At 16 connections: the best server/direct ratio of calls/s, and that row's CPU per
    // call beside the direct run's.
    double best_ratio = 0, ratio_cpu = 0, direct_cpu = 0;
    const char* ratio_mode = "-";
    for (int conns : only > 0 ? std::vector<int>{only} : std::vector<int>{1, 16, 128}) {
        const int instances = std::min(conns, 16);
        const int calls = conns == 1 ? 4000 : conns == 16 ? 2500 : 120;
        // Through the server.
        std::vector<std::unique_ptr<client::Client>> clients;
        client::Options co_opts;
        if (client_threads > 0) co_opts.io = client::IoThreads::start(client_threads);
        for (int i = 0; i < conns; ++i) {
            auto c = client::Client::connect(url, co_opts);
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
        if (only > 0) {
            const Figures co = drive_coroutines(clients, opts, 20000 / conns * 4, 50);
            std::printf("%-5d %-5d %-10s %10.0f %6.0fus %6.0fus %6.0fus %7.1f\n", conns, instances,
                        "coroutines", co.calls_per_s, co.p50_us, co.p99_us, co.cpu_us, co.switches);
            clients.clear();
            continue;
        }
        const Figures s = drive(conns, calls, 50, [&](int t, int i) {
            auto r = clients[static_cast<std::size_t>(t)]->process(
                "trivial", {{"x", i}}, {}, opts[static_cast<std::size_t>(t % instances)]);
            return r && r->outputs.at("y") == i;
        });
        const Figures co = drive_coroutines(clients, opts, calls, 50);
        const Figures piped = drive_coroutines(clients, opts, calls, 50, 4);
        const Figures ping = drive_coroutines(clients, opts, calls, 50, 0);
        clients.clear();
        const Figures raw = drive_raw((*rs)->port(), conns, instances, calls, 50);
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
        for (const auto& [mode, f] :
             {std::pair{"threads", s}, std::pair{"coroutines", co}, std::pair{"raw", raw},
              std::pair{"pipelined", piped}, std::pair{"ping", ping}}) {
            std::printf(
                "%-5d %-5d %-10s %10.0f %6.0fus %6.0fus %6.0fus %7.1f | %10.0f %6.0fus %6.0fus "
                "%6.0fus | %5.2fx %5.2fx%s\n",
                conns, instances, mode, f.calls_per_s, f.p50_us, f.p99_us, f.cpu_us, f.switches,
                d.calls_per_s, d.p50_us, d.p99_us, d.cpu_us, f.calls_per_s / d.calls_per_s,
                f.p50_us / d.p50_us, f.errors + d.errors ? "  ERRORS" : "");
            // Not the issue's shape: several calls in flight, or no worker.
            if (std::string_view(mode) == "pipelined" || std::string_view(mode) == "ping") continue;
            if (f.errors) continue;
            const bool library = std::string_view(mode) != "raw";
            if (conns == 1 && (best_p50 == 0 || f.p50_us < best_p50)) best_p50 = f.p50_us;
            if (conns == 16) best_rate = std::max(best_rate, f.calls_per_s);
            if (conns == 16 && f.calls_per_s / d.calls_per_s > best_ratio) {
                best_ratio = f.calls_per_s / d.calls_per_s;
                ratio_mode = mode;
                ratio_cpu = f.cpu_us;
                direct_cpu = d.cpu_us;
            }
            if (conns == 16 && library) library_rate = std::max(library_rate, f.calls_per_s);
        }
        if (conns == 16) relay_rate = bare_relay(conns, calls * 4);
    }
    std::printf(
        "\nratios: server / direct (calls/s lower is worse; p50 higher is worse)\n"
        "cpu/call: CPU time of this process per call (server, clients and drivers; not the "
        "workers'); it moves little when other processes load the machine\n"
        "cs/call: context switches of this process's threads per call\n");
    std::printf(
        "targets: one call in flight per connection, best of threads, coroutines and raw\n");
    std::printf("target p50 <= 200us at 1 connection: %.0fus, %s\n", best_p50,
                best_p50 <= 200 ? "met" : "NOT met");
    std::printf(
        "target >= 20,000 calls/s over 16 connections: %.0f, %s (with the C++ client library "
        "as the client: %.0f)\n",
        best_rate, best_rate >= 20000 ? "met" : "NOT met", library_rate);
    if (relay_rate > 0)
        std::printf(
            "the machine's floor for that shape (16 TCP loopback connections relayed by one "
            "epoll thread to 16 python3 echo processes; no WebSocket, JSON or sandbox): %.0f "
            "calls/s; the server reaches %.2fx of it\n",
            relay_rate, best_rate / relay_rate);
    std::printf(
        "target server >= 0.80x direct calls/s at 16 connections: %.2fx (%s), %s; CPU per "
        "call %.0fus through the server against %.0fus direct (%.2fx)\n",
        best_ratio, ratio_mode, best_ratio >= 0.8 ? "met" : "NOT met", ratio_cpu, direct_cpu,
        direct_cpu > 0 ? ratio_cpu / direct_cpu : 0.0);
    if (only > 0) {
        // A profiling run: the coroutine rows alone.
    } else if (const auto [list, process] = python_client(url, 2000); list > 0) {
        std::printf(
            "target Python client (python3-websockets) `process` p50 <= 1.80x its `list` p50: "
            "%.0fus / %.0fus = %.2fx, %s\n",
            process, list, process / list, process / list <= 1.8 ? "met" : "NOT met");
    } else {
        std::printf(
            "target Python client `process` p50 <= 1.80x its `list` p50: - (the client "
            "could not run; see above)\n");
    }
    std::printf("benchmark process RSS (server + clients, no sandboxes): %ld MB\n",
                rss_kb() / 1024);
    (*rs)->stop();
    fs::remove_all(dir);
    return 0;
}
