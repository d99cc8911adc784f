// Static metadata extraction from JavaScript actor scripts (src/actor/js_extract.cpp).
#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "actor/metadata.hpp"
#include "actor/script_limits.hpp"
#include "metadata_assert.hpp"

namespace {

using sandflow::Errc;
using sandflow::Result;
using sandflow::actor::ActorMetadata;
using sandflow::actor::extract_metadata;
using sandflow::actor::Language;
namespace json = boost::json;

Result<ActorMetadata> js(std::string_view source) {
    return extract_metadata(source, "actor.js", Language::javascript);
}

// The result is a metadata error at line:column whose message contains `needle`.
::testing::AssertionResult FailsAt(const Result<ActorMetadata>& r, int line, int column,
                                   std::string_view needle) {
    return sandflow::testing::metadata_fails_at("actor.js", r, line, column, needle);
}

// `const metadata = {component: "t", x: <literal>};` and returns raw.x.
json::value literal(std::string_view lit) {
    auto r = js("const metadata = {component: \"t\", x: " + std::string(lit) + "};\n");
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? r->raw.at("x") : json::value();
}

const std::string kHead = "const metadata = {component: 't', x: ";  // x's value: column 38

TEST(JsExtract, ConstMetadata) {
    const auto r = js(R"(// A doubling actor.
const metadata = {
    component: "double",          // unquoted keys
    'description': 'Doubles',     /* quoted keys */
    "inports": ["input",],
    outports: [{name: "output", type: "integer", required: true}],
    tags: ["math"],
    config_schema: {type: "object"},
    await_all_inports: false,
};

async function process(context) {
    await context.sendOutput("output", context.getInput("input") * 2);
    return {status: "completed"};
}
)");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->language, Language::javascript);
    EXPECT_EQ(r->component, "double");
    EXPECT_EQ(r->description, "Doubles");
    EXPECT_EQ(r->inports.at(0).name, "input");
    EXPECT_EQ(r->outports.at(0).type, "integer");
    EXPECT_TRUE(r->outports.at(0).required);
    EXPECT_EQ(r->tags, (std::vector<std::string>{"math"}));
    EXPECT_EQ(r->config_schema, json::parse(R"({"type": "object"})"));
    EXPECT_EQ(r->line, 2);
    EXPECT_EQ(r->column, 1);
}

TEST(JsExtract, LetVarAndExport) {
    for (std::string kw : {"let", "var", "export const"}) {
        const auto r = js(kw + " metadata = {component: 'k'}\nfunction process(c) {}\n");
        ASSERT_TRUE(r) << kw << ": " << r.error().message;
        EXPECT_EQ(r->component, "k");
    }
}

TEST(JsExtract, ModuleExportsInline) {
    const auto r = js(R"('use strict';
module.exports = {
    async process(context) { return {out: context.getInput("in")}; },
    helper: (x) => { return {a: [x, /}/g]}; },
    metadata: {component: "inline", inports: ["in"], outports: ["out"]},
    other: 1,
};
)");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "inline");
    EXPECT_EQ(r->line, 2);
}

TEST(JsExtract, ModuleExportsReferences) {
    for (std::string exports :
         {"module.exports = { metadata, process };", "module.exports = {process, metadata};",
          "module.exports = { metadata: metadata, process: process }",
          "module.exports = {'metadata': metadata}", "module.exports.metadata = metadata;",
          "exports.metadata = metadata\nexports.process = process",
          "module.exports = {metadata}; exports.metadata = metadata;"}) {
        const auto r =
            js("const metadata = {component: 'ref'};\n"
               "async function process(context) {}\n" +
               exports + "\n");
        ASSERT_TRUE(r) << exports << ": " << r.error().message;
        EXPECT_EQ(r->component, "ref");
        EXPECT_EQ(r->line, 1);
    }
    // The variable may come after the export, and may have another name.
    auto r = js("module.exports = {metadata: meta, process};\nconst meta = {component: 'm'};\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "m");
    EXPECT_EQ(r->line, 2);
}

TEST(JsExtract, ExportsAssignments) {
    auto r = js("module.exports.metadata = {component: 'a'};\nmodule.exports.process = f;\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "a");
    r = js("exports.process = async (ctx) => ({});\n  exports.metadata = {component: 'b'}\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "b");
    EXPECT_EQ(r->line, 2);
    EXPECT_EQ(r->column, 3);
}

TEST(JsExtract, ReferenceErrors) {
    EXPECT_TRUE(FailsAt(js("module.exports = { metadata, process };\n"), 1, 20,
                        "refers to 'metadata', but the script has no top-level `const metadata"));
    EXPECT_TRUE(FailsAt(js("exports.metadata = meta;\n"), 1, 1, "refers to 'meta'"));
    EXPECT_TRUE(FailsAt(js("exports.metadata = require('./m.json');\n"), 1, 20,
                        "expected a literal value, found identifier 'require'"));
    EXPECT_TRUE(FailsAt(js("module.exports = {metadata: meta};\nconst meta = [1];\n"), 2, 14,
                        "metadata must be an object literal {...}, found an array"));
}

TEST(JsExtract, TwoDeclarations) {
    EXPECT_TRUE(FailsAt(js("const metadata = {component: 'a'};\n"
                           "module.exports = {metadata: {component: 'b'}};\n"),
                        2, 1, "second actor declaration; the first is at line 1, column 1"));
    EXPECT_TRUE(FailsAt(js("var metadata = {component: 'a'};\nvar metadata = {component: 'b'};\n"),
                        2, 1, "second actor declaration"));
    EXPECT_TRUE(
        FailsAt(js("exports.metadata = {component: 'a'};\nconst metadata = {component: 'b'};\n"), 2,
                1, "the first is at line 1, column 1"));
}

TEST(JsExtract, OnlyTopLevelCounts) {
    const auto r = js(R"(function f() {
    const metadata = {component: 'inner'};
    if (x) { module.exports = {metadata: {component: 'inner2'}}; }
}
obj.const metadata = 1;
const {metadata: m} = require('x');
const metadata = {component: 'outer'};
)");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "outer");
    EXPECT_TRUE(FailsAt(js("function f() {\n  const metadata = {component: 'a'};\n}\n"), 1, 1,
                        "no actor declaration found: add `const metadata = {"));
}

TEST(JsExtract, DeclarationsInStringsCommentsAndRegexesAreIgnored) {
    const std::string decl = "const metadata = {component: 'x'};";
    const std::string cases[] = {
        "// " + decl + "\n",
        "/* \n" + decl + "\n */\n",
        "const s = '" + decl + "';\n",
        "const s = \"" + decl + "\";\n",
        "const s = `\n" + decl + "\n`;\n",
        "const s = `${ `${'`'}` }\n" + decl + "\n`;\n",
        "const s = `${ {a: '}'} }\n" + decl + "\n`;\n",
        "const s = 'a\\\n" + decl + "';\n",
        "const re = /'/; const t = '\\'';\nconst s = \"\n\";\n",  // (an error, see below)
        "x = a.replace(/\\/*/g, '');\n//" + decl + "\n",
        "const re = /[/]{2}`/;\nconst t = `\n" + decl + "\n`;\n",
        "#!/usr/bin/env node\nconst x = 1; // " + decl + "\n",
    };
    for (std::size_t i = 0; i < std::size(cases); ++i) {
        if (i == 8) continue;
        EXPECT_TRUE(FailsAt(js(cases[i]), 1, 1, "no actor declaration found")) << cases[i];
    }
}

TEST(JsExtract, RegexAndDivisionHeuristics) {
    auto r = js("const re = /{+[}\"'`]/g;\nconst metadata = {component: 're'};\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->line, 2);
    r = js("const half = a / 2, q = (b) / c / d;\nconst metadata = {component: 'div'};\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "div");
    r =
        js("function f(s) { return /'\\/{/.test(s); }\nlet x = y\n/ z / w;\n"
           "const metadata = {component: 'ok'};\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "ok");
}

TEST(JsLiteral, Strings) {
    EXPECT_EQ(literal(R"('single "q"')"), "single \"q\"");
    EXPECT_EQ(literal(R"("double 'q'")"), "double 'q'");
    EXPECT_EQ(literal(R"("\n\t\r\b\f\v\\\'\"\0")"),
              json::value(std::string("\n\t\r\b\f\v\\'\"") + '\0'));
    EXPECT_EQ(literal(R"('\x41\u00e9\u{1F600}\uD83D\uDE00')"),
              "A\xC3\xA9\xF0\x9F\x98\x80\xF0\x9F\x98\x80");
    EXPECT_EQ(literal(R"('\q\$')"), "q$");
    EXPECT_EQ(literal("'line \\\ncontinued'"), "line continued");
    EXPECT_EQ(literal("'crlf \\\r\ncontinued'"), "crlf continued");
    EXPECT_EQ(literal("`template\nwith $ and { } and \\` and \\${}`"),
              "template\nwith $ and { } and ` and ${}");
    EXPECT_EQ(literal("`crlf\r\n`"), "crlf\n");
    EXPECT_EQ(literal("'h\xC3\xA9llo'"), "h\xC3\xA9llo");
}

TEST(JsLiteral, StringErrors) {
    EXPECT_TRUE(FailsAt(js(kHead + "`a ${b} c`};"), 1, 41,
                        "template substitutions ${...} are not allowed in metadata"));
    EXPECT_TRUE(FailsAt(js(kHead + "'open\n'};"), 1, 38, "unterminated string: add the closing '"));
    EXPECT_TRUE(FailsAt(js(kHead + "`open};"), 1, 38, "unterminated template literal"));
    EXPECT_TRUE(FailsAt(js(kHead + "'\\x4g'};"), 1, 39, "invalid \\x escape"));
    EXPECT_TRUE(FailsAt(js(kHead + "'\\u12'};"), 1, 39, "invalid \\u escape"));
    EXPECT_TRUE(FailsAt(js(kHead + "'\\u{110000}'};"), 1, 39, "invalid \\u{...} escape"));
    EXPECT_TRUE(FailsAt(js(kHead + "'\\uD800'};"), 1, 39, "lone surrogate"));
    EXPECT_TRUE(FailsAt(js(kHead + "'\\01'};"), 1, 39, "octal escapes are not allowed"));
}

TEST(JsLiteral, NumbersKeysAndConstants) {
    EXPECT_EQ(literal("42"), 42);
    EXPECT_EQ(literal("-42"), -42);
    EXPECT_EQ(literal("+5"), 5);
    EXPECT_EQ(literal("0"), 0);
    EXPECT_EQ(literal("0xff"), 255);
    EXPECT_EQ(literal("0o17"), 15);
    EXPECT_EQ(literal("0b101"), 5);
    EXPECT_EQ(literal("1_000"), 1000);
    EXPECT_EQ(literal("1.5e3"), 1500.0);
    EXPECT_EQ(literal(".25"), 0.25);
    EXPECT_EQ(literal("5."), 5.0);
    EXPECT_EQ(literal("-1E-2"), -0.01);
    EXPECT_EQ(literal("-9223372036854775808"), INT64_MIN);
    EXPECT_EQ(literal("[true, false, null, [], {}]"), json::parse("[true, false, null, [], {}]"));
    EXPECT_EQ(literal("{1: 'a', 0x10: 'b', 2.5: 'c', 'q k': 'd', $id: 'e', if: 'f'}"),
              json::parse(R"({"1": "a", "16": "b", "2.5": "c", "q k": "d", "$id": "e",
                              "if": "f"})"));
}

TEST(JsLiteral, NumberErrors) {
    EXPECT_TRUE(FailsAt(js(kHead + "10n};"), 1, 38, "BigInt"));
    EXPECT_TRUE(FailsAt(js(kHead + "017};"), 1, 38, "leading zeros (legacy octal)"));
    EXPECT_TRUE(FailsAt(js(kHead + "1__0};"), 1, 38, "invalid number literal '1__0'"));
    EXPECT_TRUE(FailsAt(js(kHead + "0x_1};"), 1, 38, "invalid number literal"));
    // Which check speaks first: legacy octal before the fraction, BigInt after a prefix.
    EXPECT_TRUE(FailsAt(js(kHead + "01.5};"), 1, 38, "leading zeros (legacy octal)"));
    EXPECT_TRUE(FailsAt(js(kHead + "0x1n};"), 1, 38, "BigInt"));
    EXPECT_TRUE(FailsAt(js(kHead + "0b2};"), 1, 38, "invalid number literal '0b2'"));
    EXPECT_TRUE(FailsAt(js(kHead + "1.5.2};"), 1, 38, "invalid number literal '1.5.2'"));
    EXPECT_TRUE(FailsAt(js(kHead + "9223372036854775808};"), 1, 38, "does not fit in 64 bits"));
    EXPECT_TRUE(FailsAt(js(kHead + "1e400};"), 1, 38, "out of range"));
    EXPECT_TRUE(FailsAt(js(kHead + "-'1'};"), 1, 38, "a sign must be followed by a number"));
}

TEST(JsLiteral, NonLiterals) {
    EXPECT_TRUE(FailsAt(js(kHead + "undefined};"), 1, 38,
                        "expected a literal value, found identifier 'undefined'"));
    EXPECT_TRUE(FailsAt(js(kHead + "Infinity};"), 1, 38, "found identifier 'Infinity'"));
    EXPECT_TRUE(FailsAt(js(kHead + "foo()};"), 1, 38, "found identifier 'foo'"));
    EXPECT_TRUE(FailsAt(js(kHead + "function () {}};"), 1, 38, "found identifier 'function'"));
    EXPECT_TRUE(FailsAt(js(kHead + "() => 1};"), 1, 38, "expected a literal value, found '('"));
    EXPECT_TRUE(FailsAt(js(kHead + "[...a]};"), 1, 39, "spread (...) is not allowed"));
    EXPECT_TRUE(FailsAt(js(kHead + "{...a}};"), 1, 39, "spread (...) is not allowed"));
    EXPECT_TRUE(FailsAt(js(kHead + "{a}};"), 1, 39, "shorthand property 'a' refers to a variable"));
    EXPECT_TRUE(FailsAt(js(kHead + "{f() {}}};"), 1, 39, "methods are not allowed"));
    EXPECT_TRUE(FailsAt(js(kHead + "{[k]: 1}};"), 1, 39, "computed property names"));
    EXPECT_TRUE(FailsAt(js(kHead + "[1,,2]};"), 1, 41, "empty array element"));
    EXPECT_TRUE(FailsAt(js(kHead + "{a: 1 b: 2}};"), 1, 44,
                        "expected ',' or '}' after property value, found identifier 'b'"));
    EXPECT_TRUE(FailsAt(js(kHead + "{a 1}};"), 1, 41,
                        "expected ':' after property name 'a', found number '1'"));
    EXPECT_TRUE(FailsAt(js(kHead + "[1 2]};"), 1, 41, "expected ',' or ']' in array"));
    EXPECT_TRUE(FailsAt(js(kHead + "{a: 1, a: 2}};"), 1, 45, "duplicate key 'a'"));
    EXPECT_TRUE(FailsAt(js("const metadata = {\n  component: 'c',\n  n: x.y,\n};"), 3, 6,
                        "found identifier 'x'"));
    EXPECT_TRUE(FailsAt(js("const metadata = 'c';"), 1, 18,
                        "metadata must be an object literal {...}, found a string"));
    EXPECT_TRUE(FailsAt(js("const metadata = {component: 'c'"), 1, 33,
                        "expected ',' or '}' after property value, found end of file"));
}

TEST(JsExtract, Comments) {
    auto r =
        js("/* a */ const /* b */ metadata /* c */ = /* d */ { // e\n"
           "  component /* f */ : /* g */ 'c' /* h */ , // i\n} /* j */ ;\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "c");
    EXPECT_TRUE(FailsAt(js("const metadata = {component: 'c'};\n/* never closed\n"), 2, 1,
                        "unterminated block comment: add the closing */"));
    EXPECT_TRUE(FailsAt(js("const metadata = {component: /* never 'c'};\n"), 1, 30,
                        "unterminated block comment"));
}

TEST(JsExtract, UnterminatedInCode) {
    EXPECT_TRUE(FailsAt(js("const metadata = {component: 'c'};\nconst s = \"abc\n"), 2, 11,
                        "unterminated string: add the closing \""));
    EXPECT_TRUE(FailsAt(js("const metadata = {component: 'c'};\nconst t = `abc ${x} \n"), 2, 11,
                        "unterminated template literal"));
    EXPECT_TRUE(FailsAt(js("const re = /'/; const t = '\\'';\nconst s = \"\n\";\n"), 2, 11,
                        "unterminated string"));
}

TEST(JsExtract, InvalidUtf8AndColumns) {
    EXPECT_TRUE(FailsAt(js("// \xFF\nconst metadata = {component: 'c'};"), 1, 4,
                        "invalid UTF-8 (byte 0xFF)"));
    EXPECT_TRUE(FailsAt(js("const metadata = {description: '\xE2\x82\xAC\xE2\x82\xAC', "
                           "component: 'c', version: 1};"),
                        1, 54, "\"version\" must be a string, found an integer"));
}

TEST(JsExtract, DeepNestingAndHugeLiterals) {
    const int depth = static_cast<int>(sandflow::limits::kMaxLiteralDepth);
    auto r = js("const metadata = " + std::string(100000, '[') + "\n");
    EXPECT_TRUE(FailsAt(r, 1, 18 + depth, "nested deeper than 64 levels"));
    EXPECT_EQ(r.error().data.at("limit"), "max_literal_depth");
    EXPECT_TRUE(FailsAt(js("const metadata = {a: " + std::string(100000, '[') + "\n"), 1,
                        22 + depth - 1, "nested deeper"));
    // Deep nesting in ordinary code is only counted.
    EXPECT_TRUE(FailsAt(js("x = " + std::string(100000, '(') + std::string(100000, '`') + "\n"), 1,
                        1, "no actor declaration"));
    std::string templates = "x = ";
    for (int i = 0; i < 20000; ++i) templates += "`${";
    EXPECT_TRUE(FailsAt(js(templates), 1, 5 + 3 * 19999, "unterminated template literal"));

    const std::string big(sandflow::limits::kMaxMetadataBytes, 'a');
    r = js("\n\nconst metadata = {component: 'c', d: '" + big + "'};\n");
    EXPECT_TRUE(FailsAt(r, 3, 1, "larger than 262144 bytes"));
    EXPECT_EQ(r.error().data.at("limit"), "max_metadata_bytes");
    std::string many = "module.exports = {metadata: {component: 'c', x: [";
    for (std::size_t i = 0; i < sandflow::limits::kMaxMetadataBytes / 2; ++i) many += "1,";
    EXPECT_TRUE(FailsAt(js(many + "]}}\n"), 1, 1, "larger than"));
}

TEST(JsValidate, Errors) {
    EXPECT_TRUE(FailsAt(js("const metadata = {description: 'd'};"), 1, 1,
                        "missing component: add component: \"my_actor\""));
    EXPECT_TRUE(FailsAt(js("const metadata = {component: 'c', inports: ['a', {name: 'b', "
                           "type: 'number'}]};"),
                        1, 35, "inports[1]: unknown port type \"number\""));
    EXPECT_TRUE(FailsAt(js("const metadata = {component: 'c',\n  await_all_inports: 1};"), 2, 3,
                        "\"await_all_inports\" must be true or false, found an integer"));
    EXPECT_TRUE(FailsAt(js("const metadata = {name: ['c']};"), 1, 19,
                        "\"name\" must be a non-empty string naming the actor, found an array"));
}

TEST(JsValidate, NameIsComponentAndPortsAsStringsOrObjects) {
    const auto r =
        js("const metadata = {name: 'n', inports: ['a', {name: 'b', type: 'flow', "
           "default: null}], outports: ['out']};");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "n");
    EXPECT_EQ(r->inports.at(1).type, "flow");
    ASSERT_TRUE(r->inports.at(1).default_value);
    EXPECT_TRUE(r->inports.at(1).default_value->is_null());
    EXPECT_TRUE(r->has_outport("out"));
    EXPECT_EQ(r->to_json().at("inports").at(1).at("default"), nullptr);
}

}  // namespace
