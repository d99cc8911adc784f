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

#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox::mech {

// The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap), read
// once in the parent so that the child does no file parsing.
int last_capability();

ChildFailure drop_all_capabilities(int last_cap);
ChildFailure set_no_new_privs();

}  // namespace sandflow::sandbox::mech
