#include "runtime/instance.hpp"

#include "runtime/runtime_limits.hpp"
#include "runtime/warm_pool.hpp"

namespace sandflow::runtime {

namespace {

Error state_limit(std::string_view limit, std::size_t value, std::size_t max, std::string what) {
    return Error(Errc::limit_exceeded, std::move(what),
                 {{"limit", limit}, {"value", value}, {"max", max}});
}

}  // namespace

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
    : backend_(backend),
      spec_(std::move(spec)),
      state_(spec_.initial_state),
      expires_(spec_.initial_expires) {
    if (!spec_.limits) spec_.limits = default_limits(backend_);
    drop_expired(state_, expires_, wall_ms());
    recount();
}

void Instance::recount() {
    key_bytes_.clear();
    state_bytes_ = 0;
    for (const auto& [k, v] : state_) {
        const std::size_t n = k.size() + to_json_string(v).size();
        key_bytes_[std::string(k)] = n;
        state_bytes_ += n;
    }
}

std::vector<sandbox::SharedDir> package_dirs(const std::vector<actor::PackageSet>& sets) {
    std::vector<sandbox::SharedDir> dirs;
    for (const auto& s : sets)
        dirs.push_back(
            {s.path.string(), std::string(actor::language_name(s.language)) + "/" + s.name});
    return dirs;
}

std::vector<sandbox::SharedDir> default_package_dirs(const actor::PackageCatalog& catalog,
                                                     actor::Language lang) {
    std::vector<actor::PackageSet> sets;
    for (const auto& s : catalog.sets())
        if (s.language == lang) sets.push_back(s);
    return package_dirs(sets);
}

Result<void> resolve_packages(InstanceSpec& spec, const actor::PackageCatalog& catalog,
                              bool script_on_disk) {
    auto p = catalog.for_actor(
        spec.metadata, spec.metadata.language,
        script_on_disk ? std::filesystem::path(spec.filename) : std::filesystem::path());
    if (!p) return tl::unexpected(p.error());
    spec.packages = std::move(*p);
    return {};
}

Result<std::unique_ptr<Instance>> Instance::create(sandbox::Backend& backend, InstanceSpec spec) {
    if (!spec.packages) {
        auto p = actor::packages_without_sets(spec.metadata, spec.metadata.language);
        if (!p) return tl::unexpected(p.error());
        spec.packages = std::move(*p);
    }
    std::unique_ptr<Instance> inst(new Instance(backend, std::move(spec)));
    inst->package_dirs_ = package_dirs(inst->spec_.packages->sets);
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
    LoadSpec load{spec_.metadata,           spec_.source, spec_.filename, spec_.actor_id, state_,
                  expiry_to_json(expires_), spec_.on_log, package_dirs_};
    // Pooled sandboxes run the backend's default limits: usable when what differs can
    // change live.
    std::unique_ptr<Worker> pooled;
    if (spec_.pool && &spec_.pool->backend() == &backend_ &&
        want.same_fixed(backend_.default_limits()))
        pooled = spec_.pool->take(spec_.metadata.language, package_dirs_);
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
    if (!request.state && !worker_in_sync_) {
        request.state = state_;
        request.expires = expiry_to_json(expires_);
    }

    if (events.on_start && !events.on_start(worker_->pid()))
        return fail(Errc::cancelled, "the call was cancelled before it started");
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
    CallOutcome out;
    if (auto ok = apply_changes(*r, std::move(p.caller_state), out); !ok) {
        // The worker took its changes already: it gets the committed state next time.
        worker_in_sync_ = false;
        return tl::unexpected(ok.error());
    }
    worker_in_sync_ = true;
    out.outputs = std::move(r->outputs);
    out.state = state_;
    out.duration = r->duration;
    out.new_worker = p.new_worker;
    return out;
}

Result<void> Instance::apply_changes(CallResult& r, std::optional<json::object> caller_state,
                                     CallOutcome& out) {
    const std::int64_t now = wall_ms();
    const std::string& actor = spec_.metadata.component;
    // Keys whose time has passed are gone whatever the call did.
    for (auto it = expires_.begin(); it != expires_.end();) {
        if (it->second > now) {
            ++it;
            continue;
        }
        if (auto b = key_bytes_.find(it->first); b != key_bytes_.end()) {
            state_bytes_ -= b->second;
            key_bytes_.erase(b);
        }
        if (state_.erase(it->first)) out.removed.push_back(it->first);
        it = expires_.erase(it);
    }
    // A call on a caller's state replaces the whole state: checked, then taken, whole.
    if (caller_state) {
        json::object next = std::move(*caller_state);
        for (auto& [k, v] : r.state_set) next[k] = std::move(v);
        for (const auto& k : r.state_deleted) next.erase(k);
        r.state_set = json::object();
        r.state_deleted.clear();
        for (auto& [k, v] : next) r.state_set[k] = v;
        for (const auto& [k, v] : state_)
            if (!next.contains(k)) r.state_deleted.push_back(std::string(k));
    }
    // The checks first, against the state as it will be: nothing is taken unless all pass.
    std::size_t keys = state_.size();
    std::size_t bytes = state_bytes_;
    std::map<std::string_view, std::size_t> sizes;
    for (const auto& [k, v] : r.state_set) {
        if (k.size() > limits::kMaxStateKeyBytes)
            return tl::unexpected(state_limit(
                "kMaxStateKeyBytes", k.size(), limits::kMaxStateKeyBytes,
                "state key of " + std::to_string(k.size()) + " bytes written by actor '" + actor +
                    "' is over the limit of " + std::to_string(limits::kMaxStateKeyBytes) +
                    " bytes; use shorter keys"));
        const std::size_t value = to_json_string(v).size();
        if (value > limits::kMaxStateValueBytes)
            return tl::unexpected(
                state_limit("kMaxStateValueBytes", value, limits::kMaxStateValueBytes,
                            "state value '" + std::string(k) + "' of actor '" + actor + "' is " +
                                std::to_string(value) + " bytes as JSON, over the limit of " +
                                std::to_string(limits::kMaxStateValueBytes) +
                                " bytes; split it over several keys"));
        const std::size_t n = k.size() + value;
        sizes[k] = n;
        if (auto b = key_bytes_.find(k); b != key_bytes_.end()) {
            bytes = bytes - b->second + n;
        } else {
            ++keys;
            bytes += n;
        }
    }
    for (const auto& k : r.state_deleted) {
        if (r.state_set.contains(k)) continue;
        if (auto b = key_bytes_.find(k); b != key_bytes_.end()) {
            --keys;
            bytes -= b->second;
        }
    }
    // The whole state over a cap: `what` the actor would keep, in the message's words.
    auto too_much = [&](std::string_view limit, std::size_t value, std::size_t max,
                        std::string_view what) {
        return tl::unexpected(
            state_limit(limit, value, max,
                        "actor '" + actor + "' would keep " + std::to_string(value) + " " +
                            std::string(what) + ", over the limit of " + std::to_string(max) +
                            "; delete keys it no longer needs, or give keys an expiry time"));
    };
    if (keys > limits::kMaxStateKeys)
        return too_much("kMaxStateKeys", keys, limits::kMaxStateKeys, "state keys");
    if (bytes > limits::kMaxStateBytes)
        return too_much("kMaxStateBytes", bytes, limits::kMaxStateBytes, "bytes of state");
    StateExpiry times;
    for (const auto& [k, t] : r.expires_set) {
        if (t.is_null()) continue;
        if (!t.is_int64() || t.get_int64() > now + limits::kMaxStateTtlMs)
            return fail(Errc::worker_crashed,
                        "the worker of actor '" + actor +
                            "' reported a malformed expiry time for '" + std::string(k) + "'",
                        {{"reason", "protocol"}});
        times.emplace(std::string(k), t.get_int64());
    }

    if (caller_state) expires_.clear();
    for (auto& [k, v] : r.state_set) {
        state_[k] = std::move(v);
        auto& slot = key_bytes_[std::string(k)];
        slot = sizes[k];
        out.changed.push_back(std::string(k));
    }
    for (const auto& k : r.state_deleted) {
        if (r.state_set.contains(k)) continue;
        if (state_.erase(k)) out.removed.push_back(k);
        key_bytes_.erase(k);
        expires_.erase(k);
    }
    state_bytes_ = bytes;
    for (const auto& [k, t] : r.expires_set) {
        const std::string key(k);
        if (!state_.contains(key)) continue;
        if (t.is_null()) {
            if (expires_.erase(key) && !r.state_set.contains(key)) out.changed.push_back(key);
        } else if (times[key] <= now) {
            state_.erase(key);
            expires_.erase(key);
            state_bytes_ -= key_bytes_[key];
            key_bytes_.erase(key);
            out.removed.push_back(key);
        } else {
            expires_[key] = times[key];
            if (!r.state_set.contains(key)) out.changed.push_back(key);
        }
    }
    return {};
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
