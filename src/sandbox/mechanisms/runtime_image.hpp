// What a process forked from the runtime, and kept as a sandbox's init or supervisor, must
// hide of the runtime it was copied from.
#pragma once

namespace sandflow::sandbox::mech {

// A sandbox's init or supervisor is a copy of the runtime's memory (it never calls execve).
// hide_runtime_memory() makes that copy unreadable from inside: non-dumpable (so /proc/1/mem,
// environ, maps, fd are refused to the worker even though both are uid 0 inside), the runtime's
// command line and environment strings zeroed (/proc/1/cmdline is readable by anyone), and the name
// "sandflow-init". Call it after the parent has written the id maps: a non-dumpable process's /proc
// files belong to root, which an unprivileged parent is not.
struct RuntimeImage {
    // From the runtime's /proc/self/stat: where its argv and environment strings are.
    unsigned long arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
};
RuntimeImage read_runtime_image();
void hide_runtime_memory(const RuntimeImage& image);

}  // namespace sandflow::sandbox::mech
