// What the language scanners hand to metadata.cpp: one declaration, as written, with places;
// and what the two literal parsers (python_literal.cpp, js_literal.cpp) share.
#pragma once

#include <functional>
#include <map>
#include <optional>
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

// The pieces of a literal parser that do not depend on the language's grammar: the cursor,
// the file errors name, the caps counted from the declaration's start, and the reading of
// signs and keywords that both languages write alike (with their own words).
class LiteralParserBase {
  public:
    // Fails once the text from the declaration's start exceeds limits::kMaxMetadataBytes.
    Result<void> check_size() const { return check_literal_size(cur_, file_, start_); }
    Error error(const SourcePos& pos, std::string_view what) const {
        return error_at(file_, pos, what);
    }

  protected:
    // `start` is where the declaration begins; the size limit counts from there.
    LiteralParserBase(TextCursor& cur, std::string_view file, const SourcePos& start)
        : cur_(cur), file_(file), start_(start) {}

    // The outermost literal as read: checked against the size cap once more, since its last
    // token may have ended past it.
    Result<json::value> checked(Result<json::value> v) const {
        if (auto ok = check_size(); v && !ok) return tl::unexpected(ok.error());
        return v;
    }
    // The bracket at the cursor opens a level inside `depth` others: an error past
    // limits::kMaxLiteralDepth (the parsers recurse once per level).
    Result<void> check_depth(std::size_t depth) const {
        if (depth < limits::kMaxLiteralDepth) return {};
        return tl::unexpected(literal_depth_error(file_, cur_.pos()));
    }
    // A number starts here: a digit, or a '.' and a digit.
    bool at_number() const {
        return is_digit(cur_.peek()) || (cur_.peek() == '.' && is_digit(cur_.peek(1)));
    }
    // Reads unary signs ('+' and '-', each followed by the trivia `skip_trivia` passes over):
    // whether they make the number that must follow negative. Without a number after them,
    // an error at the first: "<what> must be followed by a number, found ...".
    template <class SkipTrivia>
    Result<bool> signs(SkipTrivia skip_trivia, std::string_view what) {
        const SourcePos sign = cur_.pos();
        bool negative = false;
        while (cur_.peek() == '+' || cur_.peek() == '-') {
            negative ^= cur_.peek() == '-';
            cur_.advance();
            if (Result<void> ok = skip_trivia(); !ok) return tl::unexpected(ok.error());
        }
        if (!at_number()) {
            return tl::unexpected(error(
                sign,
                std::string(what) + " must be followed by a number, found " + describe_at(cur_)));
        }
        return negative;
    }
    // The value of the keyword `name` in a language that writes true, false and null as
    // `words`; nullopt for any other name.
    struct KeywordWords {
        std::string_view true_word, false_word, null_word;
    };
    static std::optional<json::value> keyword_value(std::string_view name,
                                                    const KeywordWords& words) {
        if (name == words.true_word) return json::value(true);
        if (name == words.false_word) return json::value(false);
        if (name == words.null_word) return json::value(nullptr);
        return std::nullopt;
    }

    TextCursor& cur_;
    std::string_view file_;
    SourcePos start_;
};

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
