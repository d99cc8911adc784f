#include "sandbox/namespace/mount_ns.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <set>

#include "sandbox/host_root.hpp"

namespace sandflow::sandbox::ns {

using namespace mech;

namespace {

// Where the new root is assembled before pivot_root: any folder that exists on every host
// will do, since the mount over it is visible only inside the new mount namespace.
constexpr const char* kStage = "/tmp";
constexpr const char* kRootTmpfs = "size=1m,nr_inodes=256,mode=0755";
constexpr const char* kDevTmpfs = "size=64k,nr_inodes=64,mode=0755";
constexpr const char* kDevNodes[] = {"null", "zero", "full", "random", "urandom"};
constexpr std::uint64_t kReadOnly = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

using Kind = MountOp::Kind;

struct PlanBuilder {
    MountPlan plan;
    void add(MountOp op) { plan.ops.push_back(std::move(op)); }
    void mkdir(const std::string& path, mode_t mode = 0755) {
        add({Kind::mkdir, "", path, "", 0, 0, false, mode, "create " + path});
    }
    // A recursive bind made read-only, nosuid and nodev, all the way down.
    void bind_ro(const std::string& host, const std::string& target, bool file) {
        if (file)
            add({Kind::touch, "", target, "", 0, 0, false, 0644, "create " + target});
        else
            mkdir(target);
        add({Kind::bind, host, target, "", 0, 0, true, 0, "bind " + host});
        add({Kind::restrict, "", target, "", 0, kReadOnly | (file ? MOUNT_ATTR_NOEXEC : 0), true, 0,
             "make " + host + " read-only"});
    }
};

std::string stage(const std::string& rel) {
    return std::string(kStage) + "/" + rel;
}

}  // namespace

Result<MountPlan> make_mount_plan(const MountOptions& o) {
    if (o.workdir != "/tmp" && o.workdir.rfind("/tmp/", 0) != 0)
        return fail(Errc::invalid_argument,
                    "the namespace sandbox's working directory must be /tmp or a folder under "
                    "it, not '" +
                        o.workdir + "'");
    if (o.workdir.find("/..") != std::string::npos || o.workdir.find("/./") != std::string::npos)
        return fail(Errc::invalid_argument, "working directory '" + o.workdir + "' is not plain");

    if (auto ok = check_shared_dirs(o.shared); !ok) return tl::unexpected(ok.error());
    PlanBuilder b;
    b.add({Kind::make_private, "", "/", "", MS_REC | MS_PRIVATE, 0, true, 0,
           "make every mount private (no propagation to or from the host)"});
    for (std::size_t k = 0; k < o.shared.size(); ++k)
        b.add({Kind::copy_tree, o.shared[k].host, "", "", 0, 0, true, 0,
               "copy the mounts of package folder " + o.shared[k].host, static_cast<int>(k)});
    b.add({Kind::tmpfs, "", kStage, kRootTmpfs, MS_NOSUID | MS_NODEV, 0, false, 0,
           "mount the new root tmpfs"});

    // /usr and the merged-/usr links (or directories, on older layouts).
    b.bind_ro("/usr", stage("usr"), false);
    for (const auto& e : host_root_entries()) {
        const std::string host = "/" + e.name;
        if (!e.target.empty())
            b.add({Kind::symlink, e.target, stage(e.name), "", 0, 0, false, 0, "link " + host});
        else
            b.bind_ro(host, stage(e.name), false);
    }

    // A minimal /etc, generated: nothing of the host's configuration or secrets.
    b.mkdir(stage("etc"));
    auto file = [&](const char* name, std::string text) {
        b.add({Kind::write_file, "", stage(std::string("etc/") + name), std::move(text), 0, 0,
               false, 0644, std::string("write /etc/") + name});
    };
    const std::string home = "/tmp";
    file("passwd", o.user_name + ":x:0:0:Sandflow sandbox:" + home + ":/usr/sbin/nologin\n");
    file("group", o.user_name + ":x:0:\n");
    file("hostname", o.hostname + "\n");
    file("hosts", "127.0.0.1\tlocalhost " + o.hostname + "\n::1\tlocalhost\n");
    file("nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n");
    {
        char buf[PATH_MAX];
        const ssize_t n = ::readlink("/etc/localtime", buf, sizeof buf - 1);
        if (n > 0 && std::string_view(buf, static_cast<std::size_t>(n)).starts_with("/usr/"))
            b.add({Kind::symlink, std::string(buf, static_cast<std::size_t>(n)),
                   stage("etc/localtime"), "", 0, 0, false, 0, "link /etc/localtime"});
    }
    if (::access("/etc/ld.so.cache", R_OK) == 0)
        b.bind_ro("/etc/ld.so.cache", stage("etc/ld.so.cache"), true);
    // Debian's alternatives: links into /usr through which some libraries are found
    // (libblas.so.3, which numpy loads).
    if (struct stat st{}; ::stat("/etc/alternatives", &st) == 0 && S_ISDIR(st.st_mode))
        b.bind_ro("/etc/alternatives", stage("etc/alternatives"), false);

    // /dev: five harmless character devices and the usual links.
    b.mkdir(stage("dev"));
    b.add({Kind::tmpfs, "", stage("dev"), kDevTmpfs, MS_NOSUID | MS_NOEXEC, 0, false, 0,
           "mount the /dev tmpfs"});
    for (const char* node : kDevNodes) {
        const std::string host = std::string("/dev/") + node;
        const std::string target = stage(std::string("dev/") + node);
        b.add({Kind::touch, "", target, "", 0, 0, false, 0666, "create " + target});
        b.add({Kind::bind, host, target, "", 0, 0, false, 0, "bind " + host});
        b.add({Kind::restrict, "", target, "", 0, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false, 0,
               "make " + host + " nosuid, noexec"});
    }
    const std::pair<const char*, const char*> dev_links[] = {{"/proc/self/fd", "fd"},
                                                             {"/proc/self/fd/0", "stdin"},
                                                             {"/proc/self/fd/1", "stdout"},
                                                             {"/proc/self/fd/2", "stderr"}};
    for (const auto& [to, name] : dev_links)
        b.add({Kind::symlink, to, stage(std::string("dev/") + name), "", 0, 0, false, 0,
               std::string("link /dev/") + name});
    b.add({Kind::restrict, "", stage("dev"), "", 0, kReadOnly | MOUNT_ATTR_NOEXEC, false, 0,
           "make the /dev tmpfs read-only"});

    // The package sets, each at kSharedDirRoot/<language>/<set>: read-only, nosuid, nodev;
    // mappable, for native extension modules.
    std::set<std::string> made;
    for (std::size_t k = 0; k < o.shared.size(); ++k) {
        const std::string inside = mounted_path(o.shared[k]);
        for (auto slash = inside.find('/', 1); slash != std::string::npos;
             slash = inside.find('/', slash + 1))
            if (made.insert(inside.substr(0, slash)).second)
                b.mkdir(stage(inside.substr(1, slash - 1)));
        const std::string target = stage(inside.substr(1));
        b.mkdir(target);
        b.add({Kind::attach_tree, "", target, "", 0, 0, true, 0,
               "attach package folder " + o.shared[k].host + " at " + inside, static_cast<int>(k)});
        b.add({Kind::restrict, "", target, "", 0, kReadOnly, true, 0,
               "make package folder " + o.shared[k].host + " read-only"});
    }

    // /proc of the sandbox's own pid namespace.
    b.mkdir(stage("proc"), 0555);
    b.add({Kind::proc, "proc", stage("proc"), o.proc_subset_pid ? "subset=pid" : "",
           MS_NOSUID | MS_NODEV | MS_NOEXEC, 0, false, 0, "mount /proc"});

    // /tmp: the only writable place, capped.
    b.mkdir(stage("tmp"), 01777);
    b.add({Kind::tmpfs, "", stage("tmp"),
           "size=" + std::to_string(o.tmpfs_bytes) +
               ",nr_inodes=" + std::to_string(o.tmpfs_inodes) + ",mode=1777",
           MS_NOSUID | MS_NODEV | MS_NOEXEC, 0, false, 0, "mount the /tmp tmpfs"});
    for (std::size_t pos = 5; pos <= o.workdir.size();) {
        std::size_t next = o.workdir.find('/', pos);
        if (next == std::string::npos) next = o.workdir.size();
        if (next > pos) b.mkdir(std::string(kStage) + o.workdir.substr(0, next), 0755);
        pos = next + 1;
    }

    b.add({Kind::pivot_root, "", kStage, "", 0, 0, false, 0,
           "pivot_root into the new root and detach the host's"});
    b.add({Kind::restrict, "", "/", "", 0, kReadOnly, false, 0, "make the new root read-only"});
    return std::move(b.plan);
}

namespace {

int set_attr(const char* path, std::uint64_t attr_set, bool recursive) {
    mount_attr attr{};
    attr.attr_set = attr_set;
    return static_cast<int>(::syscall(SYS_mount_setattr, AT_FDCWD, path,
                                      recursive ? AT_RECURSIVE : 0u, &attr, sizeof attr));
}

// `trees`: the copies made by copy_tree steps, by slot, until attached.
int apply(const MountOp& op, int* trees) {
    const char* target = op.target.c_str();
    switch (op.kind) {
        case Kind::copy_tree: {
            if (op.slot < 0 || op.slot >= static_cast<int>(limits::kMaxSharedDirs)) break;
            const long fd = ::syscall(SYS_open_tree, AT_FDCWD, op.source.c_str(),
                                      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
            if (fd < 0) return -1;
            trees[op.slot] = static_cast<int>(fd);
            return 0;
        }
        case Kind::attach_tree: {
            if (op.slot < 0 || op.slot >= static_cast<int>(limits::kMaxSharedDirs) ||
                trees[op.slot] < 0)
                break;
            const long rc = ::syscall(SYS_move_mount, trees[op.slot], "", AT_FDCWD, target,
                                      MOVE_MOUNT_F_EMPTY_PATH);
            ::close(trees[op.slot]);
            trees[op.slot] = -1;
            return rc == 0 ? 0 : -1;
        }
        case Kind::make_private:
            return ::mount(nullptr, target, nullptr, op.flags, nullptr);
        case Kind::tmpfs:
            return ::mount("tmpfs", target, "tmpfs", op.flags, op.data.c_str());
        case Kind::proc:
            return ::mount("proc", target, "proc", op.flags,
                           op.data.empty() ? nullptr : op.data.c_str());
        case Kind::mkdir:
            if (::mkdir(target, op.mode) != 0 && errno != EEXIST) return -1;
            // mkdir applies the umask; the plan's mode is what it means.
            return ::chmod(target, op.mode);
        case Kind::bind:
            return ::mount(op.source.c_str(), target, nullptr,
                           MS_BIND | (op.recursive ? MS_REC : 0), nullptr);
        case Kind::touch: {
            const int fd = ::open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, op.mode);
            return fd < 0 ? -1 : ::close(fd);
        }
        case Kind::symlink:
            return ::symlink(op.source.c_str(), target);
        case Kind::write_file: {
            const int fd = ::open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, op.mode);
            if (fd < 0) return -1;
            const ssize_t n = ::write(fd, op.data.data(), op.data.size());
            const int err = errno;
            ::close(fd);
            if (n == static_cast<ssize_t>(op.data.size())) return 0;
            errno = n < 0 ? err : EIO;
            return -1;
        }
        case Kind::restrict:
            return set_attr(target, op.attr_set, op.recursive);
        case Kind::pivot_root:
            // pivot_root(".", "."): the old root ends up stacked on the new one and is then
            // detached, so no folder for it is needed and no path to it remains.
            if (::chdir(target) != 0) return -1;
            if (::syscall(SYS_pivot_root, ".", ".") != 0) return -1;
            if (::umount2(".", MNT_DETACH) != 0) return -1;
            return ::chdir("/");
    }
    errno = EINVAL;
    return -1;
}

}  // namespace

ChildFailure apply_mount_plan(const MountPlan& plan) {
    int trees[limits::kMaxSharedDirs];
    for (int& t : trees) t = -1;
    for (std::size_t i = 0; i < plan.ops.size(); ++i) {
        if (apply(plan.ops[i], trees) != 0) {
            const ChildFailure f = failed_at(kStepMountFirst + static_cast<int>(i));
            for (int t : trees)
                if (t >= 0) ::close(t);
            return f;
        }
    }
    return {};
}

std::string describe_mount_step(const MountPlan& plan, int step) {
    if (step < kStepMountFirst) return "";
    const auto i = static_cast<std::size_t>(step - kStepMountFirst);
    return i < plan.ops.size() ? plan.ops[i].what : "";
}

}  // namespace sandflow::sandbox::ns
