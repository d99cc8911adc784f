// Writing a kernel control file (cgroup files, /proc/<pid>/uid_map and friends): the
// kernel takes one value per write(2) call, so the text goes in a single write, and a
// short write is an error.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "core/error.hpp"

namespace sandflow::sandbox::mech {

inline Result<void> write_control_file(const std::string& path, const std::string& text) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return tl::unexpected(system_error("open " + path, errno));
    const ssize_t n = ::write(fd, text.data(), text.size());
    const int err = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(text.size()))
        return tl::unexpected(system_error("write '" + text + "' to " + path, n < 0 ? err : EIO));
    return {};
}

}  // namespace sandflow::sandbox::mech
