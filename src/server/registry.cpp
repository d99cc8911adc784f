// The registry (registry.hpp), and the server's actors and instances over it: registering
// scripts (from --actors at start, or a load), making an instance's slot, starting its
// worker on what the store holds, dropping it.
#include "server/registry.hpp"

#include "core/log.hpp"
#include "server/actor_paths.hpp"
#include "server/params.hpp"
#include "server/shared_state.hpp"

namespace sandflow::server {

namespace fs = std::filesystem;

Result<std::shared_ptr<const ActorEntry>> Registry::add(std::shared_ptr<const ActorEntry> entry) {
    std::lock_guard lk(mu_);
    auto it = actors_.find(entry->component);
    if (it != actors_.end() && it->second->spec.source == entry->spec.source &&
        it->second->origin == entry->origin)
        return it->second;  // the same script again: keep the instances as they are
    if (it == actors_.end() && actors_.size() >= max_actors_)
        return tl::unexpected(Error(
            Errc::limit_exceeded,
            "too many actors registered (" + std::to_string(max_actors_) + "); unload some first",
            {{"limit", "kMaxActors"}, {"max", max_actors_}}));
    actors_[entry->component] = entry;
    return entry;
}

std::shared_ptr<const ActorEntry> Registry::actor(const std::string& component) const {
    std::lock_guard lk(mu_);
    auto it = actors_.find(component);
    return it == actors_.end() ? nullptr : it->second;
}

std::vector<std::string> Registry::actor_names() const {
    std::vector<std::string> out;
    std::lock_guard lk(mu_);
    for (const auto& [name, a] : actors_) out.push_back(name);
    return out;
}

std::shared_ptr<const ActorEntry> Registry::actor_with_slots(
    const std::string& component, std::vector<std::shared_ptr<Slot>>& out) const {
    std::lock_guard lk(mu_);
    for (const auto& [k, s] : slots_)
        if (s->component == component) out.push_back(s);
    auto it = actors_.find(component);
    return it == actors_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<Slot>> Registry::slot_for(
    const std::string& component, const std::string& instance_id, bool create,
    const std::function<std::shared_ptr<SerialQueue>()>& make_queue) {
    std::lock_guard lk(mu_);
    const std::string key = component + "/" + instance_id;
    if (auto it = slots_.find(key); it != slots_.end()) return it->second;
    auto a = actors_.find(component);
    if (a == actors_.end()) return tl::unexpected(not_found(component, {}));
    if (!create) return tl::unexpected(not_found(component, instance_id));
    if (slots_.size() >= max_instances_)
        return tl::unexpected(
            Error(Errc::limit_exceeded,
                  "too many instances (" + std::to_string(max_instances_) + "); unload some first",
                  {{"limit", "kMaxInstances"}, {"max", max_instances_}}));
    auto s = std::make_shared<Slot>();
    s->component = component;
    s->instance_id = instance_id;
    s->key = key;
    s->actor = a->second;
    s->queue = make_queue();
    slots_[key] = s;
    return s;
}

Result<std::vector<std::shared_ptr<Slot>>> Registry::remove(const std::string& component,
                                                            const std::string& instance_id) {
    std::vector<std::shared_ptr<Slot>> gone;
    std::lock_guard lk(mu_);
    if (!actors_.contains(component)) return tl::unexpected(not_found(component, {}));
    for (auto it = slots_.begin(); it != slots_.end();) {
        if (it->second->component == component &&
            (instance_id.empty() || it->second->instance_id == instance_id)) {
            gone.push_back(it->second);
            it = slots_.erase(it);
        } else {
            ++it;
        }
    }
    if (instance_id.empty()) actors_.erase(component);
    if (!instance_id.empty() && gone.empty())
        return tl::unexpected(not_found(component, instance_id));
    return gone;
}

std::vector<std::shared_ptr<Slot>> Registry::slots() const {
    std::vector<std::shared_ptr<Slot>> out;
    std::lock_guard lk(mu_);
    for (const auto& [k, s] : slots_) out.push_back(s);
    return out;
}

std::vector<std::shared_ptr<Slot>> Registry::take_all_slots() {
    std::vector<std::shared_ptr<Slot>> out;
    std::lock_guard lk(mu_);
    for (auto& [k, s] : slots_) out.push_back(s);
    slots_.clear();
    return out;
}

Registry::Counts Registry::counts() const {
    Counts n;
    std::lock_guard lk(mu_);
    n.actors = actors_.size();
    n.instances = slots_.size();
    for (const auto& [k, s] : slots_) {
        switch (static_cast<SlotState>(s->state.load())) {
            case SlotState::busy:
                ++n.busy;
                break;
            case SlotState::idle:
                ++n.idle;
                break;
            case SlotState::starting:
                ++n.starting;
                break;
            case SlotState::down:
                ++n.down;
                break;
        }
    }
    return n;
}

runtime::ActorLimits Server::Impl::default_limits() const {
    runtime::ActorLimits l = opts.limits;
    l.timeout = opts.call_timeout;
    l.sandbox = backend.default_limits();
    return l;
}

Result<std::shared_ptr<const ActorEntry>> Server::Impl::register_actor(runtime::InstanceSpec spec,
                                                                       std::string origin) {
    auto entry = std::make_shared<ActorEntry>();
    entry->component = spec.metadata.component;
    spec.initial_state = {};
    spec.on_log = nullptr;
    auto declared = runtime::limits_for(spec.metadata, default_limits(), opts.max_limits);
    if (!declared) return tl::unexpected(declared.error());
    spec.limits = *declared;
    // Checked here, so that a missing package fails the load (or skips a discovered script)
    // before any sandbox starts.
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
    return registry.add(std::move(entry));
}

Result<std::shared_ptr<Slot>> Server::Impl::slot_for(const std::string& component,
                                                     const std::string& instance_id, bool create) {
    // Made on the I/O thread of the connection whose request creates the slot, the
    // strand keeps that connection's calls to it on that thread.
    return registry.slot_for(component, instance_id, create, [this] {
        return std::make_shared<SerialQueue>(pool, loop ? loop->make_strand() : nullptr);
    });
}

// Runs on the slot's queue: the instance exists and runs the slot's actor, or an error.
// A new instance runs on what the store holds (a store that cannot answer fails it:
// it never starts on an empty state instead); `initial_state` replaces that state, to
// be committed by the caller.
Result<void> Server::Impl::ensure_instance(Slot& s, std::optional<json::object> initial_state) {
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
    s.set_state(SlotState::starting);
    auto inst = runtime::Instance::create(backend, std::move(spec));
    note_sandbox_start(inst ? nullptr : &inst.error());
    if (!inst) {
        s.set_state(SlotState::down);
        return tl::unexpected(inst.error());
    }
    s.inst = std::move(*inst);
    s.pid = s.inst->worker_pid();
    s.worker_starts++;
    s.set_state(SlotState::idle);
    return {};
}

void Server::Impl::drop_slot(const std::shared_ptr<Slot>& s) {
    s->removed = true;
    s->queue->post([s] {
        s->watch.reset();
        s->inst.reset();  // kills and reaps the worker
        s->pid = -1;
        s->set_state(SlotState::down);
        s->dropped = true;
    });
}

Result<std::size_t> Server::Impl::discover() {
    auto canonical = canonical_roots(opts.actor_roots);
    if (!canonical) return tl::unexpected(canonical.error());
    roots = std::move(*canonical);
    std::size_t n = 0;
    for (const auto& file : discover_actor_files(roots)) {
        auto spec = runtime::spec_from_file(fs::canonical(file));
        if (!spec) {
            spdlog::warn("--actors: skipping {}: {}", file.string(), spec.error().message);
            continue;
        }
        const std::string component = spec->metadata.component;
        if (auto known = registry.actor(component)) {
            spdlog::warn("--actors: skipping {}: component '{}' is already registered from {}",
                         file.string(), component, known->origin);
            continue;
        }
        auto entry = register_actor(std::move(*spec), fs::canonical(file).string());
        if (!entry) {
            spdlog::warn("--actors: skipping {}: {}", file.string(), entry.error().message);
            continue;
        }
        ++n;
        spdlog::info("--actors: registered '{}' from {}", component, file.string());
        if (!opts.warm_discovered) continue;
        auto slot = slot_for(component, std::string(kDefaultInstance), true);
        if (!slot) continue;
        auto s = *slot;
        s->queue->post([this, s] {
            if (s->removed || aborting) return;
            if (auto ok = ensure_instance(*s); !ok)
                return spdlog::warn("--actors: '{}' did not start: {}", s->component,
                                    ok.error().message);
            watch_between_calls_later(s);
        });
    }
    return n;
}

Result<std::size_t> Server::discover() {
    return impl_->discover();
}

}  // namespace sandflow::server
