// A parser for the Python literal subset that metadata may use, producing JSON.
//
// Accepted: dicts with string keys, lists and tuples (both become arrays), strings in every
// quoting (single, double, triple; r/R/u/U prefixes; implicit concatenation), integers that fit
// in 64 bits (decimal, 0x, 0o, 0b, underscores), floats, unary + and -, True/False/None.
// Rejected with a located error: sets, bytes, f-strings, complex numbers, \N{...} escapes,
// non-string keys, duplicate keys, and anything that is not a literal (names, calls, **).
// Nesting is capped at limits::kMaxLiteralDepth (the parser recurses once per level) and the
// literal's text at limits::kMaxMetadataBytes, counted from the declaration's start.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "actor/extract_detail.hpp"
#include "actor/text_cursor.hpp"

namespace sandflow::actor::detail {

// Python identifier characters: ASCII ones plus any non-ASCII byte (non-ASCII letters are
// valid in identifiers; the scan has no need to tell them from other characters).
inline bool py_ident_start(char c) {
    return is_alpha(c) || c == '_' || is_non_ascii(c);
}
inline bool py_ident_char(char c) {
    return py_ident_start(c) || is_digit(c);
}
std::string_view read_py_identifier(TextCursor& cur);

struct PyStringPrefix {
    bool raw = false;
    bool bytes = false;
    bool format = false;  // f-strings and t-strings
};
// The meaning of a string prefix (case-insensitive), or nullopt if `word` is not one.
std::optional<PyStringPrefix> py_string_prefix(std::string_view word);
// True if the cursor is at a string literal: a quote, or up to three prefix letters and a
// quote (so that invalid prefixes such as "ur" get a clear error).
bool at_py_string(const TextCursor& cur);
// Skips spaces, newlines, comments and backslash continuations: the trivia allowed between
// tokens inside brackets.
void skip_py_trivia(TextCursor& cur);

class PyLiteralParser : public LiteralParserBase {
  public:
    // `start` is where the declaration begins; the size limit counts from there.
    PyLiteralParser(TextCursor& cur, std::string_view file, const SourcePos& start)
        : LiteralParserBase(cur, file, start) {}

    void skip_trivia() { skip_py_trivia(cur_); }
    // Parses one literal at the cursor (no leading trivia is skipped). `keys`, when given,
    // receives the place of each key of the outermost dict.
    Result<json::value> parse_value(KeyPositions* keys = nullptr);

  private:
    Result<json::value> value(std::size_t depth, KeyPositions* keys);
    Result<json::value> dict(std::size_t depth, KeyPositions* keys);
    Result<json::value> list(std::size_t depth);
    Result<json::value> paren(std::size_t depth);
    Result<json::value> strings();
    Result<void> string(std::string& out);
    Result<void> escape(std::string& out);
    Result<json::value> number(bool negative);
};

}  // namespace sandflow::actor::detail
