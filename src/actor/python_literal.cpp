#include "actor/python_literal.hpp"

#include <charconv>
#include <cstdint>
#include <limits>

namespace sandflow::actor::detail {

namespace {

bool is_quote(char c) {
    return c == '\'' || c == '"';
}

}  // namespace

std::string_view read_py_identifier(TextCursor& cur) {
    const std::size_t from = cur.offset();
    while (py_ident_char(cur.peek())) cur.advance();
    return cur.since(from);
}

std::optional<PyStringPrefix> py_string_prefix(std::string_view word) {
    if (word.size() > 2) return std::nullopt;
    PyStringPrefix p;
    int kinds = 0;  // at most one of u / b / f / t
    for (char c : word) {
        switch (c | 0x20) {  // ASCII lower case
            case 'r':
                if (p.raw) return std::nullopt;
                p.raw = true;
                break;
            case 'b':
                p.bytes = true, ++kinds;
                break;
            case 'f':
            case 't':
                p.format = true, ++kinds;
                break;
            case 'u':
                if (word.size() != 1) return std::nullopt;  // "ur" is not Python 3
                ++kinds;
                break;
            default:
                return std::nullopt;
        }
    }
    if (kinds > 1) return std::nullopt;
    return p;
}

bool at_py_string(const TextCursor& cur) {
    for (std::size_t i = 0; i <= 3; ++i) {
        const char c = cur.peek(i);
        if (is_quote(c)) return true;
        if (!is_alpha(c)) return false;
    }
    return false;
}

void skip_py_trivia(TextCursor& cur) {
    for (;;) {
        const char c = cur.peek();
        if (c == ' ' || c == '\t' || c == '\f') {
            cur.advance();
        } else if (c == '#') {
            cur.skip_line();
        } else if (c == '\\' && (cur.peek(1) == '\n' || cur.peek(1) == '\r')) {
            cur.advance();
            cur.skip_newline();
        } else if (!cur.skip_newline()) {
            return;
        }
    }
}

Result<json::value> PyLiteralParser::parse_value(KeyPositions* keys) {
    return checked(value(0, keys));
}

Result<json::value> PyLiteralParser::value(std::size_t depth, KeyPositions* keys) {
    if (auto ok = check_size(); !ok) return tl::unexpected(ok.error());
    const char c = cur_.peek();
    if (c == '{' || c == '[' || c == '(') {
        if (auto ok = check_depth(depth); !ok) return tl::unexpected(ok.error());
        if (c == '{') return dict(depth + 1, keys);
        if (c == '[') return list(depth + 1);
        return paren(depth + 1);
    }
    if (c == '+' || c == '-') {
        auto negative = signs(
            [this]() -> Result<void> {
                skip_trivia();
                return {};
            },
            "a unary sign");
        if (!negative) return tl::unexpected(negative.error());
        return number(*negative);
    }
    if (at_number()) return number(false);
    if (at_py_string(cur_)) return strings();
    if (py_ident_start(c)) {
        const SourcePos at = cur_.pos();
        const std::string_view name = read_py_identifier(cur_);
        if (auto v = keyword_value(name, {"True", "False", "None"})) return std::move(*v);
        return tl::unexpected(
            error(at, "expected a literal value, found identifier " + in_quotes(name) +
                          ": metadata is read without running the script, so it may only contain "
                          "strings, numbers, True/False/None, lists, tuples and dicts"));
    }
    return tl::unexpected(
        error(cur_.pos(), "expected a literal value, found " + describe_at(cur_)));
}

Result<json::value> PyLiteralParser::dict(std::size_t depth, KeyPositions* keys) {
    const SourcePos open = cur_.pos();
    cur_.advance();  // '{'
    skip_trivia();
    json::object obj;
    if (cur_.peek() == '}') {
        cur_.advance();
        return obj;
    }
    for (;;) {
        const SourcePos key_pos = cur_.pos();
        auto key = value(depth, nullptr);
        if (!key) return key;
        skip_trivia();
        if (cur_.peek() != ':') {
            if (obj.empty() && (cur_.peek() == ',' || cur_.peek() == '}')) {
                return tl::unexpected(
                    error(open, "set literals are not allowed in metadata: use a list [...]"));
            }
            return tl::unexpected(
                error(cur_.pos(), "expected ':' after dict key, found " + describe_at(cur_)));
        }
        if (!key->is_string()) {
            return tl::unexpected(error(
                key_pos, "dict keys must be strings, found " + std::string(kind_name(*key, true))));
        }
        cur_.advance();  // ':'
        skip_trivia();
        auto val = value(depth, nullptr);
        if (!val) return val;
        const std::string_view name = key->get_string();
        if (!obj.emplace(name, std::move(*val)).second) {
            return tl::unexpected(error(
                key_pos, "duplicate key " + in_quotes(name) + " in dict: remove one of them"));
        }
        if (keys != nullptr) keys->emplace(std::string(name), key_pos);
        skip_trivia();
        if (cur_.peek() == ',') {
            cur_.advance();
            skip_trivia();
            if (cur_.peek() != '}') continue;
        }
        if (cur_.peek() == '}') {
            cur_.advance();
            return obj;
        }
        return tl::unexpected(
            error(cur_.pos(), "expected ',' or '}' after dict value, found " + describe_at(cur_)));
    }
}

Result<json::value> PyLiteralParser::list(std::size_t depth) {
    cur_.advance();  // '['
    json::array arr;
    for (;;) {
        skip_trivia();
        if (cur_.peek() == ']') break;
        auto item = value(depth, nullptr);
        if (!item) return item;
        arr.push_back(std::move(*item));
        skip_trivia();
        if (cur_.peek() == ',') {
            cur_.advance();
            continue;
        }
        if (cur_.peek() == ']') break;
        return tl::unexpected(
            error(cur_.pos(), "expected ',' or ']' in list, found " + describe_at(cur_)));
    }
    cur_.advance();  // ']'
    return arr;
}

// A tuple, or a parenthesised value: "(x)" is x, "(x,)" and "()" are tuples.
Result<json::value> PyLiteralParser::paren(std::size_t depth) {
    cur_.advance();  // '('
    skip_trivia();
    json::array arr;
    if (cur_.peek() == ')') {
        cur_.advance();
        return arr;
    }
    auto first = value(depth, nullptr);
    if (!first) return first;
    skip_trivia();
    if (cur_.peek() == ')') {
        cur_.advance();
        return first;
    }
    arr.push_back(std::move(*first));
    for (;;) {
        if (cur_.peek() != ',') {
            return tl::unexpected(
                error(cur_.pos(), "expected ',' or ')' in tuple, found " + describe_at(cur_)));
        }
        cur_.advance();
        skip_trivia();
        if (cur_.peek() == ')') break;
        auto item = value(depth, nullptr);
        if (!item) return item;
        arr.push_back(std::move(*item));
        skip_trivia();
        if (cur_.peek() == ')') break;
    }
    cur_.advance();  // ')'
    return arr;
}

// One or more adjacent string literals, concatenated as Python does.
Result<json::value> PyLiteralParser::strings() {
    std::string out;
    for (;;) {
        if (auto ok = string(out); !ok) return tl::unexpected(ok.error());
        if (auto ok = check_size(); !ok) return tl::unexpected(ok.error());
        const SourcePos after = cur_.pos();
        skip_trivia();
        if (!at_py_string(cur_)) {
            cur_.reset(after);
            return json::value(json::string(out));
        }
    }
}

Result<void> PyLiteralParser::string(std::string& out) {
    const SourcePos start = cur_.pos();
    const std::string_view word = read_py_identifier(cur_);
    const auto prefix = py_string_prefix(word);
    if (!prefix) {
        return tl::unexpected(error(start, "invalid string prefix " + in_quotes(word)));
    }
    if (prefix->bytes) {
        return tl::unexpected(error(
            start, "bytes literals (b'...') are not allowed in metadata: use a plain string"));
    }
    if (prefix->format) {
        return tl::unexpected(
            error(start,
                  "f-strings are not allowed in metadata: it is read without running the "
                  "script, so write the text out as a plain string"));
    }
    const char quote = cur_.peek();
    const bool triple = cur_.peek(1) == quote && cur_.peek(2) == quote;
    cur_.advance(triple ? 3 : 1);
    for (;;) {
        if (cur_.at_end()) {
            return tl::unexpected(error(
                start, triple ? std::string("unterminated triple-quoted string: add the "
                                            "closing ") +
                                    std::string(3, quote)
                              : std::string("unterminated string: add the closing ") + quote));
        }
        const char c = cur_.peek();
        if (cur_.at_newline()) {
            if (!triple) {
                return tl::unexpected(
                    error(start, std::string("unterminated string: add the closing ") + quote +
                                     " before the end of the line (use a triple-quoted string or "
                                     "\\n for text that spans lines)"));
            }
            cur_.skip_newline();
            out.push_back('\n');  // Python reads "\r\n" and "\r" in source as "\n"
        } else if (c == quote && (!triple || (cur_.peek(1) == quote && cur_.peek(2) == quote))) {
            cur_.advance(triple ? 3 : 1);
            return {};
        } else if (c == '\\' && prefix->raw) {
            // A raw string keeps the backslash and the character after it, which therefore
            // cannot end the string.
            out.push_back('\\');
            cur_.advance();
            if (cur_.at_newline()) {
                cur_.skip_newline();
                out.push_back('\n');
            } else if (!cur_.at_end()) {
                cur_.copy_char(out);
            }
        } else if (c == '\\') {
            if (auto ok = escape(out); !ok) return ok;
        } else {
            cur_.copy_char(out);
        }
    }
}

Result<void> PyLiteralParser::escape(std::string& out) {
    const SourcePos at = cur_.pos();
    cur_.advance();                      // '\'
    if (cur_.skip_newline()) return {};  // backslash-newline continues the string
    if (cur_.at_end()) return {};        // the caller reports the unterminated string
    const char c = cur_.peek();
    auto code_point = [&](std::size_t digits, char letter) -> Result<void> {
        cur_.advance();  // the letter
        std::uint32_t cp = 0;
        for (std::size_t i = 0; i < digits; ++i) {
            if (!is_hex_digit(cur_.peek())) {
                return tl::unexpected(error(at, std::string("invalid \\") + letter +
                                                    " escape: expected " + std::to_string(digits) +
                                                    " hex digits"));
            }
            cp = cp * 16 + static_cast<std::uint32_t>(hex_value(cur_.peek()));
            cur_.advance();
        }
        if (!append_utf8(out, cp)) {
            return tl::unexpected(
                error(at,
                      "escape is not a Unicode scalar value (surrogates and values above "
                      "\\U0010FFFF cannot be stored as UTF-8)"));
        }
        return {};
    };
    if (const char control = control_escape(c)) {
        out.push_back(control);
        cur_.advance();
        return {};
    }
    switch (c) {
        case '\\':
        case '\'':
        case '"':
            out.push_back(c);
            break;
        case 'a':
            out.push_back('\a');
            break;
        case 'x':
            return code_point(2, 'x');
        case 'u':
            return code_point(4, 'u');
        case 'U':
            return code_point(8, 'U');
        case 'N':
            return tl::unexpected(
                error(at,
                      "unsupported escape \\N{...} in metadata: write the character itself or "
                      "use \\uXXXX"));
        default:
            if (c >= '0' && c <= '7') {
                std::uint32_t cp = 0;
                for (int i = 0; i < 3 && cur_.peek() >= '0' && cur_.peek() <= '7'; ++i) {
                    cp = cp * 8 + static_cast<std::uint32_t>(cur_.peek() - '0');
                    cur_.advance();
                }
                append_utf8(out, cp);  // at most 0o777, always a scalar value
                return {};
            }
            // Python keeps unknown escapes such as "\d" as they are.
            out.push_back('\\');
            cur_.copy_char(out);
            return {};
    }
    cur_.advance();
    return {};
}

Result<json::value> PyLiteralParser::number(bool negative) {
    NumberScanner num(cur_, py_ident_char, true);
    auto invalid = [&] { return tl::unexpected(error(num.start(), num.invalid())); };
    if (num.at_prefix()) {
        if (!num.prefixed_digits()) return invalid();
    } else {
        num.integer_digits();
        if (!num.fraction_and_exponent()) return invalid();
        if ((cur_.peek() | 0x20) == 'j') {
            return tl::unexpected(
                error(num.start(), "complex numbers are not allowed in metadata"));
        }
    }
    if (num.runs_on()) return invalid();
    const std::string& digits = num.digits();
    if (!num.is_float() && num.base() == 10 && digits.size() > 1 && digits[0] == '0' &&
        digits.find_first_not_of('0') != std::string::npos) {
        return tl::unexpected(error(num.start(),
                                    "leading zeros are not allowed in decimal integers: write "
                                    "the number without them, or 0o... for octal"));
    }
    auto value = num.value(negative);
    if (!value) return tl::unexpected(error(num.start(), value.error()));
    return *value;
}

}  // namespace sandflow::actor::detail
