#include "actor/js_literal.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>

namespace sandflow::actor::detail {

namespace {

// Byte length of the whitespace character at the cursor (ASCII, NBSP, BOM, U+2028, U+2029),
// or 0.
std::size_t js_space(const TextCursor& cur) {
    const char c = cur.peek();
    if (c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\n' || c == '\r') return 1;
    if (cur.starts_with("\xC2\xA0")) return 2;
    if (cur.starts_with("\xEF\xBB\xBF") || cur.starts_with("\xE2\x80\xA8") ||
        cur.starts_with("\xE2\x80\xA9")) {
        return 3;
    }
    return 0;
}

// The string JavaScript makes of a numeric key (ECMAScript Number::toString: shortest
// round-trip digits, fixed notation from 1e-7 to 1e21, exponent notation outside).
std::string numeric_key(const json::value& num) {
    if (num.is_int64()) return std::to_string(num.get_int64());
    char buf[64];
    const auto r =
        std::to_chars(buf, buf + sizeof buf, num.get_double(), std::chars_format::scientific);
    const std::string_view sci(buf, static_cast<std::size_t>(r.ptr - buf));  // "d.ddde+XX"
    const std::size_t e = sci.find('e');
    std::string digits(sci.substr(0, e));
    digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
    int exp = 0;
    std::from_chars(sci.data() + e + (sci[e + 1] == '+' ? 2 : 1), sci.data() + sci.size(), exp);
    const int k = static_cast<int>(digits.size());
    const int n = exp + 1;  // digits before the decimal point
    if (digits == "0") return "0";
    if (k <= n && n <= 21) return digits + std::string(static_cast<std::size_t>(n - k), '0');
    if (0 < n && n <= 21) return digits.insert(static_cast<std::size_t>(n), ".");
    if (-6 < n && n <= 0) return "0." + std::string(static_cast<std::size_t>(-n), '0') + digits;
    std::string out = digits.substr(0, 1);
    if (k > 1) out += "." + digits.substr(1);
    return out + "e" + (n - 1 >= 0 ? "+" : "-") + std::to_string(std::abs(n - 1));
}

}  // namespace

Result<void> skip_js_trivia(TextCursor& cur, std::string_view file) {
    for (;;) {
        if (const std::size_t n = js_space(cur)) {
            cur.advance(n);
        } else if (cur.starts_with("//")) {
            cur.skip_line();
        } else if (cur.starts_with("/*")) {
            const SourcePos start = cur.pos();
            cur.advance(2);
            while (!cur.at_end() && !cur.starts_with("*/")) cur.advance();
            if (cur.at_end()) {
                return tl::unexpected(
                    error_at(file, start, "unterminated block comment: add the closing */"));
            }
            cur.advance(2);
        } else {
            return {};
        }
    }
}

Error unterminated_string(std::string_view file, const SourcePos& start, char quote) {
    return error_at(file, start,
                    std::string("unterminated string: add the closing ") + quote +
                        " before the end of the line (end the line with \\ to continue the "
                        "string, or use a template literal)");
}

Result<json::value> JsLiteralParser::parse_value(KeyPositions* keys) {
    return checked(value(0, keys));
}

Error JsLiteralParser::found_error(std::string_view expected) const {
    return error(cur_.pos(), std::string(expected) + ", found " + describe_at(cur_));
}

// After an object's or array's item: true past a ',' (another item or `close` may
// follow), false at `close` (left for the caller); anything else is an error.
Result<bool> JsLiteralParser::another_item(char close, std::string_view expected) {
    if (auto ok = skip_trivia(); !ok) return tl::unexpected(ok.error());
    if (cur_.peek() == ',') {
        cur_.advance();
        return true;
    }
    if (cur_.peek() == close) return false;
    return tl::unexpected(found_error(expected));
}

Result<json::value> JsLiteralParser::value(std::size_t depth, KeyPositions* keys) {
    if (auto ok = check_size(); !ok) return tl::unexpected(ok.error());
    const char c = cur_.peek();
    if (c == '{' || c == '[') {
        if (auto ok = check_depth(depth); !ok) return tl::unexpected(ok.error());
        return c == '{' ? object(depth + 1, keys) : array(depth + 1);
    }
    if (c == '"' || c == '\'' || c == '`') {
        std::string out;
        auto ok = c == '`' ? templ(out) : string(out);
        if (!ok) return tl::unexpected(ok.error());
        if (auto size_ok = check_size(); !size_ok) return tl::unexpected(size_ok.error());
        return json::value(json::string(out));
    }
    if (c == '+' || c == '-') {
        auto negative = signs([this] { return skip_trivia(); }, "a sign");
        if (!negative) return tl::unexpected(negative.error());
        return number(*negative);
    }
    if (at_number()) return number(false);
    if (js_ident_start(c)) {
        const SourcePos at = cur_.pos();
        const std::size_t from = cur_.offset();
        while (js_ident_char(cur_.peek())) cur_.advance();
        const std::string_view name = cur_.since(from);
        if (auto v = keyword_value(name, {"true", "false", "null"})) return std::move(*v);
        return tl::unexpected(
            error(at, "expected a literal value, found identifier " + in_quotes(name) +
                          ": metadata is read without running the script, so it may only "
                          "contain strings, numbers, true/false/null, arrays and objects"));
    }
    if (cur_.starts_with("...")) {
        return tl::unexpected(
            error(cur_.pos(), "spread (...) is not allowed in metadata: write the values"));
    }
    return tl::unexpected(found_error("expected a literal value"));
}

Result<json::value> JsLiteralParser::object(std::size_t depth, KeyPositions* keys) {
    cur_.advance();  // '{'
    json::object obj;
    for (;;) {
        if (auto ok = skip_trivia(); !ok) return tl::unexpected(ok.error());
        if (cur_.peek() == '}') break;
        const SourcePos key_pos = cur_.pos();
        auto key = property_name();
        if (!key) return tl::unexpected(key.error());
        if (auto ok = skip_trivia(); !ok) return tl::unexpected(ok.error());
        if (cur_.peek() != ':') {
            if (cur_.peek() == '(') {
                return tl::unexpected(
                    error(key_pos, "methods are not allowed in metadata: it may only hold data"));
            }
            if (cur_.peek() == ',' || cur_.peek() == '}') {
                return tl::unexpected(error(key_pos, "shorthand property " + in_quotes(*key) +
                                                         " refers to a variable: write " + *key +
                                                         ": <literal>"));
            }
            return tl::unexpected(
                found_error("expected ':' after property name " + in_quotes(*key)));
        }
        cur_.advance();  // ':'
        if (auto ok = skip_trivia(); !ok) return tl::unexpected(ok.error());
        auto val = value(depth, nullptr);
        if (!val) return val;
        if (!obj.emplace(*key, std::move(*val)).second) {
            return tl::unexpected(error(
                key_pos, "duplicate key " + in_quotes(*key) + " in object: remove one of them"));
        }
        if (keys != nullptr) keys->emplace(*key, key_pos);
        auto more = another_item('}', "expected ',' or '}' after property value");
        if (!more) return tl::unexpected(more.error());
        if (!*more) break;
    }
    cur_.advance();  // '}'
    return obj;
}

Result<std::string> JsLiteralParser::property_name() {
    const char c = cur_.peek();
    std::string key;
    if (c == '"' || c == '\'') {
        if (auto ok = string(key); !ok) return tl::unexpected(ok.error());
        return key;
    }
    if (js_ident_start(c)) {
        while (js_ident_char(cur_.peek())) key.push_back(cur_.peek()), cur_.advance();
        return key;
    }
    if (at_number()) {
        auto num = number(false);
        if (!num) return tl::unexpected(num.error());
        return numeric_key(*num);
    }
    if (c == '[') {
        return tl::unexpected(
            error(cur_.pos(), "computed property names [...] are not allowed in metadata"));
    }
    if (cur_.starts_with("...")) {
        return tl::unexpected(
            error(cur_.pos(), "spread (...) is not allowed in metadata: write the properties"));
    }
    return tl::unexpected(found_error("expected a property name or '}'"));
}

Result<json::value> JsLiteralParser::array(std::size_t depth) {
    cur_.advance();  // '['
    json::array arr;
    for (;;) {
        if (auto ok = skip_trivia(); !ok) return tl::unexpected(ok.error());
        if (cur_.peek() == ']') break;
        if (cur_.peek() == ',') {
            return tl::unexpected(error(cur_.pos(),
                                        "empty array element: remove the extra ',' (holes are not "
                                        "allowed in metadata)"));
        }
        auto item = value(depth, nullptr);
        if (!item) return item;
        arr.push_back(std::move(*item));
        auto more = another_item(']', "expected ',' or ']' in array");
        if (!more) return tl::unexpected(more.error());
        if (!*more) break;
    }
    cur_.advance();  // ']'
    return arr;
}

Result<void> JsLiteralParser::string(std::string& out) {
    return read_js_string(cur_, file_, [this, &out](char c) -> Result<void> {
        if (c == '\\') return escape(out);
        cur_.copy_char(out);
        return {};
    });
}

Result<void> JsLiteralParser::templ(std::string& out) {
    const SourcePos start = cur_.pos();
    cur_.advance();  // '`'
    for (;;) {
        if (cur_.at_end()) {
            return tl::unexpected(error(start, "unterminated template literal: add the closing `"));
        }
        const char c = cur_.peek();
        if (c == '`') {
            cur_.advance();
            return {};
        }
        if (c == '$' && cur_.peek(1) == '{') {
            return tl::unexpected(
                error(cur_.pos(),
                      "template substitutions ${...} are not allowed in metadata: it is read "
                      "without running the script, so write the text out"));
        }
        if (c == '\\') {
            if (auto ok = escape(out); !ok) return ok;
        } else if (cur_.skip_newline()) {
            out.push_back('\n');  // templates read "\r\n" and "\r" as "\n"
        } else {
            cur_.copy_char(out);
        }
    }
}

Result<void> JsLiteralParser::escape(std::string& out) {
    const SourcePos at = cur_.pos();
    cur_.advance();                      // '\'
    if (cur_.skip_newline()) return {};  // line continuation
    if (cur_.starts_with("\xE2\x80\xA8") || cur_.starts_with("\xE2\x80\xA9")) {
        cur_.advance(3);
        return {};
    }
    if (cur_.at_end()) return {};  // the caller reports the unterminated string
    const char c = cur_.peek();
    auto bad = [&](std::string_view what) { return tl::unexpected(error(at, what)); };
    if (const char control = control_escape(c)) {
        out.push_back(control);
        cur_.advance();
        return {};
    }
    switch (c) {
        case 'x': {
            cur_.advance();
            if (!is_hex_digit(cur_.peek()) || !is_hex_digit(cur_.peek(1))) {
                return bad("invalid \\x escape: expected two hex digits");
            }
            append_utf8(out, static_cast<std::uint32_t>(hex_value(cur_.peek()) * 16 +
                                                        hex_value(cur_.peek(1))));
            cur_.advance(2);
            return {};
        }
        case 'u': {
            auto cp = unicode_escape(at);
            if (!cp) return tl::unexpected(cp.error());
            // A high surrogate followed by an escaped low one is one character.
            if (*cp >= 0xD800 && *cp <= 0xDBFF && cur_.starts_with("\\u")) {
                const SourcePos save = cur_.pos();
                cur_.advance();
                auto low = unicode_escape(at);
                if (low && *low >= 0xDC00 && *low <= 0xDFFF) {
                    *cp = 0x10000 + ((*cp - 0xD800) << 10) + (*low - 0xDC00);
                } else {
                    cur_.reset(save);
                }
            }
            if (!append_utf8(out, *cp)) {
                return bad("a lone surrogate escape cannot be stored as UTF-8");
            }
            return {};
        }
        default:
            if (c == '0' && !is_digit(cur_.peek(1))) {
                out.push_back('\0');
                break;
            }
            if (is_digit(c)) {
                return bad("octal escapes are not allowed: use \\xHH or \\uXXXX");
            }
            cur_.copy_char(out);  // any other escaped character stands for itself
            return {};
    }
    cur_.advance();
    return {};
}

// \uXXXX or \u{X...} with the cursor at the 'u'; the code point, not yet checked. `at`
// is the backslash, for errors.
Result<std::uint32_t> JsLiteralParser::unicode_escape(const SourcePos& at) {
    cur_.advance();  // 'u'
    std::uint32_t cp = 0;
    if (cur_.peek() == '{') {
        cur_.advance();
        std::size_t n = 0;
        for (; is_hex_digit(cur_.peek()); ++n) {
            cp = std::min<std::uint32_t>(
                cp * 16 + static_cast<std::uint32_t>(hex_value(cur_.peek())), 0x110000);
            cur_.advance();
        }
        if (n == 0 || cur_.peek() != '}' || cp > 0x10FFFF) {
            return tl::unexpected(
                error(at, "invalid \\u{...} escape: expected hex digits up to 10FFFF"));
        }
        cur_.advance();
        return cp;
    }
    for (int i = 0; i < 4; ++i) {
        if (!is_hex_digit(cur_.peek())) {
            return tl::unexpected(error(at, "invalid \\u escape: expected four hex digits"));
        }
        cp = cp * 16 + static_cast<std::uint32_t>(hex_value(cur_.peek()));
        cur_.advance();
    }
    return cp;
}

Result<json::value> JsLiteralParser::number(bool negative) {
    NumberScanner num(cur_, js_ident_char, false);
    auto invalid = [&] { return tl::unexpected(error(num.start(), num.invalid())); };
    if (num.at_prefix()) {
        if (!num.prefixed_digits()) return invalid();
    } else {
        num.integer_digits();
        if (num.digits().size() > 1 && num.digits()[0] == '0') {
            return tl::unexpected(
                error(num.start(),
                      "leading zeros (legacy octal) are not allowed: write 0o... for octal "
                      "or drop the zeros"));
        }
        if (!num.fraction_and_exponent()) return invalid();
    }
    if (cur_.peek() == 'n') {
        return tl::unexpected(error(num.start(), "BigInt literals are not allowed in metadata"));
    }
    if (num.runs_on()) return invalid();
    auto value = num.value(negative);
    if (!value) return tl::unexpected(error(num.start(), value.error()));
    return *value;
}

}  // namespace sandflow::actor::detail
