// A small JSON path for the filter component: `$.a.b[0].c`, `a.b.0.c` or `/a/b/0/c`.
// Limits: no wildcards, no filters, no quoted keys; keys cannot contain '.', '[' or '/'.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/json.hpp"

namespace sandflow::flow {

struct JsonPath {
    std::vector<std::string> steps;  // object keys, or array indices written in decimal

    static Result<JsonPath> parse(std::string_view text);
    // The value at the path, or nullptr when a step is missing.
    const json::value* find(const json::value& root) const;
};

}  // namespace sandflow::flow
