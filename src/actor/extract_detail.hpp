// What the language scanners hand to metadata.cpp: one declaration, as written, with places.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "actor/script_limits.hpp"
#include "actor/text_cursor.hpp"
#include "core/error.hpp"
#include "core/json.hpp"

namespace sandflow::actor::detail {

// Where each key of the outermost metadata object is written, for validation messages.
using KeyPositions = std::map<std::string, SourcePos, std::less<>>;

struct Declaration {
    json::object raw;  // the declaration's literal (or keyword arguments) as JSON
    SourcePos pos;     // where the declaration starts
    KeyPositions keys;
};

// Both take text already checked to be valid UTF-8 and find exactly one declaration.
Result<Declaration> extract_python(std::string_view source, std::string_view file);
Result<Declaration> extract_javascript(std::string_view source, std::string_view file);

// Message for a second declaration; the error itself points at the second one.
inline std::string second_declaration_message(const SourcePos& first) {
    return "second actor declaration; the first is at " + where(first) +
           ": a script declares its metadata exactly once, remove one of them";
}

// Both literal parsers' caps. The literal's text, from the declaration's start to the
// cursor, is over limits::kMaxMetadataBytes: Errc::limit_exceeded naming the limit.
inline Result<void> check_literal_size(const TextCursor& cur, std::string_view file,
                                       const SourcePos& start) {
    if (cur.offset() - start.offset <= limits::kMaxMetadataBytes) return {};
    return tl::unexpected(limit_error_at(
        file, start,
        "the metadata literal is larger than " + std::to_string(limits::kMaxMetadataBytes) +
            " bytes (limits::kMaxMetadataBytes): keep large data out of the declaration",
        "max_metadata_bytes"));
}
// A bracket at `pos` opens a level past limits::kMaxLiteralDepth.
inline Error literal_depth_error(std::string_view file, const SourcePos& pos) {
    return limit_error_at(file, pos,
                          "literal nested deeper than " + std::to_string(limits::kMaxLiteralDepth) +
                              " levels (limits::kMaxLiteralDepth): flatten the metadata",
                          "max_literal_depth");
}

// JSON kind of a value in the words of the script's language, for "found X" messages.
inline std::string_view kind_name(const json::value& v, bool python) {
    switch (v.kind()) {
        case json::kind::null:
            return python ? "None" : "null";
        case json::kind::bool_:
            return python ? "a bool" : "a boolean";
        case json::kind::int64:
        case json::kind::uint64:
            return "an integer";
        case json::kind::double_:
            return python ? "a float" : "a number";
        case json::kind::string:
            return "a string";
        case json::kind::array:
            return python ? "a list" : "an array";
        case json::kind::object:
            return python ? "a dict" : "an object";
    }
    return "a value";
}

}  // namespace sandflow::actor::detail
