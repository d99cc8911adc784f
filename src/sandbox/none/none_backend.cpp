#include "sandbox/none/none_backend.hpp"

namespace sandflow::sandbox {

Result<std::unique_ptr<Process>> NoneBackend::spawn(const WorkerSpec& spec) {
    if (auto ok = check_shared_dirs(spec.shared); !ok) return tl::unexpected(ok.error());
    SpawnSpec s;
    s.argv = spec.argv;
    s.env = clean_worker_env();
    s.workdir = spec.workdir;
    s.timeline = spec.timeline;
    return spawn_process(s, ChildSetup{});
}

}  // namespace sandflow::sandbox
