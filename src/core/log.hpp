// Logging: spdlog to stderr. stdout is reserved for a command's results.
#pragma once

#include <spdlog/spdlog.h>

namespace sandflow {

// Sets the process-wide logger: stderr, "[level] message", at the given level name
// (trace, debug, info, warn, error, off). Unknown names fall back to info.
void init_logging(std::string_view level);

}  // namespace sandflow
