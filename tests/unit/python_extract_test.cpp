// Static metadata extraction from Python actor scripts (src/actor/python_*.cpp, metadata.cpp).
#include <chrono>
#include <filesystem>
#include <fstream>
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

Result<ActorMetadata> py(std::string_view source) {
    return extract_metadata(source, "actor.py", Language::python);
}

// The result is a metadata error at line:column whose message contains `needle`.
::testing::AssertionResult FailsAt(const Result<ActorMetadata>& r, int line, int column,
                                   std::string_view needle) {
    return sandflow::testing::metadata_fails_at("actor.py", r, line, column, needle);
}

// A script whose declaration is `@actor({"component": "t", "x": <literal>})`; returns raw["x"].
json::value literal(std::string_view lit) {
    auto r =
        py("@actor({\"component\": \"t\", \"x\": " + std::string(lit) + "})\ndef f(c): pass\n");
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? r->raw.at("x") : json::value();
}

TEST(PythonExtract, SeedForm) {
    const auto r = py(R"(@actor({
    "component": "actor_name",
    "description": "Actor description",
    "inports": ["input"],
    "outports": ["output"]
})
async def process(context):
    input_value = context.get_input("input")
    result = process_value(input_value)
    await context.send_output("output", result)
    return {"status": "completed"}
)");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->language, Language::python);
    EXPECT_EQ(r->component, "actor_name");
    EXPECT_EQ(r->description, "Actor description");
    ASSERT_EQ(r->inports.size(), 1u);
    EXPECT_EQ(r->inports[0].name, "input");
    EXPECT_EQ(r->inports[0].type, "any");
    EXPECT_FALSE(r->inports[0].required);
    ASSERT_EQ(r->outports.size(), 1u);
    EXPECT_EQ(r->outports[0].name, "output");
    EXPECT_TRUE(r->has_outport("output"));
    EXPECT_FALSE(r->has_outport("input"));
    EXPECT_TRUE(r->config_schema.is_null());
    EXPECT_FALSE(r->await_all_inports);
    EXPECT_EQ(r->line, 1);
    EXPECT_EQ(r->column, 1);
    EXPECT_EQ(json::value(r->raw), json::parse(R"({"component": "actor_name",
        "description": "Actor description", "inports": ["input"], "outports": ["output"]})"));
}

TEST(PythonExtract, SeedFormWithCrLf) {
    const auto r =
        py("import os\r\n\r\n@actor({\r\n  \"component\": \"c\",\r\n"
           "  \"inports\": [\"a\"],\r\n})\r\ndef process(context): pass\r\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "c");
    EXPECT_EQ(r->line, 3);
}

TEST(PythonExtract, ToJsonIsNormalised) {
    const auto r = py(R"(@actor({"component": "n", "inports": ["a", {"name": "b", "type": "integer",
    "required": True, "description": "the b", "default": 5}], "extra": [1]})
def process(ctx): pass
)");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(json::value(r->to_json()), json::parse(R"({
        "component": "n", "description": "", "version": "", "category": "", "tags": [],
        "inports": [
            {"name": "a", "type": "any", "required": false, "description": ""},
            {"name": "b", "type": "integer", "required": true, "description": "the b",
             "default": 5}],
        "outports": [], "config_schema": null, "await_all_inports": false,
        "requires": [], "packages": []})"));
    EXPECT_EQ(r->raw.at("extra"), json::parse("[1]"));  // unknown keys are kept in raw
}

TEST(PythonExtract, RequiresAndPackages) {
    const auto r = py(R"(@actor({"component": "n", "requires": ["yaml", "numpy>=1.24,<2"],
    "packages": "science"})
def process(ctx): pass
)");
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(r->requirements.size(), 2u);
    EXPECT_EQ(r->requirements[1].name, "numpy");
    EXPECT_EQ(r->requirements[1].clauses.size(), 2u);
    EXPECT_EQ(r->package_sets, std::vector<std::string>{"science"});
    EXPECT_EQ(r->to_json().at("requires"), json::parse(R"(["yaml", "numpy>=1.24,<2"])"));

    // Each mistake points at the key and says how to write it.
    for (const char* bad : {R"("requires": "yaml")", R"("requires": [3])",
                            R"("requires": ["numpy>=x"])", R"("packages": [""])"}) {
        const auto e = py(std::string("@actor({\"component\": \"n\", ") + bad +
                          "})\ndef process(ctx): pass\n");
        ASSERT_FALSE(e) << bad;
        EXPECT_EQ(e.error().code, Errc::metadata) << bad;
        EXPECT_EQ(e.error().data.at("line"), 1) << bad;
    }
    std::string many = "@actor({\"component\": \"n\", \"requires\": [";
    for (std::size_t i = 0; i <= sandflow::limits::kMaxRequirements; ++i)
        many += (i ? ", \"p" : "\"p") + std::to_string(i) + "\"";
    const auto e = py(many + "]})\ndef process(ctx): pass\n");
    ASSERT_FALSE(e);
    EXPECT_NE(e.error().message.find("kMaxRequirements"), std::string::npos) << e.error().message;
}

TEST(PythonExtract, KeywordForm) {
    const auto r = py(R"(
@actor(
    name="doubler",   # the component name
    inports=["input"],
    outports=("output", "errors"),
    description='Doubles', version="1.2", category="math", tags=["a", "b"],
    config_schema={"type": "object", "properties": {"k": {"type": "integer"}}},
    await_all_inports=True,
)
def process(context):
    return {"output": context.get_input("input") * 2}
)");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "doubler");
    EXPECT_EQ(r->description, "Doubles");
    EXPECT_EQ(r->version, "1.2");
    EXPECT_EQ(r->category, "math");
    EXPECT_EQ(r->tags, (std::vector<std::string>{"a", "b"}));
    ASSERT_EQ(r->outports.size(), 2u);
    EXPECT_EQ(r->outports[1].name, "errors");
    EXPECT_EQ(r->config_schema.at("properties").at("k").at("type"), "integer");
    EXPECT_TRUE(r->await_all_inports);
    EXPECT_EQ(r->line, 2);
    std::vector<std::string> keys;  // in the order written
    for (const auto& kv : r->raw) keys.emplace_back(kv.key());
    EXPECT_EQ(keys,
              (std::vector<std::string>{"name", "inports", "outports", "description", "version",
                                        "category", "tags", "config_schema", "await_all_inports"}));
}

TEST(PythonExtract, ComponentWinsOverName) {
    const auto r = py("@actor(name='n', component='c')\ndef process(c): pass\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "c");
}

TEST(PythonExtract, ModuleLevelAssignment) {
    const auto r =
        py("import json\n\n__actor_metadata__ = {  # the declaration\n"
           "    'component': 'm', 'outports': ['out'],\n}  # done\n\n"
           "def process(context):\n    return {'out': 1}\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "m");
    EXPECT_EQ(r->line, 3);
    EXPECT_EQ(r->column, 1);
}

TEST(PythonExtract, AssignmentMustBeAtModuleLevel) {
    EXPECT_TRUE(FailsAt(py("class A:\n    __actor_metadata__ = {'component': 'x'}\n"), 1, 1,
                        "no actor declaration found"));
    EXPECT_TRUE(FailsAt(py("print(__actor_metadata__)\nx = (\n__actor_metadata__ == 1)\n"), 1, 1,
                        "no actor declaration found"));
    EXPECT_TRUE(FailsAt(py("__actor_metadata__ = {'component': 'x'} | other\n"), 1, 41,
                        "unexpected '|' after the __actor_metadata__ dict"));
    EXPECT_TRUE(FailsAt(py("__actor_metadata__ = ['component']\n"), 1, 22,
                        "__actor_metadata__ must be a dict literal {...}, found a list"));
    EXPECT_TRUE(FailsAt(py("__actor_metadata__ = dict(component='x')\n"), 1, 22,
                        "expected a literal value, found identifier 'dict'"));
}

TEST(PythonExtract, IndentedDecoratorAndContinuations) {
    auto r =
        py("class A:\n    @actor \\\n  ({'component': 'indented'})\n    def process(self, c):"
           " pass\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "indented");
    EXPECT_EQ(r->line, 2);
    EXPECT_EQ(r->column, 5);
    r = py("@actor({'component': \\\n 'c', 'inports': \\\n ['a']})\ndef process(c): pass\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->inports.at(0).name, "a");
}

TEST(PythonExtract, CommentsAndTrailingCommas) {
    const auto r = py(R"(# header comment with @actor({"component": "no"})
@actor(  # open
    {  # dict
        "component"  # key
        :  # colon
        "c",  # value
        "inports": [
            "a",  # first
            "b",
        ],
        "tags": ("t",),
        "config_schema": {"x": [], "y": (), "z": ("p")},
    },  # trailing comma after the only argument
)  # close
def process(c): pass
)");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "c");
    EXPECT_EQ(r->inports.size(), 2u);
    EXPECT_EQ(r->tags, (std::vector<std::string>{"t"}));
    EXPECT_EQ(r->config_schema, json::parse(R"({"x": [], "y": [], "z": "p"})"));
}

TEST(PythonLiteral, StringForms) {
    EXPECT_EQ(literal(R"('single')"), "single");
    EXPECT_EQ(literal(R"("double")"), "double");
    EXPECT_EQ(literal("'''tri\nple'''"), "tri\nple");
    EXPECT_EQ(literal("\"\"\"a \"quoted\" ''word''\"\"\""), "a \"quoted\" ''word''");
    EXPECT_EQ(literal("'''crlf\r\nline'''"), "crlf\nline");
    EXPECT_EQ(literal(R"(r'C:\new\table')"), R"(C:\new\table)");
    EXPECT_EQ(literal(R"(R"\d+\"")"), R"(\d+\")");
    EXPECT_EQ(literal(R"(u'unicode' U"x")"), "unicodex");
    EXPECT_EQ(literal("'a' \"b\"  # comment\n  '''c''' r'\\d'"), "abc\\d");
    EXPECT_EQ(literal(R"("caf\u00e9 \U0001F600 \x41\101\0")"),
              json::value(std::string("caf\xC3\xA9 \xF0\x9F\x98\x80 AA") + '\0'));
    EXPECT_EQ(literal(R"('\n\t\\\'\"\a\b\f\v\r')"), "\n\t\\'\"\a\b\f\v\r");
    EXPECT_EQ(literal(R"('\xff')"), "\xC3\xBF");
    EXPECT_EQ(literal(R"('keep \d and \q')"), R"(keep \d and \q)");
    EXPECT_EQ(literal("'line \\\ncontinued'"), "line continued");
    EXPECT_EQ(literal("'''a\\\r\nb'''"), "ab");
    EXPECT_EQ(literal("'h\xC3\xA9llo \xE2\x82\xAC'"), "h\xC3\xA9llo \xE2\x82\xAC");
    EXPECT_EQ(literal("('paren' 'thesised')"), "parenthesised");
}

TEST(PythonLiteral, StringErrors) {
    const std::string head = "@actor({\"component\": \"t\", \"x\": ";  // x's value: column 32
    EXPECT_TRUE(FailsAt(py(head + "f'{a}'})"), 1, 32, "f-strings are not allowed"));
    EXPECT_TRUE(FailsAt(py(head + "'a' F'b'})"), 1, 36, "f-strings are not allowed"));
    EXPECT_TRUE(FailsAt(py(head + "rb'x'})"), 1, 32, "bytes literals (b'...') are not allowed"));
    EXPECT_TRUE(FailsAt(py(head + "ur'x'})"), 1, 32, "invalid string prefix 'ur'"));
    EXPECT_TRUE(FailsAt(py(head + "'\\N{BULLET}'})"), 1, 33, "unsupported escape \\N{...}"));
    EXPECT_TRUE(FailsAt(py(head + "'\\x4'})"), 1, 33, "invalid \\x escape"));
    EXPECT_TRUE(FailsAt(py(head + "'\\ud800'})"), 1, 33, "not a Unicode scalar value"));
    EXPECT_TRUE(FailsAt(py(head + "'\\U00110000'})"), 1, 33, "not a Unicode scalar value"));
}

TEST(PythonLiteral, Numbers) {
    EXPECT_EQ(literal("42"), 42);
    EXPECT_EQ(literal("-42"), -42);
    EXPECT_EQ(literal("+ 7"), 7);
    EXPECT_EQ(literal("--3"), 3);
    EXPECT_EQ(literal("0"), 0);
    EXPECT_EQ(literal("000"), 0);
    EXPECT_EQ(literal("1_000_000"), 1000000);
    EXPECT_EQ(literal("0xFF"), 255);
    EXPECT_EQ(literal("0x_ff_ff"), 65535);
    EXPECT_EQ(literal("0o17"), 15);
    EXPECT_EQ(literal("0B1010"), 10);
    EXPECT_EQ(literal("9223372036854775807"), INT64_MAX);
    EXPECT_EQ(literal("-9223372036854775808"), INT64_MIN);
    EXPECT_EQ(literal("1.5"), 1.5);
    EXPECT_EQ(literal(".5"), 0.5);
    EXPECT_EQ(literal("5."), 5.0);
    EXPECT_EQ(literal("1e3"), 1000.0);
    EXPECT_EQ(literal("-2.5E-3"), -0.0025);
    EXPECT_EQ(literal("1_0.0_1e+1_0"), 10.01e10);
    EXPECT_TRUE(literal("1.0").is_double());
    EXPECT_EQ(literal("[True, False, None]"), json::parse("[true, false, null]"));
}

TEST(PythonLiteral, NumberErrors) {
    const std::string head = "@actor({\"component\": \"t\", \"x\": ";
    EXPECT_TRUE(FailsAt(py(head + "9223372036854775808})"), 1, 32, "does not fit in 64 bits"));
    EXPECT_TRUE(FailsAt(py(head + "-9223372036854775809})"), 1, 33, "does not fit in 64 bits"));
    EXPECT_TRUE(FailsAt(py(head + "0x1_0000_0000_0000_0000})"), 1, 32, "does not fit"));
    EXPECT_TRUE(FailsAt(py(head + "007})"), 1, 32, "leading zeros"));
    EXPECT_TRUE(FailsAt(py(head + "1__0})"), 1, 32, "invalid number literal '1__0'"));
    EXPECT_TRUE(FailsAt(py(head + "1_})"), 1, 32, "invalid number literal"));
    EXPECT_TRUE(FailsAt(py(head + "0x})"), 1, 32, "invalid number literal '0x'"));
    EXPECT_TRUE(FailsAt(py(head + "1e})"), 1, 32, "invalid number literal"));
    EXPECT_TRUE(FailsAt(py(head + "12abc})"), 1, 32, "invalid number literal '12abc'"));
    EXPECT_TRUE(FailsAt(py(head + "2j})"), 1, 32, "complex numbers"));
    // A prefixed literal is never complex: the 'j' runs it on. A float may start with zeros.
    EXPECT_TRUE(FailsAt(py(head + "0x1j})"), 1, 32, "invalid number literal '0x1j'"));
    EXPECT_TRUE(FailsAt(py(head + "0b2})"), 1, 32, "invalid number literal '0b2'"));
    EXPECT_TRUE(FailsAt(py(head + "007x})"), 1, 32, "invalid number literal '007x'"));
    EXPECT_EQ(literal("01.5"), 1.5);
    EXPECT_TRUE(FailsAt(py(head + "1e999})"), 1, 32, "out of range"));
    EXPECT_TRUE(FailsAt(py(head + "-'a'})"), 1, 32, "must be followed by a number"));
}

TEST(PythonLiteral, ContainerErrors) {
    const std::string head = "@actor({\"component\": \"t\", \"x\": ";
    EXPECT_TRUE(FailsAt(py(head + "{1, 2}})"), 1, 32, "set literals are not allowed"));
    EXPECT_TRUE(FailsAt(py(head + "{'a'}})"), 1, 32, "set literals are not allowed"));
    EXPECT_TRUE(
        FailsAt(py(head + "{1: 'a'}})"), 1, 33, "dict keys must be strings, found an integer"));
    EXPECT_TRUE(FailsAt(py(head + "{None: 'a'}})"), 1, 33, "found None"));
    EXPECT_TRUE(FailsAt(py(head + "{('a',): 1}})"), 1, 33, "found a list"));
    EXPECT_TRUE(FailsAt(py(head + "{'a': 1, 'a': 2}})"), 1, 41, "duplicate key 'a'"));
    EXPECT_TRUE(
        FailsAt(py(head + "{'a' 1}})"), 1, 37, "expected ':' after dict key, found number '1'"));
    EXPECT_TRUE(
        FailsAt(py(head + "{'a': 1]})"), 1, 39, "expected ',' or '}' after dict value, found ']'"));
    EXPECT_TRUE(
        FailsAt(py(head + "[1 2]})"), 1, 35, "expected ',' or ']' in list, found number '2'"));
    EXPECT_TRUE(FailsAt(py(head + "(1 2)})"), 1, 35, "expected ',' or ')' in tuple"));
    EXPECT_TRUE(FailsAt(py(head + "[,]})"), 1, 33, "expected a literal value, found ','"));
    EXPECT_TRUE(FailsAt(py(head + "{**other}})"), 1, 33, "expected a literal value, found '*'"));
    EXPECT_TRUE(FailsAt(py(head + "VALUE})"), 1, 32, "found identifier 'VALUE'"));
    EXPECT_TRUE(FailsAt(py(head + "len('x')})"), 1, 32, "found identifier 'len'"));
    EXPECT_TRUE(FailsAt(py(head + "[1,\n  x]})"), 2, 3, "found identifier 'x'"));
    EXPECT_TRUE(FailsAt(py(head + "[1,"), 1, 35, "expected a literal value, found end of file"));
}

TEST(PythonExtract, DecoratorArgumentErrors) {
    EXPECT_TRUE(FailsAt(py("x = 1\n  @actor\ndef process(c): pass\n"), 2, 3,
                        "@actor needs the metadata as its argument"));
    EXPECT_TRUE(FailsAt(py("@actor  # comment\ndef process(c): pass\n"), 1, 1,
                        "@actor needs the metadata"));
    EXPECT_TRUE(FailsAt(py("@actor( # nothing\n)\ndef process(c): pass\n"), 1, 1,
                        "@actor() has no arguments"));
    EXPECT_TRUE(FailsAt(py("@actor({'component': 'a'}, name='b')\n"), 1, 28,
                        "either one dict or keyword arguments, not both"));
    EXPECT_TRUE(FailsAt(py("@actor(name='b', {'component': 'a'})\n"), 1, 18,
                        "expected a keyword argument name=value, found '{'"));
    EXPECT_TRUE(
        FailsAt(py("@actor({'component': 'a'}, {})\n"), 1, 28, "takes exactly one dict argument"));
    EXPECT_TRUE(FailsAt(py("@actor('a')\n"), 1, 8,
                        "the @actor argument must be a dict literal {...}, found a string"));
    EXPECT_TRUE(
        FailsAt(py("@actor(name='a', name='b')\n"), 1, 18, "keyword argument 'name' is repeated"));
    EXPECT_TRUE(FailsAt(py("@actor(name='a' inports=[])\n"), 1, 17,
                        "expected ',' or ')' in @actor(...), found identifier 'inports'"));
    EXPECT_TRUE(FailsAt(py("@actor(**meta)\n"), 1, 8, "does not take *args or **kwargs"));
    EXPECT_TRUE(FailsAt(py("@actor({'component': 'a'}\ndef process(c): pass\n"), 2, 1,
                        "takes exactly one dict argument; expected ')', found identifier 'def'"));
}

TEST(PythonExtract, OtherDecoratorsAreIgnored) {
    const auto r = py(R"(@actors({"component": "no"})
@x.actor({"component": "no"})
@actor.register({"component": "no"})
@ actor({"component": "yes"})
def process(c):
    y = a @actor({"component": "no"})
    return y
)");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "yes");
    EXPECT_EQ(r->line, 4);
}

TEST(PythonExtract, DeclarationsInStringsAndCommentsAreIgnored) {
    const std::string decl = "@actor({\"component\": \"x\"})";
    const std::string cases[] = {
        "# " + decl + "\n",
        "s = '" + decl + "'\n",
        "s = \"\"\"\n" + decl + "\n\"\"\"\n",
        "s = '''\n" + decl + "\n'''\n",
        "def f():\n    \"\"\"Doc.\n\n    " + decl + "\n    \"\"\"\n",
        "s = rb'''\n" + decl + "\n'''\n",
        "s = Rb\"\"\"\n" + decl + "\n\"\"\"\n",
        "s = f'''\n" + decl + "\n'''\n",
        "s = f\"{d[\"k\"]} {'''\n" + decl + "\n'''}\"\n",
        "s = f'''{x:{width}} {{\n" + decl + "}}'''\n",
        "s = '\\'' ; t = '''\\'''\n" + decl + "\n'''\n",
        "s = 'a\\\n" + decl + "'\n",
        "s = r'\\\n" + decl + "'\n",
        "__actor_metadata__x = 1\n# __actor_metadata__ = {'component': 'x'}\n",
        "s = '__actor_metadata__ = {}'\n",
    };
    for (const std::string& src : cases) {
        EXPECT_TRUE(FailsAt(py(src), 1, 1, "no actor declaration found: add @actor({")) << src;
    }
}

TEST(PythonExtract, RealDeclarationAfterTrickyStrings) {
    const auto r =
        py("x = f\"{'}'}\" + f'''{\"\"\"{\"\"\"}'''  # @actor({'component': 'no'})\n"
           "y = '''\n@actor({'component': 'no'})'''; z = \"\\\"@actor\"\n"
           "@actor({'component': 'yes'})\ndef process(c): pass\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "yes");
    EXPECT_EQ(r->line, 4);
}

TEST(PythonExtract, TwoDeclarations) {
    EXPECT_TRUE(FailsAt(py("@actor({'component': 'a'})\ndef process(c): pass\n\n"
                           "__actor_metadata__ = {'component': 'b'}\n"),
                        4, 1, "second actor declaration; the first is at line 1, column 1"));
    EXPECT_TRUE(
        FailsAt(py("@actor(name='a')\ndef f(c): pass\n\n  @actor(name='b')\ndef g(c): pass\n"), 4,
                3, "the first is at line 1, column 1"));
}

TEST(PythonExtract, NoDeclaration) {
    EXPECT_TRUE(FailsAt(py(""), 1, 1, "no actor declaration found"));
    EXPECT_TRUE(
        FailsAt(py("def process(c):\n    return {}\n"), 1, 1, "define __actor_metadata__ = {...}"));
}

TEST(PythonExtract, UnterminatedStrings) {
    // In the declaration: reported where the string starts.
    EXPECT_TRUE(FailsAt(py("@actor({\n  \"component\": \"abc,\n  \"x\": 1})\n"), 2, 16,
                        "unterminated string: add the closing \""));
    EXPECT_TRUE(FailsAt(py("@actor({'component': 'c',\n 'd': '''never closed})\n"), 2, 7,
                        "unterminated triple-quoted string: add the closing '''"));
    EXPECT_TRUE(FailsAt(py("@actor({'component': 'c\\"), 1, 22, "unterminated string"));
    // In ordinary code: the scan cannot go on, and says where.
    EXPECT_TRUE(FailsAt(py("@actor({'component': 'c'})\ndef f(c):\n    return \"oops\n"), 3, 12,
                        "unterminated string: add the closing \""));
    EXPECT_TRUE(
        FailsAt(py("x = 1\ns = r\"\"\"never\n"), 2, 5, "unterminated triple-quoted string"));
    EXPECT_TRUE(FailsAt(py("s = f'{x\n"), 1, 5, "unterminated f-string replacement field"));
    EXPECT_TRUE(FailsAt(py("s = f'{x'\n"), 1, 9, "unterminated string"));  // 3.12: a new string
}

TEST(PythonExtract, InvalidUtf8) {
    EXPECT_TRUE(
        FailsAt(py("# caf\xE9\n@actor({'component': 'c'})\n"), 1, 6, "invalid UTF-8 (byte 0xE9)"));
    EXPECT_TRUE(FailsAt(py("@actor({'component': 'h\xC3\xA9\xC3\x28'})\n"), 1, 25,
                        "invalid UTF-8 (byte 0xC3)"));
    EXPECT_TRUE(
        FailsAt(py("x = '\xED\xA0\x80'\n"), 1, 6, "invalid UTF-8 (byte 0xED)"));  // surrogate
    EXPECT_TRUE(FailsAt(py("x = '\xC0\xAF'\n"), 1, 6, "invalid UTF-8"));          // overlong
    EXPECT_TRUE(FailsAt(py("x = '\xF0\x9F\x98'"), 1, 6, "invalid UTF-8"));        // truncated
}

TEST(PythonExtract, ColumnsCountCodePoints) {
    // "é" and "😀" are one column each; the error is at the value of "version".
    EXPECT_TRUE(FailsAt(py("@actor({'description': '\xC3\xA9\xF0\x9F\x98\x80', 'component': 'c', "
                           "'version': 2})\n"),
                        1, 48, "\"version\" must be a string, found an integer"));
    const auto r = py("\xEF\xBB\xBF@actor({'component': 'bom'})\n");  // a BOM takes no column
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->column, 1);
}

TEST(PythonExtract, DeepNestingFailsCleanly) {
    const std::string deep = "@actor({'component': 'c', 'x': " + std::string(100000, '[') + "})\n";
    // Nesting starts with the dict at depth 1, so the list at column 32 + 63 is one too many.
    const int column = 32 + static_cast<int>(sandflow::limits::kMaxLiteralDepth) - 1;
    const auto r = py(deep);
    EXPECT_TRUE(FailsAt(r, 1, column, "nested deeper than 64 levels"));
    EXPECT_EQ(r.error().data.at("limit"), "max_literal_depth");
    EXPECT_TRUE(FailsAt(py("__actor_metadata__ = " + std::string(100000, '(') + "\n"), 1,
                        22 + static_cast<int>(sandflow::limits::kMaxLiteralDepth),
                        "nested deeper"));
    EXPECT_TRUE(FailsAt(py("__actor_metadata__ = {'a': " + std::string(100000, '{')), 1,
                        28 + static_cast<int>(sandflow::limits::kMaxLiteralDepth) - 1,
                        "nested deeper"));
    // Deep brackets in ordinary code and deeply nested f-strings are no problem either.
    EXPECT_TRUE(FailsAt(py("x = " + std::string(100000, '(') + "\n"), 1, 1, "no actor"));
    std::string fs;
    for (int i = 0; i < 1000; ++i) fs += "f'{";
    // Reported at the string whose field is one level too deep: the 65th, 3 columns each.
    EXPECT_TRUE(FailsAt(py("x = " + fs + "\n"), 1, 5 + 3 * 64, "f-string fields nested deeper"));
}

TEST(PythonExtract, HugeLiteralFails) {
    const std::string big(sandflow::limits::kMaxMetadataBytes + 10, 'a');
    auto r = py("\n@actor({'component': 'c', 'description': '" + big + "'})\n");
    EXPECT_TRUE(FailsAt(r, 2, 1, "larger than 262144 bytes (limits::kMaxMetadataBytes)"));
    EXPECT_EQ(r.error().data.at("limit"), "max_metadata_bytes");
    std::string many = "__actor_metadata__ = {'component': 'c', 'x': [";
    for (std::size_t i = 0; i < sandflow::limits::kMaxMetadataBytes / 2; ++i) many += "1,";
    EXPECT_TRUE(FailsAt(py(many + "]}\n"), 1, 1, "larger than"));
    std::string spaced = "@actor(name='c', x=[1" + std::string(300000, ' ') + "])\n";
    EXPECT_TRUE(FailsAt(py(spaced), 1, 1, "larger than"));
    spaced = "@actor(name='c'" + std::string(300000, '\n') + ")\n";
    EXPECT_TRUE(FailsAt(py(spaced), 1, 1, "larger than"));
}

TEST(PythonValidate, Component) {
    EXPECT_TRUE(FailsAt(py("\n\n  @actor({'description': 'd'})\n"), 3, 3,
                        "missing \"component\": add \"component\": \"my_actor\""));
    EXPECT_TRUE(FailsAt(py("@actor({'component': ''})\n"), 1, 9,
                        "\"component\" must be a non-empty string"));
    EXPECT_TRUE(FailsAt(py("@actor(name=42)\n"), 1, 8,
                        "\"name\" must be a non-empty string naming "
                        "the actor, found an integer"));
}

TEST(PythonValidate, WrongTypes) {
    const auto at = [](std::string_view rest) {
        return py("@actor({'component': 'c', " + std::string(rest) + "})\n");
    };
    EXPECT_TRUE(
        FailsAt(at("'version': 1.0"), 1, 27, "\"version\" must be a string, found a float"));
    EXPECT_TRUE(FailsAt(at("'description': None"), 1, 27, "found None"));
    EXPECT_TRUE(FailsAt(at("'tags': 'a'"), 1, 27, "\"tags\" must be a list of strings"));
    EXPECT_TRUE(FailsAt(at("'tags': ['a', 1]"), 1, 27, "\"tags\" must hold only strings"));
    EXPECT_TRUE(
        FailsAt(at("'inports': 'input'"), 1, 27,
                "\"inports\" must be a list of port names or port objects, found a string"));
    EXPECT_TRUE(FailsAt(at("'outports': [1]"), 1, 27, "outports[0] must be a port name"));
    EXPECT_TRUE(
        FailsAt(at("'inports': ['a', 'a']"), 1, 27, "duplicate port name \"a\" in inports"));
    EXPECT_TRUE(FailsAt(at("'inports': ['a', {'name': 'a'}]"), 1, 27, "duplicate port name"));
    EXPECT_TRUE(
        FailsAt(at("'inports': ['']"), 1, 27, "inports[0]: the port name must not be empty"));
    EXPECT_TRUE(FailsAt(at("'inports': [{'type': 'any'}]"), 1, 27, "inports[0] needs a \"name\""));
    EXPECT_TRUE(FailsAt(at("'inports': [{'name': 'a', 'type': 'int'}]"), 1, 27,
                        "inports[0]: unknown port type \"int\": use one of any, flow, boolean"));
    EXPECT_TRUE(FailsAt(at("'inports': [{'name': 'a', 'required': 1}]"), 1, 27,
                        "\"required\" must be True or False, found an integer"));
    EXPECT_TRUE(FailsAt(at("'inports': [{'name': 'a', 'description': 1}]"), 1, 27,
                        "\"description\" must be a string"));
    EXPECT_TRUE(FailsAt(at("'await_all_inports': 'yes'"), 1, 27,
                        "\"await_all_inports\" must be True or False, found a string"));
    EXPECT_TRUE(
        FailsAt(py("@actor(name='c',\n       version=3)\n"), 2, 8, "\"version\" must be a string"));
}

TEST(PythonValidate, PortObjectsAndTooManyPorts) {
    auto r = py(R"(@actor({"component": "p", "inports": [
    {"name": "a", "type": "stream", "required": True, "description": "A",
     "default": [1, {"k": None}]},
    {"name": "b", "type": "bytes"}, "c"],
    "outports": [{"name": "out", "type": "option"}]})
)");
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(r->inports.size(), 3u);
    EXPECT_EQ(r->inports[0].type, "stream");
    EXPECT_TRUE(r->inports[0].required);
    EXPECT_EQ(r->inports[0].description, "A");
    ASSERT_TRUE(r->inports[0].default_value);
    EXPECT_EQ(*r->inports[0].default_value, json::parse(R"([1, {"k": null}])"));
    EXPECT_FALSE(r->inports[1].default_value);
    EXPECT_EQ(r->inports[2].type, "any");
    EXPECT_EQ(r->outports[0].type, "option");

    std::string ports;
    for (std::size_t i = 0; i <= sandflow::limits::kMaxPorts; ++i) {
        ports += "'p" + std::to_string(i) + "',";
    }
    r = py("@actor({'component': 'c', 'outports': [" + ports + "]})\n");
    EXPECT_TRUE(FailsAt(r, 1, 27, "declares 257 ports; at most 256"));
    EXPECT_EQ(r.error().data.at("limit"), "max_ports");
}

TEST(Metadata, LanguageHelpers) {
    using sandflow::actor::language_from_name;
    using sandflow::actor::language_from_path;
    using sandflow::actor::language_name;
    EXPECT_EQ(language_from_path("a/b.py"), Language::python);
    EXPECT_EQ(language_from_path("b.js"), Language::javascript);
    EXPECT_EQ(language_from_path("b.cjs"), Language::javascript);
    EXPECT_EQ(language_from_path("b.ts"), std::nullopt);
    EXPECT_EQ(language_from_path("py"), std::nullopt);
    EXPECT_EQ(language_from_name("Python"), Language::python);
    EXPECT_EQ(language_from_name("py"), Language::python);
    EXPECT_EQ(language_from_name("node"), Language::javascript);
    EXPECT_EQ(language_from_name("js"), Language::javascript);
    EXPECT_EQ(language_from_name("ruby"), std::nullopt);
    EXPECT_EQ(language_name(Language::python), "python");
    EXPECT_EQ(language_name(Language::javascript), "javascript");
}

TEST(Metadata, ErrorShape) {
    const auto e = sandflow::actor::metadata_error("x.py", 3, 7, "what happened");
    EXPECT_EQ(e.code, Errc::metadata);
    EXPECT_EQ(e.message, "x.py:3:7: what happened");
    EXPECT_EQ(json::value(e.data), json::parse(R"({"file": "x.py", "line": 3, "column": 7})"));
}

class InspectFile : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("sandflow_md_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::filesystem::path write(const std::string& name, const std::string& text) {
        const auto p = dir_ / name;
        std::ofstream(p, std::ios::binary) << text;
        return p;
    }
    std::filesystem::path dir_;
};

TEST_F(InspectFile, ReadsAndExtracts) {
    const auto p = write("double.py", "@actor({'component': 'double'})\ndef process(c): pass\n");
    std::string source;
    const auto r = sandflow::actor::inspect_file(p, &source);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->component, "double");
    EXPECT_EQ(source, "@actor({'component': 'double'})\ndef process(c): pass\n");
    const auto js =
        sandflow::actor::inspect_file(write("a.cjs", "const metadata = {component: 'j'};"));
    ASSERT_TRUE(js) << js.error().message;
    EXPECT_EQ(js->language, Language::javascript);
}

TEST_F(InspectFile, ErrorsNameTheFile) {
    const auto p = write("bad.py", "\n@actor({'component': 1})\n");
    const auto r = sandflow::actor::inspect_file(p);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message.rfind(p.string() + ":2:9: ", 0), 0u) << r.error().message;
    EXPECT_EQ(r.error().data.at("file"), json::value(p.string()));
}

TEST_F(InspectFile, RejectsUnknownExtensionMissingFileAndHugeFile) {
    auto r = sandflow::actor::inspect_file(write("a.rb", "x"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    EXPECT_NE(r.error().message.find("Python (.py) or JavaScript (.js, .cjs)"), std::string::npos);
    r = sandflow::actor::inspect_file(dir_ / "missing.py");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    r = sandflow::actor::inspect_file(dir_);
    ASSERT_FALSE(r);
    r = sandflow::actor::inspect_file(
        write("big.py", std::string(sandflow::limits::kMaxScriptBytes + 1, '#')));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::limit_exceeded);
    EXPECT_EQ(r.error().data.at("limit"), "max_script_bytes");
    const auto direct = py(std::string(sandflow::limits::kMaxScriptBytes + 1, '#'));
    ASSERT_FALSE(direct);
    EXPECT_EQ(direct.error().code, Errc::limit_exceeded);
}

}  // namespace
