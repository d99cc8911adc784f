// `load`: read and check a script (a file under --actors, or source sent inline), register
// it, and start its instance on the instance's queue, committing a given initial state.
// Parameter shapes are RPC errors; everything about the script is a result with
// success=false (Reflow's host expects that).
#include "server/actor_paths.hpp"
#include "server/shared_state.hpp"

namespace sandflow::server {

void Server::Impl::load_actor(const Reply& reply, const Params& p) {
    auto lp = parse_load(p);
    if (!lp) return refuse_call(reply, "load", lp.error());
    pool.submit(
        [this, reply, lp = std::move(*lp)]() mutable { load_on_pool(reply, std::move(lp)); });
}

void Server::Impl::answer_load_failed(const Reply& reply, const Error& e) {
    metrics.count_error("load", e);
    const auto r = rpc::to_rpc_error(e);
    reply.ok(
        json::object{{"success", false}, {"error", e.message}, {"code", r.code}, {"data", r.data}});
    retire_call(reply.session, {});
}

// On a pool thread: reads and checks the script, then creates the instance on its
// queue.
void Server::Impl::load_on_pool(const Reply& reply, LoadParams lp) {
    Result<runtime::InstanceSpec> spec;
    std::string origin;
    if (!lp.file_path.empty()) {
        // Read here, once: the rules hold for the file read (actor_paths.hpp).
        auto file = read_actor_file(roots, lp.file_path);
        if (!file) return answer_load_failed(reply, file.error());
        auto lang = actor::language_from_path(file->path);
        if (!lang)
            return answer_load_failed(
                reply, Error(Errc::invalid_argument, "file_path must name a .py or .js script",
                             {{"param", "file_path"}}));
        origin = file->path.string();
        spec = runtime::spec_from_source(std::move(file->source), origin, *lang);
    } else {
        auto lang = actor::language_from_name(lp.language);
        if (!lang)
            return answer_load_failed(reply, Error(Errc::invalid_argument,
                                                   "params.language must be python or "
                                                   "javascript with params.source",
                                                   {{"param", "language"}}));
        const std::string name =
            lp.filename.empty()
                ? std::string(*lang == actor::Language::python ? "inline.py" : "inline.js")
                : lp.filename;
        spec = runtime::spec_from_source(lp.source, name, *lang);
        origin = "inline";
    }
    if (!spec) return answer_load_failed(reply, spec.error());
    auto entry = register_actor(std::move(*spec), origin);
    if (!entry) return answer_load_failed(reply, entry.error());
    // The instance's limits: the actor's, with what this load asks for on top.
    std::optional<runtime::ActorLimits> inst_limits;
    if (!lp.limits.empty()) {
        auto l = runtime::apply_limits(*(*entry)->spec.limits, lp.limits, opts.max_limits,
                                       "params.limits");
        if (!l) return answer_load_failed(reply, l.error());
        inst_limits = *l;
    }
    auto slot = slot_for((*entry)->component, lp.instance_id, true);
    if (!slot) return answer_load_failed(reply, slot.error());
    auto s = *slot;
    auto e = *entry;
    s->queue->post([this, reply, s, e, state = std::move(lp.state), has_state = lp.has_state,
                    inst_limits]() mutable {
        if (s->removed) return answer_load_failed(reply, not_found(s->component, s->instance_id));
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
            return answer_load_failed(reply, ok.error());
        if (has_state) {
            runtime::StateCommit c;
            c.ref = s->ref();
            c.base_version = s->version;
            c.state = s->inst->state();
            for (const auto& [k, v] : c.state) c.changed.emplace_back(k);
            auto v = store->commit_wait(std::move(c));
            if (!v) {
                s->inst.reset();
                return answer_load_failed(reply, v.error());
            }
            s->version = *v;
            s->last_call.clear();
        }
        watch_between_calls_later(s);
        metrics.count("load", "ok");
        reply.ok(json::object{{"success", true},
                              {"actor_id", s->component},
                              {"instance_id", s->instance_id},
                              {"language", actor::language_name(e->spec.metadata.language)},
                              {"metadata", e->spec.metadata.to_json()}});
        retire_call(reply.session, {});
    });
}

}  // namespace sandflow::server
