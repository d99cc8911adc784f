// The limits one call runs under (docs/sandbox.md, "Limits"): named defaults, settable per
// actor (its metadata's "limits", or the load request's) and per call, never above the
// maxima the runtime was started with. Crossing any of them kills the whole sandbox and
// fails the call with Errc::limit_exceeded naming the limit and its value; the next call
// gets a new sandbox with the last committed state.
//
// Who enforces what: the worker driver (runtime/worker.cpp) the wall clock, the output
// bytes and the frame size; the sandbox backend the rest (cgroups, tmpfs, rlimits).
//
// On the wire and in metadata the names are: timeout_ms, memory_bytes, pids, cpu_milli,
// tmpfs_bytes, output_bytes, frame_bytes; every value is a positive integer.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actor/metadata.hpp"
#include "core/error.hpp"
#include "core/json.hpp"
#include "core/limits.hpp"
#include "runtime/runtime_limits.hpp"
#include "sandbox/backend.hpp"
#include "sandbox/sandbox_limits.hpp"

namespace sandflow::limits {
// Bytes one call may produce: its outputs' JSON plus every log line (stdout, stderr,
// context.log), counted before the log cap (limits::kMaxLogBytesPerCall) drops
// text. The frame limit bounds a single output; this bounds a call that streams many.
inline constexpr std::uint64_t kDefaultOutputBytes = 64ull << 20;

// The maxima a runtime allows when it is not told otherwise (serve --max-limit).
inline constexpr std::chrono::milliseconds kMaxTimeout{3'600'000};
inline constexpr std::uint64_t kMaxMemoryBytes = 4ull << 30;
inline constexpr std::uint32_t kMaxPids = 1024;
inline constexpr std::uint32_t kMaxCpuMilli = 64'000;  // 64 CPUs
inline constexpr std::uint64_t kMaxTmpfsBytes = 1ull << 30;
inline constexpr std::uint64_t kMaxOutputBytes = 1ull << 30;
// Below these a sandbox cannot start an interpreter; asking for less is an error.
inline constexpr std::uint64_t kMinMemoryBytes = 16ull << 20;
inline constexpr std::uint32_t kMinPids = 4;
inline constexpr std::uint64_t kMinFrameBytes = 4u << 10;
}  // namespace sandflow::limits

namespace sandflow::runtime {

struct ActorLimits {
    std::chrono::milliseconds timeout = limits::kDefaultCallTimeout;
    std::uint64_t output_bytes = limits::kDefaultOutputBytes;
    std::uint64_t frame_bytes = limits::kMaxFrameBytes;
    sandbox::SandboxLimits sandbox;

    bool operator==(const ActorLimits&) const = default;
    // {"timeout_ms": ..., "memory_bytes": ..., ...}: every named limit.
    json::object to_json() const;
};

// The largest values a request may ask for.
ActorLimits default_maxima();

// The named defaults, with the sandbox limits `backend` starts its sandboxes with (what
// its warm pool holds).
ActorLimits default_limits(const sandbox::Backend& backend);

// Limits a request or a metadata block names; unset ones are inherited.
struct LimitOverrides {
    std::optional<std::uint64_t> timeout_ms, memory_bytes, pids, cpu_milli, tmpfs_bytes,
        output_bytes, frame_bytes;
    bool empty() const;
};

// Reads {"memory_bytes": 134217728, ...}. `where` names the source in errors
// ("params.limits", "the metadata of double.py"). Unknown names and values that are not
// positive integers are Errc::invalid_argument.
Result<LimitOverrides> parse_limits(const json::value& v, std::string_view where);

// `base` with `overrides` applied. A value above `maxima` (or below the minimum that can
// run an interpreter) is Errc::invalid_argument naming the limit, the value, the bound,
// and how to get more.
Result<ActorLimits> apply_limits(ActorLimits base, const LimitOverrides& overrides,
                                 const ActorLimits& maxima, std::string_view where);

// `defaults` with the limits the actor's metadata declares ("limits": {...}) applied.
Result<ActorLimits> limits_for(const actor::ActorMetadata& metadata, const ActorLimits& defaults,
                               const ActorLimits& maxima);

// Reads NAME=VALUE (a --limit / --max-limit argument) into `overrides`.
Result<void> parse_limit_assignment(std::string_view text, LimitOverrides& overrides);

// A runtime's defaults and maxima from --limit and --max-limit assignments: the maxima
// stay within what Sandflow itself can carry (the frame protocol's size, the counters'
// widths), the defaults within the maxima.
struct LimitPolicy {
    ActorLimits defaults;
    ActorLimits maxima = default_maxima();
};
Result<LimitPolicy> limit_policy(const std::vector<std::string>& defaults,
                                 const std::vector<std::string>& maxima);

}  // namespace sandflow::runtime
