// The microVM's guest agent: PID 1 of the guest, a static binary packed as /init into the
// initramfs by scripts/microvm-image.sh (docs/sandbox.md, "The microvm backend").
//
//   mount /dev (devtmpfs), /proc, /sys → load the virtio modules listed in
//   /etc/sandflow/modules → find the virtio-serial ports by name → (a VM booted to be
//   snapshotted: write kAgentReady; the snapshot is taken here) → read the start frame from
//   the channel (guest_protocol.hpp) → set the clock → mount the host's /usr (9p,
//   read-only) → mount /tmp with its limits → fork the worker: its channel on descriptor 3 (a unix
//   socket this agent relays to the channel port), stdout on the stdout port, stderr on the console
//   (hvc0), stdin /dev/null; rlimits, uid/gid 65534, no capabilities, no_new_privs → relay and reap
//   every process until the worker ends → kill the rest →
//   report its status through the isa-debug-exit port (QEMU exits with it) → power off.
//
// Any failure before the worker runs is written to the kernel log (which the console, and so
// the host's stderr capture, shows) and reported as exit status 127, which the host reads
// as 62, the highest the report carries (guest_protocol.hpp). Between fork() and
// execve() the child allocates nothing.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "sandbox/microvm/guest_protocol.hpp"

namespace {

using namespace sandflow::sandbox::microvm;

// How long the agent waits for the virtio-serial ports to appear after loading the driver.
constexpr int kPortWaitMs = 10'000;
// The worker's ids: the image's `sandbox` (65534), as the other tiers' nobody.
constexpr uid_t kWorkerId = 65534;
// The exit status reported when the agent itself fails before the worker runs.
constexpr int kAgentFailed = 127;

int g_kmsg = -1;

void log_line(const std::string& line) {
    // Level 3 (error): shown on the console under `quiet`.
    const std::string msg = "<3>sandflow-agent: " + line + "\n";
    if (g_kmsg >= 0) [[maybe_unused]]
        ssize_t n = ::write(g_kmsg, msg.data(), msg.size());
}

[[noreturn]] void power_off(std::uint32_t code) {
    ::sync();
    // isa-debug-exit: QEMU exits at once with (code << 1) | 1.
    if (::ioperm(kExitPort, 4, 1) == 0) outl(code, kExitPort);
    ::reboot(RB_POWER_OFF);
    for (;;) ::pause();
}

[[noreturn]] void fail(const std::string& what, int err) {
    log_line(what + ": " + std::strerror(err));
    power_off(encode_exit(false, kAgentFailed));
}

std::string read_small_file(const std::string& path) {
    std::string out;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return out;
}

void mount_or_fail(const char* src, const char* target, const char* type, unsigned long flags,
                   const char* data) {
    if (::mount(src, target, type, flags, data) != 0)
        fail(std::string("mount ") + type + " on " + target, errno);
}

void load_modules() {
    const std::string list = read_small_file("/etc/sandflow/modules");
    std::size_t pos = 0;
    while (pos < list.size()) {
        auto end = list.find('\n', pos);
        if (end == std::string::npos) end = list.size();
        const std::string name = list.substr(pos, end - pos);
        pos = end + 1;
        if (name.empty()) continue;
        const std::string path = "/sandflow/modules/" + name + ".ko";
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail("open " + path, errno);
        if (::syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
            fail("load module " + name, errno);
        ::close(fd);
    }
}

// "/dev/vport0p1" for the port called `name`, "" while it has not appeared.
std::string find_port(std::string_view name) {
    DIR* d = ::opendir("/sys/class/virtio-ports");
    if (!d) return {};
    std::string found;
    while (const dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::string n =
            read_small_file(std::string("/sys/class/virtio-ports/") + e->d_name + "/name");
        while (!n.empty() && n.back() == '\n') n.pop_back();
        if (n == name) {
            found = std::string("/dev/") + e->d_name;
            break;
        }
    }
    ::closedir(d);
    return found;
}

int open_port(std::string_view name, int flags) {
    for (int waited = 0;; waited += 5) {
        const std::string path = find_port(name);
        if (!path.empty()) {
            const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
            if (fd >= 0) return fd;
            if (errno != ENOENT) fail("open " + path, errno);
        }
        if (waited >= kPortWaitMs)
            fail("the virtio-serial port " + std::string(name) + " did not appear", ENODEV);
        const timespec ts{0, 5'000'000};
        ::nanosleep(&ts, nullptr);
    }
}

bool read_exact(int fd, char* p, std::size_t n) {
    while (n > 0) {
        const ssize_t r = ::read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

StartSpec read_start(int chan) {
    unsigned char hdr[4];
    if (!read_exact(chan, reinterpret_cast<char*>(hdr), 4))
        fail("read the start frame's header", errno ? errno : EPIPE);
    const std::uint32_t len = (std::uint32_t{hdr[0]} << 24) | (std::uint32_t{hdr[1]} << 16) |
                              (std::uint32_t{hdr[2]} << 8) | std::uint32_t{hdr[3]};
    if (len > kMaxStartFrameBytes)
        fail("a start frame of " + std::to_string(len) + " bytes", EMSGSIZE);
    std::string payload(len, '\0');
    if (!read_exact(chan, payload.data(), len)) fail("read the start frame", errno ? errno : EPIPE);
    StartSpec s;
    if (!decode_start(payload, s)) fail("the start frame is malformed", EINVAL);
    return s;
}

// Step numbers the child reports on the console; the parent learns the failure from its
// exit status (127) as a worker that could not start.
[[noreturn]] void child_fail(const char* step) {
    const int e = errno;
    char msg[160];
    // snprintf with no allocation: formatting into a stack buffer.
    const int n = std::snprintf(
        msg, sizeof msg, "<3>sandflow-agent: worker set-up failed at %s: errno %d\n", step, e);
    if (g_kmsg >= 0 && n > 0) [[maybe_unused]]
        ssize_t w = ::write(g_kmsg, msg, static_cast<std::size_t>(n));
    ::_exit(kAgentFailed);
}

struct ChildPlan {
    int fds[4];  // stdin, stdout, stderr, channel: the agent's numbers
    char* const* argv;
    char* const* envp;
    const char* workdir;
    rlimit nofile, nproc, cpu, fsize, core;
};

[[noreturn]] void run_worker(const ChildPlan& c) {
    if (::setsid() < 0) child_fail("setsid");
    // Sources first above the targets, so that no dup clobbers one that sits on 0..3.
    int high[4];
    for (int i = 0; i < 4; ++i)
        if ((high[i] = ::fcntl(c.fds[i], F_DUPFD, 10)) < 0) child_fail("dup");
    for (int i = 0; i < 4; ++i)
        if (::dup2(high[i], i) < 0) child_fail("dup2");
    if (::syscall(SYS_close_range, 4, ~0U, 0) != 0) child_fail("close_range");
    sigset_t none;
    sigemptyset(&none);
    if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) child_fail("sigprocmask");
    if (::setrlimit(RLIMIT_NOFILE, &c.nofile) != 0) child_fail("RLIMIT_NOFILE");
    if (::setrlimit(RLIMIT_NPROC, &c.nproc) != 0) child_fail("RLIMIT_NPROC");
    if (::setrlimit(RLIMIT_CPU, &c.cpu) != 0) child_fail("RLIMIT_CPU");
    if (::setrlimit(RLIMIT_FSIZE, &c.fsize) != 0) child_fail("RLIMIT_FSIZE");
    if (::setrlimit(RLIMIT_CORE, &c.core) != 0) child_fail("RLIMIT_CORE");
    if (::setgroups(0, nullptr) != 0) child_fail("setgroups");
    if (::setresgid(kWorkerId, kWorkerId, kWorkerId) != 0) child_fail("setresgid");
    // Leaving uid 0 clears every capability set; the bounding set keeps no_new_privs honest.
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) (void)::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    if (::setresuid(kWorkerId, kWorkerId, kWorkerId) != 0) child_fail("setresuid");
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail("no_new_privs");
    if (::chdir(c.workdir) != 0) child_fail("chdir");
    ::execve(c.argv[0], c.argv, c.envp);
    child_fail("execve");
}

// Writes all of `n` bytes (blocking descriptors); false once the other side is gone.
bool write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

// Copies the port to the worker's socket and back until the worker ends, reaping every
// child meanwhile; returns the worker's wait status. Each direction is written whole before
// the next read: the protocol is one frame at a time each way, so neither side waits on the
// other's write.
int relay_and_reap(pid_t worker, int port, int sock, int sigchld) {
    constexpr std::size_t kRelayChunk = 64 * 1024;
    static char buf[kRelayChunk];
    pollfd fds[3] = {{port, POLLIN, 0}, {sock, POLLIN, 0}, {sigchld, POLLIN, 0}};
    for (;;) {
        if (::poll(fds, 3, -1) < 0) {
            if (errno == EINTR) continue;
            fail("poll", errno);
        }
        for (int i = 0; i < 2; ++i) {
            if (fds[i].revents == 0) continue;
            const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            const int to = i == 0 ? sock : port;
            if (n <= 0 || !write_all(to, buf, static_cast<std::size_t>(n))) {
                // One side is gone: stop relaying; the worker's end still decides.
                fds[0].fd = fds[1].fd = -1;
                if (i == 0) ::shutdown(sock, SHUT_WR);
            }
        }
        if (fds[2].revents != 0) {
            signalfd_siginfo info;
            while (::read(sigchld, &info, sizeof info) > 0) {
            }
            int status = 0;
            pid_t p;
            while ((p = ::waitpid(-1, &status, WNOHANG)) > 0)
                if (p == worker) return status;
        }
    }
}

rlimit both(std::uint64_t v) {
    return rlimit{static_cast<rlim_t>(v), static_cast<rlim_t>(v)};
}

}  // namespace

int main() {
    if (::getpid() != 1) {
        std::fprintf(stderr,
                     "sandflow-agent: this is the microVM guest's init; it runs as PID 1 only\n");
        return 1;
    }
    ::mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755");
    g_kmsg = ::open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    mount_or_fail("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2");
    mount_or_fail("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, nullptr);
    load_modules();
    const bool snapshot = read_small_file("/proc/cmdline").find(kSnapshotFlag) != std::string::npos;

    const int chan = open_port(kChannelPort, O_RDWR);
    const int out = open_port(kStdoutPort, O_WRONLY);
    const int err = ::open("/dev/hvc0", O_WRONLY | O_CLOEXEC);
    if (err < 0) fail("open /dev/hvc0", errno);
    const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) fail("open /dev/null", errno);
    // The ports are found; nothing in /sys is the worker's business.
    (void)::umount2("/sys", MNT_DETACH);

    // The point a snapshot is taken at (docs/sandbox.md, "Warm start by snapshot"): the
    // host stops the VM once it reads kAgentReady, and each VM restored from it continues
    // here. Nothing of the host's is mounted yet: QEMU refuses to migrate a VM whose guest
    // holds the 9p share, and the start frame belongs to one worker.
    if (snapshot && !write_all(chan, &kAgentReady, 1))
        fail("write the snapshot's ready mark", EPIPE);
    const StartSpec spec = read_start(chan);
    // A restored guest's clock is the snapshot's: the host's time travels in the frame.
    const timespec now{static_cast<time_t>(spec.clock_ns / 1'000'000'000),
                       static_cast<long>(spec.clock_ns % 1'000'000'000)};
    if (spec.clock_ns != 0 && ::clock_settime(CLOCK_REALTIME, &now) != 0)
        fail("set the clock", errno);
    // The host's /usr, read-only (QEMU's share is read-only too); cache=loose: it does not
    // change under a running worker, and lookups over 9p are the slow part of a start.
    const std::string usr_opts = "trans=virtio,version=9p2000.L,msize=262144,cache=loose";
    mount_or_fail(std::string(kUsrTag).c_str(), "/usr", "9p", MS_RDONLY | MS_NOSUID | MS_NODEV,
                  usr_opts.c_str());
    const std::string tmp_opts = "mode=1777,size=" + std::to_string(spec.tmpfs_bytes) +
                                 ",nr_inodes=" + std::to_string(spec.tmpfs_inodes);
    if (spec.tmpfs_bytes == 0 || spec.tmpfs_inodes == 0)
        fail("a start frame without tmpfs limits", EINVAL);
    mount_or_fail("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, tmp_opts.c_str());
    // Nothing else is the worker's to write: the image's root becomes read-only.
    (void)::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY, nullptr);

    std::vector<char*> argv, envp;
    for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    // The worker's channel is a unix socket relayed to the port by this agent: Node's
    // net.Socket takes a socket or pipe and refuses a character device, and a socket makes
    // the worker's channel the same kind of descriptor as on the other tiers.
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        fail("socketpair for the worker's channel", errno);
    const ChildPlan plan{
        {devnull, out, err, pair[1]},
        argv.data(),
        envp.data(),
        spec.workdir.c_str(),
        both(spec.open_files),
        both(spec.nproc),
        rlimit{static_cast<rlim_t>(spec.cpu_seconds), static_cast<rlim_t>(spec.cpu_seconds + 1)},
        both(spec.tmpfs_bytes),
        both(0)};
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (::sigprocmask(SIG_BLOCK, &chld, nullptr) != 0) fail("block SIGCHLD", errno);
    const int sigchld = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigchld < 0) fail("signalfd", errno);
    const pid_t worker = ::fork();
    if (worker < 0) fail("fork the worker", errno);
    if (worker == 0) run_worker(plan);
    ::close(pair[1]);
    ::close(out);

    // PID 1 relays the channel and reaps every orphan; the worker's end ends the VM.
    const int status = relay_and_reap(worker, chan, pair[0], sigchld);
    ::kill(-1, SIGKILL);
    while (::wait(nullptr) > 0 || errno == EINTR) {
    }
    if (WIFSIGNALED(status)) power_off(encode_exit(true, WTERMSIG(status)));
    power_off(encode_exit(false, WEXITSTATUS(status)));
}
