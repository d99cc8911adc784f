// A runtime server on its socket: the wiring from options to a running `sandflow serve`
// (the server, its warm pool, the WebSocket transport, the --actors scripts registered),
// and its graceful stop. The CLI and the benchmarks start servers through it, so that
// they measure what `serve` runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/error.hpp"
#include "rpc/ws_server.hpp"
#include "runtime/state/store.hpp"
#include "runtime/warm_pool.hpp"
#include "sandbox/backend.hpp"
#include "server/server.hpp"

namespace sandflow::server {

struct RunningServerOptions {
    ServerOptions server;  // its warm_pool is set from warm_pool below
    rpc::WsServerOptions transport;
    // Sandboxes kept started ahead, per language; nullopt: every sandbox starts cold.
    std::optional<runtime::PoolOptions> warm_pool;
};

class RunningServer {
  public:
    // Makes the server, checks that the backend starts a sandbox (when it cannot, /healthz
    // answers 503 with why), binds the socket, registers the --actors scripts and serves.
    // `backend` must outlive the server; `store`: as Server's.
    static Result<std::unique_ptr<RunningServer>> start(sandbox::Backend& backend,
                                                        RunningServerOptions options,
                                                        std::shared_ptr<runtime::StateStore> store);
    ~RunningServer();  // stop()
    RunningServer(const RunningServer&) = delete;
    RunningServer& operator=(const RunningServer&) = delete;

    std::uint16_t port() const;
    std::string url() const;  // ws://HOST:PORT, an IPv6 host in brackets
    std::size_t actors_registered() const { return actors_; }
    Server& server() { return *server_; }

    // Graceful stop: no new connections, calls in flight may finish within `grace`, the
    // rest fail with shutting_down and their sandboxes are stopped, connections are closed
    // after what was queued for them, every sandbox is stopped.
    void drain_and_stop(std::chrono::microseconds grace);
    // Stops every sandbox and the transport at once. Idempotent.
    void stop();

  private:
    RunningServer() = default;
    // Destroyed in reverse: the transport first, the warm pool after the server's instances.
    std::unique_ptr<runtime::WarmPool> warm_pool_;
    std::unique_ptr<Server> server_;
    std::unique_ptr<rpc::WsServer> ws_;
    std::string host_;
    std::size_t actors_ = 0;
};

// What a process that serves sets first: SIGPIPE ignored and blocked (a worker that died
// between calls fails its next call with EPIPE instead of killing the server when the call
// is written to its closed channel), and the soft descriptor limit raised to the hard one
// (an instance holds several descriptors: its channel and stdio pipes, its epoll set and
// the server's copy of it, cgroup event files). Sandboxes set their own limit. Call it
// before starting threads: they inherit the blocked signal.
void prepare_process_for_serving();

}  // namespace sandflow::server
