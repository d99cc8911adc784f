#include "sandbox/shared_dir.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <system_error>

namespace sandflow::sandbox {

namespace {

// Live kernel state, never a package folder; nor may a folder hold the host's whole tree.
constexpr std::string_view kRefused[] = {"/proc", "/sys", "/dev"};

bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

Result<void> check_name(std::string_view name) {
    const auto slash = name.find('/');
    auto part_ok = [](std::string_view p) {
        return !p.empty() && p != "." && p != ".." && std::all_of(p.begin(), p.end(), name_char);
    };
    if (name.size() > limits::kMaxSharedDirNameBytes || slash == std::string_view::npos ||
        !part_ok(name.substr(0, slash)) || !part_ok(name.substr(slash + 1)))
        return fail(Errc::invalid_argument,
                    "shared folder name '" + std::string(name) +
                        "' must be <language>/<set> of letters, digits, '.', '_' and '-', at "
                        "most " +
                        std::to_string(limits::kMaxSharedDirNameBytes) + " bytes");
    return {};
}

std::string octal(unsigned mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", mode);
    return buf;
}

bool under(std::string_view path, std::string_view dir) {
    return path == dir ||
           (path.starts_with(dir) && path.size() > dir.size() && path[dir.size()] == '/');
}

}  // namespace

std::string mounted_path(const SharedDir& dir) {
    return std::string(kSharedDirRoot) + "/" + dir.name;
}

Result<void> check_shared_dirs(const std::vector<SharedDir>& dirs) {
    if (dirs.size() > limits::kMaxSharedDirs)
        return fail(Errc::invalid_argument,
                    std::to_string(dirs.size()) + " package folders for one sandbox; at most " +
                        std::to_string(limits::kMaxSharedDirs) +
                        ": let the actor draw from fewer sets (its \"packages\" field)");
    std::set<std::string_view> names;
    for (const auto& d : dirs) {
        if (auto ok = check_name(d.name); !ok) return ok;
        if (!names.insert(d.name).second)
            return fail(Errc::invalid_argument,
                        "shared folder name '" + d.name + "' is given twice");
        std::error_code ec;
        const auto canonical = std::filesystem::canonical(d.host, ec);
        if (d.host.empty() || d.host[0] != '/' || ec || canonical != d.host)
            return fail(Errc::invalid_argument,
                        "package folder '" + d.host +
                            "' must be an existing absolute path with no symlink or '..' in it" +
                            (ec ? " (" + ec.message() + ")" : std::string()));
        struct stat st {};
        if (::stat(d.host.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
            return fail(Errc::invalid_argument, "package folder '" + d.host + "' is not a folder");
        // Sandboxes run as users of their own: the folder, and every folder on its path,
        // must let others in.
        for (std::string at = d.host; !at.empty(); at = at.substr(0, at.rfind('/'))) {
            struct stat p {};
            const bool is_set = at == d.host;
            if (::stat(at.c_str(), &p) != 0 ||
                (p.st_mode & (is_set ? (S_IROTH | S_IXOTH) : S_IXOTH)) !=
                    (is_set ? (S_IROTH | S_IXOTH) : S_IXOTH))
                return fail(Errc::invalid_argument,
                            "package folder '" + d.host + "' cannot be read by the sandboxes' " +
                                "users: " + at + " has mode " + octal(p.st_mode & 07777) +
                                "; let others " + (is_set ? "read and enter it" : "enter it") +
                                " (chmod o+" + (is_set ? "rx" : "x") + " " + at + ")");
        }
        for (std::string_view r : kRefused) {
            if (d.host == "/" || under(d.host, r))
                return fail(Errc::invalid_argument,
                            "package folder '" + d.host + "' is " +
                                (d.host == "/" ? std::string("the host's root")
                                               : "under " + std::string(r)) +
                                ", which no sandbox may see; name the packages' own folder (a "
                                "virtualenv's site-packages, a node_modules tree)");
        }
    }
    return {};
}

}  // namespace sandflow::sandbox
