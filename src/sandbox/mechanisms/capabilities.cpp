#include "sandbox/mechanisms/capabilities.hpp"

#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>

namespace sandflow::sandbox::mech {

int last_capability() {
    int last = CAP_LAST_CAP;
    if (std::FILE* f = std::fopen("/proc/sys/kernel/cap_last_cap", "re")) {
        int v = 0;
        if (std::fscanf(f, "%d", &v) == 1 && v > 0 && v < 64) last = v;
        std::fclose(f);
    }
    return last;
}

bool holds_capability(int cap) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &header, data) != 0) return false;
    return (data[cap / 32].effective >> (cap % 32)) & 1u;
}

namespace {

// Every securebit locked, and uid 0 given nothing by execve (NOROOT) nor ambient raises.
// SECBIT_NO_SETUID_FIXUP itself is the callers' choice.
constexpr unsigned long kLockedSecurebits =
    SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
    SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

// Sets `bits` (nothing can undo them later), then empties the bounding set.
ChildFailure lock_securebits_and_bounding_set(unsigned long bits, int last_cap) {
    if (::prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0) return failed_at(kStepSecurebits);
    for (int cap = 0; cap <= last_cap; ++cap) {
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
            return failed_at(kStepBoundingSet);
    }
    return {};
}

ChildFailure clear_ambient_set() {
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        return failed_at(kStepCapset);
    return {};
}

// The effective, permitted and inheritable sets, emptied.
ChildFailure clear_capability_sets() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capset, &header, data) != 0) return failed_at(kStepCapset);
    return {};
}

}  // namespace

ChildFailure drop_privileges(int last_cap, bool holds_setpcap, const UserSwitch& to) {
    // SECBIT_NO_SETUID_FIXUP stays off (and locked): the uid switch below clears the
    // permitted and effective sets.
    if (holds_setpcap)
        if (auto f = lock_securebits_and_bounding_set(kLockedSecurebits, last_cap)) return f;
    if (auto f = clear_ambient_set()) return f;
    if (to.enabled) {
        // Raw system calls: glibc's wrappers broadcast id changes to every thread the
        // parent had, and the cloned child has only itself.
        if (::syscall(SYS_setgroups, 0, nullptr) != 0) return failed_at(kStepSetgroups);
        if (::syscall(SYS_setresgid, to.gid, to.gid, to.gid) != 0) return failed_at(kStepSetgid);
        if (::syscall(SYS_setresuid, to.uid, to.uid, to.uid) != 0) return failed_at(kStepSetuid);
    }
    return clear_capability_sets();
}

ChildFailure drop_all_capabilities(int last_cap) {
    // Uid 0 also keeps no capabilities across uid changes.
    if (auto f =
            lock_securebits_and_bounding_set(kLockedSecurebits | SECBIT_NO_SETUID_FIXUP, last_cap))
        return f;
    if (auto f = clear_ambient_set()) return f;
    return clear_capability_sets();
}

ChildFailure set_no_new_privs() {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return failed_at(kStepNoNewPrivs);
    return {};
}

}  // namespace sandflow::sandbox::mech
