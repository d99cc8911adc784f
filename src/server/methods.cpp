// The JSON-RPC methods (docs/protocol.md): dispatch, the admission of calls (load, process,
// unload) against draining and the limits of calls in flight, and the methods that answer
// at once on the I/O thread (list, ping, stats, describe, cancel) or after their instances'
// queues (unload). load is in load.cpp, process in call.cpp.
#include "core/log.hpp"
#include "server/server_limits.hpp"
#include "server/shared_state.hpp"

namespace sandflow::server {

void Server::Impl::dispatch(const std::shared_ptr<Session>& session, rpc::Request req,
                            const std::shared_ptr<Batch>& batch) {
    Reply reply{session, req.id, req.is_notification, batch};
    auto params = Params::of(req.params);
    if (!params) {
        metrics.count(req.method, "invalid_params");
        return reply.err(params.error());
    }
    const std::string& m = req.method;
    if (m == "list") return list_actors(reply);
    if (m == "ping") return ping(reply);
    if (m == "stats") return stats(reply);
    if (m == "describe") return describe_actor(reply, *params);
    if (m == "cancel") return cancel_call(reply, *params);
    if (m == "load" || m == "process" || m == "unload") {
        if (!admit(reply, m)) return;
        if (m == "load") return load_actor(reply, *params);
        if (m == "process") return process_call(reply, *params);
        return unload_actor(reply, *params);
    }
    metrics.count("unknown", "method_not_found");
    reply.err(Error(Errc::method_not_found,
                    "method '" + m.substr(0, limits::kMaxRpcMethodBytes) +
                        "' not found; methods: list, load, process, unload, "
                        "describe, ping, stats, cancel",
                    {{"method", m}}));
}

bool Server::Impl::admit(const Reply& reply, const std::string& method) {
    Session& session = *reply.session;
    if (draining) {
        const Error e(Errc::shutting_down,
                      "the server is shutting down; retry on another "
                      "server or after it restarts");
        metrics.count_error(method, e);
        reply.err(e);
        return false;
    }
    if (session.inflight >= opts.max_calls_per_connection || inflight >= opts.max_calls_total) {
        const bool mine = session.inflight >= opts.max_calls_per_connection;
        const Error e = Error(
            Errc::overloaded,
            mine ? "too many calls in flight on this connection (" +
                       std::to_string(opts.max_calls_per_connection) + "); wait for some responses"
                 : "the server has too many calls in flight (" +
                       std::to_string(opts.max_calls_total) + "); retry later",
            {{"limit", mine ? "kMaxCallsPerConnection" : "kMaxCallsTotal"},
             {"max", mine ? opts.max_calls_per_connection : opts.max_calls_total}});
        metrics.count_error(method, e);
        reply.err(e);
        return false;
    }
    session.inflight++;
    inflight++;
    return true;
}

void Server::Impl::retire_call(const std::shared_ptr<Session>& session, const std::string& key) {
    session->untrack(key);
    session->inflight--;
    if (--inflight == 0) {
        std::lock_guard lk(idle_mu);
        idle_cv.notify_all();
    }
}

void Server::Impl::refuse_call(const Reply& reply, std::string_view method, const Error& e) {
    metrics.count_error(method, e);
    reply.err(e);
    retire_call(reply.session, {});
}

void Server::Impl::list_actors(const Reply& reply) {
    json::array names;
    for (auto& name : registry.actor_names()) names.emplace_back(std::move(name));
    metrics.count("list", "ok");
    reply.ok(json::object{{"actors", std::move(names)}});
}

void Server::Impl::ping(const Reply& reply) {
    metrics.count("ping", "ok");
    reply.ok(json::object{{"pong", true}, {"timestamp", now_ms()}});
}

void Server::Impl::stats(const Reply& reply) {
    metrics.count("stats", "ok");
    reply.ok(stats_object());
}

void Server::Impl::describe_actor(const Reply& reply, const Params& p) {
    auto component = parse_actor_id(p);
    if (!component) {
        metrics.count_error("describe", component.error());
        return reply.err(component.error());
    }
    std::vector<std::shared_ptr<Slot>> mine;
    auto a = registry.actor_with_slots(*component, mine);
    if (!a) {
        const Error e = not_found(*component, {});
        metrics.count_error("describe", e);
        return reply.err(e);
    }
    json::array instances;
    for (const auto& s : mine) {
        json::object i{
            {"instance_id", s->instance_id}, {"calls", s->calls.load()},
            {"errors", s->errors.load()},    {"worker_starts", s->worker_starts.load()},
            {"worker_pid", s->pid.load()},   {"lost_between_calls", s->lost_between_calls.load()}};
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
    metrics.count("describe", "ok");
    reply.ok(json::object{{"actor_id", a->component},
                          {"language", actor::language_name(a->spec.metadata.language)},
                          {"origin", a->origin},
                          {"backend", backend.name()},
                          {"isolation", sandbox::level_name(backend.level())},
                          {"metadata", a->spec.metadata.to_json()},
                          {"packages", a->spec.packages->to_json()},
                          {"instances", std::move(instances)}});
}

void Server::Impl::cancel_call(const Reply& reply, const Params& p) {
    auto id = parse_cancel_id(p);
    if (!id) {
        metrics.count_error("cancel", id.error());
        return reply.err(id.error());
    }
    std::shared_ptr<CallState> call = reply.session->find(*id);
    metrics.count("cancel", "ok");
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

void Server::Impl::unload_actor(const Reply& reply, const Params& p) {
    auto up = parse_unload(p);
    if (!up) return refuse_call(reply, "unload", up.error());
    auto removed = registry.remove(up->actor_id, up->instance_id);
    if (!removed) return refuse_call(reply, "unload", removed.error());
    const std::vector<std::shared_ptr<Slot>>& gone = *removed;
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
    auto done = [this, reply, n = gone.size(), all = up->instance_id.empty()] {
        metrics.count("unload", "ok");
        reply.ok(json::object{{"success", true}, {"instances", n}, {"actor_removed", all}});
        retire_call(reply.session, {});
    };
    if (gone.empty()) return done();
    for (const auto& s : gone)
        s->queue->post([left, done] {
            if (--*left == 0) done();
        });
}

}  // namespace sandflow::server
