// A record of one worker's cold start, step by step, for `sandbox_bench --timeline`: where
// the time between "start a worker" and "its first result" goes. The runtime, the sandbox's
// pre-exec code (every process it forks before execve) and the worker (through its frames,
// runtime/worker.cpp) mark steps with CLOCK_MONOTONIC times into one page of shared memory,
// mapped before clone() and inherited by the sandbox's processes until their execve. Marking
// is a clock read (vDSO) and two stores: no allocation, no lock, async-signal-safe, so the
// child may mark between clone() and execve(). A spawn without a timeline (the default, every
// production path) marks nothing and pays one null check per step.
//
// Limits: at most kMaxMarks marks per start (later ones are dropped); the page is visible to
// the sandbox's own processes until they execve, so only code of ours writes it; the times
// are CLOCK_MONOTONIC, shared by every namespace we create (there is no time namespace).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace sandflow::sandbox {

// Every step that is marked, roughly in the order a cold start passes them. Who marks:
// (r) the runtime's thread, (c) the sandbox's pre-exec code, (w) the worker, reported in its
// frames and marked by the runtime with the worker's own clock reading.
enum class StartMark : std::uint8_t {
    spawn_begin,        // (r) Worker::spawn called
    plans_built,        // (r) the backend's per-spawn plans built (argv, env, limits, folders)
    cgroups_created,    // (r) the sandbox's groups made and their limits written
    clone,              // (r) just before clone()
    child_running,      // (c) the child's first instruction
    id_maps_written,    // (r) uid_map / gid_map written (namespace)
    cgroups_attached,   // (r) the runtime moved the child into its groups
    released,           // (r) the start byte written
    child_released,     // (c) the child read the start byte
    cgroups_entered,    // (c) the child moved itself into its groups
    became_root,        // (c) uid/gid 0 in the user namespace (namespace)
    cgroup_namespace,   // (c) unshare(CLONE_NEWCGROUP) (namespace)
    mounts_done,        // (c) the mount plan and pivot_root (namespace)
    hostname_set,       // (c) (namespace)
    worker_forked,      // (c) the worker process's first instruction (after init/supervisor)
    ids_dropped,        // (c) capabilities dropped and ids switched
    rlimits_set,        // (c)
    landlock_applied,   // (c)
    seccomp_installed,  // (c)
    execve,             // (c) just before execve
    exec_reported,      // (r) the report pipe closed: the worker's execve succeeded
    interpreter_up,     // (w) the first instruction of the worker's own code
    sdk_ready,          // (w) the SDK is set up; the hello goes out
    hello_received,     // (r)
    load_sent,          // (r)
    load_received,      // (w)
    script_loaded,      // (w) the script ran and was checked; `loaded` goes out
    loaded_received,    // (r)
    call_sent,          // (r)
    call_received,      // (w)
    result_sent,        // (w)
    result_received,    // (r)
    count_
};

std::string_view start_mark_name(StartMark m);

// CLOCK_MONOTONIC in nanoseconds; async-signal-safe.
std::int64_t monotonic_ns() noexcept;

class StartTimeline {
  public:
    static constexpr std::size_t kMaxMarks = 120;
    struct Entry {
        StartMark mark;
        std::int64_t ns;
    };

    // Maps the shared page; Errc::internal when mmap fails.
    static Result<std::unique_ptr<StartTimeline>> create();
    ~StartTimeline();
    StartTimeline(const StartTimeline&) = delete;
    StartTimeline& operator=(const StartTimeline&) = delete;

    // Records `m` now (or at `ns`, a CLOCK_MONOTONIC reading taken elsewhere: the worker's).
    // Async-signal-safe; a full page drops the mark.
    void mark(StartMark m) noexcept { mark_at(m, monotonic_ns()); }
    void mark_at(StartMark m, std::int64_t ns) noexcept;

    // The marks so far, in time order.
    std::vector<Entry> entries() const;
    // Starts a new record (the page is reused between starts).
    void clear() noexcept;

  private:
    struct Page {
        std::atomic<std::uint32_t> count;
        Entry entries[kMaxMarks];
    };
    explicit StartTimeline(Page* page) : page_(page) {}
    Page* page_;
};

// Marks `m` on `t` when there is a timeline: the call sites' one-liner.
inline void mark(StartTimeline* t, StartMark m) noexcept {
    if (t) t->mark(m);
}

}  // namespace sandflow::sandbox
