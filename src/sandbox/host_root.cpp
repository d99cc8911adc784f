#include "sandbox/host_root.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>

namespace sandflow::sandbox {

namespace {
constexpr const char* kRootLinks[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
}  // namespace

std::vector<HostRootEntry> host_root_entries() {
    std::vector<HostRootEntry> out;
    for (const char* name : kRootLinks) {
        const std::string host = std::string("/") + name;
        struct stat st {};
        if (::lstat(host.c_str(), &st) != 0) continue;
        if (S_ISLNK(st.st_mode)) {
            char buf[PATH_MAX];
            const ssize_t n = ::readlink(host.c_str(), buf, sizeof buf - 1);
            if (n > 0) out.push_back({name, std::string(buf, static_cast<std::size_t>(n))});
        } else if (S_ISDIR(st.st_mode)) {
            out.push_back({name, {}});
        }
    }
    return out;
}

}  // namespace sandflow::sandbox
