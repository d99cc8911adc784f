#include "flow/remote.hpp"

#include <algorithm>
#include <mutex>
#include <set>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "runtime/actor_limits.hpp"

#include "sandflow/client.hpp"
#include "sandflow/limits.hpp"

namespace sandflow::flow {

namespace {

// One `process` call, waited for, on either kind of client.
template <class Client>
Result<json::object> process_blocking(Client& c, const std::string& actor_id, json::object inputs,
                                      const client::ProcessOptions& o,
                                      const OutputSink& on_output) {
    auto r = c.process(
        actor_id, std::move(inputs),
        [&](const client::Output& out) { on_output(out.port, out.data); }, o);
    if (!r) return tl::unexpected(r.error());
    return std::move(r->outputs);
}

class RemoteRunner final : public ScriptRunner {
  public:
    RemoteRunner(std::unique_ptr<client::FailoverClient> c, std::string actor_id,
                 std::string instance_id, std::chrono::milliseconds timeout)
        : client_(std::move(c)),
          actor_id_(std::move(actor_id)),
          instance_id_(std::move(instance_id)),
          timeout_(timeout) {}
    ~RemoteRunner() override {
        (void)client_->unload(actor_id_, instance_id_);
        client_->close();
    }

    Result<json::object> call(json::object inputs, const json::object& config,
                              const OutputSink& on_output) override {
        client::ProcessOptions o;
        o.instance_id = instance_id_;
        o.config = config;
        o.timeout = timeout_;
        return process_blocking(*client_, actor_id_, std::move(inputs), o, on_output);
    }

  private:
    std::unique_ptr<client::FailoverClient> client_;
    std::string actor_id_, instance_id_;
    std::chrono::milliseconds timeout_;
};

// One server: the node's calls go on a connection shared with other nodes, several at a
// time (see remote.hpp).
class PipelinedRunner final : public ScriptRunner {
  public:
    PipelinedRunner(std::shared_ptr<client::Client> c, std::string actor_id,
                    std::string instance_id, std::chrono::milliseconds timeout,
                    std::size_t in_flight)
        : client_(std::move(c)),
          actor_id_(std::move(actor_id)),
          in_flight_(in_flight),
          ids_(std::make_shared<Ids>()) {
        opts_.instance_id = std::move(instance_id);
        opts_.timeout = timeout;
    }
    ~PipelinedRunner() override { (void)client_->unload(actor_id_, opts_.instance_id); }

    Result<json::object> call(json::object inputs, const json::object& config,
                              const OutputSink& on_output) override {
        client::ProcessOptions o = opts_;
        o.config = config;
        return process_blocking(*client_, actor_id_, std::move(inputs), o, on_output);
    }

    std::size_t max_in_flight() const override { return in_flight_; }

    void start(json::object inputs, const json::object& config, OutputSink on_output,
               CallDone on_done) override {
        client::ProcessOptions o = opts_;
        o.config = config;
        // The request id, written before the request goes out (so before its answer).
        auto id = std::make_shared<std::int64_t>(0);
        client_->start_process(
            actor_id_, std::move(inputs),
            [on_output = std::move(on_output)](const client::Output& out) {
                on_output(out.port, out.data);
            },
            o,
            [ids = ids_, id, on_done = std::move(on_done)](Result<client::ProcessResult> r) {
                ids->done(*id);
                if (!r) return on_done(tl::unexpected(r.error()));
                on_done(std::move(r->outputs));
            },
            id.get());
        ids_->started(*id);
    }

    // The connection's I/O thread: calls started there are written at once, and their
    // ends arrive there, so a node's calls cost no thread switch in this process.
    Executor executor() const override {
        return [c = client_](std::function<void()> job) {
            boost::asio::post(c->io_context(), std::move(job));
        };
    }

    void cancel_all() override {
        for (std::int64_t id : ids_->in_flight())
            client_->start_call("cancel", json::object{{"id", id}}, {}, [](Result<json::value>) {});
    }

  private:
    // The request ids of the calls in flight, for cancel_all. A call's answer can arrive
    // before start() has noted it: its id is then kept among the finished until it is.
    struct Ids {
        std::mutex mu;
        std::set<std::int64_t> running, finished_early;
        void started(std::int64_t id) {
            std::lock_guard l(mu);
            if (id != 0 && finished_early.erase(id) == 0) running.insert(id);
        }
        void done(std::int64_t id) {
            std::lock_guard l(mu);
            if (id != 0 && running.erase(id) == 0) finished_early.insert(id);
        }
        std::vector<std::int64_t> in_flight() {
            std::lock_guard l(mu);
            return {running.begin(), running.end()};
        }
    };

    std::shared_ptr<client::Client> client_;
    std::string actor_id_;
    std::size_t in_flight_;
    client::ProcessOptions opts_;
    std::shared_ptr<Ids> ids_;
};

class RemoteHost final : public ScriptHost {
  public:
    explicit RemoteHost(RemoteOptions o) : opt_(std::move(o)) {}
    std::string_view name() const override { return opt_.url; }

    Result<std::unique_ptr<ScriptRunner>> open(const ScriptActor& actor, std::string_view node_id,
                                               LogSink) override {
        client::Options co;
        co.token = opt_.token;
        // The server enforces the call's wall clock: this run's, else the one the actor
        // declares. The client waits a little longer, so that the server's answer (a
        // timeout that names the limit) is what the node sees.
        std::chrono::milliseconds server_side = opt_.call_timeout;
        if (server_side.count() == 0) {
            auto declared = runtime::limits_for(actor.metadata, runtime::ActorLimits{},
                                                runtime::default_maxima());
            if (!declared) return tl::unexpected(declared.error());
            server_side = declared->timeout;
        }
        co.call_timeout = server_side + std::chrono::seconds(5);
        auto urls = client::FailoverClient::split_urls(opt_.url);
        if (!urls) return tl::unexpected(urls.error());
        if (urls->size() == 1) return open_pipelined(actor, node_id, (*urls)[0], co);
        auto c = client::FailoverClient::connect(std::move(*urls), co);
        if (!c) return tl::unexpected(c.error());
        auto loaded = (*c)->load_source(actor.metadata.component, actor.source,
                                        actor::language_name(actor.metadata.language), node_id,
                                        actor.file.filename().string());
        if (!loaded) return tl::unexpected(loaded.error());
        if (!loaded->success) return tl::unexpected(load_failed(actor, *loaded));
        std::string actor_id =
            loaded->actor_id.empty() ? actor.metadata.component : loaded->actor_id;
        return std::make_unique<RemoteRunner>(std::move(*c), std::move(actor_id),
                                              std::string(node_id), opt_.call_timeout);
    }

  private:
    Result<std::unique_ptr<ScriptRunner>> open_pipelined(const ScriptActor& actor,
                                                         std::string_view node_id,
                                                         const std::string& url,
                                                         const client::Options& co) {
        if (opt_.calls_in_flight == 0 || opt_.calls_in_flight > kMaxRemoteCallsInFlight)
            return fail(Errc::invalid_argument, "calls in flight per node must be between 1 and " +
                                                    std::to_string(kMaxRemoteCallsInFlight));
        // A new connection when the current one holds as many nodes as the server lets
        // one connection have calls in flight for.
        const std::size_t per_connection =
            std::max<std::size_t>(1, limits::kMaxCallsPerConnection / opt_.calls_in_flight);
        if (!shared_ || nodes_on_shared_ >= per_connection) {
            auto c = client::Client::connect(url, co);
            if (!c) return tl::unexpected(c.error());
            shared_ = std::shared_ptr<client::Client>(std::move(*c));
            nodes_on_shared_ = 0;
        }
        auto loaded =
            shared_->load_source(actor.source, actor::language_name(actor.metadata.language),
                                 node_id, actor.file.filename().string());
        if (!loaded) return tl::unexpected(loaded.error());
        if (!loaded->success) return tl::unexpected(load_failed(actor, *loaded));
        ++nodes_on_shared_;
        std::string actor_id =
            loaded->actor_id.empty() ? actor.metadata.component : loaded->actor_id;
        return std::make_unique<PipelinedRunner>(shared_, std::move(actor_id), std::string(node_id),
                                                 opt_.call_timeout, opt_.calls_in_flight);
    }

    Error load_failed(const ScriptActor& actor, const client::LoadResult& loaded) const {
        return Error(Errc::script, "the runtime at " + opt_.url + " could not load " +
                                       actor.file.string() + ": " + loaded.error);
    }

    RemoteOptions opt_;
    // The connection that the next nodes share (with one server), and how many it has.
    std::shared_ptr<client::Client> shared_;
    std::size_t nodes_on_shared_ = 0;
};

}  // namespace

std::unique_ptr<ScriptHost> remote_host(RemoteOptions options) {
    return std::make_unique<RemoteHost>(std::move(options));
}

}  // namespace sandflow::flow
