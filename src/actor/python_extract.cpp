// Finds the one metadata declaration of a Python script by scanning its tokens.
//
// The scan understands comments, every string form (prefixes, triple quotes, f-strings whose
// replacement fields hold further strings, as Python 3.12 allows) and bracket nesting, so a
// declaration written inside a string or a comment is not one. Declarations:
//   @actor({...})                    a decorator at the start of a logical line, any indent
//   @actor(name=..., inports=[...])  keyword form: each keyword becomes an object key
//   __actor_metadata__ = {...}       an assignment at column 1, outside any brackets
#include <optional>

#include "actor/extract_detail.hpp"
#include "actor/python_literal.hpp"
#include "actor/script_limits.hpp"

namespace sandflow::actor::detail {

namespace {

constexpr std::string_view kHowToDeclare =
    "add @actor({\"component\": \"my_actor\", \"inports\": [...], \"outports\": [...]}) above "
    "process(), or define __actor_metadata__ = {...} at module level";

class PyScanner {
  public:
    PyScanner(std::string_view source, std::string_view file) : cur_(source), file_(file) {}

    Result<Declaration> run() {
        bool line_start = true;  // the next token is the first of a logical line
        while (!cur_.at_end()) {
            const char c = cur_.peek();
            if (c == ' ' || c == '\t' || c == '\f') {
                cur_.advance();
                continue;
            }
            if (cur_.skip_newline()) {
                if (depth_ == 0) line_start = true;
                continue;
            }
            if (c == '#') {
                cur_.skip_line();
                continue;
            }
            if (c == '\\' && (cur_.peek(1) == '\n' || cur_.peek(1) == '\r')) {
                cur_.advance();
                cur_.skip_newline();  // an explicit continuation: still the same logical line
                continue;
            }
            const bool first_token = line_start;
            line_start = false;
            if (auto ok = token(first_token); !ok) return tl::unexpected(ok.error());
        }
        if (!found_) return tl::unexpected(error_at(file_, SourcePos{}, no_declaration()));
        return std::move(*found_);
    }

  private:
    static std::string no_declaration() {
        return "no actor declaration found: " + std::string(kHowToDeclare);
    }

    // Consumes one token (or a whole declaration) that is not whitespace or a comment.
    Result<void> token(bool first_token) {
        const SourcePos at = cur_.pos();
        const char c = cur_.peek();
        if (c == '\'' || c == '"') return skip_string({}, at, 0);
        if (py_ident_start(c)) {
            const std::string_view name = read_py_identifier(cur_);
            if (cur_.peek() == '\'' || cur_.peek() == '"') {
                if (auto prefix = py_string_prefix(name)) return skip_string(*prefix, at, 0);
            }
            if (name == "__actor_metadata__" && first_token && depth_ == 0 && at.column == 1) {
                return metadata_assignment(at);
            }
            return {};
        }
        if (is_digit(c) || (c == '.' && is_digit(cur_.peek(1)))) {
            while (py_ident_char(cur_.peek()) || cur_.peek() == '.') cur_.advance();
            return {};
        }
        if (c == '@' && first_token) return decorator(at);
        if (c == '(' || c == '[' || c == '{') ++depth_;
        if ((c == ')' || c == ']' || c == '}') && depth_ > 0) --depth_;
        cur_.advance();
        return {};
    }

    // Spaces, tabs and backslash continuations: what may separate tokens on one logical line.
    void skip_inline_space() {
        for (;;) {
            const char c = cur_.peek();
            if (c == ' ' || c == '\t' || c == '\f') {
                cur_.advance();
            } else if (c == '\\' && (cur_.peek(1) == '\n' || cur_.peek(1) == '\r')) {
                cur_.advance();
                cur_.skip_newline();
            } else {
                return;
            }
        }
    }

    Result<void> record(Declaration decl) {
        if (found_) {
            return tl::unexpected(
                error_at(file_, decl.pos, second_declaration_message(found_->pos)));
        }
        found_ = std::move(decl);
        return {};
    }

    Result<void> metadata_assignment(const SourcePos& at) {
        skip_inline_space();
        if (cur_.peek() != '=' || cur_.peek(1) == '=') return {};  // a use, not a definition
        cur_.advance();
        skip_inline_space();
        PyLiteralParser parser(cur_, file_, at);
        Declaration decl;
        decl.pos = at;
        const SourcePos value_pos = cur_.pos();
        auto value = parser.parse_value(&decl.keys);
        if (!value) return tl::unexpected(value.error());
        if (!value->is_object()) {
            return tl::unexpected(error_at(file_, value_pos,
                                           "__actor_metadata__ must be a dict literal {...}, "
                                           "found " +
                                               std::string(kind_name(*value, true))));
        }
        skip_inline_space();
        if (!cur_.at_end() && !cur_.at_newline() && cur_.peek() != '#' && cur_.peek() != ';') {
            return tl::unexpected(error_at(
                file_, cur_.pos(),
                "unexpected " + describe_at(cur_) +
                    " after the __actor_metadata__ dict: the value must be a plain dict literal"));
        }
        decl.raw = std::move(value->as_object());
        return record(std::move(decl));
    }

    Result<void> decorator(const SourcePos& at) {
        cur_.advance();  // '@'
        skip_inline_space();
        if (!py_ident_start(cur_.peek()) || read_py_identifier(cur_) != "actor") return {};
        skip_inline_space();
        if (cur_.peek() == '.') return {};  // @actor.something is another decorator
        if (cur_.peek() != '(') {
            return tl::unexpected(error_at(
                file_, at,
                "@actor needs the metadata as its argument: write @actor({\"component\": ...}) "
                "or @actor(name=..., inports=[...], outports=[...])"));
        }
        cur_.advance();
        PyLiteralParser parser(cur_, file_, at);
        parser.skip_trivia();
        if (cur_.peek() == ')') {
            return tl::unexpected(
                error_at(file_, at,
                         "@actor() has no arguments: pass the metadata dict, "
                         "@actor({\"component\": ...}), or keywords, @actor(name=..., ...)"));
        }
        if (cur_.peek() == '*') {
            return tl::unexpected(error_at(
                file_, cur_.pos(),
                "@actor does not take *args or **kwargs: metadata is read without running the "
                "script, so write the dict or the keywords out"));
        }
        Declaration decl;
        decl.pos = at;
        auto ok = at_keyword() ? keyword_arguments(parser, decl) : dict_argument(parser, decl);
        if (ok) ok = parser.check_size();
        if (!ok) return ok;
        cur_.advance();  // ')'
        return record(std::move(decl));
    }

    // True if the cursor is at `name =` (a keyword argument), not `name ==` or a value.
    bool at_keyword() {
        if (!py_ident_start(cur_.peek())) return false;
        const SourcePos save = cur_.pos();
        read_py_identifier(cur_);
        skip_py_trivia(cur_);
        const bool keyword = cur_.peek() == '=' && cur_.peek(1) != '=';
        cur_.reset(save);
        return keyword;
    }

    Result<void> dict_argument(PyLiteralParser& parser, Declaration& decl) {
        const SourcePos value_pos = cur_.pos();
        auto value = parser.parse_value(&decl.keys);
        if (!value) return tl::unexpected(value.error());
        if (!value->is_object()) {
            return tl::unexpected(
                error_at(file_, value_pos,
                         "the @actor argument must be a dict literal {...}, found " +
                             std::string(kind_name(*value, true))));
        }
        decl.raw = std::move(value->as_object());
        parser.skip_trivia();
        if (cur_.peek() == ',') {
            cur_.advance();
            parser.skip_trivia();
        }
        if (cur_.peek() == ')') return {};
        if (at_keyword()) {
            return tl::unexpected(
                error_at(file_, cur_.pos(),
                         "@actor takes either one dict or keyword arguments, not both: move this "
                         "keyword into the dict"));
        }
        return tl::unexpected(error_at(
            file_, cur_.pos(),
            "@actor takes exactly one dict argument; expected ')', found " + describe_at(cur_)));
    }

    Result<void> keyword_arguments(PyLiteralParser& parser, Declaration& decl) {
        for (;;) {
            parser.skip_trivia();
            if (cur_.peek() == ')') return {};
            const SourcePos key_pos = cur_.pos();
            if (!at_keyword()) {
                return tl::unexpected(
                    error_at(file_, key_pos,
                             "expected a keyword argument name=value, found " + describe_at(cur_) +
                                 ": @actor takes either one dict or keyword arguments, not both"));
            }
            const std::string name(read_py_identifier(cur_));
            parser.skip_trivia();
            cur_.advance();  // '='
            parser.skip_trivia();
            auto value = parser.parse_value();
            if (!value) return tl::unexpected(value.error());
            if (!decl.raw.emplace(name, std::move(*value)).second) {
                return tl::unexpected(
                    error_at(file_, key_pos,
                             "keyword argument '" + name + "' is repeated: remove one of them"));
            }
            decl.keys.emplace(name, key_pos);
            parser.skip_trivia();
            if (cur_.peek() == ',') {
                cur_.advance();
            } else if (cur_.peek() != ')') {
                return tl::unexpected(
                    error_at(file_, cur_.pos(),
                             "expected ',' or ')' in @actor(...), found " + describe_at(cur_)));
            }
        }
    }

    // Skips a string literal at its opening quote; `start` is where its prefix begins. `depth`
    // counts enclosing f-string replacement fields, which recurse.
    Result<void> skip_string(PyStringPrefix prefix, const SourcePos& start, std::size_t depth) {
        const char quote = cur_.peek();
        const bool triple = cur_.peek(1) == quote && cur_.peek(2) == quote;
        cur_.advance(triple ? 3 : 1);
        auto unterminated = [&] {
            return tl::unexpected(error_at(
                file_, start,
                triple
                    ? "unterminated triple-quoted string: add the closing " + std::string(3, quote)
                    : std::string("unterminated string: add the closing ") + quote));
        };
        for (;;) {
            if (cur_.at_end()) return unterminated();
            const char c = cur_.peek();
            if (cur_.at_newline()) {
                if (!triple) return unterminated();
                cur_.skip_newline();
            } else if (c == '\\') {
                cur_.advance();
                if (prefix.format && !prefix.raw && cur_.peek() == 'N' && cur_.peek(1) == '{') {
                    while (!cur_.at_end() && !cur_.at_newline() && cur_.peek() != '}') {
                        cur_.advance();
                    }
                }
                // A brace after a backslash still opens or closes a replacement field.
                const bool brace = cur_.peek() == '{' || cur_.peek() == '}';
                if (!cur_.skip_newline() && !(prefix.format && brace)) cur_.advance();
            } else if (c == quote) {
                if (!triple) {
                    cur_.advance();
                    return {};
                }
                if (cur_.peek(1) == quote && cur_.peek(2) == quote) {
                    cur_.advance(3);
                    return {};
                }
                cur_.advance();
            } else if (prefix.format && c == '{' && cur_.peek(1) != '{') {
                cur_.advance();
                if (auto ok = skip_field(start, depth + 1); !ok) return ok;
            } else {
                cur_.advance(prefix.format && (c == '{' || c == '}') && cur_.peek(1) == c ? 2 : 1);
            }
        }
    }

    // Skips an f-string replacement field after its '{', through its closing '}': an
    // expression, then an optional format spec that may hold nested fields.
    Result<void> skip_field(const SourcePos& string_start, std::size_t depth) {
        if (depth > limits::kMaxLiteralDepth) {
            return tl::unexpected(limit_error_at(file_, string_start,
                                                 "f-string fields nested deeper than " +
                                                     std::to_string(limits::kMaxLiteralDepth) +
                                                     " levels",
                                                 "max_literal_depth"));
        }
        std::size_t nesting = 0;
        bool in_spec = false;
        for (;;) {
            if (cur_.at_end()) {
                return tl::unexpected(error_at(file_, string_start,
                                               "unterminated f-string replacement field: add "
                                               "the closing '}'"));
            }
            const char c = cur_.peek();
            if (in_spec) {
                if (c == '}') {
                    cur_.advance();
                    return {};
                }
                cur_.advance();
                if (c == '{') {
                    if (auto ok = skip_field(string_start, depth + 1); !ok) return ok;
                }
                continue;
            }
            const SourcePos at = cur_.pos();
            if (c == '\'' || c == '"') {
                if (auto ok = skip_string({}, at, depth); !ok) return ok;
            } else if (py_ident_start(c)) {
                const std::string_view name = read_py_identifier(cur_);
                if (cur_.peek() == '\'' || cur_.peek() == '"') {
                    if (auto prefix = py_string_prefix(name)) {
                        if (auto ok = skip_string(*prefix, at, depth); !ok) return ok;
                    }
                }
            } else if (c == '#') {
                cur_.skip_line();
            } else if (c == '(' || c == '[' || c == '{') {
                ++nesting;
                cur_.advance();
            } else if (c == ')' || c == ']' || (c == '}' && nesting > 0)) {
                if (nesting > 0) --nesting;
                cur_.advance();
            } else if (c == '}') {
                cur_.advance();
                return {};
            } else if (c == ':' && nesting == 0) {
                in_spec = true;
                cur_.advance();
            } else {
                cur_.advance(c == '!' && cur_.peek(1) == '=' ? 2 : 1);
            }
        }
    }

    TextCursor cur_;
    std::string_view file_;
    std::size_t depth_ = 0;  // open brackets in ordinary code
    std::optional<Declaration> found_;
};

}  // namespace

Result<Declaration> extract_python(std::string_view source, std::string_view file) {
    return PyScanner(source, file).run();
}

}  // namespace sandflow::actor::detail
