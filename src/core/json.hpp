// JSON helpers over Boost.JSON with Sandflow's limits applied.
#pragma once

#include <string>
#include <string_view>

#include <boost/json.hpp>

#include "core/error.hpp"

namespace sandflow {

namespace json = boost::json;

// Parses one JSON document; depth is capped at limits::kMaxJsonDepth. `what` names the
// input in the error ("--input x", "frame from worker").
Result<json::value> parse_json(std::string_view text, std::string_view what);

// Compact serialisation; floats always keep a fraction or exponent ("4.0", not "4E0").
std::string to_json_string(const json::value& v);
void append_json(const json::value& v, std::string& out);

}  // namespace sandflow

namespace sandflow {
// Indented serialisation for people (two spaces), keys in their stored order.
std::string to_pretty_json(const json::value& v);
}  // namespace sandflow
