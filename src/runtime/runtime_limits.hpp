// Named limits of the runtime layer: a worker's output, its wall-clock defaults, and an
// instance's state (docs/actors.md#state). Per-call resource limits are in actor_limits.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace sandflow::limits {

// Worker output captured from the script's stdout/stderr.
inline constexpr std::size_t kMaxLogLineBytes = 8u << 10;     // longer lines are cut
inline constexpr std::size_t kMaxLogBytesPerCall = 1u << 20;  // further log text is dropped

// Wall-clock defaults.
inline constexpr std::chrono::milliseconds kDefaultCallTimeout{30'000};
inline constexpr std::chrono::milliseconds kWorkerStartTimeout{10'000};

// An instance's state. The worker checks them as the script writes, the host again before
// it commits (a worker is untrusted). The whole state travels in one frame to a new worker,
// so it stays well under kMaxFrameBytes (core/limits.hpp).
inline constexpr std::size_t kMaxStateKeys = 10'000;                     // keys per instance
inline constexpr std::size_t kMaxStateKeyBytes = 256;                    // length of one key
inline constexpr std::size_t kMaxStateValueBytes = 1u << 20;             // one value, as JSON
inline constexpr std::size_t kMaxStateBytes = 8u << 20;                  // keys + values, as JSON
inline constexpr std::int64_t kMaxStateTtlMs = 10LL * 365 * 86'400'000;  // expire(): 10 years

}  // namespace sandflow::limits
