#include "core/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

namespace sandflow {

void init_logging(std::string_view level) {
    auto logger = spdlog::get("sandflow");
    if (!logger) {
        logger = spdlog::stderr_logger_st("sandflow");
        logger->set_pattern("sandflow: [%l] %v");
        spdlog::set_default_logger(logger);
    }
    logger->set_level(spdlog::level::from_str(std::string(level)));
}

}  // namespace sandflow
