// The namespaces that need no set-up of their own beyond being new: network, ipc, uts,
// cgroup (user, pid and mount have their own files).
//
// - network: a new, empty network namespace: no interface but a loopback that stays
//   down, so nothing (the host's 127.0.0.1 and abstract unix sockets included) can be
//   reached. Abstract unix sockets are scoped to the network namespace.
// - ipc: System V IPC objects and POSIX message queues of the host are out of sight.
// - uts: the sandbox's hostname is "sandflow", whatever the host is called.
// - cgroup: entered with unshare() in the child after the parent has put it into its
//   own cgroups, so /proc/self/cgroup shows "/" and not the runtime's hierarchy.
#pragma once

#include <sched.h>

#include <string>

#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox::ns {

using mech::ChildFailure;

// Namespaces created by the clone() that starts a sandbox; the cgroup one comes later.
inline constexpr unsigned long kCloneNamespaces =
    CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;

inline constexpr const char* kSandboxHostname = "sandflow";

// Child side.
ChildFailure enter_cgroup_namespace();
ChildFailure set_hostname(const std::string& name);

}  // namespace sandflow::sandbox::ns
