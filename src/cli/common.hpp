// What every subcommand shares: exit statuses, error printing, backend selection.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "actor/package_sets.hpp"
#include "cli/exit_status.hpp"
#include "core/error.hpp"
#include "sandbox/backend.hpp"

namespace sandflow::cli {

// Prints "sandflow: error: <message>" on stderr and returns exit_status_for(e).
int report(const Error& e);

struct BackendFlags {
    std::string name = "auto";
    std::string isolation = "process";
    bool insecure_no_sandbox = false;
    std::string gvisor_platform;  // empty: the gvisor backend's default
};
void add_backend_flags(CLI::App& cmd, BackendFlags& flags);
// `limits`: what its sandboxes get by default (and its warm pool holds).
Result<std::unique_ptr<sandbox::Backend>> open_backend(const BackendFlags& flags,
                                                       const sandbox::SandboxLimits& limits = {});

// The package sets scripts may import from (actor/package_sets.hpp).
struct PackageFlags {
    std::vector<std::string> sets;  // --packages NAME=PATH | system
    bool local = false;             // --local-packages
};
void add_package_flags(CLI::App& cmd, PackageFlags& flags);
Result<std::shared_ptr<const actor::PackageCatalog>> open_packages(const PackageFlags& flags);

// Subcommands: each registers itself and returns the status of its run.
void register_inspect(CLI::App& app, int& status);
void register_exec(CLI::App& app, int& status);
void register_doctor(CLI::App& app, int& status);
void register_serve(CLI::App& app, int& status);
void register_call(CLI::App& app, int& status);
void register_run(CLI::App& app, int& status);

}  // namespace sandflow::cli
