// An actor instance: one loaded script, its committed state, and the worker that serves
// it. The worker is started when the instance is created (so load errors surface at load
// time) and again, from the last committed state, after it dies or is killed.
//
// State commits only when a call succeeds. A call that fails (the script raised, timed
// out, or the worker died) leaves the committed state as it was. Keys may carry an expiry
// time: a key whose time has passed is gone for the script, and dropped at the next
// commit. The state's named limits (limits::kMaxStateKeys, kMaxStateKeyBytes,
// kMaxStateValueBytes, kMaxStateBytes) are checked again here before a call's changes are
// taken: the worker that checked them first is untrusted.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "actor/metadata.hpp"
#include "actor/package_sets.hpp"
#include "runtime/runtime_limits.hpp"
#include "runtime/state/store.hpp"
#include "runtime/worker.hpp"

namespace sandflow::runtime {

class WarmPool;

struct InstanceSpec {
    std::string actor_id;
    actor::ActorMetadata metadata;
    std::string source;
    std::string filename;
    json::object initial_state;
    StateExpiry initial_expires;                 // of initial_state's keys
    std::function<void(const LogLine&)> on_log;  // output outside calls
    std::chrono::milliseconds start_timeout = limits::kWorkerStartTimeout;
    // Where new workers come from first (warm_pool.hpp); it must outlive the instance and
    // use the instance's backend. Null, empty, or another backend: workers start cold.
    WarmPool* pool = nullptr;
    // The instance's limits (actor_limits.hpp), already checked against the runtime's
    // maxima; a call may bring its own (CallRequest::limits). Unset: default_limits() of
    // the instance's backend.
    std::optional<ActorLimits> limits;
    // Its package sets and where its requirements resolved (PackageCatalog::for_actor);
    // unset: create() resolves them against no sets, so that an actor requiring a package
    // fails to load naming --packages.
    std::optional<actor::ActorPackages> packages;
};

// How a worker's sandbox gets package sets: each set as a shared folder named
// "<language>/<set>".
std::vector<sandbox::SharedDir> package_dirs(const std::vector<actor::PackageSet>& sets);

// The shared folders of every set of `lang` in `catalog`: what an actor that names no sets
// and has no local set gets (the warm pool's default, PoolOptions).
std::vector<sandbox::SharedDir> default_package_dirs(const actor::PackageCatalog& catalog,
                                                     actor::Language lang);

// spec.packages from `catalog` (PackageCatalog::for_actor), with spec.filename as the
// script's path when `script_on_disk`.
Result<void> resolve_packages(InstanceSpec& spec, const actor::PackageCatalog& catalog,
                              bool script_on_disk);

// Reads a script file into a spec (metadata extracted statically, source kept).
Result<InstanceSpec> spec_from_file(const std::filesystem::path& path);
// The same from a script already read; `filename` names it in errors and tracebacks.
Result<InstanceSpec> spec_from_source(std::string source, std::string filename,
                                      actor::Language language);

struct CallOutcome {
    json::object outputs;
    json::object state;  // the committed state after the call
    std::chrono::microseconds duration{0};
    bool new_worker = false;  // a new worker had to be started for this call
    // What the call changed, for a store: keys written (with the value or the expiry
    // time changed) and keys removed (deleted or expired). Both empty: nothing changed.
    std::vector<std::string> changed, removed;
    bool state_changed() const { return !changed.empty() || !removed.empty(); }
};

class Instance {
  public:
    static Result<std::unique_ptr<Instance>> create(sandbox::Backend& backend, InstanceSpec spec);

    // Validates the inputs against the declared inports, then calls the worker under the
    // request's limits, or the instance's when it has none. Blocks until the call ends;
    // it is begin(), then wait().
    Result<CallOutcome> call(const CallRequest& request, const CallEvents& events);

    // The same call without blocking, for an event loop (as Worker::begin_call). begin()
    // returns false, having done nothing, when the call would first have to start a
    // worker and `may_block` is false (starting one blocks: use call() on a thread that
    // may). Then advance() whenever wait_fd() polls readable, and expire() at deadline().
    // One call at a time; errors as for call().
    // The request and events are moved from only when the call begins.
    Result<bool> begin(CallRequest&& request, CallEvents&& events, bool may_block);
    std::optional<Result<CallOutcome>> advance(int timeout_ms = 0);
    Result<CallOutcome> expire();
    // Blocks until the call begun ends.
    Result<CallOutcome> wait();
    // The worker's (Worker::wait_fd); it changes when a new worker starts (worker_serial()
    // tells), -1 without one.
    int wait_fd() const;
    Clock::time_point deadline() const;
    // Between calls, when wait_fd() polls readable: Worker::poll_idle. On an error the
    // worker is gone and the next call starts a new one from the committed state; without
    // a worker there is nothing to do.
    Result<void> poll_idle();

    const actor::ActorMetadata& metadata() const { return spec_.metadata; }
    const ActorLimits& limits() const { return *spec_.limits; }
    const actor::ActorPackages& packages() const { return *spec_.packages; }
    const json::object& state() const { return state_; }
    const StateExpiry& expires() const { return expires_; }
    std::size_t worker_starts() const { return worker_starts_; }
    // Workers of this instance that came from the warm pool.
    std::size_t pooled_starts() const { return pooled_starts_; }
    pid_t worker_pid() const { return worker_ ? worker_->pid() : -1; }
    // Worker::serial of the current worker; 0 without one.
    std::uint64_t worker_serial() const { return worker_ ? worker_->serial() : 0; }

  private:
    Instance(sandbox::Backend& backend, InstanceSpec spec);
    // True when the current worker is alive and now enforces `want` (its limits changed
    // live where the backend can); false when a new one is needed.
    Result<bool> reuse_worker(const sandbox::SandboxLimits& want);
    // A new worker whose sandbox enforces `want`, from the pool when `want` fits it. Blocks.
    Result<void> start_worker(const sandbox::SandboxLimits& want);
    Result<CallOutcome> finish(Result<CallResult> r);
    // Takes a call's changes into state_ when they keep within the state's limits.
    Result<void> apply_changes(CallResult& r, std::optional<json::object> caller_state,
                               CallOutcome& out);
    void recount();
    Result<void> check_inputs(const json::object& inputs) const;

    sandbox::Backend& backend_;
    InstanceSpec spec_;
    std::vector<sandbox::SharedDir> package_dirs_;  // of spec_.packages
    json::object state_;
    StateExpiry expires_;
    // Each key's bytes (the key and its value as JSON) and their sum, for kMaxStateBytes.
    std::map<std::string, std::size_t, std::less<>> key_bytes_;
    std::size_t state_bytes_ = 0;
    std::unique_ptr<Worker> worker_;
    bool worker_in_sync_ = false;  // the worker's committed state equals state_
    std::size_t worker_starts_ = 0;
    std::size_t pooled_starts_ = 0;
    struct Pending {
        std::optional<json::object> caller_state;  // the call runs on it, not on state_
        bool new_worker = false;
    };
    std::optional<Pending> pending_;  // the call running
};

}  // namespace sandflow::runtime
