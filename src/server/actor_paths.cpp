#include "server/actor_paths.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "actor/metadata.hpp"
#include "actor/script_limits.hpp"
#include "core/log.hpp"
#include "server/server_limits.hpp"

namespace sandflow::server {

namespace fs = std::filesystem;

namespace {

// A bad file_path is echoed in the error up to this many bytes.
constexpr std::size_t kEchoedPathBytes = 256;

bool under(const fs::path& p, const fs::path& root) {
    auto r = root.begin(), q = p.begin();
    for (; r != root.end(); ++r, ++q) {
        if (q == p.end() || *q != *r) return false;
    }
    return true;
}

bool under_any(const fs::path& p, const std::vector<fs::path>& roots) {
    return std::any_of(roots.begin(), roots.end(), [&](const fs::path& r) { return under(p, r); });
}

bool has_script_extension(const fs::path& p) {
    const auto ext = p.extension();
    return ext == ".py" || ext == ".js";
}

Error path_error(std::string_view reason, std::string message, std::string_view given) {
    return Error(Errc::invalid_argument, std::move(message),
                 {{"reason", reason}, {"file_path", given}});
}

}  // namespace

Result<std::vector<fs::path>> canonical_roots(const std::vector<fs::path>& roots) {
    std::vector<fs::path> out;
    for (const auto& r : roots) {
        std::error_code ec;
        const fs::path c = fs::canonical(r, ec);
        if (ec || !fs::is_directory(c, ec))
            return fail(Errc::invalid_argument,
                        "--actors " + r.string() + ": not an existing directory");
        out.push_back(c);
    }
    return out;
}

Result<fs::path> resolve_actor_path(const std::vector<fs::path>& roots, std::string_view given) {
    if (roots.empty())
        return tl::unexpected(
            path_error("no_roots",
                       "this server loads no files: it was started without --actors DIR; send the "
                       "script inline with {\"source\", \"language\"} instead",
                       given));
    if (given.empty() || given.size() > limits::kMaxFilePathBytes ||
        given.find('\0') != std::string_view::npos)
        return tl::unexpected(path_error("not_found",
                                         "file_path must be a non-empty path of at most " +
                                             std::to_string(limits::kMaxFilePathBytes) + " bytes",
                                         given.substr(0, kEchoedPathBytes)));
    const fs::path p(given);
    for (const auto& part : p)
        if (part == "..")
            return tl::unexpected(path_error("parent_reference",
                                             "file_path '" + std::string(given) +
                                                 "' contains '..'; name the file inside "
                                                 "an --actors folder directly",
                                             given));
    std::vector<fs::path> candidates;
    if (p.is_absolute()) {
        candidates.push_back(p);
    } else {
        for (const auto& r : roots) candidates.push_back(r / p);
    }
    for (const auto& c : candidates) {
        std::error_code ec;
        const fs::path real = fs::canonical(c, ec);
        if (ec) continue;
        if (!under_any(real, roots))
            return tl::unexpected(
                path_error("outside_roots",
                           "file_path '" + std::string(given) +
                               "' is outside the server's --actors folders (symlinks are followed)",
                           given));
        if (!fs::is_regular_file(real, ec))
            return tl::unexpected(
                path_error("not_a_file",
                           "file_path '" + std::string(given) + "' is not a regular file", given));
        if (!has_script_extension(real))
            return tl::unexpected(path_error(
                "bad_extension",
                "file_path '" + std::string(given) + "' is not a .py or .js actor script", given));
        return real;
    }
    // Say "not found" without telling whether something exists outside the roots.
    if (p.is_absolute() && !under_any(p.lexically_normal(), roots))
        return tl::unexpected(path_error(
            "outside_roots",
            "file_path '" + std::string(given) + "' is outside the server's --actors folders",
            given));
    return tl::unexpected(path_error(
        "not_found", "file_path '" + std::string(given) + "' was not found under --actors", given));
}

Result<ActorFile> read_actor_file(const std::vector<fs::path>& roots, std::string_view given) {
    auto real = resolve_actor_path(roots, given);
    if (!real) return tl::unexpected(real.error());
    return open_actor_file(roots, *real, given);
}

Result<ActorFile> open_actor_file(const std::vector<fs::path>& roots, const fs::path& real,
                                  std::string_view given) {
    const std::string name = "file_path '" + std::string(given) + "'";
    const int fd = ::open(real.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        if (err == ELOOP)
            return tl::unexpected(path_error(
                "outside_roots", name + " became a symlink while it was being loaded", given));
        return tl::unexpected(
            path_error("not_found", name + " could not be opened: " + std::strerror(err), given));
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    char link[4096];
    const std::string self = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = ::readlink(self.c_str(), link, sizeof link);
    if (n <= 0 || static_cast<std::size_t>(n) >= sizeof link)
        return fail(Errc::io, "cannot tell which file " + name + " opened (" + self + ")",
                    {{"file_path", given}});
    const fs::path opened(std::string(link, static_cast<std::size_t>(n)));
    if (opened != real || !under_any(opened, roots))
        return tl::unexpected(path_error(
            "outside_roots",
            name + " changed while it was being loaded and now leads outside the server's "
                   "--actors folders",
            given));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return tl::unexpected(path_error("not_a_file", name + " is not a regular file", given));
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (size > limits::kMaxScriptBytes)
        return tl::unexpected(actor::script_too_large(real.string(), size));
    ActorFile out{real, {}};
    out.source.resize(static_cast<std::size_t>(size));
    std::size_t got = 0;
    while (got < out.source.size()) {
        const ssize_t r = ::read(fd, out.source.data() + got, out.source.size() - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return fail(Errc::io, "cannot read " + name + ": " + std::strerror(errno),
                        {{"file_path", given}});
        if (r == 0) break;  // shorter than it was: what is there
        got += static_cast<std::size_t>(r);
    }
    out.source.resize(got);
    return out;
}

std::vector<fs::path> discover_actor_files(const std::vector<fs::path>& roots) {
    std::vector<fs::path> out;
    std::size_t seen = 0;
    for (const auto& root : roots) {
        std::error_code ec;
        fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied,
                                            ec),
            end;
        for (; !ec && it != end; it.increment(ec)) {
            if (++seen > limits::kMaxDiscoveredFiles) {
                spdlog::warn("--actors: stopped after {} entries (limits::kMaxDiscoveredFiles)",
                             limits::kMaxDiscoveredFiles);
                break;
            }
            const fs::path& p = it->path();
            const std::string name = p.filename().string();
            const bool tagged =
                name.size() > 9 && (name.ends_with(".actor.py") || name.ends_with(".actor.js"));
            const bool in_actors =
                has_script_extension(p) && p.parent_path().filename() == "actors";
            if (!tagged && !in_actors) continue;
            std::error_code e2;
            const fs::path real = fs::canonical(p, e2);
            if (e2 || !fs::is_regular_file(real, e2) || !under_any(real, roots)) {
                spdlog::warn("--actors: skipping {} (not a regular file inside the roots)",
                             p.string());
                continue;
            }
            out.push_back(p);
        }
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

}  // namespace sandflow::server
