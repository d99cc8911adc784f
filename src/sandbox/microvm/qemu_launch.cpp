// QEMU's command line, its jail and its start: what the microvm backend runs a VM with.
#include "sandbox/microvm/qemu_launch.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "sandbox/helper_start.hpp"
#include "sandbox/mechanisms/cgroups.hpp"
#include "sandbox/mechanisms/child_report.hpp"
#include "sandbox/mechanisms/landlock.hpp"
#include "sandbox/microvm/guest_protocol.hpp"

namespace sandflow::sandbox {

namespace microvm {

namespace {

struct ChildContext {
    char* const* argv;
    char* const* envp;
    pid_t parent;
    const mech::LandlockPlan* landlock;
    const mech::CgroupEntry* cgroups;
    int unshare_flags;
    int src_fds[kChildFds];  // as placed on 0..kReportFd
};

[[noreturn]] void run_child(const ChildContext& c) {
    // Into QEMU's groups first: their descriptors go with place_descriptors().
    if (const mech::ChildFailure f = mech::enter_cgroups(*c.cgroups))
        mech::report_and_exit(c.src_fds[kReportFd], mech::ChildFailure{kHelperCgroups, f.err});
    enter_helper_child(c.src_fds, kChildFds, kReportFd, c.parent);
    if (c.unshare_flags != 0 && ::unshare(c.unshare_flags) != 0)
        mech::report_and_exit(kReportFd, mech::failed_at(kHelperNamespaces));
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        mech::report_and_exit(kReportFd, mech::failed_at(kHelperNoNewPrivs));
    if (const mech::ChildFailure f = mech::apply_landlock(*c.landlock))
        mech::report_and_exit(kReportFd, mech::ChildFailure{kHelperLandlock, f.err});
    ::execve(c.argv[0], c.argv, c.envp);
    mech::report_and_exit(kReportFd, mech::failed_at(kHelperExec));
}

// The QEMU process of one VM. Its exit status becomes the worker's, as the guest agent
// reported it through isa-debug-exit.
class MicrovmProcess final : public Process {
  public:
    MicrovmProcess(pid_t pid, UniqueFd channel, UniqueFd out, UniqueFd err,
                   const SandboxLimits& limits, mech::SandboxCgroup cgroup)
        : Process(pid, std::move(channel), std::move(out), std::move(err)),
          limits_(limits),
          cgroup_(std::move(cgroup)) {}
    ~MicrovmProcess() override { kill_and_wait(); }

    const SandboxLimits* limits() const override { return &limits_; }
    // The VM's memory and vCPUs are fixed at boot, the guest's rlimits and tmpfs too.
    Result<bool> update_limits(const SandboxLimits& to) override { return to == limits_; }

  protected:
    void on_exit(ExitStatus& s) override {
        if (!WIFEXITED(s.raw)) {
            // QEMU killed: the runtime's kill, a wall clock, or its own cgroup's limit.
            const mech::CgroupVerdict v = cgroup_.verdict();
            if (!v.limit.empty()) {
                s.limit = v.limit;
                s.limit_value = v.value;
            }
            cgroup_.remove();
            return;
        }
        cgroup_.remove();
        const GuestExit g = decode_exit(WEXITSTATUS(s.raw));
        if (g.reported) {
            s.raw = g.signaled ? g.value : (g.value << 8);
            name_rlimit_signal(s, limits_);
        } else if (WEXITSTATUS(s.raw) == 0) {
            // The guest ended without the agent's report (a kernel panic: panic=-1 and
            // -no-reboot end QEMU with 0); the console's last lines, in the stderr
            // capture, say why. Never read as a worker that exited cleanly.
            s.raw = 1 << 8;
        }
    }

  private:
    SandboxLimits limits_;
    mech::SandboxCgroup cgroup_;  // QEMU's own: its memory, threads and CPU
};

// A socketpair's two ends, close-on-exec.
Result<std::pair<UniqueFd, UniqueFd>> socket_pair(const char* what) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return tl::unexpected(system_error(std::string("socketpair for the ") + what, errno));
    return std::pair<UniqueFd, UniqueFd>{UniqueFd(sv[0]), UniqueFd(sv[1])};
}

}  // namespace

Error unavailable(std::string message) {
    return Error(Errc::sandbox_unavailable, std::move(message), {{"backend", "microvm"}});
}

Result<Launched> launch(const std::vector<std::string>& args, const std::string& frame, int state,
                        const SandboxLimits& limits, const MicrovmBackend::Jail& jail) {
    // QEMU's own groups: the guest's RAM and QEMU's own memory, QEMU's threads, the CPU
    // share; nothing is made where no controller is usable.
    SandboxLimits qemu_limits = limits;
    qemu_limits.memory_bytes = jail.memory_bytes;
    qemu_limits.pids = kQemuThreads;
    auto cgroup = mech::SandboxCgroup::create(*jail.cgroups, mech::new_group_id(), qemu_limits);
    if (!cgroup) return tl::unexpected(cgroup.error());
    auto entry = cgroup->open_entry();
    if (!entry) return tl::unexpected(entry.error());
    const std::vector<std::string> qemu_env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    const std::vector<char*> argv = exec_array(args), envp = exec_array(qemu_env);

    auto chan = socket_pair("microVM's channel");
    if (!chan) return tl::unexpected(chan.error());
    auto out = socket_pair("microVM's stdout");
    if (!out) return tl::unexpected(out.error());
    auto console = socket_pair("microVM's console");
    if (!console) return tl::unexpected(console.error());
    auto qmp = socket_pair("QEMU's monitor");
    if (!qmp) return tl::unexpected(qmp.error());
    int rp[2];
    if (::pipe2(rp, O_CLOEXEC) != 0)
        return tl::unexpected(system_error("pipe for the report", errno));
    UniqueFd report_r(rp[0]), report_w(rp[1]);
    UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!devnull) return tl::unexpected(system_error("open /dev/null", errno));

    // The start frame waits in the channel's buffer until the guest's agent reads it.
    if (!frame.empty()) {
        const int sndbuf = static_cast<int>(kMaxStartFrameBytes) * 2;
        (void)::setsockopt(chan->first.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        std::size_t done = 0;
        while (done < frame.size()) {
            const ssize_t n = ::send(chan->first.get(), frame.data() + done, frame.size() - done,
                                     MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0)
                return tl::unexpected(system_error(
                    "write the start frame (" + std::to_string(frame.size()) +
                        " bytes) into the microVM's channel; it must fit the socket's buffer "
                        "(net.core.wmem_max)",
                    errno));
            done += static_cast<std::size_t>(n);
        }
    }

    const ChildContext ctx{argv.data(),
                           envp.data(),
                           ::getpid(),
                           &jail.landlock,
                           &*entry,
                           jail.unshare_flags,
                           {devnull.get(), devnull.get(), console->second.get(), chan->second.get(),
                            out->second.get(), console->second.get(), qmp->second.get(),
                            state >= 0 ? state : devnull.get(), report_w.get()}};
    const pid_t pid = ::fork();
    if (pid < 0) return tl::unexpected(system_error("fork", errno));
    if (pid == 0) run_child(ctx);

    chan->second.reset();
    out->second.reset();
    console->second.reset();
    qmp->second.reset();
    report_w.reset();
    auto proc =
        std::make_unique<MicrovmProcess>(pid, std::move(chan->first), std::move(out->first),
                                         std::move(console->first), limits, std::move(*cgroup));
    if (auto ok =
            await_helper_start(*proc, report_r.get(), {"microvm", "QEMU", args[0], "the microVM"});
        !ok)
        return tl::unexpected(ok.error());
    return Launched{std::move(proc), std::move(qmp->first)};
}
int qemu_namespaces() {
    static const int flags = [] {
        const int want = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
        const pid_t pid = ::fork();
        if (pid == 0) ::_exit(::unshare(want) == 0 ? 0 : 1);
        int st = 0;
        if (pid < 0 || ::waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 0;
        return want;
    }();
    return flags;
}

}  // namespace microvm

using namespace microvm;

std::vector<std::string> MicrovmBackend::qemu_args(VmShape shape, const std::string& memory_backend,
                                                   bool snapshotting) const {
    std::vector<std::string> args = {
        options_.qemu,
        "-M",
        "microvm",
        "-accel",
        accel_ == VmAccel::kvm ? "kvm" : "tcg,tb-size=" + std::to_string(kTcgCacheMib),
        "-m",
        std::to_string(shape.memory_mib) + "M",
        "-smp",
        std::to_string(shape.cpus),
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-kernel",
        kernel_,
        "-initrd",
        initrd_,
        "-append",
        snapshotting ? cmdline_ + " " + std::string(kSnapshotFlag) : cmdline_,
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-device",
        "virtio-serial-device,max_ports=3",
        "-chardev",
        "socket,id=console,fd=" + std::to_string(kConsoleFd),
        "-device",
        "virtconsole,chardev=console",
        "-chardev",
        "socket,id=chan,fd=" + std::to_string(kChanFd),
        "-device",
        "virtserialport,chardev=chan,name=" + std::string(kChannelPort),
        "-chardev",
        "socket,id=out,fd=" + std::to_string(kOutFd),
        "-device",
        "virtserialport,chardev=out,name=" + std::string(kStdoutPort),
        // The host's /usr, read-only in QEMU as well as in the guest; nothing else of the
        // host's files is given.
        "-fsdev",
        "local,id=usr,path=/usr,security_model=none,readonly=on",
        "-device",
        "virtio-9p-device,fsdev=usr,mount_tag=" + std::string(kUsrTag),
        "-chardev",
        "socket,id=qmp,fd=" + std::to_string(kQmpFd),
        "-mon",
        "chardev=qmp,mode=control",
        // QEMU's own seccomp filter: no setuid/setgid, no fork/exec, no scheduler or
        // resource changes, no obsolete calls.
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    };
    if (!memory_backend.empty()) {
        args.insert(args.end(), {"-object", memory_backend, "-machine", "memory-backend=ram"});
    }
    if (accel_ == VmAccel::kvm) args.insert(args.end(), {"-cpu", "host"});
    return args;
}

// QEMU's jail (docs/sandbox.md): its namespaces and cgroups, and a Landlock wall: the host's /usr
// to read and run (its binary, libraries and firmware, and the 9p share, read-only), the image's
// two files, the loader's cache, /dev/null (and /dev/kvm under KVM), and the snapshots' folder,
// whose RAM files QEMU 7.2 opens read-write even to map them privately; nothing else. TCP is
// refused and, on ABI 6, signals out of its domain.
MicrovmBackend::Jail MicrovmBackend::jail(VmShape shape) const {
    using mech::LandlockAccess;
    std::vector<mech::LandlockRule> rules = {{"/usr", LandlockAccess::read_exec},
                                             {kernel_, LandlockAccess::read_file},
                                             {initrd_, LandlockAccess::read_file},
                                             {"/etc/ld.so.cache", LandlockAccess::read_file},
                                             {"/dev/null", LandlockAccess::device}};
    if (accel_ == VmAccel::kvm) rules.push_back({"/dev/kvm", LandlockAccess::device});
    if (!snapshot_dir_.empty()) rules.push_back({snapshot_dir_, LandlockAccess::read_write});
    return {mech::make_landlock_plan(rules, true), &cgroups_,
            (shape.memory_mib << 20) + kQemuMemoryOverhead, unshare_flags_};
}

}  // namespace sandflow::sandbox
