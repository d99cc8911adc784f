// Finds the one metadata declaration of a JavaScript script and parses its object literal.
//
// Declarations, all at the top level (outside any bracket):
//   const|let|var metadata = {...}
//   module.exports = { metadata: {...}, process }     (or `exports.` / `.metadata =` forms)
//   module.exports = { metadata, process }            refers to the `metadata` variable
//   module.exports = { metadata: meta }               refers to a top-level `meta` variable
// The scan lexes strings, template literals (with nested ${} code), comments and regular
// expressions. Whether '/' starts a regular expression is decided by the previous token, as
// lexers without a full parser do; a "regular expression" that reaches the end of its line is
// re-read as a division, so a wrong guess cannot swallow code.
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <set>
#include <vector>

#include "actor/extract_detail.hpp"
#include "core/limits.hpp"

namespace sandflow::actor::detail {

namespace {

bool js_ident_start(char c) {
    return is_alpha(c) || c == '_' || c == '$' || is_non_ascii(c);
}
bool js_ident_char(char c) {
    return js_ident_start(c) || is_digit(c);
}

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

// Skips whitespace and comments; an unterminated block comment is an error at its start.
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

// ---------------------------------------------------------------------------------------
// The object-literal parser. Accepted: objects (identifier, string and numeric keys), arrays,
// strings, templates without substitutions, numbers (decimal, hex, octal, binary, separators,
// leading signs), true/false/null, comments and trailing commas. Anything else — names such
// as undefined, calls, functions, spreads, shorthand properties, methods — is an error with
// its place. Depth is capped at limits::kMaxLiteralDepth (one recursion per level), size at
// limits::kMaxMetadataBytes from the declaration's start.
class JsLiteralParser {
  public:
    JsLiteralParser(TextCursor& cur, std::string_view file, const SourcePos& start)
        : cur_(cur), file_(file), start_(start) {}

    Result<void> skip_trivia() { return skip_js_trivia(cur_, file_); }
    Result<json::value> parse_value(KeyPositions* keys) {
        auto v = value(0, keys);
        if (auto ok = check_size(); v && !ok) return tl::unexpected(ok.error());
        return v;
    }

  private:
    Error error(const SourcePos& pos, std::string_view what) const {
        return error_at(file_, pos, what);
    }
    Error found_error(std::string_view expected) const {
        return error(cur_.pos(), std::string(expected) + ", found " + describe_at(cur_));
    }

    // After an object's or array's item: true past a ',' (another item or `close` may
    // follow), false at `close` (left for the caller); anything else is an error.
    Result<bool> another_item(char close, std::string_view expected) {
        if (auto ok = skip_trivia(); !ok) return tl::unexpected(ok.error());
        if (cur_.peek() == ',') {
            cur_.advance();
            return true;
        }
        if (cur_.peek() == close) return false;
        return tl::unexpected(found_error(expected));
    }

    Result<void> check_size() const {
        if (cur_.offset() - start_.offset <= limits::kMaxMetadataBytes) return {};
        return tl::unexpected(limit_error_at(
            file_, start_,
            "the metadata literal is larger than " + std::to_string(limits::kMaxMetadataBytes) +
                " bytes (limits::kMaxMetadataBytes): keep large data out of the declaration",
            "max_metadata_bytes"));
    }

    Result<json::value> value(std::size_t depth, KeyPositions* keys) {
        if (auto ok = check_size(); !ok) return tl::unexpected(ok.error());
        const char c = cur_.peek();
        if (c == '{' || c == '[') {
            if (depth >= limits::kMaxLiteralDepth) {
                return tl::unexpected(limit_error_at(
                    file_, cur_.pos(),
                    "literal nested deeper than " + std::to_string(limits::kMaxLiteralDepth) +
                        " levels (limits::kMaxLiteralDepth): flatten the metadata",
                    "max_literal_depth"));
            }
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
            const SourcePos sign = cur_.pos();
            bool negative = false;
            while (cur_.peek() == '+' || cur_.peek() == '-') {
                negative ^= cur_.peek() == '-';
                cur_.advance();
                if (auto ok = skip_trivia(); !ok) return tl::unexpected(ok.error());
            }
            if (!is_digit(cur_.peek()) && !(cur_.peek() == '.' && is_digit(cur_.peek(1)))) {
                return tl::unexpected(
                    error(sign, "a sign must be followed by a number, found " + describe_at(cur_)));
            }
            return number(negative);
        }
        if (is_digit(c) || (c == '.' && is_digit(cur_.peek(1)))) return number(false);
        if (js_ident_start(c)) {
            const SourcePos at = cur_.pos();
            const std::size_t from = cur_.offset();
            while (js_ident_char(cur_.peek())) cur_.advance();
            const std::string_view name = cur_.since(from);
            if (name == "true") return json::value(true);
            if (name == "false") return json::value(false);
            if (name == "null") return json::value(nullptr);
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

    Result<json::value> object(std::size_t depth, KeyPositions* keys) {
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
                    return tl::unexpected(error(
                        key_pos, "methods are not allowed in metadata: it may only hold data"));
                }
                if (cur_.peek() == ',' || cur_.peek() == '}') {
                    return tl::unexpected(error(key_pos, "shorthand property " + in_quotes(*key) +
                                                             " refers to a variable: write " +
                                                             *key + ": <literal>"));
                }
                return tl::unexpected(
                    found_error("expected ':' after property name " + in_quotes(*key)));
            }
            cur_.advance();  // ':'
            if (auto ok = skip_trivia(); !ok) return tl::unexpected(ok.error());
            auto val = value(depth, nullptr);
            if (!val) return val;
            if (!obj.emplace(*key, std::move(*val)).second) {
                return tl::unexpected(error(key_pos, "duplicate key " + in_quotes(*key) +
                                                         " in object: remove one of them"));
            }
            if (keys != nullptr) keys->emplace(*key, key_pos);
            auto more = another_item('}', "expected ',' or '}' after property value");
            if (!more) return tl::unexpected(more.error());
            if (!*more) break;
        }
        cur_.advance();  // '}'
        return obj;
    }

    Result<std::string> property_name() {
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
        if (is_digit(c) || (c == '.' && is_digit(cur_.peek(1)))) {
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

    // The string JavaScript makes of a numeric key (ECMAScript Number::toString: shortest
    // round-trip digits, fixed notation from 1e-7 to 1e21, exponent notation outside).
    static std::string numeric_key(const json::value& num) {
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

    Result<json::value> array(std::size_t depth) {
        cur_.advance();  // '['
        json::array arr;
        for (;;) {
            if (auto ok = skip_trivia(); !ok) return tl::unexpected(ok.error());
            if (cur_.peek() == ']') break;
            if (cur_.peek() == ',') {
                return tl::unexpected(
                    error(cur_.pos(),
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

    Result<void> string(std::string& out) {
        const SourcePos start = cur_.pos();
        const char quote = cur_.peek();
        cur_.advance();
        for (;;) {
            if (cur_.at_end() || cur_.at_newline()) {
                return tl::unexpected(unterminated_string(file_, start, quote));
            }
            const char c = cur_.peek();
            if (c == quote) {
                cur_.advance();
                return {};
            }
            if (c == '\\') {
                if (auto ok = escape(out); !ok) return ok;
            } else {
                cur_.copy_char(out);
            }
        }
    }

    Result<void> templ(std::string& out) {
        const SourcePos start = cur_.pos();
        cur_.advance();  // '`'
        for (;;) {
            if (cur_.at_end()) {
                return tl::unexpected(
                    error(start, "unterminated template literal: add the closing `"));
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

    Result<void> escape(std::string& out) {
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
        switch (c) {
            case 'n':
                out.push_back('\n');
                break;
            case 't':
                out.push_back('\t');
                break;
            case 'r':
                out.push_back('\r');
                break;
            case 'b':
                out.push_back('\b');
                break;
            case 'f':
                out.push_back('\f');
                break;
            case 'v':
                out.push_back('\v');
                break;
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
    Result<std::uint32_t> unicode_escape(const SourcePos& at) {
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

    Result<json::value> number(bool negative) {
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
            return tl::unexpected(
                error(num.start(), "BigInt literals are not allowed in metadata"));
        }
        if (num.runs_on()) return invalid();
        auto value = num.value(negative);
        if (!value) return tl::unexpected(error(num.start(), value.error()));
        return *value;
    }

    TextCursor& cur_;
    std::string_view file_;
    SourcePos start_;
};

// ---------------------------------------------------------------------------------------
// A token-level lexer for ordinary code, enough to find top-level statements.

enum class Tok { end, ident, punct, string, templ, number, regex, value };

struct Token {
    Tok kind = Tok::end;
    std::string_view text;
    SourcePos pos;

    bool is(std::string_view punct) const { return kind == Tok::punct && text == punct; }
    bool is_ident(std::string_view name) const { return kind == Tok::ident && text == name; }
};

class JsLexer {
  public:
    JsLexer(TextCursor& cur, std::string_view file) : cur_(cur), file_(file) {}

    struct State {
        SourcePos pos;
        std::vector<char> stack;
        std::vector<SourcePos> templates;
        Token prev;
    };
    State save() const { return {cur_.pos(), stack_, templates_, prev_}; }
    void restore(State s) {
        cur_.reset(s.pos);
        stack_ = std::move(s.stack);
        templates_ = std::move(s.templates);
        prev_ = s.prev;
    }

    // Open brackets (and open ${ substitutions) at the cursor.
    std::size_t depth() const { return stack_.size(); }
    const Token& prev() const { return prev_; }
    // The literal parser consumed a value: a '/' after it divides.
    void after_value() { prev_ = Token{Tok::value, {}, cur_.pos()}; }

    Result<Token> next() {
        if (auto ok = skip_js_trivia(cur_, file_); !ok) return tl::unexpected(ok.error());
        Token t;
        t.pos = cur_.pos();
        const std::size_t from = cur_.offset();
        const char c = cur_.peek();
        if (cur_.at_end() && !templates_.empty()) {
            return tl::unexpected(error_at(file_, templates_.back(),
                                           "unterminated template literal: a ${ is never closed"));
        }
        if (cur_.at_end()) {
            t.kind = Tok::end;
        } else if (c == '"' || c == '\'') {
            if (auto ok = skip_string(); !ok) return tl::unexpected(ok.error());
            t.kind = Tok::string;
        } else if (c == '`' || (c == '}' && !stack_.empty() && stack_.back() == '`')) {
            SourcePos start = cur_.pos();
            if (c == '}') {
                stack_.pop_back();
                start = templates_.back();
                templates_.pop_back();
            }
            cur_.advance();
            if (auto ok = template_part(start); !ok) return tl::unexpected(ok.error());
            t.kind = Tok::templ;
        } else if (js_ident_start(c)) {
            while (js_ident_char(cur_.peek())) cur_.advance();
            t.kind = Tok::ident;
        } else if (is_digit(c) || (c == '.' && is_digit(cur_.peek(1)))) {
            while (js_ident_char(cur_.peek()) || cur_.peek() == '.') cur_.advance();
            t.kind = Tok::number;
        } else if (c == '/' && regex_allowed() && skip_regex()) {
            t.kind = Tok::regex;
        } else {
            t.kind = Tok::punct;
            punct();
        }
        t.text = cur_.since(from);
        prev_ = t;
        return t;
    }

  private:
    void punct() {
        for (std::string_view p : {"===", "!==", "...", "==", "!=", "=>", "?."}) {
            if (cur_.starts_with(p)) {
                cur_.advance(p.size());
                return;
            }
        }
        const char c = cur_.peek();
        if (c == '(' || c == '[' || c == '{') stack_.push_back(c);
        if ((c == ')' || c == ']' || c == '}') && !stack_.empty()) stack_.pop_back();
        cur_.advance();
    }

    Result<void> skip_string() {
        const SourcePos start = cur_.pos();
        const char quote = cur_.peek();
        cur_.advance();
        for (;;) {
            if (cur_.at_end() || cur_.at_newline()) {
                return tl::unexpected(unterminated_string(file_, start, quote));
            }
            const char c = cur_.peek();
            cur_.advance();
            if (c == quote) return {};
            if (c == '\\' && !cur_.skip_newline()) cur_.advance();
        }
    }

    // Skips template text after '`' or after the '}' that closes a substitution, up to the
    // closing '`' or the next "${" (which opens a substitution).
    Result<void> template_part(const SourcePos& start) {
        for (;;) {
            if (cur_.at_end()) {
                return tl::unexpected(
                    error_at(file_, start, "unterminated template literal: add the closing `"));
            }
            const char c = cur_.peek();
            if (c == '`') {
                cur_.advance();
                return {};
            }
            if (c == '$' && cur_.peek(1) == '{') {
                cur_.advance(2);
                stack_.push_back('`');
                templates_.push_back(start);
                return {};
            }
            cur_.advance();
            if (c == '\\' && !cur_.skip_newline()) cur_.advance();
        }
    }

    bool regex_allowed() const {
        switch (prev_.kind) {
            case Tok::end:
                return true;
            case Tok::ident: {
                static constexpr std::string_view kBeforeExpression[] = {
                    "return", "typeof", "instanceof", "in", "of",   "new",   "delete",
                    "void",   "throw",  "case",       "do", "else", "yield", "await"};
                return std::find(std::begin(kBeforeExpression), std::end(kBeforeExpression),
                                 prev_.text) != std::end(kBeforeExpression);
            }
            case Tok::punct:
                return prev_.text != ")" && prev_.text != "]";
            case Tok::templ:
                return prev_.text.ends_with("${");
            default:
                return false;
        }
    }

    // Skips /body/flags; restores the cursor and returns false if the line ends first.
    bool skip_regex() {
        const SourcePos start = cur_.pos();
        cur_.advance();
        bool in_class = false;
        for (;;) {
            if (cur_.at_end() || cur_.at_newline()) {
                cur_.reset(start);
                return false;
            }
            const char c = cur_.peek();
            cur_.advance();
            if (c == '\\') {
                if (cur_.at_end() || cur_.at_newline()) continue;
                cur_.advance();
            } else if (c == '[') {
                in_class = true;
            } else if (c == ']') {
                in_class = false;
            } else if (c == '/' && !in_class) {
                while (js_ident_char(cur_.peek())) cur_.advance();
                return true;
            }
        }
    }

    TextCursor& cur_;
    std::string_view file_;
    std::vector<char> stack_;           // '(' '[' '{', and '`' for an open ${ substitution
    std::vector<SourcePos> templates_;  // where each open substitution's template starts
    Token prev_;
};

// ---------------------------------------------------------------------------------------

class JsScanner {
  public:
    JsScanner(std::string_view source, std::string_view file)
        : cur_(source), file_(file), lex_(cur_, file) {
        if (cur_.starts_with("#!")) cur_.skip_line();  // hashbang line
    }

    Result<Declaration> run() {
        for (;;) {
            const Token before = lex_.prev();
            auto t = lex_.next();
            if (!t) return tl::unexpected(t.error());
            if (t->kind == Tok::end) break;
            if (t->kind != Tok::ident || lex_.depth() != 0 || before.is(".") || before.is("?.")) {
                continue;
            }
            Result<void> ok;
            if (t->text == "const" || t->text == "let" || t->text == "var") {
                ok = variable(*t);
            } else if (t->text == "module") {
                ok = module_exports(*t);
            } else if (t->text == "exports") {
                ok = exports_property(*t);
            }
            if (!ok) return tl::unexpected(ok.error());
        }
        return resolve();
    }

  private:
    struct Variable {
        SourcePos decl_pos;   // the const/let/var keyword
        SourcePos value_pos;  // just after '='
    };
    // A declaration as found: a parsed literal, or a reference to a top-level variable.
    struct Found {
        SourcePos pos;
        std::optional<Declaration> decl;
        std::string ref;
    };

    // Consumes the next token if it is the punctuator / identifier given.
    Result<bool> accept(std::string_view text, Tok kind = Tok::punct) {
        auto state = lex_.save();
        auto t = lex_.next();
        if (!t) return tl::unexpected(t.error());
        if (t->kind == kind && t->text == text) return true;
        lex_.restore(std::move(state));
        return false;
    }

    Result<Declaration> literal(const SourcePos& decl_pos) {
        JsLiteralParser parser(cur_, file_, decl_pos);
        if (auto ok = parser.skip_trivia(); !ok) return tl::unexpected(ok.error());
        const SourcePos value_pos = cur_.pos();
        Declaration decl;
        decl.pos = decl_pos;
        auto value = parser.parse_value(&decl.keys);
        if (!value) return tl::unexpected(value.error());
        if (!value->is_object()) {
            return tl::unexpected(error_at(file_, value_pos,
                                           "metadata must be an object literal {...}, found " +
                                               std::string(kind_name(*value, false))));
        }
        decl.raw = std::move(value->as_object());
        lex_.after_value();
        return decl;
    }

    // const|let|var NAME = ...: remembered for references; parsed when NAME is metadata.
    Result<void> variable(const Token& keyword) {
        auto state = lex_.save();
        auto name = lex_.next();
        if (!name) return tl::unexpected(name.error());
        auto eq = accept("=");
        if (!eq) return tl::unexpected(eq.error());
        if (name->kind != Tok::ident || !*eq) {
            lex_.restore(std::move(state));
            return {};
        }
        vars_.try_emplace(std::string(name->text), Variable{keyword.pos, cur_.pos()});
        if (name->text != "metadata") return {};
        auto decl = literal(keyword.pos);
        if (!decl) return tl::unexpected(decl.error());
        found_.push_back({keyword.pos, std::move(*decl), {}});
        return {};
    }

    // module.exports = {...}  or  module.exports.metadata = ...
    Result<void> module_exports(const Token& module) {
        for (auto step : {".", "exports"}) {
            auto ok = accept(step, step[0] == '.' ? Tok::punct : Tok::ident);
            if (!ok || !*ok) return ok ? Result<void>() : tl::unexpected(ok.error());
        }
        auto assign = accept("=");
        if (!assign) return tl::unexpected(assign.error());
        if (*assign) {
            auto brace = accept("{");
            if (!brace) return tl::unexpected(brace.error());
            return *brace ? exports_object(module.pos) : Result<void>();
        }
        return exports_property(module);
    }

    // .metadata = ...  after `exports` or `module.exports`.
    Result<void> exports_property(const Token& start) {
        for (auto [text, kind] : {std::pair{".", Tok::punct}, std::pair{"metadata", Tok::ident},
                                  std::pair{"=", Tok::punct}}) {
            auto ok = accept(text, kind);
            if (!ok || !*ok) return ok ? Result<void>() : tl::unexpected(ok.error());
        }
        return exported_value(start.pos);
    }

    // The value given to an exported `metadata`: a variable name or an object literal.
    Result<void> exported_value(const SourcePos& pos) {
        auto state = lex_.save();
        auto t = lex_.next();
        if (!t) return tl::unexpected(t.error());
        if (t->kind == Tok::ident && t->text != "true" && t->text != "false" && t->text != "null") {
            auto after = lex_.save();
            auto t2 = lex_.next();
            if (!t2) return tl::unexpected(t2.error());
            lex_.restore(std::move(after));
            if (t2->kind == Tok::end || t2->is(";") || t2->is(",") || t2->is("}") || t2->is(")") ||
                t2->pos.line > t->pos.line) {
                found_.push_back({pos, std::nullopt, std::string(t->text)});
                return {};
            }
        }
        lex_.restore(std::move(state));
        auto decl = literal(pos);
        if (!decl) return tl::unexpected(decl.error());
        found_.push_back({pos, std::move(*decl), {}});
        return {};
    }

    // The properties of `module.exports = {`: finds `metadata`, skips the others.
    Result<void> exports_object(const SourcePos& pos) {
        const std::size_t depth = lex_.depth();
        for (;;) {
            auto t = lex_.next();
            if (!t) return tl::unexpected(t.error());
            if (t->kind == Tok::end || (t->is("}") && lex_.depth() < depth)) return {};
            if (t->is(",")) continue;
            const bool metadata_key =
                t->is_ident("metadata") ||
                (t->kind == Tok::string && t->text.substr(1, t->text.size() - 2) == "metadata");
            if (metadata_key && lex_.depth() == depth) {
                const SourcePos key_pos = t->pos;
                auto comma = accept(",");
                if (!comma) return tl::unexpected(comma.error());
                if (*comma) {
                    found_.push_back({key_pos, std::nullopt, "metadata"});
                    continue;
                }
                auto close = accept("}");
                if (!close) return tl::unexpected(close.error());
                if (*close) {
                    found_.push_back({key_pos, std::nullopt, "metadata"});
                    return {};
                }
                auto colon = accept(":");
                if (!colon) return tl::unexpected(colon.error());
                if (*colon) {
                    if (auto ok = exported_value(pos); !ok) return ok;
                    continue;
                }
            }
            // Any other property: skip to the ',' that ends it or the '}' that ends the object.
            while (!(t->is(",") && lex_.depth() == depth)) {
                if (t->kind == Tok::end || (t->is("}") && lex_.depth() < depth)) return {};
                t = lex_.next();
                if (!t) return tl::unexpected(t.error());
            }
        }
    }

    Result<Declaration> resolve() {
        std::vector<Found> decls;
        std::set<std::string, std::less<>> seen;
        for (Found& f : found_) {
            if (f.decl) {
                decls.push_back(std::move(f));
                continue;
            }
            if (!seen.insert(f.ref).second) continue;
            const auto var = vars_.find(f.ref);
            if (var == vars_.end()) {
                return tl::unexpected(
                    error_at(file_, f.pos,
                             "module.exports.metadata refers to " + in_quotes(f.ref) +
                                 ", but the script has no top-level `const " + f.ref +
                                 " = {...}`: define it, or write the object literal here"));
            }
            if (f.ref == "metadata") continue;  // already found as a declaration itself
            cur_.reset(var->second.value_pos);
            auto decl = literal(var->second.decl_pos);
            if (!decl) return tl::unexpected(decl.error());
            decls.push_back({var->second.decl_pos, std::move(*decl), {}});
        }
        if (decls.empty()) {
            return tl::unexpected(error_at(
                file_, SourcePos{},
                "no actor declaration found: add `const metadata = {component: \"my_actor\", "
                "inports: [...], outports: [...]}` at the top level, or export it with "
                "module.exports = { metadata, process }"));
        }
        std::stable_sort(decls.begin(), decls.end(), [](const Found& a, const Found& b) {
            return a.pos.offset < b.pos.offset;
        });
        if (decls.size() > 1) {
            return tl::unexpected(
                error_at(file_, decls[1].pos, second_declaration_message(decls[0].pos)));
        }
        return std::move(*decls[0].decl);
    }

    TextCursor cur_;
    std::string_view file_;
    JsLexer lex_;
    std::map<std::string, Variable, std::less<>> vars_;  // first top-level binding per name
    std::vector<Found> found_;
};

}  // namespace

Result<Declaration> extract_javascript(std::string_view source, std::string_view file) {
    return JsScanner(source, file).run();
}

}  // namespace sandflow::actor::detail
