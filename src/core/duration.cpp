#include "core/duration.hpp"

#include <cctype>
#include <charconv>
#include <cmath>

namespace sandflow {

Result<std::chrono::microseconds> parse_duration(std::string_view text) {
    auto bad = [&](std::string_view why) {
        return fail(Errc::invalid_argument,
                    "invalid duration '" + std::string(text) + "': " + std::string(why) +
                        " (write a number and a unit: 100us, 250ms, 5s, 2m, 1h)");
    };
    std::size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
        ++i;
    if (i == 0) return bad("it does not start with a number");
    double value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, value);
    if (ec != std::errc() || ptr != text.data() + i) return bad("the number is malformed");
    const std::string_view unit = text.substr(i);
    double us_per_unit = 0;
    if (unit == "us")
        us_per_unit = 1;
    else if (unit == "ms")
        us_per_unit = 1e3;
    else if (unit == "s")
        us_per_unit = 1e6;
    else if (unit == "m")
        us_per_unit = 60e6;
    else if (unit == "h")
        us_per_unit = 3600e6;
    else
        return bad(unit.empty() ? "the unit is missing" : "unknown unit");
    const double us = value * us_per_unit;
    if (!std::isfinite(us) || us > 1e15) return bad("it is too large");
    if (us < 1) return bad("it must be at least 1us");
    return std::chrono::microseconds(static_cast<std::int64_t>(us));
}

std::string format_duration(std::chrono::microseconds d) {
    const auto us = d.count();
    if (us % 1'000'000 == 0) return std::to_string(us / 1'000'000) + "s";
    if (us % 1'000 == 0) return std::to_string(us / 1'000) + "ms";
    return std::to_string(us) + "us";
}

}  // namespace sandflow
