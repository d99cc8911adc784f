// A trial run: what each backend's probe() does to learn whether it can start a sandbox on
// this host. It starts one running /usr/bin/true, which exits at once: any other end (a
// status other than 0, a signal, no end within the time given) means the sandbox is broken.
#pragma once

#include <functional>
#include <memory>

#include "core/error.hpp"
#include "sandbox/backend.hpp"

namespace sandflow::sandbox {

// Time enough for a sandbox that starts in milliseconds (the namespace and landlock tiers).
inline constexpr int kTrialTimeoutMs = 5'000;

// How the trial sandbox ended when it did not exit with 0.
struct TrialEnd {
    Process& process;  // ended and reaped: what is left on its stderr can still be read
    ExitStatus status;
    bool killed = false;  // it did not end within the time given
};
// The error for such an end; unset: Errc::sandbox_unavailable naming the status, the
// backend and `sandflow doctor`.
using TrialFailed = std::function<Error(const TrialEnd&)>;

// Starts one sandbox of `backend` running /usr/bin/true and waits up to `timeout_ms` for it
// (then kills it). Nothing when it exits with 0; the error of starting it, or `failed`'s.
Result<void> trial_run(Backend& backend, int timeout_ms, const TrialFailed& failed = {});

// The same on a backend just made (its create()), passing on the error of making it.
template <class B>
Result<void> trial_run(const Result<std::unique_ptr<B>>& backend, int timeout_ms,
                       const TrialFailed& failed = {}) {
    if (!backend) return tl::unexpected(backend.error());
    return trial_run(static_cast<Backend&>(**backend), timeout_ms, failed);
}

}  // namespace sandflow::sandbox
