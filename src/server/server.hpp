// The runtime server (docs/protocol.md): JSON-RPC methods over the WebSocket
// transport, an actor registry, instances with their own workers, a state store.
//
// A `process` call that changed its instance's state is answered once the store has
// committed it (runtime/state/store.hpp): a commit that fails fails the call, and the
// instance's next call starts a new worker from what the store holds.
//
// Threads: the transport calls on_message() on its I/O thread; quick methods (list,
// describe, ping, stats, cancel) answer there. load / process / unload run as jobs on the
// instance's serial queue (server/executor.hpp): calls to one instance run in order,
// calls to different instances in parallel. A `process` to a running worker is driven on
// the event loop (set_event_loop) without blocking it: the request is sent, the worker's
// descriptors are watched, and outputs and the response leave from there. Anything that
// blocks (starting a sandbox, load, unload) runs on the pool. A call's script_output
// notifications are sent on the caller's connection before its response.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "actor/package_sets.hpp"
#include "rpc/transport.hpp"
#include "runtime/actor_limits.hpp"
#include "runtime/runtime_limits.hpp"
#include "runtime/state/store.hpp"
#include "sandbox/backend.hpp"
#include "server/server_limits.hpp"

namespace sandflow::rpc {
struct WsCounters;
class EventLoop;
}  // namespace sandflow::rpc
namespace sandflow::runtime {
class WarmPool;
}

namespace sandflow::server {

struct ServerOptions {
    std::vector<std::filesystem::path> actor_roots;
    // Pool threads: what blocks (starting sandboxes, load, unload; every call without an
    // event loop) runs there, this many at once.
    std::size_t threads = limits::kDefaultBlockingThreads;
    std::size_t max_calls_per_connection = limits::kMaxCallsPerConnection;
    std::size_t max_calls_total = limits::kMaxCallsTotal;
    std::size_t max_instances = limits::kMaxInstances;
    std::size_t max_actors = limits::kMaxActors;
    std::chrono::milliseconds call_timeout = limits::kDefaultCallTimeout;  // when not given
    // Every instance's limits unless its metadata, its load or its call names others;
    // `limits.timeout` is replaced by call_timeout and `limits.sandbox` by the backend's
    // default_limits() (set them on the backend). Nothing may ask above `max_limits`.
    runtime::ActorLimits limits;
    runtime::ActorLimits max_limits = runtime::default_maxima();
    bool warm_discovered = true;  // start the default instance of discovered actors
    // New instances take their sandboxes from here first; it must use the server's
    // backend and outlive the server. Null: every sandbox starts cold.
    runtime::WarmPool* warm_pool = nullptr;
    // The package sets scripts may import from (actor/package_sets.hpp); null: none.
    std::shared_ptr<const actor::PackageCatalog> packages;
};

class Server {
  public:
    // `backend` must outlive the server. `store` keeps the instances' committed state
    // (runtime/state/store.hpp); null: a memory store.
    Server(sandbox::Backend& backend, ServerOptions options,
           std::shared_ptr<runtime::StateStore> store);
    ~Server();  // shutdown() if not done
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Checks the --actors roots (an error names a missing one), registers the actor
    // scripts found there and, with warm_discovered, starts their default instances in
    // the background. A script with a metadata error is logged and skipped. Returns how
    // many were registered.
    Result<std::size_t> discover();

    // /healthz answers 503 with the hint while the backend cannot start sandboxes.
    void set_backend_health(bool ok, std::string hint);
    void set_transport_counters(const rpc::WsCounters* counters);
    // Calls to running workers are then driven on this loop (the transport's, so that a
    // call needs no thread hand-off); without one they block a pool thread. Set it before
    // the first message; the loop must keep running until shutdown() has returned.
    void set_event_loop(std::shared_ptr<rpc::EventLoop> loop);

    // Transport entry points (rpc::WsHandler).
    void on_open(const std::shared_ptr<rpc::Connection>& conn);
    void on_message(const std::shared_ptr<rpc::Connection>& conn, std::string_view text,
                    bool binary);
    void on_close(const std::shared_ptr<rpc::Connection>& conn);
    rpc::HttpResponse on_http(std::string_view target, bool authorized);

    // Graceful shutdown: begin_drain() makes new load/process/unload fail with
    // shutting_down (-32011); wait_idle() waits for calls in flight; abort_calls() kills
    // the workers of running calls (they fail with shutting_down) and fails queued ones;
    // shutdown() stops the pool and kills every worker. Idempotent.
    void begin_drain();
    bool wait_idle(std::chrono::steady_clock::time_point deadline);
    void abort_calls();
    void shutdown();

    std::size_t calls_in_flight() const;
    std::string metrics_text() const;

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace sandflow::server
