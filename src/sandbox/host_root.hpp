// The top level of the host's root that a sandbox's own root reproduces (the namespace
// tier's mount plan, gVisor's root folder): on a merged-/usr host /bin, /lib… are links into
// /usr, recreated as they are; on an older layout some are folders, bound read-only.
#pragma once

#include <string>
#include <vector>

namespace sandflow::sandbox {

struct HostRootEntry {
    std::string name;    // "lib64"
    std::string target;  // a link's target ("usr/lib64"); empty: a folder
};

// Those of /bin, /sbin, /lib, /lib32, /lib64 and /libx32 that the host has as a link or a
// folder, in that order; a link that cannot be read is left out.
std::vector<HostRootEntry> host_root_entries();

}  // namespace sandflow::sandbox
