#include "core/json.hpp"

#include "core/limits.hpp"

namespace sandflow {

Result<json::value> parse_json(std::string_view text, std::string_view what) {
    json::parse_options opts;
    opts.max_depth = limits::kMaxJsonDepth;
    std::error_code ec;
    json::value v = json::parse(text, ec, {}, opts);
    if (ec) {
        std::string msg = "invalid JSON in " + std::string(what) + ": " + ec.message();
        return fail(Errc::invalid_argument, std::move(msg));
    }
    return v;
}

std::string to_json_string(const json::value& v) { return json::serialize(v); }

}  // namespace sandflow

namespace sandflow {

namespace {
void pretty(const json::value& v, std::string& out, int indent) {
    auto newline = [&](int level) {
        out += '\n';
        out.append(static_cast<std::size_t>(level) * 2, ' ');
    };
    if (v.is_object() && !v.get_object().empty()) {
        out += '{';
        bool first = true;
        for (const auto& [k, val] : v.get_object()) {
            if (!first) out += ',';
            first = false;
            newline(indent + 1);
            out += json::serialize(json::string(k));
            out += ": ";
            pretty(val, out, indent + 1);
        }
        newline(indent);
        out += '}';
    } else if (v.is_array() && !v.get_array().empty()) {
        out += '[';
        bool first = true;
        for (const auto& val : v.get_array()) {
            if (!first) out += ',';
            first = false;
            newline(indent + 1);
            pretty(val, out, indent + 1);
        }
        newline(indent);
        out += ']';
    } else {
        out += json::serialize(v);
    }
}
}  // namespace

std::string to_pretty_json(const json::value& v) {
    std::string out;
    pretty(v, out, 0);
    return out;
}

}  // namespace sandflow
