#include "sandbox/trial_run.hpp"

#include <sys/wait.h>

#include <string>

namespace sandflow::sandbox {

Result<void> trial_run(Backend& backend, int timeout_ms, const TrialFailed& failed) {
    WorkerSpec spec;
    spec.argv = {"/usr/bin/true"};
    auto proc = backend.spawn(spec);
    if (!proc) return tl::unexpected(proc.error());
    TrialEnd end{**proc, {}, false};
    end.status = wait_or_kill(**proc, timeout_ms, &end.killed);
    if (!end.killed && WIFEXITED(end.status.raw) && WEXITSTATUS(end.status.raw) == 0) return {};
    if (failed) return tl::unexpected(failed(end));
    return tl::unexpected(Error(Errc::sandbox_unavailable,
                                "a test sandbox running /usr/bin/true " + end.status.describe() +
                                    " (run `sandflow doctor`)",
                                {{"backend", std::string(backend.name())}}));
}

}  // namespace sandflow::sandbox
