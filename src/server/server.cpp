#include "server/server.hpp"

#include <signal.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/log.hpp"
#include "rpc/jsonrpc.hpp"
#include "rpc/ws_server.hpp"
#include "runtime/instance.hpp"
#include "runtime/warm_pool.hpp"
#include "server/actor_paths.hpp"
#include "server/executor.hpp"

namespace sandflow::server {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using rpc::AppCode;

namespace {

constexpr std::string_view kDefaultInstance = "default";

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// The methods, for bounded metric labels.
constexpr std::array<std::string_view, 9> kMethods = {
    "list", "load", "process", "unload", "describe", "ping", "stats", "cancel", "unknown"};

std::string_view method_label(std::string_view m) {
    for (auto k : kMethods)
        if (k == m) return k;
    return "unknown";
}

// A script registered under its component name.
struct ActorEntry {
    std::string component;
    runtime::InstanceSpec spec;  // metadata, source, filename (no state, no log sink)
    std::string origin;          // the real file path, or "inline"
};

enum class SlotState : int { starting, idle, busy, down };

// A Prometheus label value: backslash, quote and newline escaped, so that no value can end
// its line (values come from error data, some of it worked out from what workers sent).
std::string label_value(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

// A call that may be cancelled: by id on its connection, or by a shutdown.
struct CallState {
    std::mutex mu;
    bool running = false;
    bool cancelled = false;
    bool aborted = false;
    pid_t pid = -1;                   // the worker serving the running call
    std::uint64_t worker_serial = 0;  // its Worker::serial, to tell whether the call cost it

    // Kills the worker of a running call. The pid is only read while the call runs, and a
    // worker is reaped only by its own call, so the pid cannot have been reused yet.
    void kill_locked() {
        if (running && pid > 0) ::kill(pid, SIGKILL);
    }
};

// One instance: its worker lives in `inst`, touched only by jobs on `queue`.
struct Slot {
    std::string component, instance_id, key;
    // The committed state's version in the store and the call that made it (jobs only):
    // a commit is made from this version, and a call replayed with that call's id is
    // answered from last_outputs without running again.
    std::uint64_t version = 0;
    std::string last_call;
    json::object last_outputs;
    runtime::InstanceRef ref() const { return {component, instance_id}; }
    std::shared_ptr<const ActorEntry> actor;  // the code the instance runs (jobs only)
    std::unique_ptr<runtime::Instance> inst;  // jobs only
    std::shared_ptr<SerialQueue> queue;
    std::atomic<bool> removed{false};
    std::atomic<bool> dropped{false};  // the drop job ran: no worker is left
    std::atomic<pid_t> pid{-1};
    std::atomic<int> state{static_cast<int>(SlotState::down)};
    std::atomic<std::uint64_t> calls{0}, errors{0}, worker_starts{0};
    std::optional<runtime::ActorLimits> limits;  // from load's params.limits (jobs only)
    // Watches inst's worker, during calls run on the strand and between calls (jobs only);
    // watch_serial is the worker it watches (Worker::serial).
    std::unique_ptr<rpc::FdWatch> watch;
    std::uint64_t watch_serial = 0;
    // Workers lost between calls (killed for what they did then, or found dead), and why
    // the last one was.
    std::atomic<std::uint64_t> lost_between_calls{0};
    std::mutex loss_mu;
    std::string last_loss;  // under loss_mu
    // The call running on the worker, whoever sent it (a notification, a connection since
    // closed): a shutdown stops it through here. Lock order: CallState::mu, then run_mu.
    std::mutex run_mu;
    std::shared_ptr<CallState> running;  // under run_mu
};

struct ConnState {
    std::shared_ptr<rpc::Connection> conn;
    std::mutex mu;
    std::map<std::string, std::shared_ptr<CallState>> calls;  // by encoded request id
    std::atomic<std::size_t> inflight{0};
};

struct Batch {
    std::mutex mu;
    json::array responses;
    std::size_t remaining = 0;
};

// Where a request's answer goes: the connection, a batch, or nowhere (a notification).
struct Reply {
    std::shared_ptr<ConnState> cs;
    json::value id;
    bool notification = false;
    std::shared_ptr<Batch> batch;

    void send(json::object message) const {
        if (batch) {
            std::string out;
            {
                std::lock_guard lk(batch->mu);
                if (!notification) batch->responses.push_back(std::move(message));
                if (--batch->remaining != 0 || batch->responses.empty()) return;
                out = rpc::encode(batch->responses);
            }
            cs->conn->send(std::move(out));
            return;
        }
        if (!notification) cs->conn->send(rpc::encode(message));
    }
    void ok(json::value result) const { send(rpc::make_result(id, std::move(result))); }
    void err(const Error& e) const { send(rpc::make_error(id, rpc::to_rpc_error(e))); }
    void err(const rpc::RpcError& e) const { send(rpc::make_error(id, e)); }
};

// Prometheus histogram of call latency, seconds.
class Histogram {
  public:
    static constexpr std::array<double, 16> kBounds = {
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
        0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
    void observe(double s) {
        std::lock_guard lk(mu_);
        for (std::size_t i = 0; i < kBounds.size(); ++i)
            if (s <= kBounds[i]) ++counts_[i];
        ++count_;
        sum_ += s;
    }
    void write(std::string& out, std::string_view name) const {
        std::lock_guard lk(mu_);
        for (std::size_t i = 0; i < kBounds.size(); ++i)
            out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, kBounds[i], counts_[i]);
        out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_,
                           name, sum_, name, count_);
    }

  private:
    mutable std::mutex mu_;
    std::array<std::uint64_t, kBounds.size()> counts_{};
    std::uint64_t count_ = 0;
    double sum_ = 0;
};

// Params access with -32602 errors that name the field.
struct Params {
    const json::object* o;

    static Result<Params> of(const json::value& params) {
        static const json::object kEmpty;
        if (params.is_null()) return Params{&kEmpty};
        if (!params.is_object())
            return fail(Errc::invalid_argument,
                        "params must be an object, like {\"actor_id\": "
                        "\"double\"}");
        return Params{&params.get_object()};
    }
    const json::value* find(std::string_view k) const { return o->if_contains(k); }
    Result<std::string> str(std::string_view k, bool required, std::size_t max,
                            std::string dflt = {}) const {
        const auto* v = find(k);
        if (!v || v->is_null()) {
            if (required)
                return fail(Errc::invalid_argument, "params." + std::string(k) + " is required",
                            {{"param", k}});
            return dflt;
        }
        if (!v->is_string())
            return fail(Errc::invalid_argument, "params." + std::string(k) + " must be a string",
                        {{"param", k}});
        if (v->get_string().size() > max)
            return fail(
                Errc::invalid_argument,
                "params." + std::string(k) + " is longer than " + std::to_string(max) + " bytes",
                {{"param", k}, {"max", max}});
        return std::string(v->get_string());
    }
    Result<json::object> obj(std::string_view k) const {
        const auto* v = find(k);
        if (!v || v->is_null()) return json::object{};
        if (!v->is_object())
            return fail(Errc::invalid_argument, "params." + std::string(k) + " must be an object",
                        {{"param", k}});
        return v->get_object();
    }
};

Error not_found(std::string_view component, std::string_view instance_id) {
    json::object d{{"actor_id", component}};
    if (!instance_id.empty()) d["instance_id"] = instance_id;
    return rpc::app_error(
        AppCode::actor_not_found,
        instance_id.empty()
            ? "actor '" + std::string(component) +
                  "' is not loaded; load it first with {\"file_path\"} or {\"source\", "
                  "\"language\"}"
            : "instance '" + std::string(instance_id) + "' of actor '" + std::string(component) +
                  "' is not loaded",
        std::move(d));
}

}  // namespace

struct Server::Impl {
    Impl(sandbox::Backend& b, ServerOptions o, std::shared_ptr<runtime::StateStore> s)
        : backend(b), opts(std::move(o)), store(std::move(s)), pool(opts.threads) {
#ifdef SANDFLOW_FAULT_HOOKS
        if (const char* n = std::getenv("SANDFLOW_TEST_CRASH_AFTER_COMMITS"))
            crash_after_commits = std::atoi(n);
#endif
    }
#ifdef SANDFLOW_FAULT_HOOKS
    // Test builds only (SANDFLOW_FAULT_HOOKS): the server kills itself once this many
    // commits are durable, before answering the last; a real part cannot be made to crash
    // at that point on demand. <= 0: never.
    std::atomic<int> crash_after_commits{0};
#endif

    sandbox::Backend& backend;
    ServerOptions opts;
    std::shared_ptr<runtime::StateStore> store;
    std::vector<fs::path> roots;  // canonical
    const Clock::time_point started = Clock::now();

    mutable std::mutex mu;  // registry, slots, connections
    std::map<std::string, std::shared_ptr<const ActorEntry>> actors;
    std::map<std::string, std::shared_ptr<Slot>> slots;  // by key
    std::unordered_map<std::uint64_t, std::shared_ptr<ConnState>> conns;

    std::atomic<std::size_t> inflight{0};
    std::mutex idle_mu;
    std::condition_variable idle_cv;
    std::atomic<bool> draining{false}, aborting{false}, shut{false};

    std::mutex health_mu;
    bool healthy = true;
    std::string health_hint;
    std::atomic<bool> unhealthy{false};  // !healthy, read without the lock
    const rpc::WsCounters* transport = nullptr;

    // Metrics.
    mutable std::mutex metrics_mu;
    std::map<std::pair<std::string_view, std::string>, std::uint64_t> calls_by;
    std::map<std::string, std::uint64_t> limit_kills;
    std::map<std::string, std::uint64_t> idle_losses;  // by reason
    std::atomic<std::uint64_t> connections_total{0};
    // Looks at idle workers that polled readable (watch_idle).
    std::atomic<std::uint64_t> idle_checks{0};
    // `process` calls that ran on the event loop, and those that blocked a pool thread.
    std::atomic<std::uint64_t> process_on_loop{0}, process_on_pool{0};
    std::atomic<std::uint64_t> conflict_retries{0};  // calls run again after a state_conflict
    Histogram latency;

    // Where calls to running workers are driven (set before the first message); null:
    // on the pool.
    std::shared_ptr<rpc::EventLoop> loop;

    ThreadPool pool;  // last: its threads stop before anything above is destroyed

    static std::string slot_key(std::string_view component, std::string_view instance_id) {
        return std::string(component) + "/" + std::string(instance_id);
    }

    void count(std::string_view method, std::string outcome) {
        std::lock_guard lk(metrics_mu);
        ++calls_by[{method_label(method), std::move(outcome)}];
    }
    void count_error(std::string_view method, const Error& e) {
        const auto r = rpc::to_rpc_error(e);
        const auto* reason = r.data.if_contains("reason");
        std::string name =
            reason && reason->is_string() ? std::string(reason->get_string()) : "internal";
        count(method, std::move(name));
    }

    // A call that cost its worker: for a limit (named), its deadline, a cancel or a
    // shutdown. A worker that crashed on its own is not a kill.
    void count_kill(const Error& e, bool cancelled, bool aborted) {
        std::string why;
        if (aborted) {
            why = "shutdown";
        } else if (cancelled) {
            why = "cancelled";
        } else if (e.code == Errc::timeout) {
            why = "timeout";
        } else if (e.code == Errc::limit_exceeded) {
            const auto* limit = e.data.if_contains("limit");
            why = limit && limit->is_string() ? std::string(limit->get_string()) : "limit";
        } else {
            return;
        }
        std::lock_guard lk(metrics_mu);
        ++limit_kills[why];
    }

    void call_done(const std::shared_ptr<ConnState>& cs, const std::string& call_key) {
        if (!call_key.empty()) {
            std::lock_guard lk(cs->mu);
            cs->calls.erase(call_key);
        }
        cs->inflight--;
        if (--inflight == 0) {
            std::lock_guard lk(idle_mu);
            idle_cv.notify_all();
        }
    }

    // --- the registry ---------------------------------------------------------------

    runtime::ActorLimits default_limits() const {
        runtime::ActorLimits l = opts.limits;
        l.timeout = opts.call_timeout;
        l.sandbox = backend.default_limits();
        return l;
    }

    Result<std::shared_ptr<const ActorEntry>> register_actor(runtime::InstanceSpec spec,
                                                             std::string origin) {
        auto entry = std::make_shared<ActorEntry>();
        entry->component = spec.metadata.component;
        spec.initial_state = {};
        spec.on_log = nullptr;
        auto declared = runtime::limits_for(spec.metadata, default_limits(), opts.max_limits);
        if (!declared) return tl::unexpected(declared.error());
        spec.limits = *declared;
        // Checked here, so that a missing package fails the load (or skips a discovered
        // script) before any sandbox starts.
        if (opts.packages) {
            if (auto ok = runtime::resolve_packages(spec, *opts.packages, origin != "inline"); !ok)
                return tl::unexpected(ok.error());
        } else {
            auto p = actor::packages_without_sets(spec.metadata, spec.metadata.language);
            if (!p) return tl::unexpected(p.error());
            spec.packages = std::move(*p);
        }
        entry->spec = std::move(spec);
        entry->origin = std::move(origin);
        std::lock_guard lk(mu);
        auto it = actors.find(entry->component);
        if (it != actors.end() && it->second->spec.source == entry->spec.source &&
            it->second->origin == entry->origin)
            return it->second;  // the same script again: keep the instances as they are
        if (it == actors.end() && actors.size() >= opts.max_actors)
            return tl::unexpected(
                rpc::app_error(AppCode::limit_exceeded,
                               "too many actors registered (" + std::to_string(opts.max_actors) +
                                   "); unload some first",
                               {{"limit", "kMaxActors"}, {"max", opts.max_actors}}));
        actors[entry->component] = entry;
        return std::shared_ptr<const ActorEntry>(entry);
    }

    // The slot of (component, instance_id), made when `create` and the actor exists.
    Result<std::shared_ptr<Slot>> slot_for(const std::string& component,
                                           const std::string& instance_id, bool create) {
        std::lock_guard lk(mu);
        const std::string key = slot_key(component, instance_id);
        if (auto it = slots.find(key); it != slots.end()) return it->second;
        auto a = actors.find(component);
        if (a == actors.end()) return tl::unexpected(not_found(component, {}));
        if (!create) return tl::unexpected(not_found(component, instance_id));
        if (slots.size() >= opts.max_instances)
            return tl::unexpected(
                rpc::app_error(AppCode::limit_exceeded,
                               "too many instances (" + std::to_string(opts.max_instances) +
                                   "); unload some first",
                               {{"limit", "kMaxInstances"}, {"max", opts.max_instances}}));
        auto s = std::make_shared<Slot>();
        s->component = component;
        s->instance_id = instance_id;
        s->key = key;
        s->actor = a->second;
        // Made on the I/O thread of the connection whose request creates the slot, the
        // strand keeps that connection's calls to it on that thread.
        s->queue = std::make_shared<SerialQueue>(pool, loop ? loop->make_strand() : nullptr);
        slots[key] = s;
        return s;
    }

    // Runs on the slot's queue: the instance exists and runs the slot's actor, or an error.
    // A new instance runs on what the store holds (a store that cannot answer fails it:
    // it never starts on an empty state instead); `initial_state` replaces that state, to
    // be committed by the caller.
    Result<void> ensure_instance(Slot& s, std::optional<json::object> initial_state = {}) {
        if (s.inst) return {};
        runtime::InstanceSpec spec = s.actor->spec;
        auto stored = store->load(s.ref());
        if (!stored) return tl::unexpected(stored.error());
        s.version = *stored ? (*stored)->version : 0;
        s.last_call = *stored ? (*stored)->last_call : std::string();
        s.last_outputs = *stored ? std::move((*stored)->last_outputs) : json::object();
        if (initial_state) {
            spec.initial_state = std::move(*initial_state);
        } else if (*stored) {
            spec.initial_state = std::move((*stored)->state);
            spec.initial_expires = std::move((*stored)->expires);
        }
        const std::string component = s.component;
        spec.on_log = [component](const runtime::LogLine& l) {
            spdlog::debug("[{}] {}", component, l.text);
        };
        spec.pool = opts.warm_pool;
        if (s.limits) spec.limits = *s.limits;
        s.state = static_cast<int>(SlotState::starting);
        auto inst = runtime::Instance::create(backend, std::move(spec));
        note_start(inst ? nullptr : &inst.error());
        if (!inst) {
            s.state = static_cast<int>(SlotState::down);
            return tl::unexpected(inst.error());
        }
        s.inst = std::move(*inst);
        s.pid = s.inst->worker_pid();
        s.worker_starts++;
        s.state = static_cast<int>(SlotState::idle);
        return {};
    }

    void drop_slot(const std::shared_ptr<Slot>& s) {
        s->removed = true;
        s->queue->post([s] {
            s->watch.reset();
            s->inst.reset();  // kills and reaps the worker
            s->pid = -1;
            s->state = static_cast<int>(SlotState::down);
            s->dropped = true;
        });
    }

    void set_health(bool ok, std::string hint) {
        std::lock_guard lk(health_mu);
        healthy = ok;
        health_hint = std::move(hint);
        unhealthy = !ok;
    }

    // /healthz follows sandbox starts: one that fails for want of a sandbox makes it 503
    // with why, the next one that succeeds makes it 200 again. `e`: null on success; other
    // errors (a script that does not load) say nothing about the backend.
    void note_start(const Error* e) {
        if (!e) {
            if (unhealthy.load(std::memory_order_relaxed)) set_health(true, {});
        } else if (e->code == Errc::sandbox_unavailable) {
            set_health(false, e->message);
        }
    }

    // --- dispatch -------------------------------------------------------------------

    void handle(const std::shared_ptr<ConnState>& cs, rpc::Request req,
                const std::shared_ptr<Batch>& batch) {
        Reply reply{cs, req.id, req.is_notification, batch};
        auto params = Params::of(req.params);
        if (!params) {
            count(req.method, "invalid_params");
            return reply.err(params.error());
        }
        const std::string& m = req.method;
        if (m == "list") return do_list(reply);
        if (m == "ping") return do_ping(reply);
        if (m == "stats") return do_stats(reply);
        if (m == "describe") return do_describe(reply, *params);
        if (m == "cancel") return do_cancel(reply, *params);
        if (m == "load" || m == "process" || m == "unload") {
            if (draining) {
                const Error e = rpc::app_error(AppCode::shutting_down,
                                               "the server is shutting down; retry on another "
                                               "server or after it restarts");
                count_error(m, e);
                return reply.err(e);
            }
            if (cs->inflight >= opts.max_calls_per_connection || inflight >= opts.max_calls_total) {
                const bool mine = cs->inflight >= opts.max_calls_per_connection;
                const Error e = rpc::app_error(
                    AppCode::overloaded,
                    mine ? "too many calls in flight on this connection (" +
                               std::to_string(opts.max_calls_per_connection) +
                               "); wait for some responses"
                         : "the server has too many calls in flight (" +
                               std::to_string(opts.max_calls_total) + "); retry later",
                    {{"limit", mine ? "kMaxCallsPerConnection" : "kMaxCallsTotal"},
                     {"max", mine ? opts.max_calls_per_connection : opts.max_calls_total}});
                count_error(m, e);
                return reply.err(e);
            }
            cs->inflight++;
            inflight++;
            if (m == "load") return do_load(reply, *params);
            if (m == "process") return do_process(reply, *params);
            return do_unload(reply, *params);
        }
        count("unknown", "method_not_found");
        reply.err(rpc::RpcError{
            rpc::kMethodNotFound,
            "method '" + m.substr(0, limits::kMaxRpcMethodBytes) +
                "' not found; methods: list, load, process, unload, "
                "describe, ping, stats, cancel",
            {{"reason", "method_not_found"}, {"errc", "invalid_argument"}, {"method", m}}});
    }

    void do_list(const Reply& reply) {
        json::array names;
        {
            std::lock_guard lk(mu);
            for (const auto& [name, a] : actors) names.emplace_back(name);
        }
        count("list", "ok");
        reply.ok(json::object{{"actors", std::move(names)}});
    }

    void do_ping(const Reply& reply) {
        count("ping", "ok");
        reply.ok(json::object{{"pong", true}, {"timestamp", now_ms()}});
    }

    json::object stats_object() const {
        json::object o;
        std::size_t busy = 0, idle = 0, starting = 0, down = 0;
        {
            std::lock_guard lk(mu);
            o["actors"] = actors.size();
            o["instances"] = slots.size();
            o["connections"] = conns.size();
            for (const auto& [k, s] : slots) {
                switch (static_cast<SlotState>(s->state.load())) {
                    case SlotState::busy:
                        ++busy;
                        break;
                    case SlotState::idle:
                        ++idle;
                        break;
                    case SlotState::starting:
                        ++starting;
                        break;
                    case SlotState::down:
                        ++down;
                        break;
                }
            }
        }
        o["sandboxes"] = {{"busy", busy}, {"idle", idle}, {"starting", starting}, {"down", down}};
        o["calls_in_flight"] = inflight.load();
        o["process_driven"] =
            json::object{{"event_loop", process_on_loop.load()}, {"pool", process_on_pool.load()}};
        std::uint64_t lost = 0;
        {
            std::lock_guard lk(metrics_mu);
            for (const auto& [k, n] : idle_losses) lost += n;
        }
        o["between_calls"] = json::object{{"checks", idle_checks.load()}, {"workers_lost", lost}};
        o["pool_threads"] = pool.threads();
        o["pool_busy"] = pool.busy();
        o["pool_queued"] = pool.queued();
        if (opts.warm_pool) {
            const auto ws = opts.warm_pool->stats();
            auto lang = [](const runtime::PoolStats::Language& l) {
                return json::object{{"target", l.target},   {"idle", l.idle},
                                    {"taken", l.taken},     {"missed", l.missed},
                                    {"started", l.started}, {"failed", l.failed}};
            };
            o["warm_pool"] = {{"python", lang(ws.python)}, {"node", lang(ws.node)}};
        }
        o["backend"] = backend.name();
        o["isolation"] = sandbox::level_name(backend.level());
        o["isolated"] = backend.isolates();
        o["state_store"] = store->kind();
        o["state_store_at"] = store->describe();
        o["state_conflict_retries"] = conflict_retries.load();
        o["uptime_ms"] =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
        o["draining"] = draining.load();
        std::uint64_t total = 0;
        {
            std::lock_guard lk(metrics_mu);
            for (const auto& [k, n] : calls_by) total += n;
        }
        o["calls_total"] = total;
        return o;
    }

    void do_stats(const Reply& reply) {
        count("stats", "ok");
        reply.ok(stats_object());
    }

    void do_describe(const Reply& reply, const Params& p) {
        auto component = p.str("actor_id", true, 256);
        if (!component) {
            count_error("describe", component.error());
            return reply.err(component.error());
        }
        std::shared_ptr<const ActorEntry> a;
        std::vector<std::shared_ptr<Slot>> mine;
        {
            std::lock_guard lk(mu);
            auto it = actors.find(*component);
            if (it != actors.end()) a = it->second;
            for (const auto& [k, s] : slots)
                if (s->component == *component) mine.push_back(s);
        }
        if (!a) {
            const Error e = not_found(*component, {});
            count_error("describe", e);
            return reply.err(e);
        }
        json::array instances;
        for (const auto& s : mine) {
            json::object i{{"instance_id", s->instance_id},
                           {"calls", s->calls.load()},
                           {"errors", s->errors.load()},
                           {"worker_starts", s->worker_starts.load()},
                           {"worker_pid", s->pid.load()},
                           {"lost_between_calls", s->lost_between_calls.load()}};
            {
                std::lock_guard lk(s->loss_mu);
                if (!s->last_loss.empty()) i["last_loss"] = s->last_loss;
            }
            static constexpr std::string_view kStates[] = {"starting", "idle", "busy", "down"};
            i["sandbox"] = kStates[s->state.load()];
            if (auto st = store->load(s->ref()); st && *st) {
                i["state"] = std::move((*st)->state);
                i["state_version"] = (*st)->version;
            }
            instances.push_back(std::move(i));
        }
        count("describe", "ok");
        reply.ok(json::object{{"actor_id", a->component},
                              {"language", actor::language_name(a->spec.metadata.language)},
                              {"origin", a->origin},
                              {"backend", backend.name()},
                              {"isolation", sandbox::level_name(backend.level())},
                              {"metadata", a->spec.metadata.to_json()},
                              {"packages", a->spec.packages->to_json()},
                              {"instances", std::move(instances)}});
    }

    void do_cancel(const Reply& reply, const Params& p) {
        const auto* id = p.find("id");
        if (!id || !(id->is_string() || id->is_int64() || id->is_uint64())) {
            const Error e(Errc::invalid_argument,
                          "params.id must be the id (string or integer) of a call in flight "
                          "on this connection",
                          {{"param", "id"}});
            count_error("cancel", e);
            return reply.err(e);
        }
        std::shared_ptr<CallState> call;
        {
            std::lock_guard lk(reply.cs->mu);
            auto it = reply.cs->calls.find(rpc::encode(*id));
            if (it != reply.cs->calls.end()) call = it->second;
        }
        count("cancel", "ok");
        if (!call)
            return reply.ok(json::object{{"cancelled", false},
                                         {"reason", "no call with this id is in flight here"}});
        bool was_running;
        {
            std::lock_guard lk(call->mu);
            call->cancelled = true;
            was_running = call->running;
            call->kill_locked();
        }
        reply.ok(json::object{{"cancelled", true}, {"was_running", was_running}});
    }

    // Registers the call for cancel; "" when it cannot be cancelled (a notification, or
    // an id already in flight on this connection).
    std::string track(const Reply& reply, const std::shared_ptr<CallState>& call) {
        if (reply.notification) return {};
        std::string key = rpc::encode(reply.id);
        std::lock_guard lk(reply.cs->mu);
        if (!reply.cs->calls.emplace(key, call).second) return {};
        return key;
    }

    void do_load(const Reply& reply, const Params& p) {
        // Parameter shapes are RPC errors; everything about the script is a result with
        // success=false (Reflow's host expects that).
        auto file_path = p.str("file_path", false, 4096);
        auto source = p.str("source", false, limits::kMaxScriptBytes);
        auto language = p.str("language", false, 32);
        auto filename = p.str("filename", false, 256);
        auto instance_id =
            p.str("instance_id", false, limits::kMaxInstanceIdBytes, std::string(kDefaultInstance));
        auto state = p.obj("state");
        auto limits_asked = runtime::parse_limits(
            p.find("limits") ? *p.find("limits") : json::value(nullptr), "params.limits");
        for (const Error* e :
             {limits_asked ? nullptr : &limits_asked.error(),
              file_path ? nullptr : &file_path.error(), source ? nullptr : &source.error(),
              language ? nullptr : &language.error(), filename ? nullptr : &filename.error(),
              instance_id ? nullptr : &instance_id.error(), state ? nullptr : &state.error()}) {
            if (e) {
                count_error("load", *e);
                reply.err(*e);
                return call_done(reply.cs, {});
            }
        }
        if (file_path->empty() == source->empty()) {
            const Error e(Errc::invalid_argument,
                          "load needs exactly one of params.file_path or params.source");
            count_error("load", e);
            reply.err(e);
            return call_done(reply.cs, {});
        }
        const bool has_state = p.find("state") != nullptr;
        pool.submit([this, reply, fp = *file_path, src = *source, lang = *language,
                     fname = *filename, iid = *instance_id, st = std::move(*state), has_state,
                     lim = *limits_asked] {
            load_job(reply, fp, src, lang, fname, iid, st, has_state, lim);
        });
    }

    void load_failed(const Reply& reply, const Error& e) {
        count_error("load", e);
        const auto r = rpc::to_rpc_error(e);
        reply.ok(json::object{
            {"success", false}, {"error", e.message}, {"code", r.code}, {"data", r.data}});
        call_done(reply.cs, {});
    }

    // On a pool thread: reads and checks the script, then creates the instance on its
    // queue.
    void load_job(Reply reply, const std::string& file_path, const std::string& source,
                  const std::string& language, const std::string& filename,
                  const std::string& instance_id, json::object state, bool has_state,
                  const runtime::LimitOverrides& limits_asked) {
        Result<runtime::InstanceSpec> spec;
        std::string origin;
        if (!file_path.empty()) {
            // Read here, once: the rules hold for the file read (actor_paths.hpp).
            auto file = read_actor_file(roots, file_path);
            if (!file) return load_failed(reply, file.error());
            auto lang = actor::language_from_path(file->path);
            if (!lang)
                return load_failed(
                    reply, Error(Errc::invalid_argument, "file_path must name a .py or .js script",
                                 {{"param", "file_path"}}));
            origin = file->path.string();
            spec = runtime::spec_from_source(std::move(file->source), origin, *lang);
        } else {
            auto lang = actor::language_from_name(language);
            if (!lang)
                return load_failed(reply, Error(Errc::invalid_argument,
                                                "params.language must be python or javascript with "
                                                "params.source",
                                                {{"param", "language"}}));
            const std::string name =
                filename.empty()
                    ? std::string(*lang == actor::Language::python ? "inline.py" : "inline.js")
                    : filename;
            spec = runtime::spec_from_source(source, name, *lang);
            origin = "inline";
        }
        if (!spec) return load_failed(reply, spec.error());
        auto entry = register_actor(std::move(*spec), origin);
        if (!entry) return load_failed(reply, entry.error());
        // The instance's limits: the actor's, with what this load asks for on top.
        std::optional<runtime::ActorLimits> inst_limits;
        if (!limits_asked.empty()) {
            auto l = runtime::apply_limits(*(*entry)->spec.limits, limits_asked, opts.max_limits,
                                           "params.limits");
            if (!l) return load_failed(reply, l.error());
            inst_limits = *l;
        }
        auto slot = slot_for((*entry)->component, instance_id, true);
        if (!slot) return load_failed(reply, slot.error());
        auto s = *slot;
        auto e = *entry;
        s->queue->post(
            [this, reply, s, e, state = std::move(state), has_state, inst_limits]() mutable {
                if (s->removed) return load_failed(reply, not_found(s->component, s->instance_id));
                if (s->actor != e) {  // new code for this instance: restart it, keep its state
                    s->inst.reset();
                    s->actor = e;
                }
                if (s->limits != inst_limits) {  // new limits: a new sandbox, the state kept
                    s->inst.reset();
                    s->limits = inst_limits;
                }
                std::optional<json::object> initial;
                if (has_state) initial = std::move(state);
                if (has_state && s->inst) s->inst.reset();  // a new initial state: restart
                if (auto ok = ensure_instance(*s, std::move(initial)); !ok)
                    return load_failed(reply, ok.error());
                if (has_state) {
                    runtime::StateCommit c;
                    c.ref = s->ref();
                    c.base_version = s->version;
                    c.state = s->inst->state();
                    for (const auto& [k, v] : c.state) c.changed.emplace_back(k);
                    auto v = store->commit_wait(std::move(c));
                    if (!v) {
                        s->inst.reset();
                        return load_failed(reply, v.error());
                    }
                    s->version = *v;
                    s->last_call.clear();
                }
                watch_idle_later(s);
                count("load", "ok");
                reply.ok(json::object{{"success", true},
                                      {"actor_id", s->component},
                                      {"instance_id", s->instance_id},
                                      {"language", actor::language_name(e->spec.metadata.language)},
                                      {"metadata", e->spec.metadata.to_json()}});
                call_done(reply.cs, {});
            });
    }

    void do_process(const Reply& reply, const Params& p) {
        const auto start = Clock::now();
        auto bad = [&](const Error& e) {
            count_error("process", e);
            reply.err(e);
            call_done(reply.cs, {});
        };
        auto component = p.str("actor_id", true, 256);
        if (!component) return bad(component.error());
        auto instance_id =
            p.str("instance_id", false, limits::kMaxInstanceIdBytes, std::string(kDefaultInstance));
        if (!instance_id) return bad(instance_id.error());
        auto payload = p.obj("payload");
        if (!payload) return bad(payload.error());
        auto config = p.obj("config");
        if (!config) return bad(config.error());
        auto state = p.obj("state");
        if (!state) return bad(state.error());
        auto limits_asked = runtime::parse_limits(
            p.find("limits") ? *p.find("limits") : json::value(nullptr), "params.limits");
        if (!limits_asked) return bad(limits_asked.error());
        auto call_id = p.str("call_id", false, limits::kMaxCallIdBytes);
        if (!call_id) return bad(call_id.error());
        runtime::CallRequest req;
        req.inputs = std::move(*payload);
        req.config = std::move(*config);
        // Reflow sends "state": {} on every call: only a non-empty object replaces the
        // committed state for this call.
        if (!state->empty()) req.state = std::move(*state);
        if (const auto* ts = p.find("timestamp"); ts && !ts->is_null()) {
            if (ts->is_int64()) {
                req.timestamp = ts->get_int64();
            } else if (ts->is_double()) {
                req.timestamp = static_cast<std::int64_t>(ts->get_double());
            } else {
                return bad(Error(Errc::invalid_argument,
                                 "params.timestamp must be a number (ms since the epoch)",
                                 {{"param", "timestamp"}}));
            }
        }
        if (const auto* t = p.find("timeout_ms"); t && !t->is_null()) {
            if (!t->is_int64() || t->get_int64() <= 0 || t->get_int64() > 3'600'000)
                return bad(Error(Errc::invalid_argument,
                                 "params.timeout_ms must be an integer in 1..3600000",
                                 {{"param", "timeout_ms"}}));
            req.timeout = std::chrono::milliseconds(t->get_int64());
        }
        auto slot = slot_for(*component, *instance_id, true);
        if (!slot) return bad(slot.error());
        auto pc = std::make_shared<ProcessCall>();
        pc->reply = reply;
        pc->slot = *slot;
        pc->call = std::make_shared<CallState>();
        pc->key = track(reply, pc->call);
        pc->req = std::move(req);
        pc->limits_asked = std::move(*limits_asked);
        pc->call_id = std::move(*call_id);
        // A store shared with other servers may refuse the commit (state_conflict): the
        // call is then run again on the reloaded state, from this copy of its request.
        if (store->kind() != "memory") pc->retry_req = pc->req;
        pc->start = start;
        (*slot)->queue->post_async([this, pc](SerialQueue::Done done) {
            pc->done = std::move(done);
            start_process(pc);
        });
    }

    // A `process` call on its way through the instance's queue.
    struct ProcessCall {
        Reply reply;
        std::shared_ptr<Slot> slot;
        std::shared_ptr<CallState> call;
        std::string key;  // in the connection's calls
        runtime::CallRequest req;
        runtime::LimitOverrides limits_asked;
        std::string call_id;  // params.call_id: a replay of the last committed call is a no-op
        Clock::time_point start;
        runtime::CallEvents events;
        SerialQueue::Done done;  // the queue's next job may start
        bool on_strand = false;  // the call runs on the slot's strand (else on the pool)
        bool replayed = false;   // answered from the store (call_id), not run
        // For a run again after a state_conflict (commit()): the request as received, the
        // runs so far, and whether an output of this call reached the client (then it is
        // not run again here: the client would see its outputs twice).
        std::optional<runtime::CallRequest> retry_req;
        int conflict_retries = 0;
        std::shared_ptr<std::atomic<bool>> streamed = std::make_shared<std::atomic<bool>>(false);
        // The outcome's state was moved into the commit: the answer reads the instance's
        // (the same object, and the instance keeps it until the call's job ends).
        bool state_in_instance = false;
    };

    // The call's turn on the instance's queue: on the slot's strand (an I/O thread), or on
    // a pool thread when the queue has no strand. A call to a live worker runs there
    // without blocking; one that needs a sandbox started first goes to the pool.
    void start_process(const std::shared_ptr<ProcessCall>& pc) {
        Slot& s = *pc->slot;
        const bool on_loop = s.queue->strand() != nullptr;
        pc->on_strand = on_loop;
        if (!on_loop || !s.inst) {
            if (!on_loop) return run_blocking(pc);
            s.queue->pool().submit([this, pc] { run_blocking(pc); });
            return;
        }
        if (!prepare(pc)) return;
        auto began = s.inst->begin(std::move(pc->req), std::move(pc->events), false);
        if (!began) return complete(pc, tl::unexpected(began.error()));
        if (!*began) {  // a new sandbox first: that blocks
            s.queue->pool().submit([this, pc] { run_blocking(pc); });
            return;
        }
        if (auto w = watch_worker(s); !w) {  // cannot watch it here: wait on a pool thread
            spdlog::warn("{}: {}; the call waits on a pool thread", s.key, w.error().message);
            process_on_pool++;
            pc->on_strand = false;
            s.queue->pool().submit([this, pc] { complete(pc, pc->slot->inst->wait()); });
            return;
        }
        process_on_loop++;
        arm(pc);
    }

    // On the slot's strand, inside one of its jobs, with a worker: s.watch watches it.
    Result<void> watch_worker(Slot& s) {
        if (s.watch && s.watch_serial == s.inst->worker_serial()) return {};
        s.watch.reset();
        auto w = s.queue->strand()->watch(s.inst->wait_fd());
        if (!w) return tl::unexpected(w.error());
        s.watch = std::move(*w);
        s.watch_serial = s.inst->worker_serial();
        return {};
    }

    // Between calls the worker is watched too, so that what it does then is dealt with when
    // it happens instead of by the next call: what it prints is logged (the pipe never
    // fills), and a frame, a crossed limit or its death costs it the worker at once
    // (check_idle). The wait is armed inside a job on the slot's strand before it ends;
    // the slot's next call replaces it with its own. A job on the pool posts it instead
    // (watch_idle_later). Without a strand, the next call sees all of it.
    void watch_idle(const std::shared_ptr<Slot>& sp) {
        Slot& s = *sp;
        if (!s.queue->strand() || !s.inst || s.inst->wait_fd() < 0 || s.removed) return;
        if (auto w = watch_worker(s); !w) {
            spdlog::warn("{}: {}; the worker is not watched between calls", s.key,
                         w.error().message);
            return;
        }
        // The callback only posts a job: it may run while a job of the slot runs on the pool.
        // It holds the slot weakly, as the slot holds the watch.
        s.watch->wait(Clock::time_point::max(), [this, weak = std::weak_ptr<Slot>(sp)](bool) {
            auto slot = weak.lock();
            if (!slot || slot->removed) return;
            slot->queue->post_async([this, slot](SerialQueue::Done done) {
                // A removed slot's jobs may outlive the server: `this` is not touched then.
                if (!slot->removed) check_idle(slot);
                done();
            });
        });
    }

    void watch_idle_later(const std::shared_ptr<Slot>& sp) {
        if (!sp->queue->strand()) return;
        sp->queue->post_async([this, sp](SerialQueue::Done done) {
            if (!sp->removed) watch_idle(sp);
            done();
        });
    }

    // A job: the idle worker polled readable.
    void check_idle(const std::shared_ptr<Slot>& sp) {
        Slot& s = *sp;
        idle_checks++;
        if (!s.inst) return;
        if (auto ok = s.inst->poll_idle(); !ok) {
            const Error& e = ok.error();
            const auto* limit = e.data.if_contains("limit");
            const auto* reason = e.data.if_contains("reason");
            std::string why = limit && limit->is_string()     ? std::string(limit->get_string())
                              : reason && reason->is_string() ? std::string(reason->get_string())
                                                              : "crashed";
            {
                std::lock_guard lk(metrics_mu);
                ++idle_losses[why];
            }
            s.lost_between_calls++;
            {
                std::lock_guard lk(s.loss_mu);
                s.last_loss = e.message;
            }
            s.pid = -1;
            s.state = static_cast<int>(SlotState::down);
            spdlog::warn("{}: worker lost between calls: {}", s.key, e.message);
        }
        watch_idle(sp);
    }

    // On the slot's strand, with a call running: wait for the worker (a wait also sees
    // what the worker sent before it was armed).
    void arm(const std::shared_ptr<ProcessCall>& pc) {
        Slot& s = *pc->slot;
        s.watch->wait(s.inst->deadline(), [this, pc](bool expired) {
            Slot& slot = *pc->slot;
            auto r = expired ? std::optional(slot.inst->expire()) : slot.inst->advance();
            if (!r) return arm(pc);
            complete(pc, std::move(*r));
        });
    }

    // On a pool thread: the whole call, starting a sandbox first if needed.
    void run_blocking(const std::shared_ptr<ProcessCall>& pc) {
        Slot& s = *pc->slot;
        pc->on_strand = false;
        if (!s.inst) {
            if (!runnable(pc)) return;
            if (auto ok = ensure_instance(s); !ok) return complete(pc, tl::unexpected(ok.error()));
        }
        if (!prepare(pc)) return;
        auto began = s.inst->begin(std::move(pc->req), std::move(pc->events), true);
        if (!began) return complete(pc, tl::unexpected(began.error()));
        process_on_pool++;
        complete(pc, s.inst->wait());
    }

    // False when the call must not run (it was answered or dropped).
    bool runnable(const std::shared_ptr<ProcessCall>& pc) {
        Slot& s = *pc->slot;
        {
            std::lock_guard lk(pc->call->mu);
            if (pc->call->cancelled) {
                finish(pc, tl::unexpected(rpc::app_error(
                               AppCode::cancelled, "the call was cancelled before it started")));
                return false;
            }
        }
        if (aborting) {
            finish(pc,
                   tl::unexpected(rpc::app_error(AppCode::shutting_down,
                                                 "the server shut down before the call started")));
            return false;
        }
        if (s.removed) {
            finish(pc, tl::unexpected(not_found(s.component, s.instance_id)));
            return false;
        }
        if (!pc->reply.cs->conn->is_open()) {  // nobody to answer: do not run it
            count("process", "dropped");
            call_done(pc->reply.cs, pc->key);
            pc->done();
            return false;
        }
        return true;
    }

    // The call's limits and events, once the instance exists; false when it was answered.
    bool prepare(const std::shared_ptr<ProcessCall>& pc) {
        if (!runnable(pc)) return false;
        Slot& s = *pc->slot;
        if (!pc->call_id.empty() && pc->call_id == s.last_call) {
            // Committed already (its answer was lost, or it ran on a server since gone):
            // answered from the store, not run again.
            runtime::CallOutcome out;
            out.outputs = s.last_outputs;
            out.state = s.inst->state();
            pc->replayed = true;
            finish(pc, std::move(out));
            return false;
        }
        if (!pc->limits_asked.empty()) {  // this call's own, on top of the instance's
            auto l = runtime::apply_limits(s.inst->limits(), pc->limits_asked, opts.max_limits,
                                           "params.limits");
            if (!l) {
                finish(pc, tl::unexpected(l.error()));
                return false;
            }
            pc->req.limits = *l;
        }
        // The events hold what they use: on the I/O thread they outlive this function.
        runtime::CallEvents& events = pc->events;
        events.on_output = [conn = pc->reply.cs->conn, slot = pc->slot, call_id = pc->reply.id,
                            streamed = pc->streamed](std::string_view port,
                                                     const json::value& data) {
            streamed->store(true, std::memory_order_relaxed);
            conn->send(rpc::encode(
                rpc::make_notification("script_output", {{"actor_id", slot->component},
                                                         {"instance_id", slot->instance_id},
                                                         {"port", port},
                                                         {"data", data},
                                                         {"timestamp", now_ms()},
                                                         {"call_id", call_id}})));
        };
        events.on_log = [slot = pc->slot](const runtime::LogLine& l) {
            spdlog::debug("[{}] {}", slot->component, l.text);
        };
        // The worker's pid is registered for cancel just before the call is sent, after any
        // restart inside Instance::begin; a cancel or abort that came while a sandbox was
        // starting found nothing to kill, and stops the call there, unsent.
        events.on_start = [call = pc->call, slot = pc->slot](pid_t pid) {
            std::lock_guard lk(call->mu);
            if (call->cancelled || call->aborted) return false;
            call->running = true;
            call->pid = pid;
            call->worker_serial = slot->inst->worker_serial();  // inside the call's job
            std::lock_guard lk2(slot->run_mu);
            slot->running = call;
            return true;
        };
        s.state = static_cast<int>(SlotState::busy);
        return true;
    }

    // The call has ended (it ran, or failed to begin).
    void complete(const std::shared_ptr<ProcessCall>& pc, Result<runtime::CallOutcome> r) {
        Slot& s = *pc->slot;
        CallState& call = *pc->call;
        bool cancelled, aborted, ran;
        std::uint64_t serial;
        {
            std::lock_guard lk(call.mu);
            ran = call.running;
            serial = call.worker_serial;
            call.running = false;
            call.pid = -1;
            cancelled = call.cancelled;
            aborted = call.aborted;
            std::lock_guard lk2(s.run_mu);
            if (s.running == pc->call) s.running.reset();
        }
        if (r && r->new_worker) {
            s.worker_starts++;
            note_start(nullptr);
        } else if (!r) {
            note_start(&r.error());
        }
        if (!r && ran && (!s.inst || s.inst->worker_serial() != serial))
            count_kill(r.error(), cancelled, aborted);
        if (s.inst) s.pid = s.inst->worker_pid();
        s.state = static_cast<int>(SlotState::idle);
        if (r && r->state_changed()) return commit(pc, std::move(*r));
        if (r) {
            // Nothing to commit.
        } else if (aborted) {
            r = tl::unexpected(
                rpc::app_error(AppCode::shutting_down,
                               ran ? "the server shut down during the call; its worker was stopped"
                                   : "the server shut down before the call started"));
        } else if (cancelled) {
            r = tl::unexpected(rpc::app_error(
                AppCode::cancelled,
                ran ? "the call was cancelled; its sandbox was stopped and the next call "
                      "gets a new one with the last committed state"
                    : "the call was cancelled before it started"));
        }
        finish(pc, r);
    }

    // The call succeeded and changed the state: it is answered once the store committed
    // it. A commit that fails fails the call and drops the instance's worker, whose state
    // the store does not hold: the next call starts a new one from what the store holds.
    void commit(const std::shared_ptr<ProcessCall>& pc, runtime::CallOutcome out) {
        Slot& s = *pc->slot;
        runtime::StateCommit c;
        c.ref = s.ref();
        c.base_version = s.version;
        c.state = std::move(out.state);
        pc->state_in_instance = true;
        c.expires = s.inst->expires();
        c.changed = std::move(out.changed);
        c.removed = std::move(out.removed);
        c.call_id = pc->call_id;
        if (!pc->call_id.empty()) c.outputs = out.outputs;
        if (store->commits_inline()) {
            store->commit(std::move(c), [this, pc, &out](Result<std::uint64_t> v) {
                committed(pc, std::move(out), std::move(v));
            });
            return;
        }
        auto shared = std::make_shared<runtime::CallOutcome>(std::move(out));
        store->commit(std::move(c), [this, pc, shared](Result<std::uint64_t> v) {
            // On the store's thread. A commit that landed is answered from here, with no
            // hop back to the slot's strand first: the answer is queued on its connection's
            // strand either way, what committed() touches belongs to this call's job until
            // pc->done(), and finish() posts the idle watch as a job of the slot's queue.
            if (v) {
                pc->on_strand = false;
                committed(pc, std::move(*shared), std::move(v));
                return;
            }
            // A failed one goes back to where the call runs: it drops the worker and its
            // watch, which belong to that strand.
            auto next = [this, pc, shared, v = std::move(v)]() mutable {
                committed(pc, std::move(*shared), std::move(v));
            };
            if (pc->on_strand)
                pc->slot->queue->strand()->post(std::move(next));
            else
                pc->slot->queue->pool().submit(std::move(next));
        });
    }

    void committed(const std::shared_ptr<ProcessCall>& pc, runtime::CallOutcome out,
                   Result<std::uint64_t> v) {
        Slot& s = *pc->slot;
        if (!v) {
            s.watch.reset();
            s.inst.reset();
            s.pid = -1;
            s.state = static_cast<int>(SlotState::down);
            // Another server committed since this instance read the store. Nothing of the
            // call was committed; when nothing of it was streamed either, it runs again on
            // a new worker started from what the store holds now (which answers it from
            // the store if that server committed this very call), still in its turn on
            // the instance's queue.
            if (v.error().code == Errc::state_conflict && pc->retry_req &&
                !pc->streamed->load(std::memory_order_relaxed) &&
                pc->conflict_retries < limits::kMaxConflictRetries) {
                pc->conflict_retries++;
                conflict_retries++;
                pc->req = *pc->retry_req;
                pc->events = {};
                pc->state_in_instance = false;
                s.queue->pool().submit([this, pc] { run_blocking(pc); });
                return;
            }
            return finish(pc, tl::unexpected(v.error()));
        }
        s.version = *v;
        s.last_call = pc->call_id;
        if (!pc->call_id.empty()) s.last_outputs = out.outputs;
#ifdef SANDFLOW_FAULT_HOOKS
        if (crash_after_commits.load() > 0 && --crash_after_commits == 0) ::raise(SIGKILL);
#endif
        finish(pc, std::move(out));
    }

    // Answers the call and lets the instance's next job start.
    void finish(const std::shared_ptr<ProcessCall>& pc, const Result<runtime::CallOutcome>& r) {
        Slot& s = *pc->slot;
        const double secs = std::chrono::duration<double>(Clock::now() - pc->start).count();
        latency.observe(secs);
        s.calls++;
        if (r) {
            count("process", "ok");
            const json::object& state =
                pc->state_in_instance && s.inst ? s.inst->state() : r->state;
            json::object result{{"outputs", r->outputs},
                                {"state", state},
                                {"duration_us", r->duration.count()},
                                {"instance_id", s.instance_id}};
            if (pc->replayed) result["replayed"] = true;
            pc->reply.ok(std::move(result));
        } else {
            s.errors++;
            count_error("process", r.error());
            pc->reply.err(r.error());
        }
        call_done(pc->reply.cs, pc->key);
        if (pc->on_strand)
            watch_idle(pc->slot);
        else
            watch_idle_later(pc->slot);
        pc->done();
    }

    void do_unload(const Reply& reply, const Params& p) {
        auto bad = [&](const Error& e) {
            count_error("unload", e);
            reply.err(e);
            call_done(reply.cs, {});
        };
        auto component = p.str("actor_id", true, 256);
        if (!component) return bad(component.error());
        auto instance_id = p.str("instance_id", false, limits::kMaxInstanceIdBytes);
        if (!instance_id) return bad(instance_id.error());
        std::vector<std::shared_ptr<Slot>> gone;
        {
            std::lock_guard lk(mu);
            if (!actors.contains(*component)) return bad(not_found(*component, {}));
            for (auto it = slots.begin(); it != slots.end();) {
                if (it->second->component == *component &&
                    (instance_id->empty() || it->second->instance_id == *instance_id)) {
                    gone.push_back(it->second);
                    it = slots.erase(it);
                } else {
                    ++it;
                }
            }
            if (instance_id->empty()) actors.erase(*component);
        }
        if (!instance_id->empty() && gone.empty()) return bad(not_found(*component, *instance_id));
        for (const auto& s : gone) {
            // After the calls queued before the unload, which may still commit.
            s->queue->post([st = store, ref = s->ref()] {
                if (auto ok = st->erase_wait(ref); !ok)
                    spdlog::warn("unload: the state of {} stays in the store: {}", ref.text(),
                                 ok.error().message);
            });
            drop_slot(s);
        }
        // Answer once the workers are gone (after the calls queued before the unload).
        auto left = std::make_shared<std::atomic<std::size_t>>(gone.size());
        auto done = [this, reply, n = gone.size(), all = instance_id->empty()] {
            count("unload", "ok");
            reply.ok(json::object{{"success", true}, {"instances", n}, {"actor_removed", all}});
            call_done(reply.cs, {});
        };
        if (gone.empty()) return done();
        for (const auto& s : gone)
            s->queue->post([left, done] {
                if (--*left == 0) done();
            });
    }

    // Calls queued fail as they come up (runnable()); calls running are stopped here,
    // through their instance, whether or not anyone is left to answer.
    void abort_all() {
        aborting = true;
        std::vector<std::shared_ptr<CallState>> running;
        {
            std::lock_guard lk(mu);
            for (const auto& [key, s] : slots) {
                std::lock_guard lk2(s->run_mu);
                if (s->running) running.push_back(s->running);
            }
        }
        // Connections' calls too: one may not have reached its worker yet (a sandbox is
        // starting), and must not start it.
        std::vector<std::shared_ptr<ConnState>> all;
        {
            std::lock_guard lk(mu);
            for (const auto& [id, cs] : conns) all.push_back(cs);
        }
        for (const auto& cs : all) {
            std::lock_guard lk(cs->mu);
            for (const auto& [k, call] : cs->calls) running.push_back(call);
        }
        for (const auto& call : running) {
            std::lock_guard lk(call->mu);
            call->aborted = true;
            call->kill_locked();
        }
    }
};

Server::Server(sandbox::Backend& backend, ServerOptions options,
               std::shared_ptr<runtime::StateStore> store)
    : impl_(std::make_unique<Impl>(backend, std::move(options),
                                   store ? std::move(store) : runtime::make_memory_store())) {}

Server::~Server() {
    shutdown();
}

Result<std::size_t> Server::discover() {
    auto roots = canonical_roots(impl_->opts.actor_roots);
    if (!roots) return tl::unexpected(roots.error());
    impl_->roots = std::move(*roots);
    std::size_t n = 0;
    for (const auto& file : discover_actor_files(impl_->roots)) {
        auto spec = runtime::spec_from_file(fs::canonical(file));
        if (!spec) {
            spdlog::warn("--actors: skipping {}: {}", file.string(), spec.error().message);
            continue;
        }
        const std::string component = spec->metadata.component;
        {
            std::lock_guard lk(impl_->mu);
            if (impl_->actors.contains(component)) {
                spdlog::warn("--actors: skipping {}: component '{}' is already registered from {}",
                             file.string(), component, impl_->actors[component]->origin);
                continue;
            }
        }
        auto entry = impl_->register_actor(std::move(*spec), fs::canonical(file).string());
        if (!entry) {
            spdlog::warn("--actors: skipping {}: {}", file.string(), entry.error().message);
            continue;
        }
        ++n;
        spdlog::info("--actors: registered '{}' from {}", component, file.string());
        if (impl_->opts.warm_discovered) {
            auto slot = impl_->slot_for(component, std::string(kDefaultInstance), true);
            if (!slot) continue;
            auto s = *slot;
            Impl* impl = impl_.get();
            s->queue->post([impl, s] {
                if (s->removed || impl->aborting) return;
                if (auto ok = impl->ensure_instance(*s); !ok)
                    return spdlog::warn("--actors: '{}' did not start: {}", s->component,
                                        ok.error().message);
                impl->watch_idle_later(s);
            });
        }
    }
    return n;
}

void Server::set_backend_health(bool ok, std::string hint) {
    impl_->set_health(ok, std::move(hint));
}

void Server::set_transport_counters(const rpc::WsCounters* counters) {
    impl_->transport = counters;
}

void Server::set_event_loop(std::shared_ptr<rpc::EventLoop> loop) {
    impl_->loop = std::move(loop);
}

void Server::on_open(const std::shared_ptr<rpc::Connection>& conn) {
    auto cs = std::make_shared<ConnState>();
    cs->conn = conn;
    impl_->connections_total++;
    std::lock_guard lk(impl_->mu);
    impl_->conns[conn->id()] = std::move(cs);
}

void Server::on_close(const std::shared_ptr<rpc::Connection>& conn) {
    std::shared_ptr<ConnState> cs;
    {
        std::lock_guard lk(impl_->mu);
        auto it = impl_->conns.find(conn->id());
        if (it == impl_->conns.end()) return;
        cs = std::move(it->second);
        impl_->conns.erase(it);
    }
    // Queued calls of a closed connection are not run (nobody would see their results);
    // running ones finish and commit their state.
    std::lock_guard lk(cs->mu);
    for (const auto& [k, call] : cs->calls) {
        std::lock_guard lk2(call->mu);
        if (!call->running) call->cancelled = true;
    }
}

void Server::on_message(const std::shared_ptr<rpc::Connection>& conn, std::string_view text,
                        bool binary) {
    std::shared_ptr<ConnState> cs;
    {
        std::lock_guard lk(impl_->mu);
        auto it = impl_->conns.find(conn->id());
        if (it == impl_->conns.end()) return;
        cs = it->second;
    }
    if (binary) {
        impl_->count("unknown", "invalid_request");
        conn->send(rpc::encode(rpc::make_error(
            nullptr, rpc::RpcError{rpc::kInvalidRequest,
                                   "binary frames are not accepted: send each JSON-RPC message "
                                   "as one text frame",
                                   {{"reason", "binary_frame"}, {"errc", "invalid_argument"}}})));
        return;
    }
    rpc::Decoded d = rpc::decode(text);
    std::shared_ptr<Batch> batch;
    if (d.batch) {
        batch = std::make_shared<Batch>();
        batch->remaining = d.entries.size();
    }
    for (auto& entry : d.entries) {
        if (auto* err = std::get_if<json::object>(&entry)) {
            impl_->count("unknown", "invalid_request");
            Reply{cs, nullptr, false, batch}.send(std::move(*err));
            continue;
        }
        impl_->handle(cs, std::move(std::get<rpc::Request>(entry)), batch);
    }
}

rpc::HttpResponse Server::on_http(std::string_view target, bool authorized) {
    const std::string_view path = target.substr(0, target.find('?'));
    if (path == "/healthz") {
        bool ok;
        std::string hint;
        {
            std::lock_guard lk(impl_->health_mu);
            ok = impl_->healthy;
            hint = impl_->health_hint;
        }
        if (impl_->draining) {
            ok = false;
            hint = "the server is shutting down";
        }
        json::object o{{"status", ok ? "ok" : "unavailable"},
                       {"backend", impl_->backend.name()},
                       {"isolation", sandbox::level_name(impl_->backend.level())},
                       {"isolated", impl_->backend.isolates()},
                       {"calls_in_flight", impl_->inflight.load()}};
        if (!hint.empty()) o["hint"] = hint;
        return {ok ? 200 : 503, "application/json", to_json_string(o)};
    }
    if (path == "/metrics") {
        if (!authorized)
            return {401, "application/json",
                    R"({"error":"unauthorized: /metrics needs the server's token"})"};
        return {200, "text/plain; version=0.0.4", metrics_text()};
    }
    return {404, "application/json",
            R"({"error":"not found: WebSocket JSON-RPC on /, or GET /healthz, /metrics"})"};
}

std::string Server::metrics_text() const {
    const auto st = impl_->stats_object();
    std::string out;
    auto gauge = [&](std::string_view name, std::string_view help, auto value) {
        out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name, help, value);
    };
    gauge("sandflow_connections", "Open WebSocket connections.", st.at("connections").as_uint64());
    out += fmt::format(
        "# HELP sandflow_sandbox_backend_info The sandbox backend and the isolation level it "
        "provides (1).\n# TYPE sandflow_sandbox_backend_info gauge\n"
        "sandflow_sandbox_backend_info{{backend=\"{}\",isolation=\"{}\"}} 1\n",
        impl_->backend.name(), sandbox::level_name(impl_->backend.level()));
    out += fmt::format(
        "# HELP sandflow_connections_total WebSocket connections opened.\n"
        "# TYPE sandflow_connections_total counter\nsandflow_connections_total {}\n",
        impl_->connections_total.load());
    {
        std::lock_guard lk(impl_->metrics_mu);
        out +=
            "# HELP sandflow_calls_total JSON-RPC requests by method and outcome.\n"
            "# TYPE sandflow_calls_total counter\n";
        for (const auto& [k, n] : impl_->calls_by)
            out += fmt::format("sandflow_calls_total{{method=\"{}\",outcome=\"{}\"}} {}\n", k.first,
                               label_value(k.second), n);
        out +=
            "# HELP sandflow_limit_kills_total Calls that cost their worker: a limit (by name), "
            "the deadline, a cancel or a shutdown.\n# TYPE sandflow_limit_kills_total counter\n";
        for (const auto& [k, n] : impl_->limit_kills)
            out +=
                fmt::format("sandflow_limit_kills_total{{reason=\"{}\"}} {}\n", label_value(k), n);
        out +=
            "# HELP sandflow_workers_lost_between_calls_total Workers killed for what they did "
            "between calls (a limit, a frame) or found dead then.\n"
            "# TYPE sandflow_workers_lost_between_calls_total counter\n";
        for (const auto& [k, n] : impl_->idle_losses)
            out += fmt::format("sandflow_workers_lost_between_calls_total{{reason=\"{}\"}} {}\n",
                               label_value(k), n);
    }
    out +=
        "# HELP sandflow_call_duration_seconds process calls, request to response.\n"
        "# TYPE sandflow_call_duration_seconds histogram\n";
    impl_->latency.write(out, "sandflow_call_duration_seconds");
    out +=
        "# HELP sandflow_sandboxes Instances by the state of their sandbox.\n"
        "# TYPE sandflow_sandboxes gauge\n";
    for (const auto& [k, v] : st.at("sandboxes").as_object())
        out += fmt::format("sandflow_sandboxes{{state=\"{}\"}} {}\n", std::string_view(k),
                           v.as_uint64());
    gauge("sandflow_actors", "Registered actor components.", st.at("actors").as_uint64());
    gauge("sandflow_calls_in_flight", "Calls queued or running.",
          st.at("calls_in_flight").as_uint64());
    out +=
        "# HELP sandflow_process_driven_total process calls by where they ran: on the event "
        "loop (a running worker) or blocking a pool thread (a sandbox started first).\n"
        "# TYPE sandflow_process_driven_total counter\n";
    for (const auto& [k, v] : st.at("process_driven").as_object())
        out += fmt::format("sandflow_process_driven_total{{on=\"{}\"}} {}\n", std::string_view(k),
                           v.as_uint64());
    gauge("sandflow_pool_threads", "Threads that run calls.", st.at("pool_threads").as_uint64());
    gauge("sandflow_pool_busy", "Pool threads running a call now.", st.at("pool_busy").as_uint64());
    gauge("sandflow_pool_queued", "Instance turns waiting for a pool thread.",
          st.at("pool_queued").as_uint64());
    if (const auto* wp = st.if_contains("warm_pool")) {
        static constexpr std::pair<const char*, const char*> kWarm[] = {
            {"target", "gauge"},   {"idle", "gauge"},      {"taken", "counter"},
            {"missed", "counter"}, {"started", "counter"}, {"failed", "counter"}};
        for (const auto& [field, type] : kWarm) {
            const bool counter = std::string_view(type) == "counter";
            const std::string name =
                std::string("sandflow_warm_pool_") + field + (counter ? "_total" : "");
            out += fmt::format("# HELP {} Warm pool sandboxes per language: {}.\n# TYPE {} {}\n",
                               name, field, name, type);
            for (const auto& [lang, v] : wp->as_object())
                out += fmt::format("{}{{language=\"{}\"}} {}\n", name, std::string_view(lang),
                                   v.as_object().at(field).as_uint64());
        }
    }
    if (const auto* t = impl_->transport) {
        out +=
            "# HELP sandflow_transport_events_total Connection-level events.\n"
            "# TYPE sandflow_transport_events_total counter\n";
        out += fmt::format("sandflow_transport_events_total{{event=\"rejected_auth\"}} {}\n",
                           t->rejected_auth.load());
        out += fmt::format("sandflow_transport_events_total{{event=\"rejected_origin\"}} {}\n",
                           t->rejected_origin.load());
        out += fmt::format("sandflow_transport_events_total{{event=\"rejected_full\"}} {}\n",
                           t->rejected_full.load());
        out += fmt::format("sandflow_transport_events_total{{event=\"slow_disconnect\"}} {}\n",
                           t->slow_disconnects.load());
        out += fmt::format("sandflow_transport_events_total{{event=\"timeout\"}} {}\n",
                           t->timeouts.load());
    }
    return out;
}

void Server::begin_drain() {
    impl_->draining = true;
}

bool Server::wait_idle(Clock::time_point deadline) {
    std::unique_lock lk(impl_->idle_mu);
    return impl_->idle_cv.wait_until(lk, deadline, [this] { return impl_->inflight == 0; });
}

void Server::abort_calls() {
    impl_->abort_all();
}

std::size_t Server::calls_in_flight() const {
    return impl_->inflight;
}

void Server::shutdown() {
    if (impl_->shut.exchange(true)) return;
    impl_->draining = true;
    impl_->abort_all();
    std::vector<std::shared_ptr<Slot>> all;
    {
        std::lock_guard lk(impl_->mu);
        for (auto& [k, s] : impl_->slots) all.push_back(s);
        impl_->slots.clear();
    }
    for (const auto& s : all) impl_->drop_slot(s);
    // Wait (bounded by the calls' own deadlines, already cut short by abort_all) for the
    // queues to run dry: every worker is then killed and reaped.
    for (const auto& s : all)
        while (!s->dropped) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    // Let go of the transport's connections while the transport still exists.
    std::lock_guard lk(impl_->mu);
    impl_->conns.clear();
}

}  // namespace sandflow::server
