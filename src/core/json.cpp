#include "core/json.hpp"

#include "core/limits.hpp"

#include <charconv>
#include <cmath>

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

namespace {

// Boost.JSON writes 4.0 as "4E0"; people and other JSON tools expect "4.0". Doubles are
// written as the shortest text that reads back to the same value, always with a fraction
// or an exponent so that they stay floats.
void append_double(double d, std::string& out) {
    if (!std::isfinite(d)) {  // not representable in JSON; Boost.JSON never parses these
        out += "null";
        return;
    }
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
    std::string_view text(buf, static_cast<std::size_t>(end - buf));
    out += text;
    if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
}

}  // namespace

void append_json(const json::value& v, std::string& out) {
    switch (v.kind()) {
        case json::kind::double_:
            append_double(v.get_double(), out);
            return;
        case json::kind::array: {
            out += '[';
            bool first = true;
            for (const auto& item : v.get_array()) {
                if (!first) out += ',';
                first = false;
                append_json(item, out);
            }
            out += ']';
            return;
        }
        case json::kind::object: {
            out += '{';
            bool first = true;
            for (const auto& [k, item] : v.get_object()) {
                if (!first) out += ',';
                first = false;
                out += json::serialize(json::string_view(k));
                out += ':';
                append_json(item, out);
            }
            out += '}';
            return;
        }
        default:
            out += json::serialize(v);
            return;
    }
}

std::string to_json_string(const json::value& v) {
    std::string out;
    append_json(v, out);
    return out;
}

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
        append_json(v, out);
    }
}
}  // namespace

std::string to_pretty_json(const json::value& v) {
    std::string out;
    pretty(v, out, 0);
    return out;
}

}  // namespace sandflow
