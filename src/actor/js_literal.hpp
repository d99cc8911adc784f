// A parser for the JavaScript object-literal subset that metadata may use, producing JSON,
// and the lexical pieces (identifiers, whitespace and comments, strings' errors) that the
// script scanner (js_extract.cpp) shares with it.
//
// Accepted: objects (identifier, string and numeric keys), arrays, strings, templates without
// substitutions, numbers (decimal, hex, octal, binary, separators, leading signs),
// true/false/null, comments and trailing commas. Anything else (names such as undefined,
// calls, functions, spreads, shorthand properties, methods) is an error with its place.
// Depth is capped at limits::kMaxLiteralDepth (one recursion per level), size at
// limits::kMaxMetadataBytes from the declaration's start.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "actor/extract_detail.hpp"
#include "actor/text_cursor.hpp"

namespace sandflow::actor::detail {

inline bool js_ident_start(char c) {
    return is_alpha(c) || c == '_' || c == '$' || is_non_ascii(c);
}
inline bool js_ident_char(char c) {
    return js_ident_start(c) || is_digit(c);
}

// Skips whitespace and comments; an unterminated block comment is an error at its start.
Result<void> skip_js_trivia(TextCursor& cur, std::string_view file);

Error unterminated_string(std::string_view file, const SourcePos& start, char quote);

// Reads the '...' or "..." string at the cursor up to its closing quote, handing each
// character inside to `on_char` with the cursor at it: it moves past the character (past the
// whole escape, at a backslash) and may fail. A line's end first: an unterminated string.
// The parser decodes with it; the script scanner only skips.
template <class OnChar>
Result<void> read_js_string(TextCursor& cur, std::string_view file, OnChar on_char) {
    const SourcePos start = cur.pos();
    const char quote = cur.peek();
    cur.advance();
    for (;;) {
        if (cur.at_end() || cur.at_newline()) {
            return tl::unexpected(unterminated_string(file, start, quote));
        }
        const char c = cur.peek();
        if (c == quote) {
            cur.advance();
            return {};
        }
        if (Result<void> ok = on_char(c); !ok) return ok;
    }
}

class JsLiteralParser : public LiteralParserBase {
  public:
    // `start` is where the declaration begins; the size limit counts from there.
    JsLiteralParser(TextCursor& cur, std::string_view file, const SourcePos& start)
        : LiteralParserBase(cur, file, start) {}

    Result<void> skip_trivia() { return skip_js_trivia(cur_, file_); }
    // Parses one literal at the cursor (no leading trivia is skipped). `keys`, when given,
    // receives the place of each key of the outermost object.
    Result<json::value> parse_value(KeyPositions* keys);

  private:
    Error found_error(std::string_view expected) const;
    Result<bool> another_item(char close, std::string_view expected);
    Result<json::value> value(std::size_t depth, KeyPositions* keys);
    Result<json::value> object(std::size_t depth, KeyPositions* keys);
    Result<std::string> property_name();
    Result<json::value> array(std::size_t depth);
    Result<void> string(std::string& out);
    Result<void> templ(std::string& out);
    Result<void> escape(std::string& out);
    Result<std::uint32_t> unicode_escape(const SourcePos& at);
    Result<json::value> number(bool negative);
};

}  // namespace sandflow::actor::detail
