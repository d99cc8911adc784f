// The sandbox backend interface (DESIGN §5, docs/sandbox.md).
//
// A backend starts one worker process per actor instance, isolated as well as it can,
// with the channel on channel_fd_in_worker() (kChannelFd unless the backend says otherwise).
// Backends: `namespace` (the default on Linux with user namespaces; sandbox/namespace/),
// `gvisor` (gVisor's user-space kernel through runsc; sandbox/gvisor/, chosen by name only)
// and `none` (no isolation; development only, and only with an explicit opt-in).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "sandbox/process.hpp"
#include "sandbox/sandbox_limits.hpp"

namespace sandflow::sandbox {

// What runs inside: the worker's command line and the folder it starts in.
struct WorkerSpec {
    std::vector<std::string> argv;  // argv[0]: absolute path of the interpreter
    std::string workdir = "/tmp";
    // The sandbox's limits; unset: the backend's defaults (default_limits()).
    std::optional<SandboxLimits> limits;
};

class Backend {
  public:
    virtual ~Backend() = default;
    virtual std::string_view name() const = 0;
    // False only for `none`: the worker runs with the runtime's own privileges.
    virtual bool isolates() const = 0;
    // What a sandbox gets when WorkerSpec::limits is unset (what the warm pool starts).
    virtual SandboxLimits default_limits() const = 0;
    // The descriptor on which the worker finds its channel; WorkerSpec::argv names it last.
    // kChannelFd, or 0 where a sandbox can hand its worker only the standard descriptors
    // (gvisor): the channel is then the worker's stdin, and the SDK shims move it off 0 and
    // put /dev/null there, so that a worker sees the same descriptors on every backend.
    virtual int channel_fd_in_worker() const { return kChannelFd; }
    virtual Result<std::unique_ptr<Process>> spawn(const WorkerSpec& spec) = 0;
};

struct BackendOptions {
    // `none` refuses to start unless this is set (--insecure-no-sandbox).
    bool allow_insecure = false;
    // The limits sandboxes get when their WorkerSpec names none (`none` enforces none).
    SandboxLimits limits;
    // gvisor: the platform runsc runs the sentry on; empty: gvisor::kDefaultPlatform.
    std::string gvisor_platform;
};

// Names accepted by make_backend, strongest first.
std::vector<std::string_view> backend_names();

// The backend called `name`. Unknown names, and `none` without allow_insecure, are errors
// whose message says how to fix them.
Result<std::unique_ptr<Backend>> make_backend(std::string_view name, const BackendOptions& options);

// The environment every worker gets: nothing from the runtime's own.
std::vector<std::string> clean_worker_env();

}  // namespace sandflow::sandbox
