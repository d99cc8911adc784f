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

Result<InstanceSpec> spec_from_source(std::string source, std::string filename,
                                      actor::Language language) {
    auto meta = actor::extract_metadata(source, filename, language);
    if (!meta) return tl::unexpected(meta.error());
    InstanceSpec spec;
    spec.metadata = std::move(*meta);
    spec.source = std::move(source);
    spec.filename = std::move(filename);
    spec.actor_id = spec.metadata.component;
    return spec;
}

Instance::Instance(sandbox::Backend& backend, InstanceSpec spec)
    : backend_(backend), spec_(std::move(spec)), state_(spec_.initial_state) {
    if (!spec_.limits) spec_.limits = default_limits(backend_);
}

Result<std::unique_ptr<Instance>> Instance::create(sandbox::Backend& backend, InstanceSpec spec) {
    std::unique_ptr<Instance> inst(new Instance(backend, std::move(spec)));
    if (auto ok = inst->start_worker(inst->spec_.limits->sandbox); !ok)
        return tl::unexpected(ok.error());
    return inst;
}

Result<bool> Instance::reuse_worker(const sandbox::SandboxLimits& want) {
    if (!worker_ || !worker_->alive()) return false;
    return worker_->update_sandbox_limits(want);
}

Result<void> Instance::start_worker(const sandbox::SandboxLimits& want) {
    worker_.reset();
    LoadSpec load{spec_.metadata, spec_.source, spec_.filename,
                  spec_.actor_id, state_,       spec_.on_log};
    // Pooled sandboxes run the backend's default limits: usable when what differs can
    // change live.
    std::unique_ptr<Worker> pooled;
    if (spec_.pool && &spec_.pool->backend() == &backend_ &&
        want.same_fixed(backend_.default_limits()))
        pooled = spec_.pool->take(spec_.metadata.language);
    if (pooled) {
        auto fits = pooled->update_sandbox_limits(want);
        if (!fits || !*fits) pooled.reset();
    }
    if (pooled) {
        auto ok = pooled->load(load, spec_.start_timeout);
        // A pooled worker that died while idle is replaced by a cold start; a script that
        // fails to load fails the same way in any worker.
        if (!ok && ok.error().code != Errc::worker_crashed) return tl::unexpected(ok.error());
        if (ok) {
            worker_ = std::move(pooled);
            ++pooled_starts_;
        }
    }
    if (!worker_) {
        auto w = Worker::start(backend_, load, spec_.start_timeout, want);
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

Result<bool> Instance::begin(CallRequest&& request, CallEvents&& events, bool may_block) {
    if (pending_) return fail(Errc::internal, "a call is already running on this instance");
    if (auto ok = check_inputs(request.inputs); !ok) return tl::unexpected(ok.error());
    if (!request.limits) request.limits = *spec_.limits;
    const sandbox::SandboxLimits& want = request.limits->sandbox;
    const std::size_t starts = worker_starts_;
    auto same = reuse_worker(want);
    if (!same) return tl::unexpected(same.error());
    if (!*same) {
        if (!may_block) return false;
        if (auto ok = start_worker(want); !ok) return tl::unexpected(ok.error());
    }

    // The state this call runs on: the caller's, or the committed one (sent only when the
    // worker might hold something else).
    Pending p;
    if (request.state) p.caller_state = *request.state;
    p.new_worker = worker_starts_ != starts;
    if (!request.state && !worker_in_sync_) request.state = state_;

    if (events.on_start && !events.on_start(worker_->pid()))
        return fail(Errc::worker_crashed, "the call was cancelled before it started",
                    {{"reason", "cancelled"}});
    if (auto ok = worker_->begin_call(std::move(request), std::move(events)); !ok) {
        if (!worker_->alive()) worker_.reset();
        return tl::unexpected(ok.error());
    }
    pending_ = std::move(p);
    return true;
}

std::optional<Result<CallOutcome>> Instance::advance(int timeout_ms) {
    if (!pending_) return Result<CallOutcome>(fail(Errc::internal, "no call is running"));
    auto r = worker_->advance(timeout_ms);
    if (!r) return std::nullopt;
    return finish(std::move(*r));
}

Result<CallOutcome> Instance::expire() {
    if (!pending_) return fail(Errc::internal, "no call is running");
    return finish(worker_->expire());
}

Result<CallOutcome> Instance::finish(Result<CallResult> r) {
    Pending p = std::move(*pending_);
    pending_.reset();
    if (!r) {
        // A script error leaves the worker alive, but with the caller's state if one was
        // given: resend the committed state next time.
        if (p.caller_state) worker_in_sync_ = false;
        if (!worker_->alive()) worker_.reset();
        return tl::unexpected(r.error());
    }
    if (p.caller_state) state_ = std::move(*p.caller_state);
    for (auto& [k, v] : r->state_set) state_[k] = std::move(v);
    for (const auto& k : r->state_deleted) state_.erase(k);
    worker_in_sync_ = true;
    CallOutcome out;
    out.outputs = std::move(r->outputs);
    out.state = state_;
    out.duration = r->duration;
    out.new_worker = p.new_worker;
    return out;
}

int Instance::wait_fd() const {
    return worker_ ? worker_->wait_fd() : -1;
}

Result<void> Instance::poll_idle() {
    if (pending_) return fail(Errc::internal, "poll_idle while a call is running");
    if (!worker_) return {};
    auto ok = worker_->poll_idle();
    if (!ok) worker_.reset();  // killed or dead; reaped here
    return ok;
}

Clock::time_point Instance::deadline() const {
    return pending_ && worker_ ? worker_->call_deadline() : Clock::time_point::max();
}

Result<CallOutcome> Instance::call(const CallRequest& request, const CallEvents& events) {
    CallRequest req = request;
    CallEvents ev = events;
    auto began = begin(std::move(req), std::move(ev), true);
    if (!began) return tl::unexpected(began.error());
    return wait();
}

Result<CallOutcome> Instance::wait() {
    if (!pending_) return fail(Errc::internal, "no call is running");
    return finish(worker_->wait());
}

}  // namespace sandflow::runtime
