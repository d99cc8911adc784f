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

inline constexpr std::string_view kPythonInterpreter = "/usr/bin/python3";
inline constexpr std::string_view kNodeInterpreter = "/usr/bin/node";

// Full argv (argv[0] is the interpreter's absolute path) of a worker for `lang`. The
// Python worker compiles its shim from source at every start (~4 ms).
std::vector<std::string> worker_argv(Language lang, int channel_fd);

// The faster Python start: a Python worker started from source reports its own compiled
// shim (marshalled code) in its hello, before any script has run in it; later workers run
// a small bootstrap that reads that code as one frame (4-byte big-endian length + bytes)
// from the channel before anything else, and executes it. Marshalled code is valid only
// for the interpreter that produced it: the same /usr/bin/python3.
std::vector<std::string> python_bootstrap_argv(int channel_fd);

}  // namespace sandflow::actor::sdk
