#include "sandbox/namespace/user_ns.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "sandbox/mechanisms/control_file.hpp"

namespace sandflow::sandbox::ns {

using namespace mech;

IdMapping make_id_mapping() {
    IdMapping m;
    const uid_t uid = ::geteuid();
    const gid_t gid = ::getegid();
    if (uid == 0) {
        m.host_uid = kUnprivilegedHostId;
        m.host_gid = kUnprivilegedHostId;
        m.deny_setgroups = false;
    } else {
        m.host_uid = uid;
        m.host_gid = gid;
        m.deny_setgroups = true;
    }
    m.uid_map = "0 " + std::to_string(m.host_uid) + " 1\n";
    m.gid_map = "0 " + std::to_string(m.host_gid) + " 1\n";
    return m;
}

namespace {

Result<void> write_proc_file(pid_t pid, const char* name, const std::string& text) {
    return write_control_file("/proc/" + std::to_string(pid) + "/" + name, text);
}

}  // namespace

Result<void> write_id_maps(pid_t pid, const IdMapping& mapping) {
    if (mapping.deny_setgroups) {
        if (auto r = write_proc_file(pid, "setgroups", "deny\n"); !r) return r;
    }
    if (auto r = write_proc_file(pid, "uid_map", mapping.uid_map); !r) return r;
    return write_proc_file(pid, "gid_map", mapping.gid_map);
}

ChildFailure become_sandbox_root(const IdMapping& mapping) {
    // Raw system calls: glibc's wrappers broadcast id changes to every thread the parent
    // had (taking its thread-list lock), and the cloned child has only itself.
    if (!mapping.deny_setgroups && ::syscall(SYS_setgroups, 0, nullptr) != 0)
        return failed_at(kStepSetgroups);
    if (::syscall(SYS_setresgid, 0, 0, 0) != 0) return failed_at(kStepSetgid);
    if (::syscall(SYS_setresuid, 0, 0, 0) != 0) return failed_at(kStepSetuid);
    return {};
}

}  // namespace sandflow::sandbox::ns
