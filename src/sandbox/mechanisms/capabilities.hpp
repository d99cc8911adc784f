// Capabilities: the sandbox keeps none.
//
// The child has every capability of its own user namespace (and none on the host) until
// this runs. drop_all_capabilities() locks the securebits (so that uid 0 inside never
// regains capabilities through execve or setuid), empties the bounding set (so no file can
// grant any), clears the ambient set, then the effective, permitted and inheritable sets.
// set_no_new_privs() makes execve unable to raise privileges (setuid and file-capability
// binaries run without them) and is what lets an unprivileged process install seccomp.
// Both run in the child between clone() and execve(): system calls only.
#pragma once

#include <sys/types.h>

#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox::mech {

// The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap), read
// once in the parent so that the child does no file parsing.
int last_capability();

// Whether this process holds `cap` in its effective set (parent side).
bool holds_capability(int cap);

ChildFailure drop_all_capabilities(int last_cap);
ChildFailure set_no_new_privs();

// The landlock tier (no user namespace): the worker starts with the runtime's own
// credentials (root with a container's capabilities, or an ordinary user with none) and
// ends with none, as `to` when a uid switch is asked for. With CAP_SETPCAP the securebits
// are locked (uid 0 gains nothing from execve; setuid clears every capability) and the
// bounding set is emptied first; without it there is nothing to drop but the bounding set,
// which only bounds what execve of a file-capability binary grants, and no_new_privs
// stops that. Then the supplementary groups go, gid and uid switch, and every set is
// cleared.
struct UserSwitch {
    bool enabled = false;
    uid_t uid = 0;
    gid_t gid = 0;
};
ChildFailure drop_privileges(int last_cap, bool holds_setpcap, const UserSwitch& to);

}  // namespace sandflow::sandbox::mech
