"""Compiles the Python worker shim at build time into a C++ source that embeds its marshalled
code object and the bytecode magic number of the interpreter that compiled it.

Usage: python3 compile_python.py INPUT OUTPUT.cpp

Run with the interpreter the workers use (/usr/bin/python3): marshalled code is valid only
for an interpreter with the same magic number, which the worker's bootstrap checks before it
uses the code (it compiles the source it is sent with otherwise)."""
import importlib.util
import marshal
import sys

NAMESPACE = "sandflow::actor::sdk"


def as_array(name, data):
    rows = []
    for i in range(0, len(data), 24):
        rows.append("    " + ",".join(str(b) for b in data[i:i + 24]) + ",")
    return ("const unsigned char %s[%d] = {\n%s\n};\n" % (name, max(len(data), 1), "\n".join(rows) or "0"))


def main():
    src_path, out_path = sys.argv[1], sys.argv[2]
    with open(src_path, encoding="utf-8") as f:
        source = f.read()
    code = compile(source, "<sandflow_worker>", "exec", dont_inherit=True)
    data = marshal.dumps(code)
    magic = importlib.util.MAGIC_NUMBER
    text = (
        "// Generated from %s by cmake/compile_python.py (%s); do not edit.\n"
        "#include <string_view>\n"
        "namespace %s {\n"
        "namespace {\n%s%s}  // namespace\n"
        "extern const std::string_view kPythonWorkerCode;\n"
        "extern const std::string_view kPythonWorkerMagic;\n"
        "const std::string_view kPythonWorkerCode(reinterpret_cast<const char*>(kCode), %d);\n"
        "const std::string_view kPythonWorkerMagic(reinterpret_cast<const char*>(kMagic), %d);\n"
        "}\n" % (src_path, sys.version.split()[0], NAMESPACE, as_array("kCode", data),
                 as_array("kMagic", magic), len(data), len(magic)))
    try:
        with open(out_path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except OSError:
        pass
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)


main()
