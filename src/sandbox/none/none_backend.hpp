// The `none` backend: a plain subprocess with no isolation at all. The worker can read and
// write whatever the runtime can, reach the network and signal the runtime's processes.
// It exists for development on hosts where no sandbox works; it is never chosen
// implicitly and every start logs a warning.
#pragma once

#include "sandbox/backend.hpp"

namespace sandflow::sandbox {

class NoneBackend final : public Backend {
  public:
    std::string_view name() const override { return "none"; }
    NoneBackend() = default;
    explicit NoneBackend(const SandboxLimits& limits) : limits_(limits) {}
    IsolationLevel level() const override { return IsolationLevel::none; }
    // Nothing here is enforced (only the runtime's own limits are); they are kept so that
    // instances and the warm pool agree on what a default sandbox is.
    SandboxLimits default_limits() const override { return limits_; }
    // The worker reads the host's tree: a shared folder is where it lies.
    std::string shared_dir_path(const SharedDir& dir) const override { return dir.host; }
    Result<std::unique_ptr<Process>> spawn(const WorkerSpec& spec) override;

  private:
    SandboxLimits limits_;
};

}  // namespace sandflow::sandbox
