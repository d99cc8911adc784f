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
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "actor/extract_detail.hpp"
#include "actor/js_literal.hpp"

namespace sandflow::actor::detail {

namespace {

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

    // Passes over a string without decoding it: in code outside the declaration, any escape
    // JavaScript accepts may stand (the parser's are stricter).
    Result<void> skip_string() {
        return read_js_string(cur_, file_, [this](char c) -> Result<void> {
            cur_.advance();
            if (c == '\\' && !cur_.skip_newline()) cur_.advance();
            return {};
        });
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
