// What every session of the runtime server shares (the shared_state of Beast's examples):
// the options, backend and state store, the registry of actors and instances, the open
// sessions, the counters, the calls in flight, and the pool and event loop calls run on.
//
// Its member functions are defined by concern, one file each (src/server/README.md):
// methods.cpp (dispatch and the quick methods), load.cpp, call.cpp (a `process` call's
// path and its commit), worker_watch.cpp, registry.cpp, metrics.cpp, http.cpp and
// server.cpp (shutdown).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "rpc/event_loop.hpp"
#include "rpc/jsonrpc.hpp"
#include "runtime/state/store.hpp"
#include "server/executor.hpp"
#include "server/metrics.hpp"
#include "server/params.hpp"
#include "server/registry.hpp"
#include "server/server.hpp"
#include "server/session.hpp"

namespace sandflow::server {

using Clock = std::chrono::steady_clock;

// Wall-clock milliseconds since the epoch, for the protocol's timestamps.
inline std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

struct ProcessCall;  // call.hpp

struct Server::Impl {
    Impl(sandbox::Backend& b, ServerOptions o, std::shared_ptr<runtime::StateStore> s);

    sandbox::Backend& backend;
    ServerOptions opts;
    std::shared_ptr<runtime::StateStore> store;
    std::vector<std::filesystem::path> roots;  // canonical
    const Clock::time_point started = Clock::now();

    Registry registry;
    Sessions sessions;
    Metrics metrics;

    // Calls admitted and not yet answered (admit(), retire_call()); wait_idle waits on it.
    std::atomic<std::size_t> inflight{0};
    std::mutex idle_mu;
    std::condition_variable idle_cv;
    std::atomic<bool> draining{false}, aborting{false}, shut{false};

    std::mutex health_mu;
    bool healthy = true;
    std::string health_hint;
    std::atomic<bool> unhealthy{false};  // !healthy, read without the lock
    const rpc::WsCounters* transport = nullptr;

#ifdef SANDFLOW_FAULT_HOOKS
    // Test builds only (SANDFLOW_FAULT_HOOKS): the server kills itself once this many
    // commits are durable, before answering the last; a real part cannot be made to crash
    // at that point on demand. <= 0: never.
    std::atomic<int> crash_after_commits{0};
#endif

    // Where calls to running workers are driven (set before the first message); null:
    // on the pool.
    std::shared_ptr<rpc::EventLoop> loop;

    ThreadPool pool;  // last: its threads stop before anything above is destroyed

    // --- methods.cpp: dispatch and the quick methods --------------------------------
    void dispatch(const std::shared_ptr<Session>& session, rpc::Request req,
                  const std::shared_ptr<Batch>& batch);
    // load, process and unload count as calls in flight: false (answered) when the server
    // is draining or over a limit of calls in flight.
    bool admit(const Reply& reply, const std::string& method);
    // The call left the in-flight count (and its session's `cancel` table under `key`).
    void retire_call(const std::shared_ptr<Session>& session, const std::string& key);
    // An admitted call that fails before it is queued: counted, answered with `e`, retired.
    void refuse_call(const Reply& reply, std::string_view method, const Error& e);
    void list_actors(const Reply& reply);
    void ping(const Reply& reply);
    void stats(const Reply& reply);
    void describe_actor(const Reply& reply, const Params& p);
    void cancel_call(const Reply& reply, const Params& p);
    void unload_actor(const Reply& reply, const Params& p);

    // --- load.cpp -------------------------------------------------------------------
    void load_actor(const Reply& reply, const Params& p);
    void load_on_pool(const Reply& reply, LoadParams lp);
    void answer_load_failed(const Reply& reply, const Error& e);

    // --- call.cpp: a `process` call ---------------------------------------------------
    void process_call(const Reply& reply, const Params& p);
    void start_call(const std::shared_ptr<ProcessCall>& pc);
    void run_on_pool(const std::shared_ptr<ProcessCall>& pc);
    bool still_wanted(const std::shared_ptr<ProcessCall>& pc);
    bool prepare_call(const std::shared_ptr<ProcessCall>& pc);
    void commit_or_answer(const std::shared_ptr<ProcessCall>& pc, Result<runtime::CallOutcome> r);
    void commit_state(const std::shared_ptr<ProcessCall>& pc, runtime::CallOutcome out);
    void answer_or_rerun(const std::shared_ptr<ProcessCall>& pc, runtime::CallOutcome out,
                         Result<std::uint64_t> v);
    void answer_call(const std::shared_ptr<ProcessCall>& pc, const Result<runtime::CallOutcome>& r);

    // --- worker_watch.cpp: workers watched on the event loop ------------------------------
    Result<void> watch_worker(Slot& s);
    void await_worker(const std::shared_ptr<ProcessCall>& pc);
    void watch_between_calls(const std::shared_ptr<Slot>& sp);
    void watch_between_calls_later(const std::shared_ptr<Slot>& sp);
    void check_idle_worker(const std::shared_ptr<Slot>& sp);

    // --- registry.cpp: actors and instances -----------------------------------------------
    runtime::ActorLimits default_limits() const;
    Result<std::shared_ptr<const ActorEntry>> register_actor(runtime::InstanceSpec spec,
                                                             std::string origin);
    Result<std::shared_ptr<Slot>> slot_for(const std::string& component,
                                           const std::string& instance_id, bool create);
    Result<void> ensure_instance(Slot& s, std::optional<json::object> initial_state = {});
    void drop_slot(const std::shared_ptr<Slot>& s);
    Result<std::size_t> discover();

    // --- http.cpp: /healthz, /metrics and the backend's health --------------------------
    void set_health(bool ok, std::string hint);
    void note_sandbox_start(const Error* e);
    rpc::HttpResponse on_http(std::string_view target, bool authorized);

    // --- metrics.cpp ------------------------------------------------------------------
    json::object stats_object() const;
    std::string metrics_text() const;

    // --- server.cpp -------------------------------------------------------------------
    void stop_running_calls();
    void shutdown();
};

}  // namespace sandflow::server
