#include "core/json.hpp"

#include "core/limits.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace sandflow {

Result<json::value> parse_json(std::string_view text, std::string_view what) {
    json::parse_options opts;
    opts.max_depth = limits::kMaxJsonDepth;
    json::stream_parser p({}, opts);
    boost::system::error_code ec;
    std::size_t used = p.write(text.data(), text.size(), ec);
    if (!ec) p.finish(ec);
    if (!ec) return p.release();
    // Where it went wrong: line and column (1-based) of the first byte not taken.
    if (ec == json::error::incomplete || used > text.size()) used = text.size();
    const std::string_view before = text.substr(0, used);
    const auto line = 1 + std::count(before.begin(), before.end(), '\n');
    const auto nl = before.rfind('\n');
    const auto column = used - (nl == std::string_view::npos ? 0 : nl + 1) + 1;
    return fail(Errc::invalid_argument,
                "invalid JSON in " + std::string(what) + " at line " + std::to_string(line) +
                    ", column " + std::to_string(column) + ": " + ec.message(),
                {{"line", line}, {"column", column}});
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

// JSON string escaping: quote, backslash and control characters; all other bytes are
// copied as they are (like Boost.JSON's serializer), without a temporary string per call.
void append_string(std::string_view text, std::string& out) {
    static constexpr char kHex[] = "0123456789abcdef";
    out += '"';
    std::size_t run = 0;  // start of the bytes not yet copied
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        out.append(text.data() + run, i - run);
        run = i + 1;
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            default:
                out += "\\u00";
                out += kHex[c >> 4];
                out += kHex[c & 15];
        }
    }
    out.append(text.data() + run, text.size() - run);
    out += '"';
}

template <class Int>
void append_integer(Int i, std::string& out) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, i);
    out.append(buf, static_cast<std::size_t>(end - buf));
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
                append_string(k, out);
                out += ':';
                append_json(item, out);
            }
            out += '}';
            return;
        }
        case json::kind::string:
            append_string(v.get_string(), out);
            return;
        case json::kind::int64:
            append_integer(v.get_int64(), out);
            return;
        case json::kind::uint64:
            append_integer(v.get_uint64(), out);
            return;
        case json::kind::bool_:
            out += v.get_bool() ? "true" : "false";
            return;
        case json::kind::null:
            out += "null";
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
            append_string(k, out);
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
