#include "cli/common.hpp"

#include <cstdio>

#include "core/log.hpp"
#include "sandbox/gvisor/gvisor_backend.hpp"

namespace sandflow::cli {

int report(const Error& e) {
    std::fprintf(stderr, "sandflow: error: %s\n", e.message.c_str());
    return exit_status_for(e);
}

void add_backend_flags(CLI::App& cmd, BackendFlags& flags) {
    cmd.add_option("--backend", flags.name,
                   "Sandbox backend: auto (the fastest that runs here and meets --isolation), "
                   "microvm, gvisor, namespace, landlock, or none")
        ->capture_default_str();
    cmd.add_option("--isolation", flags.isolation,
                   "The isolation level scripts need, weakest first: process (landlock and up), "
                   "os (namespace and up), kernel (gvisor, microvm), vm (microvm)")
        ->capture_default_str();
    cmd.add_option("--gvisor-platform", flags.gvisor_platform,
                   "gvisor backend: the platform runsc runs on (ptrace, systrap, kvm)")
        ->default_str(std::string(sandbox::gvisor::kDefaultPlatform));
    cmd.add_flag("--insecure-no-sandbox", flags.insecure_no_sandbox,
                 "Allow the 'none' backend: run scripts as plain subprocesses with NO isolation "
                 "(trusted scripts, development only)");
}

void add_package_flags(CLI::App& cmd, PackageFlags& flags) {
    cmd.add_option("--packages", flags.sets,
                   "A package set scripts may import from, read-only: NAME=PATH (a "
                   "site-packages folder, or a folder named node_modules), or 'system' for the "
                   "host's Debian packages; repeatable")
        ->type_name("NAME=PATH");
    cmd.add_flag("--local-packages", flags.local,
                 "Also let each script use the packages beside it: node_modules, "
                 "__pypackages__/X.Y/lib or .venv (a set named 'local')");
}

Result<std::shared_ptr<const actor::PackageCatalog>> open_packages(const PackageFlags& flags) {
    return actor::PackageCatalog::create(flags.sets, flags.local);
}

Result<std::unique_ptr<sandbox::Backend>> open_backend(const BackendFlags& flags,
                                                       const sandbox::SandboxLimits& limits) {
    sandbox::BackendOptions opts;
    opts.allow_insecure = flags.insecure_no_sandbox;
    opts.limits = limits;
    opts.gvisor_platform = flags.gvisor_platform;
    auto level = sandbox::parse_level(flags.isolation);
    if (!level) return tl::unexpected(level.error());
    opts.isolation = *level;
    return sandbox::make_backend(flags.name, opts);
}

}  // namespace sandflow::cli
