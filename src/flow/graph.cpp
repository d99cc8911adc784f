#include "flow/graph.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <system_error>
#include <type_traits>

#include <boost/json/basic_parser_impl.hpp>

#include "core/limits.hpp"
#include "flow/flow_limits.hpp"

namespace sandflow::flow {

Error graph_error(std::string_view file, std::string_view where, std::string_view what, Errc code) {
    std::string msg = std::string(file) + ": " + std::string(where) + ": " + std::string(what);
    return Error(code, std::move(msg),
                 {{"file", std::string(file)}, {"where", std::string(where)}});
}

bool same_port(const Graph& g, std::string_view a, std::string_view b) {
    if (g.case_sensitive) return a == b;
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

const Node* Graph::find_node(std::string_view id) const {
    for (const auto& n : nodes)
        if (n.id == id) return &n;
    return nullptr;
}

std::string Graph::name() const {
    if (const auto* n = properties.if_contains("name");
        n && n->is_string() && !n->get_string().empty())
        return std::string(n->get_string());
    return std::filesystem::path(file).stem().stem().string();
}

namespace {

// Boost.JSON keeps one value of a duplicated key silently. Duplicates matter in the
// top two levels (process ids, exported port names), so a streaming pass over the text
// reports the first duplicate key there ("processes.a"); deeper levels are not tracked.
class DuplicateKeyHandler {
  public:
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);

    std::string duplicate;

    bool on_document_begin(std::error_code&) { return true; }
    bool on_document_end(std::error_code&) { return true; }
    bool on_object_begin(std::error_code&) {
        enter();
        return true;
    }
    bool on_object_end(std::size_t, std::error_code&) { return leave(); }
    bool on_array_begin(std::error_code&) {
        enter();
        return true;
    }
    bool on_array_end(std::size_t, std::error_code&) { return leave(); }
    bool on_key_part(std::string_view s, std::size_t, std::error_code&) {
        if (tracked()) key_ += s;
        return true;
    }
    bool on_key(std::string_view s, std::size_t, std::error_code&) {
        if (!tracked()) return true;
        key_ += s;
        if (!levels_.back().keys.insert(key_).second && duplicate.empty())
            duplicate = path_ + (path_.empty() ? "" : ".") + key_;
        pending_key_ = std::move(key_);
        key_.clear();
        has_pending_ = true;
        return true;
    }
    bool on_string_part(std::string_view, std::size_t, std::error_code&) { return true; }
    bool on_string(std::string_view, std::size_t, std::error_code&) { return scalar(); }
    bool on_number_part(std::string_view, std::error_code&) { return true; }
    bool on_int64(std::int64_t, std::string_view, std::error_code&) { return scalar(); }
    bool on_uint64(std::uint64_t, std::string_view, std::error_code&) { return scalar(); }
    bool on_double(double, std::string_view, std::error_code&) { return scalar(); }
    bool on_bool(bool, std::error_code&) { return scalar(); }
    bool on_null(std::error_code&) { return scalar(); }
    bool on_comment_part(std::string_view, std::error_code&) { return true; }
    bool on_comment(std::string_view, std::error_code&) { return true; }

  private:
    struct Level {
        std::set<std::string> keys;
        std::size_t path_size = 0;  // path_ length to restore when the container ends
    };
    bool tracked() const { return levels_.size() <= 2; }
    void enter() {
        Level l;
        l.path_size = path_.size();
        if (has_pending_ && tracked()) path_ += (path_.empty() ? "" : ".") + pending_key_;
        has_pending_ = false;
        levels_.push_back(std::move(l));
    }
    bool leave() {
        path_.resize(levels_.back().path_size);
        levels_.pop_back();
        return true;
    }
    bool scalar() {
        has_pending_ = false;
        return true;
    }

    std::vector<Level> levels_;
    std::string path_, key_, pending_key_;
    bool has_pending_ = false;
};

std::string find_duplicate_key(std::string_view text) {
    json::parse_options opts;
    opts.max_depth = limits::kMaxJsonDepth;
    json::basic_parser<DuplicateKeyHandler> p(opts);
    std::error_code ec;
    p.write_some(false, text.data(), text.size(), ec);
    return p.handler().duplicate;
}

class Reader {
  public:
    explicit Reader(std::string_view file) : file_(file) {}

    Error err(std::string_view where, std::string_view what,
              Errc code = Errc::invalid_argument) const {
        return graph_error(file_, where, what, code);
    }

    Result<std::string> id(const json::value& v, std::string_view where, bool allow_empty) const {
        if (!v.is_string()) return tl::unexpected(err(where, "must be a string"));
        const auto& s = v.get_string();
        if (s.size() > limits::kMaxGraphIdBytes)
            return tl::unexpected(
                err(where, "is longer than " + std::to_string(limits::kMaxGraphIdBytes) + " bytes",
                    Errc::limit_exceeded));
        if (!allow_empty && s.empty()) return tl::unexpected(err(where, "must not be empty"));
        return std::string(s);
    }

    Result<std::string> opt_string(const json::object& o, std::string_view key,
                                   std::string_view where) const {
        const auto* v = o.if_contains(key);
        if (!v || v->is_null()) return std::string();
        return id(*v, std::string(where) + "." + std::string(key), true);
    }

    Result<json::object> opt_object(const json::object& o, std::string_view key,
                                    std::string_view where) const {
        const auto* v = o.if_contains(key);
        if (!v || v->is_null()) return json::object();
        if (!v->is_object())
            return tl::unexpected(
                err(std::string(where) + "." + std::string(key), "must be an object"));
        return v->get_object();
    }

    // The object or array (`Container`) at `key` of `o`, or null when the key is absent or
    // null (`required`: absent is an error, null is of the wrong kind). It must hold at most
    // `max` entries, called `noun` in the message. `where` names the key in errors.
    template <class Container>
    Result<const Container*> container(const json::object& o, std::string_view key,
                                       const std::string& where, std::size_t max,
                                       bool required = false,
                                       std::string_view noun = "entries") const {
        constexpr bool kObject = std::is_same_v<Container, json::object>;
        const auto* v = o.if_contains(key);
        if (!v) {
            if (required) return tl::unexpected(err(where, "is missing"));
            return nullptr;
        }
        if (v->is_null() && !required) return nullptr;
        const Container* c = nullptr;
        if constexpr (kObject)
            c = v->if_object();
        else
            c = v->if_array();
        if (!c)
            return tl::unexpected(err(where, kObject ? "must be an object" : "must be an array"));
        if (c->size() > max)
            return tl::unexpected(err(where,
                                      "has " + std::to_string(c->size()) + " " + std::string(noun) +
                                          "; the limit is " + std::to_string(max),
                                      Errc::limit_exceeded));
        return c;
    }

    Result<PortRef> port_ref(const json::value& v, std::string_view where, bool allow_empty) const {
        if (!v.is_object()) return tl::unexpected(err(where, "must be an object"));
        const auto& o = v.get_object();
        PortRef r;
        const std::string w(where);
        auto node = opt_string(o, "nodeId", w);
        if (!node) return tl::unexpected(node.error());
        auto port = opt_string(o, "portName", w);
        if (!port) return tl::unexpected(port.error());
        auto pid = opt_string(o, "portId", w);
        if (!pid) return tl::unexpected(pid.error());
        r.node = std::move(*node);
        r.port = std::move(*port);
        r.port_id = std::move(*pid);
        if (r.port.empty()) r.port = r.port_id;  // NoFlo files name the port "port"
        if (r.port.empty()) {
            auto p = opt_string(o, "port", w);
            if (!p) return tl::unexpected(p.error());
            r.port = std::move(*p);
        }
        if (r.node.empty()) {
            auto p = opt_string(o, "process", w);  // NoFlo spelling
            if (!p) return tl::unexpected(p.error());
            r.node = std::move(*p);
        }
        if (!allow_empty && r.node.empty())
            return tl::unexpected(err(w + ".nodeId", "must name a process"));
        if (!allow_empty && r.port.empty())
            return tl::unexpected(err(w + ".portName", "must name a port"));
        if (const auto* i = o.if_contains("index"); i && !i->is_null()) {
            if (!i->is_int64() && !i->is_uint64())
                return tl::unexpected(err(w + ".index", "must be an integer"));
            r.index = i->to_number<std::int64_t>();
        }
        if (const auto* e = o.if_contains("expose"); e && !e->is_null()) {
            if (!e->is_bool()) return tl::unexpected(err(w + ".expose", "must be true or false"));
            r.expose = e->get_bool();
        }
        if (const auto* t = o.if_contains("portType"); t && !t->is_null()) {
            auto ty = port_type(*t, w + ".portType");
            if (!ty) return tl::unexpected(ty.error());
            r.type = std::move(ty->first);
            r.type_value = std::move(ty->second);
        }
        return r;
    }

    // {"type": TAG, "value": ...}; a bare string is accepted as the tag.
    Result<std::pair<std::string, json::value>> port_type(const json::value& v,
                                                          const std::string& where) const {
        static const std::set<std::string, std::less<>> kTags = {
            "any",    "flow",  "boolean", "integer", "float", "string",
            "object", "array", "stream",  "option",  "event", "encoded"};
        std::string tag;
        json::value value;
        if (v.is_string()) {
            tag = std::string(v.get_string());
        } else if (v.is_object()) {
            const auto& o = v.get_object();
            const auto* t = o.if_contains("type");
            if (!t || !t->is_string())
                return tl::unexpected(err(where + ".type", "must be a port type name"));
            tag = std::string(t->get_string());
            if (const auto* val = o.if_contains("value")) value = *val;
        } else {
            return tl::unexpected(err(where, "must be {\"type\": NAME, \"value\": ...}"));
        }
        std::string lower = tag;
        for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (!kTags.contains(lower))
            return tl::unexpected(
                err(where + ".type", "unknown port type '" + tag +
                                         "'; expected any, flow, boolean, integer, float, "
                                         "string, object, array, stream or option"));
        return std::pair{lower, std::move(value)};
    }

  private:
    std::string file_;
};

Result<void> check_node_ref(const Graph& g, const Reader& r, const PortRef& ref,
                            const std::string& where) {
    if (!g.find_node(ref.node))
        return tl::unexpected(r.err(where + ".nodeId", "no process has the id '" + ref.node + "'"));
    return {};
}

Result<void> read_workspace_keys(Graph& g, const json::object& root, const Reader& r) {
    auto array_of_objects = [&](std::string_view key, json::array& out) -> Result<void> {
        auto v =
            r.container<json::array>(root, key, std::string(key), limits::kMaxGraphConnections);
        if (!v) return tl::unexpected(v.error());
        if (!*v) return {};
        const auto& a = **v;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (!a[i].is_object())
                return tl::unexpected(
                    r.err(std::string(key) + "[" + std::to_string(i) + "]", "must be an object"));
        out = a;
        return {};
    };
    if (auto ok = array_of_objects("graph_dependencies", g.graph_dependencies); !ok) return ok;
    if (auto ok = array_of_objects("external_connections", g.external_connections); !ok) return ok;
    for (std::size_t i = 0; i < g.graph_dependencies.size(); ++i) {
        const auto& d = g.graph_dependencies[i].get_object();
        const auto* n = d.if_contains("graphName");
        if (!n || !n->is_string())
            return tl::unexpected(r.err("graph_dependencies[" + std::to_string(i) + "].graphName",
                                        "must be a string"));
    }
    // Interfaces point at this graph's own processes.
    auto interfaces = [&](std::string_view key, json::object& out) -> Result<void> {
        auto v = r.container<json::object>(root, key, std::string(key), limits::kMaxGraphExports);
        if (!v) return tl::unexpected(v.error());
        if (!*v) return {};
        const auto& o = **v;
        for (const auto& [name, item] : o) {
            const std::string where = std::string(key) + "." + std::string(name);
            if (!item.is_object()) return tl::unexpected(r.err(where, "must be an object"));
            auto proc = r.opt_string(item.get_object(), "processName", where);
            if (!proc) return tl::unexpected(proc.error());
            if (!proc->empty() && !g.find_node(*proc))
                return tl::unexpected(
                    r.err(where + ".processName", "no process has the id '" + *proc + "'"));
        }
        out = o;
        return {};
    };
    if (auto ok = interfaces("provided_interfaces", g.provided_interfaces); !ok) return ok;
    return interfaces("required_interfaces", g.required_interfaces);
}

}  // namespace

Result<Graph> parse_graph(std::string_view text, std::string_view file) {
    const Reader r(file);
    if (text.size() > limits::kMaxGraphBytes)
        return tl::unexpected(
            r.err("file", "is larger than " + std::to_string(limits::kMaxGraphBytes) + " bytes",
                  Errc::limit_exceeded));
    auto doc = parse_json(text, std::string(file));
    if (!doc) return tl::unexpected(doc.error());
    if (!doc->is_object()) return tl::unexpected(r.err("top level", "must be a JSON object"));
    if (auto dup = find_duplicate_key(text); !dup.empty())
        return tl::unexpected(r.err(dup, "is given twice (duplicate id or key)"));
    const auto& root = doc->get_object();

    Graph g;
    g.file = std::string(file);
    if (const auto* cs = root.if_contains("caseSensitive"); cs && !cs->is_null()) {
        if (!cs->is_bool()) return tl::unexpected(r.err("caseSensitive", "must be true or false"));
        g.case_sensitive = cs->get_bool();
    }
    auto props = r.opt_object(root, "properties", "");
    if (!props) return tl::unexpected(props.error());
    g.properties = std::move(*props);

    // processes
    auto procs = r.container<json::object>(root, "processes", "processes", limits::kMaxGraphNodes,
                                           true, "processes");
    if (!procs) return tl::unexpected(procs.error());
    const auto& po = **procs;
    g.nodes.reserve(po.size());
    std::set<std::string, std::less<>> ids;
    for (const auto& [key, item] : po) {
        const std::string where = "processes." + std::string(key);
        auto id = r.id(json::value(json::string_view(key)), where, false);
        if (!id) return tl::unexpected(id.error());
        if (!item.is_object()) return tl::unexpected(r.err(where, "must be an object"));
        const auto& o = item.get_object();
        Node n;
        n.id = *id;
        if (const auto* inner = o.if_contains("id"); inner && !inner->is_null()) {
            auto iid = r.id(*inner, where + ".id", false);
            if (!iid) return tl::unexpected(iid.error());
            if (*iid != n.id)
                return tl::unexpected(
                    r.err(where + ".id",
                          "is '" + *iid + "' but the process is listed as '" + n.id + "'"));
        }
        const auto* comp = o.if_contains("component");
        if (!comp) return tl::unexpected(r.err(where + ".component", "is missing"));
        auto c = r.id(*comp, where + ".component", false);
        if (!c) return tl::unexpected(c.error());
        n.component = std::move(*c);
        auto meta = r.opt_object(o, "metadata", where);
        if (!meta) return tl::unexpected(meta.error());
        n.config = std::move(*meta);
        if (!ids.insert(n.id).second)
            return tl::unexpected(r.err(where, "duplicate process id '" + n.id + "'"));
        g.nodes.push_back(std::move(n));
    }

    // connections
    auto conns =
        r.container<json::array>(root, "connections", "connections", limits::kMaxGraphConnections);
    if (!conns) return tl::unexpected(conns.error());
    if (*conns) {
        const auto& ca = **conns;
        g.connections.reserve(ca.size());
        for (std::size_t i = 0; i < ca.size(); ++i) {
            const std::string where = "connections[" + std::to_string(i) + "]";
            if (!ca[i].is_object()) return tl::unexpected(r.err(where, "must be an object"));
            const auto& o = ca[i].get_object();
            Connection c;
            c.index = i;
            const auto* data = o.if_contains("data");
            if (data) c.data = *data;
            const auto* to = o.if_contains("to");
            if (!to) return tl::unexpected(r.err(where + ".to", "is missing"));
            auto tr = r.port_ref(*to, where + ".to", false);
            if (!tr) return tl::unexpected(tr.error());
            c.to = std::move(*tr);
            if (auto ok = check_node_ref(g, r, c.to, where + ".to"); !ok)
                return tl::unexpected(ok.error());
            if (const auto* from = o.if_contains("from"); from && !from->is_null()) {
                auto fr = r.port_ref(*from, where + ".from", c.data.has_value());
                if (!fr) return tl::unexpected(fr.error());
                // An initial packet's `from` is written empty by Reflow: ignore it.
                if (!(c.data && fr->node.empty())) {
                    if (c.data)
                        return tl::unexpected(r.err(
                            where, "has both `data` (an initial packet) and a `from` process"));
                    if (auto ok = check_node_ref(g, r, *fr, where + ".from"); !ok)
                        return tl::unexpected(ok.error());
                    c.from = std::move(*fr);
                }
            } else if (!c.data) {
                return tl::unexpected(
                    r.err(where, "has neither `from` nor `data` (an initial packet)"));
            }
            auto meta = r.opt_object(o, "metadata", where);
            if (!meta) return tl::unexpected(meta.error());
            c.metadata = std::move(*meta);
            g.connections.push_back(std::move(c));
        }
    }

    // exported ports
    auto exports = [&](std::string_view key, std::vector<Export>& out) -> Result<void> {
        auto v = r.container<json::object>(root, key, std::string(key), limits::kMaxGraphExports);
        if (!v) return tl::unexpected(v.error());
        if (!*v) return {};
        for (const auto& [name, item] : **v) {
            const std::string where = std::string(key) + "." + std::string(name);
            auto n = r.id(json::value(json::string_view(name)), where, false);
            if (!n) return tl::unexpected(n.error());
            auto ref = r.port_ref(item, where, false);
            if (!ref) return tl::unexpected(ref.error());
            if (auto ok = check_node_ref(g, r, *ref, where); !ok) return ok;
            out.push_back({std::move(*n), std::move(*ref)});
        }
        return {};
    };
    if (auto ok = exports("inports", g.inports); !ok) return tl::unexpected(ok.error());
    if (auto ok = exports("outports", g.outports); !ok) return tl::unexpected(ok.error());

    // groups
    auto groups = r.container<json::array>(root, "groups", "groups", limits::kMaxGraphGroups);
    if (!groups) return tl::unexpected(groups.error());
    if (*groups) {
        const auto& ga = **groups;
        for (std::size_t i = 0; i < ga.size(); ++i) {
            const std::string where = "groups[" + std::to_string(i) + "]";
            if (!ga[i].is_object()) return tl::unexpected(r.err(where, "must be an object"));
            const auto& o = ga[i].get_object();
            Group grp;
            auto name = r.opt_string(o, "name", where);
            if (!name) return tl::unexpected(name.error());
            grp.name = std::move(*name);
            auto nodes =
                r.container<json::array>(o, "nodes", where + ".nodes", limits::kMaxGraphNodes);
            if (!nodes) return tl::unexpected(nodes.error());
            if (*nodes) {
                for (std::size_t j = 0; j < (*nodes)->size(); ++j) {
                    const std::string nw = where + ".nodes[" + std::to_string(j) + "]";
                    auto id = r.id((**nodes)[j], nw, false);
                    if (!id) return tl::unexpected(id.error());
                    if (!g.find_node(*id))
                        return tl::unexpected(r.err(nw, "no process has the id '" + *id + "'"));
                    grp.nodes.push_back(std::move(*id));
                }
            }
            auto meta = r.opt_object(o, "metadata", where);
            if (!meta) return tl::unexpected(meta.error());
            grp.metadata = std::move(*meta);
            g.groups.push_back(std::move(grp));
        }
    }

    if (auto ok = read_workspace_keys(g, root, r); !ok) return tl::unexpected(ok.error());
    return g;
}

Result<Graph> load_graph_file(const std::filesystem::path& path) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec)
        return fail(Errc::invalid_argument,
                    "cannot read graph file " + path.string() + ": " + ec.message(),
                    {{"file", path.string()}});
    if (size > limits::kMaxGraphBytes)
        return tl::unexpected(graph_error(path.string(), "file",
                                          "is " + std::to_string(size) + " bytes; the limit is " +
                                              std::to_string(limits::kMaxGraphBytes),
                                          Errc::limit_exceeded));
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return fail(Errc::invalid_argument, "cannot open graph file " + path.string(),
                    {{"file", path.string()}});
    std::string text(static_cast<std::size_t>(size), '\0');
    in.read(text.data(), static_cast<std::streamsize>(size));
    text.resize(static_cast<std::size_t>(in.gcount()));
    return parse_graph(text, path.string());
}

}  // namespace sandflow::flow
