// Resource limits of one sandbox, with their named defaults (docs/sandbox.md).
//
// The wall clock per call and the output bytes per call are enforced by the runtime
// (limits::kDefaultCallTimeout, limits::kMaxLogBytesPerCall); the ones here are enforced
// by the kernel around the whole sandbox: cgroups where this host lets Sandflow write
// them, rlimits always. The defaults fit one interpreter serving ordinary actor calls:
// node needs ~60 MB resident and ~11 threads at rest, python3 ~10 MB and one thread.
#pragma once

#include <cstdint>

#include "core/error.hpp"

namespace sandflow::sandbox {

namespace limits {
inline constexpr std::uint64_t kMemoryBytes = 256ull << 20;  // cgroup memory (+swap) limit
inline constexpr std::uint32_t kPids = 64;                   // processes and threads, all
inline constexpr std::uint32_t kCpuMilli = 1000;             // cgroup CPU quota: 1000 = 1 CPU
inline constexpr std::uint64_t kTmpfsBytes = 64ull << 20;    // /tmp, the only writable place
inline constexpr std::uint64_t kTmpfsInodes = 4096;          // files and folders in /tmp
inline constexpr std::uint32_t kOpenFiles = 256;             // RLIMIT_NOFILE
// RLIMIT_CPU counts over the sandbox's whole life, not per call (the wall clock per call
// is the runtime's): a persistent worker that has burnt this much CPU is killed, and the
// next call starts a fresh one.
inline constexpr std::uint32_t kCpuSeconds = 3600;
// Where no cgroup can be written this is the only cap on processes; the kernel counts it
// per user namespace (Linux >= 5.14), so each sandbox has its own.
inline constexpr std::uint32_t kNproc = kPids;
}  // namespace limits

struct SandboxLimits {
    std::uint64_t memory_bytes = limits::kMemoryBytes;
    std::uint32_t pids = limits::kPids;
    std::uint32_t cpu_milli = limits::kCpuMilli;
    std::uint64_t tmpfs_bytes = limits::kTmpfsBytes;
    std::uint64_t tmpfs_inodes = limits::kTmpfsInodes;
    std::uint32_t open_files = limits::kOpenFiles;
    std::uint32_t cpu_seconds = limits::kCpuSeconds;
    std::uint32_t nproc = limits::kNproc;

    bool operator==(const SandboxLimits&) const = default;
    // Equal in the limits that are fixed when a sandbox starts (tmpfs, rlimits); the rest
    // (memory, pids, cpu) a cgroup can change while it runs.
    bool same_fixed(const SandboxLimits& o) const {
        return tmpfs_bytes == o.tmpfs_bytes && tmpfs_inodes == o.tmpfs_inodes &&
               open_files == o.open_files && cpu_seconds == o.cpu_seconds && nproc == o.nproc;
    }
};

// Errc::invalid_argument naming the first limit that is 0. A zero would not mean "nothing":
// tmpfs (the namespace tier's, gVisor's) reads size=0 and nr_inodes=0 as unlimited, the
// landlock tier's folder watcher would kill the sandbox at its first file, and the rest would leave
// no sandbox able to start.
Result<void> check_positive(const SandboxLimits& l);

}  // namespace sandflow::sandbox
