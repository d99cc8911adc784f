#include "runtime/instance.hpp"

#include "runtime/warm_pool.hpp"

namespace sandflow::runtime {

Result<InstanceSpec> spec_from_file(const std::filesystem::path& path) {
    InstanceSpec spec;
    auto meta = actor::inspect_file(path, &spec.source);
    if (!meta) return tl::unexpected(meta.error());
    spec.metadata = std::move(*meta);
    spec.filename = path.string();
    spec.actor_id = spec.metadata.component;
    return spec;
}

Instance::Instance(sandbox::Backend& backend, InstanceSpec spec)
    : backend_(backend), spec_(std::move(spec)), state_(spec_.initial_state) {}

Result<std::unique_ptr<Instance>> Instance::create(sandbox::Backend& backend, InstanceSpec spec) {
    std::unique_ptr<Instance> inst(new Instance(backend, std::move(spec)));
    if (auto ok = inst->ensure_worker(); !ok) return tl::unexpected(ok.error());
    return inst;
}

Result<void> Instance::ensure_worker() {
    if (worker_ && worker_->alive()) return {};
    worker_.reset();
    LoadSpec load{spec_.metadata, spec_.source, spec_.filename,
                  spec_.actor_id, state_,       spec_.on_log};
    std::unique_ptr<Worker> pooled;
    if (spec_.pool && &spec_.pool->backend() == &backend_)
        pooled = spec_.pool->take(spec_.metadata.language);
    if (pooled) {
        auto ok = pooled->load(load, spec_.start_timeout);
        // A pooled worker that died while idle is replaced by a cold start; a script that
        // fails to load fails the same way in any worker.
        if (!ok && ok.error().code != Errc::worker_crashed) return tl::unexpected(ok.error());
        if (ok) ++pooled_starts_;
        if (!ok) pooled.reset();
    }
    if (pooled) {
        worker_ = std::move(pooled);
    } else {
        auto w = Worker::start(backend_, load, spec_.start_timeout);
        if (!w) return tl::unexpected(w.error());
        worker_ = std::move(*w);
    }
    worker_in_sync_ = true;
    ++worker_starts_;
    return {};
}

Result<void> Instance::check_inputs(const json::object& inputs) const {
    const auto& ports = spec_.metadata.inports;
    if (ports.empty()) return {};
    auto declared = [&] {
        std::string names;
        for (const auto& p : ports) names += (names.empty() ? "" : ", ") + p.name;
        return "[" + names + "]";
    };
    for (const auto& [key, value] : inputs) {
        bool known = false;
        for (const auto& p : ports) known = known || p.name == key;
        if (!known)
            return fail(Errc::invalid_argument,
                        "unknown input port '" + std::string(key) + "' for actor '" +
                            spec_.metadata.component + "'; it declares inports " + declared(),
                        {{"port", std::string(key)}});
    }
    for (const auto& p : ports) {
        if (p.required && !inputs.contains(p.name))
            return fail(Errc::invalid_argument,
                        "required input port '" + p.name + "' of actor '" +
                            spec_.metadata.component + "' has no value",
                        {{"port", p.name}});
    }
    return {};
}

Result<CallOutcome> Instance::call(const CallRequest& request, const CallEvents& events) {
    if (auto ok = check_inputs(request.inputs); !ok) return tl::unexpected(ok.error());
    CallOutcome out;
    const std::size_t starts = worker_starts_;
    if (auto ok = ensure_worker(); !ok) return tl::unexpected(ok.error());
    out.new_worker = worker_starts_ != starts;

    // The state this call runs on: the caller's, or the committed one (sent only when the
    // worker might hold something else).
    CallRequest req = request;
    json::object base = request.state ? *request.state : state_;
    if (!request.state && !worker_in_sync_) req.state = state_;

    auto r = worker_->call(req, events);
    if (!r) {
        // A script error leaves the worker alive, but with the caller's state if one was
        // given: resend the committed state next time.
        if (request.state) worker_in_sync_ = false;
        if (!worker_->alive()) worker_.reset();
        return tl::unexpected(r.error());
    }
    for (auto& [k, v] : r->state_set) base[k] = std::move(v);
    for (const auto& k : r->state_deleted) base.erase(k);
    state_ = std::move(base);
    worker_in_sync_ = true;
    out.outputs = std::move(r->outputs);
    out.state = state_;
    out.duration = r->duration;
    return out;
}

}  // namespace sandflow::runtime
