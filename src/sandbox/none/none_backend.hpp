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
    bool isolates() const override { return false; }
    // Nothing is enforced: the limits are only what the runtime itself checks.
    SandboxLimits default_limits() const override { return {}; }
    Result<std::unique_ptr<Process>> spawn(const WorkerSpec& spec) override;
};

}  // namespace sandflow::sandbox
