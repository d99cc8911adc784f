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

// Full argv (argv[0] is the interpreter's absolute path) of a worker for `lang`.
std::vector<std::string> worker_argv(Language lang, int channel_fd);

}  // namespace sandflow::actor::sdk
