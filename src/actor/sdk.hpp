// The actor SDK shims (sdk/python, sdk/js), embedded into the binary, and the command
// lines that start them. A worker reads its channel on the descriptor given last on its
// command line; the interpreters are the system ones (/usr/bin), started with a cleared
// environment by the sandbox layer.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "actor/metadata.hpp"

namespace sandflow::actor::sdk {

extern const std::string_view kPythonWorker;
extern const std::string_view kJsWorker;
// The Python shim compiled at build time (cmake/compile_python.py): its marshalled code and
// the bytecode magic number of the interpreter that compiled it; both empty when the build
// had no /usr/bin/python3.
extern const std::string_view kPythonWorkerCode;
extern const std::string_view kPythonWorkerMagic;

inline constexpr std::string_view kPythonInterpreter = "/usr/bin/python3";
inline constexpr std::string_view kNodeInterpreter = "/usr/bin/node";

// Full argv (argv[0] is the interpreter's absolute path) of a worker for `lang` that runs the
// shim from source. With `timeline` the worker reports when its steps happened
// (sandbox::StartTimeline) in its hello, loaded and first result frames.
std::vector<std::string> worker_argv(Language lang, int channel_fd, bool timeline = false);

// How Python workers start: a small bootstrap that reads the shim's code as the channel's
// first frame (4-byte big-endian length + python_code_frame()) and runs it, so that no
// worker compiles the shim (~4 ms). Marshalled code is valid only for an interpreter with
// the bytecode magic it was made by: the bootstrap compares it with its own and compiles the
// source, sent in the same frame, when they differ (a binary built against another Python).
std::vector<std::string> python_bootstrap_argv(int channel_fd, bool timeline = false);
// The first frame's payload: `magic` (4 bytes), the code's length (4 bytes, big-endian), the
// marshalled `code`, then the shim's source. An empty `code` sends the source alone.
std::string python_code_frame(std::string_view magic, std::string_view code);

}  // namespace sandflow::actor::sdk
