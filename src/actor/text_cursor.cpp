#include "actor/text_cursor.hpp"

#include <algorithm>
#include <charconv>
#include <limits>

#include "actor/metadata.hpp"

namespace sandflow::actor::detail {

namespace {

// Length of the UTF-8 sequence that `lead` starts (1 for ASCII and for stray bytes).
std::size_t utf8_length(char lead) {
    const auto c = static_cast<unsigned char>(lead);
    if (c >= 0xF0) return 4;
    if (c >= 0xE0) return 3;
    if (c >= 0xC0) return 2;
    return 1;
}

constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";
constexpr std::size_t kMaxDescribedBytes = 40;  // longer tokens are cut in messages

}  // namespace

TextCursor::TextCursor(std::string_view text) : text_(text) {
    if (text_.starts_with(kByteOrderMark)) pos_.offset = kByteOrderMark.size();
}

void TextCursor::advance(std::size_t n) {
    for (; n > 0 && pos_.offset < text_.size(); --n) {
        const char c = text_[pos_.offset++];
        if (c == '\n' || (c == '\r' && peek() != '\n')) {
            ++pos_.line;
            pos_.column = 1;
        } else if (c != '\r' && (static_cast<unsigned char>(c) & 0xC0) != 0x80) {
            ++pos_.column;  // continuation bytes belong to the character already counted
        }
    }
}

bool TextCursor::skip_newline() {
    if (peek() == '\r' && peek(1) == '\n') {
        advance(2);
        return true;
    }
    if (at_newline()) {
        advance();
        return true;
    }
    return false;
}

void TextCursor::copy_char(std::string& out) {
    const std::size_t n = std::min(utf8_length(peek()), text_.size() - pos_.offset);
    out.append(text_.substr(pos_.offset, n));
    advance(n);
}

void TextCursor::skip_line() {
    while (!at_end() && !at_newline()) advance();
}

bool is_base_digit(char c, int base) {
    switch (base) {
        case 2:
            return c == '0' || c == '1';
        case 8:
            return c >= '0' && c <= '7';
        case 10:
            return is_digit(c);
        default:
            return is_hex_digit(c);
    }
}

int hex_value(char c) {
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::optional<std::size_t> find_invalid_utf8(std::string_view text) {
    const std::size_t n = text.size();
    std::size_t i = 0;
    while (i < n) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len = 0;
        std::uint32_t cp = 0;
        std::uint32_t min = 0;
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (n - i < len) return i;
        for (std::size_t k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(text[i + k]);
            if ((cc & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return std::nullopt;
}

SourcePos position_at(std::string_view text, std::size_t offset) {
    TextCursor cur(text);
    if (offset > cur.offset()) cur.advance(offset - cur.offset());
    return cur.pos();
}

bool append_utf8(std::string& out, std::uint32_t cp) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    auto put = [&out](std::uint32_t byte) { out.push_back(static_cast<char>(byte)); };
    if (cp < 0x80) {
        put(cp);
    } else if (cp < 0x800) {
        put(0xC0 | (cp >> 6));
        put(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        put(0xE0 | (cp >> 12));
        put(0x80 | ((cp >> 6) & 0x3F));
        put(0x80 | (cp & 0x3F));
    } else {
        put(0xF0 | (cp >> 18));
        put(0x80 | ((cp >> 12) & 0x3F));
        put(0x80 | ((cp >> 6) & 0x3F));
        put(0x80 | (cp & 0x3F));
    }
    return true;
}

std::string describe_at(const TextCursor& cur) {
    if (cur.at_end()) return "end of file";
    if (cur.at_newline()) return "end of line";
    const char c = cur.peek();
    auto run = [&cur](auto keep) {
        std::string s;
        for (std::size_t i = 0; i < kMaxDescribedBytes && keep(cur.peek(i)); ++i) {
            s.push_back(cur.peek(i));
        }
        return s;
    };
    auto word_char = [](char ch) {
        return is_alpha(ch) || is_digit(ch) || ch == '_' || ch == '$' || is_non_ascii(ch);
    };
    if (is_alpha(c) || c == '_' || c == '$') return "identifier '" + run(word_char) + "'";
    if (is_digit(c)) {
        return "number '" + run([&](char ch) { return word_char(ch) || ch == '.'; }) + "'";
    }
    if (c == '"' || c == '\'') return "a string";
    if (c == '`') return "a template literal";
    std::string s = "'";
    const std::size_t n = utf8_length(c);
    for (std::size_t i = 0; i < n; ++i) s.push_back(cur.peek(i));
    return s + "'";
}

Error error_at(std::string_view file, const SourcePos& pos, std::string_view what) {
    return metadata_error(file, pos.line, pos.column, what);
}

Error limit_error_at(std::string_view file, const SourcePos& pos, std::string_view what,
                     std::string_view limit) {
    Error e = error_at(file, pos, what);
    e.data["limit"] = limit;
    return e;
}

std::string where(const SourcePos& pos) {
    return "line " + std::to_string(pos.line) + ", column " + std::to_string(pos.column);
}

tl::expected<json::value, std::string> number_value(std::string_view digits, int base,
                                                    bool is_float, bool negative) {
    const char* first = digits.data();
    const char* last = digits.data() + digits.size();
    if (is_float) {
        double d = 0;
        const auto r = std::from_chars(first, last, d, std::chars_format::general);
        if (r.ec != std::errc() || r.ptr != last)
            return tl::unexpected<std::string>("number literal is out of range");
        return json::value(negative ? -d : d);
    }
    std::uint64_t magnitude = 0;
    const auto r = std::from_chars(first, last, magnitude, base);
    constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (r.ec != std::errc() || r.ptr != last || magnitude > kMax + (negative ? 1 : 0))
        return tl::unexpected<std::string>(
            "integer does not fit in 64 bits: metadata integers must be between -2**63 and "
            "2**63-1");
    if (!negative) return json::value(static_cast<std::int64_t>(magnitude));
    // -(2**63) has no positive counterpart; negate in unsigned arithmetic.
    return json::value(static_cast<std::int64_t>(~magnitude + 1));
}

bool NumberScanner::at_prefix() const {
    const char p = static_cast<char>(cur_.peek(1) | 0x20);
    return cur_.peek() == '0' && (p == 'x' || p == 'o' || p == 'b');
}

bool NumberScanner::prefixed_digits() {
    const char p = static_cast<char>(cur_.peek(1) | 0x20);
    base_ = p == 'x' ? 16 : p == 'o' ? 8 : 2;
    cur_.advance(2);
    return read_digits(underscore_after_prefix_);
}

bool NumberScanner::fraction_and_exponent() {
    if (cur_.peek() == '.') {
        is_float_ = true;
        digits_.push_back('.');
        cur_.advance();
        read_digits(false);
    }
    if ((cur_.peek() | 0x20) == 'e') {
        is_float_ = true;
        digits_.push_back('e');
        cur_.advance();
        if (cur_.peek() == '+' || cur_.peek() == '-') {
            digits_.push_back(cur_.peek());
            cur_.advance();
        }
        return read_digits(false);
    }
    return true;
}

std::string NumberScanner::invalid() {
    while (runs_on()) cur_.advance();
    return "invalid number literal " + in_quotes(cur_.since(start_.offset));
}

bool NumberScanner::read_digits(bool leading_underscore) {
    bool any = false;
    for (;;) {
        if (cur_.peek() == '_' && (any || leading_underscore) && is_base_digit(cur_.peek(1), base_))
            cur_.advance();
        if (!is_base_digit(cur_.peek(), base_)) return any;
        digits_.push_back(cur_.peek());
        cur_.advance();
        any = true;
    }
}

}  // namespace sandflow::actor::detail
