// The OCI bundle a gvisor sandbox starts from: the read-only root folder, written once per
// backend and shared by its sandboxes, and each sandbox's config.json.
//
// The root holds nothing of the host's but what is bound into it:
//   /usr                      the host's, bound read-only (served by runsc's gofer)
//   /bin /lib /lib64 /sbin …  the host's merged-/usr links, recreated (read-only binds on
//                             hosts without merged /usr)
//   /etc                      generated: passwd and group naming only the sandbox user,
//                             hostname, hosts, nsswitch.conf, the localtime link, and
//                             read-only binds of the host's ld.so.cache and
//                             /etc/alternatives (Debian's links into /usr)
//   /tmp                      a tmpfs capped at tmpfs_bytes, noexec: the only writable place
//                             and the working directory
//   /packages/<lang>/<set>    the sandbox's package sets (shared_dir.hpp), bound read-only
//   /proc /dev /sys           gVisor's own, emulated by its kernel (nothing of the host's)
// and is itself read-only.
//
// The worker runs as the unprivileged `sandbox` user (uid/gid 65534 inside gVisor's kernel),
// with no capabilities, no_new_privs and the rlimits of its SandboxLimits, which gVisor's
// kernel enforces itself: nofile, nproc (its count of tasks, threads included, stands in for
// the pids limit), fsize, cpu seconds, core 0.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/json.hpp"
#include "sandbox/sandbox_limits.hpp"
#include "sandbox/shared_dir.hpp"

namespace sandflow::sandbox::gvisor {

inline constexpr std::uint32_t kSandboxUid = 65534;
inline constexpr std::uint32_t kSandboxGid = 65534;
inline constexpr const char* kSandboxUser = "sandbox";
inline constexpr const char* kSandboxHostname = "sandflow";

// What of the host's root the sandbox's root reproduces, read once from the host.
struct RootLayout {
    // Top-level links of a merged-/usr host ("bin" -> "usr/bin"), recreated as they are.
    std::vector<std::pair<std::string, std::string>> links;
    // Top-level folders of an older layout (/lib64 as a real folder), bound read-only.
    std::vector<std::string> bound_dirs;
    std::string localtime;  // the target of /etc/localtime when it points under /usr
    bool ld_so_cache = false;
    bool alternatives = false;  // /etc/alternatives is a folder
};
RootLayout read_root_layout();

// Writes the shared root folder at `root` (which must not exist yet): the mount points,
// the links and the generated /etc.
Result<void> write_root(const std::filesystem::path& root, const RootLayout& layout);

struct BundleSpec {
    std::vector<std::string> argv;  // argv[0]: absolute path of the program
    std::vector<std::string> env;
    std::string workdir = "/tmp";
    std::string root;  // absolute path of the shared root folder
    SandboxLimits limits;
    // Tasks of the sandbox's user that are not the worker's (its init): RLIMIT_NPROC gets them
    // on top, as the other tiers do not count their init or supervisor against the pids limit.
    std::uint32_t init_tasks = 0;
    std::vector<SharedDir> shared;  // bound read-only at mounted_path()
};

// The project's seccomp policy as OCI's linux.seccomp, which runsc applies inside gVisor's
// kernel (--oci-seccomp): the calls it denies reach no part of gVisor's kernel either.
json::object oci_seccomp();

// The text of config.json (OCI runtime spec 1.0) for one sandbox.
std::string oci_config(const BundleSpec& spec, const RootLayout& layout);

}  // namespace sandflow::sandbox::gvisor
