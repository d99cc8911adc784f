// The warm pool (docs/sandbox.md): sandboxes started ahead of need, each with
// its interpreter and the SDK loaded and its hello received, waiting for a script.
//
// A new actor instance takes one (runtime::Instance does, when given a pool) and sends it
// its script; the worker then belongs to that instance and is never handed to another.
// Taking is a queue pop: the cost of a cold start (sandbox set-up, interpreter start-up,
// SDK import) moves off the load path. One background thread refills each language's
// queue to its configured size, shortly after the takes stop (limits::kPoolRefillDelay,
// kPoolRefillMaxWait); a language of size 0 is not pooled.
//
// Limits: pooled sandboxes are started with the backend's default sandbox limits. Only
// instances that run on those defaults take from the pool; others start cold.
//
// Package sets: a sandbox is given its package sets when it starts, so each distinct list of
// sets has a queue of its own. Each language's queue for its default sets (PoolOptions) is
// filled at once; a list an instance asks for that has no queue yet gets one, of the
// language's size, after that first (cold) start, up to limits::kMaxPoolPackageLists
// lists besides the defaults.
//
// Lifetime: workers are spawned from the refill thread with PR_SET_PDEATHSIG, which fires
// when that thread ends, so the pool must outlive every instance that took a worker from
// it. Destroying the pool stops the refill thread and kills the idle workers.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "actor/metadata.hpp"
#include "runtime/runtime_limits.hpp"
#include "runtime/worker.hpp"
#include "sandbox/backend.hpp"

namespace sandflow::limits {
// Idle sandboxes one language may keep; each holds an interpreter (~10 MB for python3,
// ~60 MB for node).
inline constexpr std::size_t kMaxPoolSize = 256;
inline constexpr std::size_t kDefaultPythonPool = 2;
inline constexpr std::size_t kDefaultNodePool = 1;
// After a failed start the refill thread waits this long before trying again, so a host
// that cannot start sandboxes is not hammered.
inline constexpr std::chrono::milliseconds kPoolRetryDelay{2'000};
// After a take the refill waits this long: a new sandbox starting takes both cores of a
// small host for tens of milliseconds, and the instance that just took a worker is loading
// its script and making its first call. Under a steady stream of takes it waits no longer
// than kPoolRefillMaxWait after the queue first fell short.
inline constexpr std::chrono::milliseconds kPoolRefillDelay{50};
inline constexpr std::chrono::milliseconds kPoolRefillMaxWait{200};
// Queues for package-set lists other than each language's default (see above).
inline constexpr std::size_t kMaxPoolPackageLists = 8;
}  // namespace sandflow::limits

namespace sandflow::runtime {

struct PoolOptions {
    std::size_t python = limits::kDefaultPythonPool;  // idle sandboxes kept per language
    std::size_t node = limits::kDefaultNodePool;
    std::chrono::milliseconds start_timeout = limits::kWorkerStartTimeout;
    // The package sets of instances that name none (every set of their language).
    std::vector<sandbox::SharedDir> python_packages, node_packages;
};

struct PoolStats {
    struct Language {
        std::size_t target = 0;  // configured size
        std::size_t idle = 0;    // ready now
        std::size_t taken = 0;   // handed to instances
        std::size_t missed = 0;  // take() found the queue empty
        std::size_t started = 0;
        std::size_t failed = 0;         // starts that failed (the last error is logged)
        std::size_t package_lists = 0;  // queues, one per distinct list of package sets
    };
    Language python, node;
};

class WarmPool {
  public:
    // Starts the refill thread; it fills every queue at once. `backend` must outlive the
    // pool. Sizes above limits::kMaxPoolSize are an error.
    static Result<std::unique_ptr<WarmPool>> create(sandbox::Backend& backend, PoolOptions options);
    ~WarmPool();
    WarmPool(const WarmPool&) = delete;
    WarmPool& operator=(const WarmPool&) = delete;

    // A started, idle worker for `language` whose sandbox has `packages`, or nullptr when
    // none is ready (the caller starts one cold). Wakes the refill thread, which makes a
    // queue for a new list of sets. Workers that died while idle are dropped.
    std::unique_ptr<Worker> take(actor::Language language,
                                 const std::vector<sandbox::SharedDir>& packages = {});

    // Waits until every queue holds its configured size, or the deadline passes; for
    // tests, benchmarks and a server that wants to be warm before it listens.
    bool wait_full(Clock::time_point deadline);

    PoolStats stats() const;
    sandbox::Backend& backend() const { return backend_; }

  private:
    WarmPool(sandbox::Backend& backend, PoolOptions options);
    void refill_loop();
    std::size_t size_of(actor::Language language) const;  // its configured queue size
    struct Queue {
        actor::Language language = actor::Language::python;
        std::vector<sandbox::SharedDir> packages;
        std::size_t target = 0;
        std::deque<std::unique_ptr<Worker>> idle;
        Clock::time_point short_since{};  // the first take since the queue was last full
        Clock::time_point retry_at{};     // after a failed start, when to try again
        PoolStats::Language stats;
    };
    // The queue of that list of sets; nullptr when there is none.
    Queue* queue(actor::Language language, const std::vector<sandbox::SharedDir>& packages);

    sandbox::Backend& backend_;
    PoolOptions options_;
    mutable std::mutex mu_;
    std::condition_variable wake_, changed_;
    // Each language's default first; a deque, so that a queue keeps its place while the
    // refill thread, unlocked, starts a worker for it.
    std::deque<Queue> queues_;
    bool stop_ = false;
    Clock::time_point last_take_{};
    std::thread thread_;
};

}  // namespace sandflow::runtime
