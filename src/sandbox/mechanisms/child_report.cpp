#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox::mech {

const char* child_step_name(int step) {
    switch (step) {
        case kStepDescriptors:
            return "setting up descriptors";
        case kStepDeathSignal:
            return "prctl(PR_SET_PDEATHSIG)";
        case kStepSyncWait:
            return "waiting for the parent";
        case kStepSetgroups:
            return "setgroups (dropping supplementary groups)";
        case kStepSetgid:
            return "setresgid to the sandbox's group";
        case kStepSetuid:
            return "setresuid to the sandbox's user";
        case kStepCgroupNamespace:
            return "unshare(CLONE_NEWCGROUP)";
        case kStepHostname:
            return "setting the hostname (uts namespace)";
        case kStepForkWorker:
            return "forking the worker from the sandbox's init";
        case kStepSignals:
            return "resetting the signal mask";
        case kStepSetsid:
            return "setsid";
        case kStepRlimit:
            return "setting rlimits";
        case kStepChdir:
            return "chdir to the working directory";
        case kStepSecurebits:
            return "locking securebits";
        case kStepBoundingSet:
            return "dropping the capability bounding set";
        case kStepCapset:
            return "dropping capabilities";
        case kStepNoNewPrivs:
            return "prctl(PR_SET_NO_NEW_PRIVS)";
        case kStepLandlock:
            return "applying Landlock rules";
        case kStepSeccomp:
            return "installing the seccomp filter";
        case kStepExec:
            return "execve";
        case kStepSubreaper:
            return "prctl(PR_SET_CHILD_SUBREAPER)";
        case kStepSignalMask:
            return "blocking signals in the supervisor";
        case kStepCgroupEnter:
            return "entering the sandbox's cgroups";
        default:
            return "sandbox set-up";
    }
}

}  // namespace sandflow::sandbox::mech
