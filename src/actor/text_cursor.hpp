// Position tracking, UTF-8 helpers and error builders shared by the metadata scanners.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/json.hpp"

namespace sandflow::actor::detail {

// A place in a source text. `line` and `column` are 1-based. A column counts Unicode code
// points from the start of its line: a tab is one column and a multi-byte UTF-8 character is
// one column, which is what editors show for UTF-8 text. `offset` is in bytes.
struct SourcePos {
    std::size_t offset = 0;
    int line = 1;
    int column = 1;
};

// A reader over text that is already known to be valid UTF-8. Newlines are "\n", "\r\n" and a
// lone "\r" (the set Python and JavaScript share; U+2028 and U+2029 do not start a line here).
// A leading UTF-8 byte-order mark is skipped and takes no column.
class TextCursor {
  public:
    explicit TextCursor(std::string_view text);

    bool at_end() const { return pos_.offset >= text_.size(); }
    // The byte `ahead` bytes on, or '\0' past the end.
    char peek(std::size_t ahead = 0) const {
        const std::size_t i = pos_.offset + ahead;
        return i < text_.size() ? text_[i] : '\0';
    }
    bool at_newline() const { return peek() == '\n' || peek() == '\r'; }
    bool starts_with(std::string_view s) const { return text_.substr(pos_.offset).starts_with(s); }

    // Moves over n bytes, keeping line and column.
    void advance(std::size_t n = 1);
    // Consumes one newline ("\n", "\r\n" or "\r") when the cursor is at one.
    bool skip_newline();
    // Consumes one whole UTF-8 character and appends its bytes to `out`.
    void copy_char(std::string& out);
    // Consumes up to the next newline (not included) or the end.
    void skip_line();

    const SourcePos& pos() const { return pos_; }
    std::size_t offset() const { return pos_.offset; }
    void reset(const SourcePos& p) { pos_ = p; }
    std::string_view text() const { return text_; }
    // The text from byte offset `from` up to the cursor.
    std::string_view since(std::size_t from) const {
        return text_.substr(from, pos_.offset - from);
    }

  private:
    std::string_view text_;
    SourcePos pos_;
};

inline bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
inline bool is_hex_digit(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
inline bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
inline bool is_non_ascii(char c) {
    return static_cast<unsigned char>(c) >= 0x80;
}
// The character of an escape letter both languages share (\b \f \n \r \t \v), or '\0'
// for any other letter.
inline char control_escape(char letter) {
    switch (letter) {
        case 'b':
            return '\b';
        case 'f':
            return '\f';
        case 'n':
            return '\n';
        case 'r':
            return '\r';
        case 't':
            return '\t';
        case 'v':
            return '\v';
        default:
            return '\0';
    }
}
// True if `c` is a digit of `base` (2, 8, 10 or 16).
bool is_base_digit(char c, int base);
int hex_value(char c);

// Byte offset of the first byte that is not part of valid UTF-8 (overlong forms, surrogates
// and code points above U+10FFFF are invalid), or nullopt when the whole text is valid.
std::optional<std::size_t> find_invalid_utf8(std::string_view text);
// Line and column of a byte offset, counted as TextCursor counts them.
SourcePos position_at(std::string_view text, std::size_t offset);
// Appends `cp` as UTF-8; false (nothing appended) for surrogates and values above U+10FFFF.
bool append_utf8(std::string& out, std::uint32_t cp);
// The JSON value of a numeric literal's digits (sign, prefix and underscores already
// removed), or what is wrong with it: a float out of range, an integer outside int64.
tl::expected<json::value, std::string> number_value(std::string_view digits, int base,
                                                    bool is_float, bool negative);

// Reads the parts of a numeric literal that Python and JavaScript share: a 0x/0o/0b prefix
// with its digits, or decimal digits with a fraction and an exponent, '_' standing between
// two digits. Each language puts its own checks between the steps (JavaScript: legacy octal,
// BigInt; Python: complex numbers, leading zeros). The sign is the caller's.
class NumberScanner {
  public:
    // `ident_char`: the language's identifier characters, none of which may follow a literal.
    // `underscore_after_prefix`: Python accepts 0x_ff, JavaScript does not.
    NumberScanner(TextCursor& cur, bool (*ident_char)(char), bool underscore_after_prefix)
        : cur_(cur),
          ident_char_(ident_char),
          underscore_after_prefix_(underscore_after_prefix),
          start_(cur.pos()) {}

    const SourcePos& start() const { return start_; }
    // What was read so far, without prefix and underscores: what number_value takes.
    const std::string& digits() const { return digits_; }
    int base() const { return base_; }
    bool is_float() const { return is_float_; }

    // True at "0x", "0o" or "0b" (any case).
    bool at_prefix() const;
    // Reads the prefix and its digits; false when no digit follows the prefix.
    bool prefixed_digits();
    // Reads decimal digits (none is fine: ".5").
    void integer_digits() { read_digits(false); }
    // Reads a '.' and its digits, then an exponent, when present; false when an exponent has
    // no digits.
    bool fraction_and_exponent();
    // True when an identifier character or a '.' follows: the literal is malformed.
    bool runs_on() const { return ident_char_(cur_.peek()) || cur_.peek() == '.'; }
    // Consumes the rest of a malformed literal and says so, quoting all of it.
    std::string invalid();
    // The literal's value, or why it has none (see number_value).
    tl::expected<json::value, std::string> value(bool negative) const {
        return number_value(digits_, base_, is_float_, negative);
    }

  private:
    // Digits of base_; false when there is none. `leading_underscore`: one '_' may come
    // before the first digit.
    bool read_digits(bool leading_underscore);

    TextCursor& cur_;
    bool (*ident_char_)(char);
    bool underscore_after_prefix_;
    SourcePos start_;
    std::string digits_;
    int base_ = 10;
    bool is_float_ = false;
};

// `s` in single quotes, for messages.
inline std::string in_quotes(std::string_view s) {
    return "'" + std::string(s) + "'";
}

// What the cursor is looking at, for "expected X, found Y" messages: "end of file",
// "end of line", "identifier 'foo'", "number '12'", "a string" or "'c'".
std::string describe_at(const TextCursor& cur);

// The metadata Error for a position in `file` (see metadata_error).
Error error_at(std::string_view file, const SourcePos& pos, std::string_view what);
// The same, for a crossed limit: also names the limit in data.limit.
Error limit_error_at(std::string_view file, const SourcePos& pos, std::string_view what,
                     std::string_view limit);
// "line 3, column 5" — for messages that name a second place.
std::string where(const SourcePos& pos);

}  // namespace sandflow::actor::detail
