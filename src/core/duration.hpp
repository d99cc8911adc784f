// Durations as users write them: "250ms", "5s", "2m", "1.5s", "100us". A bare number is
// an error (the unit is required, so "5" cannot silently mean milliseconds or seconds).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace sandflow {

Result<std::chrono::microseconds> parse_duration(std::string_view text);
std::string format_duration(std::chrono::microseconds d);  // "5s", "250ms", "100us"

}  // namespace sandflow
