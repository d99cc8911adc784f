#include "sandbox/landlock/work_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <vector>

#include "core/log.hpp"
#include "sandbox/mechanisms/periodic_scan.hpp"

namespace sandflow::sandbox::landlock {

namespace fs = std::filesystem;

Result<void> prepare_work_root(const std::string& root) {
    if (::mkdir(root.c_str(), 0711) != 0 && errno != EEXIST)
        return tl::unexpected(system_error("creating the sandbox work root " + root, errno));
    struct stat st {};
    if (::lstat(root.c_str(), &st) != 0)
        return tl::unexpected(system_error("inspecting the sandbox work root " + root, errno));
    if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid())
        return fail(Errc::sandbox_unavailable,
                    "the sandbox work root " + root +
                        " is not a folder owned by this user (a link, or someone else's); "
                        "remove it or choose another work root",
                    {{"backend", "landlock"}, {"path", root}});
    if ((st.st_mode & 07777) != 0711 && ::chmod(root.c_str(), 0711) != 0)
        return tl::unexpected(system_error("chmod 0711 " + root, errno));
    return {};
}

Result<std::string> make_work_dir(const std::string& root, const std::string& name, uid_t uid,
                                  gid_t gid) {
    const std::string path = root + "/" + name;
    if (::mkdir(path.c_str(), 0700) != 0)
        return tl::unexpected(system_error("creating the sandbox's work folder " + path, errno));
    if ((uid != ::geteuid() || gid != ::getegid()) && ::chown(path.c_str(), uid, gid) != 0) {
        const int e = errno;
        ::rmdir(path.c_str());
        return tl::unexpected(
            system_error("giving the work folder " + path + " to its sandbox", e));
    }
    return path;
}

void remove_work_dir(const std::string& path) {
    if (path.empty()) return;
    std::error_code ec;
    // remove_all removes links themselves, never what they point to.
    fs::remove_all(path, ec);
    if (ec) spdlog::warn("could not remove the sandbox work folder {}: {}", path, ec.message());
}

WorkDirUsage measure_work_dir(const std::string& path, std::uint64_t max_entries) {
    WorkDirUsage u;
    std::error_code ec;
    fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (++u.entries > max_entries) break;
        struct stat st {};
        if (::lstat(it->path().c_str(), &st) == 0)
            u.bytes += static_cast<std::uint64_t>(st.st_blocks) * 512;
    }
    return u;
}

struct WorkDirWatch::Entry final : mech::ScanEntry {
    std::string path;
    std::uint64_t max_bytes, max_entries;
    int notify_fd;
    std::atomic<bool> signalled{false};
    std::string limit;  // set once by the scanner, before `signalled`
    std::uint64_t value = 0;

    bool scan() override {
        const WorkDirUsage u = measure_work_dir(path, max_entries);
        if (u.entries > max_entries) {
            limit = "tmpfs_inodes";
            value = max_entries;
        } else if (u.bytes > max_bytes) {
            limit = "tmpfs_bytes";
            value = max_bytes;
        } else {
            return false;
        }
        signalled.store(true, std::memory_order_release);
        const std::uint64_t one = 1;
        (void)!::write(notify_fd, &one, sizeof one);
        return true;
    }
};

namespace {

// One scanner for every live sandbox's folder in this runtime process.
mech::PeriodicScanner& work_dir_scanner() {
    static std::atomic<mech::PeriodicScanner*> slot{nullptr};
    return mech::PeriodicScanner::of_this_process(slot, kWorkDirScanInterval);
}

}  // namespace

WorkDirWatch::WorkDirWatch(std::string path, std::uint64_t max_bytes, std::uint64_t max_entries,
                           int notify_fd)
    : entry_(std::make_shared<Entry>()) {
    entry_->path = std::move(path);
    entry_->max_bytes = max_bytes;
    entry_->max_entries = max_entries;
    entry_->notify_fd = notify_fd;
    work_dir_scanner().add(entry_);
}

WorkDirWatch::~WorkDirWatch() {
    work_dir_scanner().remove(entry_.get());
}

WorkDirWatch::Crossed WorkDirWatch::crossed() const {
    if (!entry_->signalled.load(std::memory_order_acquire)) return {};
    return {entry_->limit, entry_->value};
}

}  // namespace sandflow::sandbox::landlock
