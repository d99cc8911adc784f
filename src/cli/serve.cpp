// sandflow serve: the runtime server (docs/protocol.md).
//
// Prints one JSON line on stdout once it listens, {"listening": "ws://HOST:PORT", "port":
// PORT, ...}, so that a caller that asked for port 0 learns the real one. Logs go to
// stderr. SIGTERM / SIGINT drain: stop accepting, let calls in flight finish within
// --grace, fail what is left with shutting_down, kill every sandbox, exit 0.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>

#include "cli/common.hpp"
#include "core/duration.hpp"
#include "core/json.hpp"
#include "core/log.hpp"
#include "runtime/actor_limits.hpp"
#include "runtime/warm_pool.hpp"
#include "server/running_server.hpp"
#include "server/server_limits.hpp"

namespace sandflow::cli {

namespace {

struct ServeOptions {
    std::string listen = "127.0.0.1:" + std::to_string(limits::kDefaultPort);
    std::vector<std::string> actors;
    std::string token;
    std::vector<std::string> origins;
    BackendFlags backend;
    std::size_t threads = limits::kDefaultBlockingThreads;
    int io_threads = limits::kDefaultIoThreads;
    std::string call_timeout = format_duration(limits::kDefaultCallTimeout);
    std::string idle_timeout = format_duration(limits::kIdleTimeout);
    std::string handshake_timeout = format_duration(limits::kHandshakeTimeout);
    std::string grace = format_duration(limits::kDrainGrace);
    std::size_t max_message = limits::kMaxRpcMessageBytes;
    std::size_t max_send_queue = limits::kMaxSendQueueBytes;
    std::size_t max_connections = limits::kMaxConnections;
    std::size_t max_calls_per_connection = limits::kMaxCallsPerConnection;
    std::size_t max_instances = limits::kMaxInstances;
    bool no_warm = false;
    bool no_deflate = false;
    std::vector<std::string> limit_defaults, limit_maxima;
    std::size_t pool_python = limits::kDefaultPythonPool;
    std::size_t pool_node = limits::kDefaultNodePool;
    std::string state = "sqlite:";  // the default file (runtime::default_state_path)
    std::string state_sync = "normal";
    PackageFlags packages;
};

int run(ServeOptions o) {
    auto hp = rpc::parse_listen(o.listen);
    if (!hp) return report(hp.error());
    if (o.token.empty()) {
        if (const char* t = std::getenv("SANDFLOW_TOKEN")) o.token = t;
    }
    if (!rpc::is_loopback_host(hp->host) && o.token.empty())
        return report(Error(Errc::invalid_argument,
                            "--listen " + o.listen +
                                " is not a loopback address: set --token TOKEN (or "
                                "SANDFLOW_TOKEN) so that only your clients can connect"));
    std::chrono::microseconds call_timeout{}, idle{}, handshake{}, grace{};
    for (auto [text, out, flag] :
         {std::tuple{&o.call_timeout, &call_timeout, "--call-timeout"},
          std::tuple{&o.idle_timeout, &idle, "--idle-timeout"},
          std::tuple{&o.handshake_timeout, &handshake, "--handshake-timeout"},
          std::tuple{&o.grace, &grace, "--grace"}}) {
        auto d = parse_duration(*text);
        if (!d) {
            Error e = d.error();
            e.message = std::string(flag) + ": " + e.message;
            return report(e);
        }
        *out = *d;
    }
    for (const auto& a : o.limit_defaults)
        if (a.rfind("timeout_ms=", 0) == 0)
            return report(Error(Errc::invalid_argument,
                                "--limit timeout_ms: the default call timeout is set with "
                                "--call-timeout (for example --call-timeout 5s)"));
    auto policy = runtime::limit_policy(o.limit_defaults, o.limit_maxima);
    if (!policy) return report(policy.error());
    auto backend = open_backend(o.backend, policy->defaults.sandbox);
    if (!backend) return report(backend.error());
    if (o.state_sync != "normal" && o.state_sync != "full")
        return report(Error(Errc::invalid_argument,
                            "--state-sync must be normal (state survives a crash of the "
                            "server) or full (also a power cut), not '" +
                                o.state_sync + "'"));
    runtime::StoreOptions store_opts;
    store_opts.sqlite_full_sync = o.state_sync == "full";
    std::shared_ptr<runtime::StateStore> store;
    {
        auto st = runtime::open_state_store(o.state, store_opts);
        if (!st) return report(st.error());
        store = std::move(*st);
    }

    server::prepare_process_for_serving();

    // Every thread started from here on inherits the blocked signals; this one waits.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    using std::chrono::duration_cast;
    using std::chrono::milliseconds;
    server::ServerOptions so;
    for (const auto& a : o.actors) so.actor_roots.emplace_back(a);
    so.threads = o.threads;
    so.call_timeout = duration_cast<milliseconds>(call_timeout);
    so.limits = policy->defaults;
    so.max_limits = policy->maxima;
    if (so.call_timeout > so.max_limits.timeout)
        return report(
            Error(Errc::invalid_argument, "--call-timeout is above the maximum timeout_ms of " +
                                              std::to_string(so.max_limits.timeout.count()) +
                                              " ms; raise it with --max-limit timeout_ms=VALUE"));
    so.max_calls_per_connection = o.max_calls_per_connection;
    so.max_instances = o.max_instances;
    so.warm_discovered = !o.no_warm;
    auto packages = open_packages(o.packages);
    if (!packages) return report(packages.error());
    so.packages = *packages;
    server::RunningServerOptions ro;
    ro.server = std::move(so);
    if (o.pool_python + o.pool_node > 0) {
        runtime::PoolOptions po;
        po.python = o.pool_python;
        po.node = o.pool_node;
        ro.warm_pool = po;
    }
    rpc::WsServerOptions& wo = ro.transport;
    wo.host = hp->host;
    wo.port = hp->port;
    wo.token = o.token;
    wo.allowed_origins = o.origins;
    wo.max_message_bytes = o.max_message;
    wo.max_send_queue_bytes = o.max_send_queue;
    wo.max_connections = o.max_connections;
    wo.handshake_timeout = duration_cast<milliseconds>(handshake);
    wo.idle_timeout = duration_cast<milliseconds>(idle);
    wo.deflate = !o.no_deflate;
    wo.io_threads = o.io_threads;
    auto rs = server::RunningServer::start(**backend, std::move(ro), store);
    if (!rs) return report(rs.error());

    const std::string url = (*rs)->url();
    const std::string line =
        to_json_string(json::object{{"listening", url},
                                    {"port", (*rs)->port()},
                                    {"backend", (*backend)->name()},
                                    {"isolation", sandbox::level_name((*backend)->level())},
                                    {"actors", (*rs)->actors_registered()},
                                    {"state", store->describe()}});
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    spdlog::info("listening on {} ({} actors, backend {}, state {})", url,
                 (*rs)->actors_registered(), (*backend)->name(), store->describe());

    int sig = 0;
    sigwait(&sigs, &sig);
    spdlog::info("{}: draining (grace {})", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                 format_duration(grace));
    (*rs)->drain_and_stop(grace);
    spdlog::info("stopped");
    return kExitOk;
}

}  // namespace

void register_serve(CLI::App& app, int& status) {
    auto o = std::make_shared<ServeOptions>();
    auto* cmd = app.add_subcommand(
        "serve",
        "Run the runtime server: WebSocket JSON-RPC 2.0 (docs/protocol.md), with GET /healthz\n"
        "and GET /metrics (Prometheus) on the same port. Prints one JSON line on stdout once\n"
        "listening: {\"listening\": \"ws://HOST:PORT\", \"port\": PORT, ...} (use port 0 to get a\n"
        "free port). SIGTERM/SIGINT drain: stop accepting, let calls finish within --grace,\n"
        "fail the rest with shutting_down, stop every sandbox, exit 0.");
    cmd->add_option("--listen", o->listen,
                    "HOST:PORT to listen on ([::1]:PORT for IPv6). A non-loopback host needs "
                    "--token")
        ->capture_default_str();
    cmd->add_option("--actors", o->actors,
                    "Folder of actor scripts (repeatable): *.actor.py, *.actor.js and "
                    "actors/*.py|js are registered at start; `load` by file_path reads only "
                    "files under these folders");
    cmd->add_option("--token", o->token,
                    "Bearer token that clients must send (Authorization: Bearer TOKEN, or "
                    "?token= on the URL); default: $SANDFLOW_TOKEN");
    cmd->add_option("--allowed-origin", o->origins,
                    "Origin allowed to connect from a browser (repeatable; * for any). "
                    "Requests with any other Origin header are refused");
    add_backend_flags(*cmd, o->backend);
    add_package_flags(*cmd, o->packages);
    cmd->add_option("--threads", o->threads,
                    "Threads for what blocks: starting sandboxes, load, unload (calls to "
                    "running sandboxes use the I/O threads)")
        ->capture_default_str()
        ->check(CLI::Range(1, 1024));
    cmd->add_option("--io-threads", o->io_threads,
                    "Threads for the sockets and for calls to running sandboxes, each with "
                    "its own connections")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    cmd->add_option("--call-timeout", o->call_timeout,
                    "Wall-clock limit of a process call unless it sets timeout_ms")
        ->capture_default_str();
    cmd->add_option("--idle-timeout", o->idle_timeout,
                    "Close a connection silent for this long (pinged at half)")
        ->capture_default_str();
    cmd->add_option("--handshake-timeout", o->handshake_timeout,
                    "Limit for the HTTP request and the WebSocket handshake")
        ->capture_default_str();
    cmd->add_option("--grace", o->grace, "On SIGTERM/SIGINT, how long calls may still run")
        ->capture_default_str();
    cmd->add_option("--max-message-bytes", o->max_message,
                    "Largest message accepted (after decompression)")
        ->capture_default_str();
    cmd->add_option("--max-send-queue-bytes", o->max_send_queue,
                    "Unsent bytes allowed per connection before a slow reader is disconnected")
        ->capture_default_str();
    cmd->add_option("--max-connections", o->max_connections, "Open connections at most")
        ->capture_default_str();
    cmd->add_option("--max-calls-per-connection", o->max_calls_per_connection,
                    "load/process/unload calls in flight per connection; more are refused "
                    "(overloaded)")
        ->capture_default_str();
    cmd->add_option("--max-instances", o->max_instances, "Live instances (sandboxes) at most")
        ->capture_default_str();
    cmd->add_flag("--no-warm", o->no_warm,
                  "Do not start the discovered actors' sandboxes at start (start on first call)");
    cmd->add_flag("--no-deflate", o->no_deflate, "Do not offer permessage-deflate");
    cmd->add_option("--limit", o->limit_defaults,
                    "NAME=VALUE: a default limit for every instance (repeatable): memory_bytes, "
                    "pids, cpu_milli, tmpfs_bytes, output_bytes, frame_bytes (sizes may end in "
                    "K, M, G; the call timeout is --call-timeout). Actors may declare their own "
                    "in their metadata, and load/process requests in params.limits");
    cmd->add_option("--max-limit", o->limit_maxima,
                    "NAME=VALUE: the most any actor, load or call may ask for (repeatable)");
    cmd->add_option("--pool-python", o->pool_python,
                    "Python sandboxes kept started ahead (interpreter and SDK loaded); each new "
                    "instance takes one. 0 = none")
        ->capture_default_str();
    cmd->add_option("--pool-node", o->pool_node,
                    "Node sandboxes kept started ahead (~60 MB each). 0 = none")
        ->capture_default_str();
    cmd->add_option("--state", o->state,
                    "Where instances' committed state lives: sqlite:PATH (durable; sqlite: "
                    "alone is the default file, " +
                        runtime::default_state_path() +
                        ", under $SANDFLOW_DATA_DIR when set), redis://HOST:PORT/DB or "
                        "redis+unix:///PATH?db=N (&namespace=NS) shared by several servers, or "
                        "memory (lost when the server stops)")
        ->capture_default_str();
    cmd->add_option("--state-sync", o->state_sync,
                    "sqlite durability: normal (a committed call's state survives a crash of "
                    "the server) or full (also a power cut; each commit waits for the disk)")
        ->capture_default_str();
    cmd->callback([o, &status] { status = run(*o); });
}

}  // namespace sandflow::cli
