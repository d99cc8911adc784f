#include "flow/script.hpp"

#include <algorithm>

#include "actor/script_limits.hpp"
#include "core/log.hpp"
#include "runtime/actor_limits.hpp"
#include "runtime/instance.hpp"
#include "runtime/state/store.hpp"

namespace sandflow::flow {

namespace fs = std::filesystem;

namespace {

bool is_script(const fs::path& p) {
    return actor::language_from_path(p).has_value();
}

bool is_actor_name(const fs::path& p) {
    const std::string name = p.filename().string();
    return name.ends_with(".actor.py") || name.ends_with(".actor.js");
}

}  // namespace

ScriptCatalog ScriptCatalog::discover(const std::vector<fs::path>& dirs) {
    ScriptCatalog cat;
    std::size_t looked = 0;
    for (const auto& dir : dirs) {
        std::error_code ec;
        if (!fs::is_directory(dir, ec)) continue;
        cat.dirs_.push_back(dir);
        std::vector<fs::path> files;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            if (++looked > limits::kMaxDiscoveredFiles) break;
            const auto& e = *it;
            if (e.is_regular_file(ec) && is_script(e.path())) {
                files.push_back(e.path());
            } else if (e.is_directory(ec) && !e.is_symlink(ec)) {
                // One level down: *.actor.* files only (a folder per actor, or per language).
                for (fs::directory_iterator sub(e.path(), ec); !ec && sub != end;
                     sub.increment(ec)) {
                    if (++looked > limits::kMaxDiscoveredFiles) break;
                    if (sub->is_regular_file(ec) && is_actor_name(sub->path()))
                        files.push_back(sub->path());
                }
                ec.clear();
            }
        }
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            auto ok = cat.add_file(f);
            if (!ok) spdlog::debug("not an actor script: {}", ok.error().message);
        }
    }
    return cat;
}

Result<void> ScriptCatalog::add_file(const fs::path& file) {
    ScriptActor a;
    a.file = file;
    auto meta = actor::inspect_file(file, &a.source);
    if (!meta) return tl::unexpected(meta.error());
    a.metadata = std::move(*meta);
    const std::string name = a.metadata.component;
    if (const auto* prev = find(name)) {
        spdlog::warn("component '{}' is declared by {} and {}; using the first", name,
                     prev->file.string(), file.string());
        return {};
    }
    actors_.emplace(name, std::move(a));
    return {};
}

const ScriptActor* ScriptCatalog::find(std::string_view component) const {
    auto it = actors_.find(component);
    return it == actors_.end() ? nullptr : &it->second;
}

std::vector<std::string> ScriptCatalog::names() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : actors_) out.push_back(k);
    return out;
}

namespace {

// A node's instance, and where its state is committed when the run has a store.
struct NodeState {
    std::shared_ptr<runtime::StateStore> store;  // none: the instance's memory only
    runtime::InstanceRef ref;
    std::uint64_t version = 0;  // the stored version the instance runs on
};

// The instance for `spec`, on what the store holds for the node when there is one.
Result<std::unique_ptr<runtime::Instance>> start_node(sandbox::Backend& backend,
                                                      runtime::InstanceSpec spec, NodeState& ns) {
    if (ns.store) {
        auto stored = ns.store->load(ns.ref);
        if (!stored) return tl::unexpected(stored.error());
        ns.version = *stored ? (*stored)->version : 0;
        if (*stored) {
            spec.initial_state = std::move((*stored)->state);
            spec.initial_expires = std::move((*stored)->expires);
        }
    }
    return runtime::Instance::create(backend, std::move(spec));
}

class EmbeddedRunner final : public ScriptRunner {
  public:
    EmbeddedRunner(sandbox::Backend& backend, runtime::InstanceSpec spec,
                   std::unique_ptr<runtime::Instance> inst, NodeState ns, LogSink on_log,
                   std::chrono::milliseconds timeout)
        : backend_(backend),
          spec_(std::move(spec)),
          inst_(std::move(inst)),
          ns_(std::move(ns)),
          on_log_(std::move(on_log)),
          timeout_(timeout) {}

    Result<json::object> call(json::object inputs, const json::object& config,
                              const OutputSink& on_output) override {
        if (!inst_) {  // a failed commit dropped it: from what the store holds
            auto inst = start_node(backend_, spec_, ns_);
            if (!inst) return tl::unexpected(inst.error());
            inst_ = std::move(*inst);
        }
        runtime::CallRequest req;
        req.inputs = std::move(inputs);
        req.config = config;
        req.timeout = timeout_;
        runtime::CallEvents ev;
        ev.on_output = [&](std::string_view port, const json::value& data) {
            on_output(port, data);
        };
        ev.on_log = [this](const runtime::LogLine& l) {
            if (on_log_) on_log_(l.text);
        };
        auto r = inst_->call(req, ev);
        if (!r) return tl::unexpected(r.error());
        if (ns_.store && r->state_changed()) {
            runtime::StateCommit c;
            c.ref = ns_.ref;
            c.base_version = ns_.version;
            c.state = r->state;
            c.expires = inst_->expires();
            c.changed = std::move(r->changed);
            c.removed = std::move(r->removed);
            auto v = ns_.store->commit_wait(std::move(c));
            if (!v) {
                // The instance holds a state the store does not: the next call starts it
                // again from the store.
                inst_.reset();
                return tl::unexpected(v.error());
            }
            ns_.version = *v;
        }
        return std::move(r->outputs);
    }

  private:
    sandbox::Backend& backend_;
    const runtime::InstanceSpec spec_;  // to start the instance again
    std::unique_ptr<runtime::Instance> inst_;
    NodeState ns_;
    LogSink on_log_;
    std::chrono::microseconds timeout_;
};

class EmbeddedHost final : public ScriptHost {
  public:
    EmbeddedHost(sandbox::Backend& backend, std::chrono::milliseconds timeout,
                 std::shared_ptr<runtime::StateStore> store,
                 std::shared_ptr<const actor::PackageCatalog> packages)
        : backend_(backend),
          timeout_(timeout),
          store_(std::move(store)),
          packages_(std::move(packages)),
          name_("embedded") {}
    std::string_view name() const override { return name_; }

    Result<std::unique_ptr<ScriptRunner>> open(const ScriptActor& actor, std::string_view node_id,
                                               LogSink on_log) override {
        runtime::InstanceSpec spec;
        spec.actor_id = std::string(node_id);
        spec.metadata = actor.metadata;
        spec.source = actor.source;
        spec.filename = actor.file.string();
        spec.on_log = [on_log](const runtime::LogLine& l) {
            if (on_log) on_log(l.text);
        };
        // The limits the actor declares; the run's --timeout, when given, replaces its
        // wall clock per call (EmbeddedRunner).
        auto limits = runtime::limits_for(actor.metadata, runtime::default_limits(backend_),
                                          runtime::default_maxima());
        if (!limits) return tl::unexpected(limits.error());
        spec.limits = *limits;
        if (packages_)
            if (auto ok = runtime::resolve_packages(spec, *packages_, true); !ok)
                return tl::unexpected(ok.error());
        NodeState ns{store_, {actor.metadata.component, std::string(node_id)}, 0};
        auto inst = start_node(backend_, spec, ns);
        if (!inst) return tl::unexpected(inst.error());
        return std::make_unique<EmbeddedRunner>(backend_, std::move(spec), std::move(*inst),
                                                std::move(ns), std::move(on_log), timeout_);
    }

  private:
    sandbox::Backend& backend_;
    std::chrono::milliseconds timeout_;
    std::shared_ptr<runtime::StateStore> store_;
    std::shared_ptr<const actor::PackageCatalog> packages_;
    std::string name_;
};

}  // namespace

std::unique_ptr<ScriptHost> embedded_host(sandbox::Backend& backend,
                                          std::chrono::milliseconds call_timeout,
                                          std::shared_ptr<runtime::StateStore> store,
                                          std::shared_ptr<const actor::PackageCatalog> packages) {
    return std::make_unique<EmbeddedHost>(backend, call_timeout, std::move(store),
                                          std::move(packages));
}

}  // namespace sandflow::flow
