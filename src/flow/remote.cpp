#include "flow/remote.hpp"

#include "runtime/actor_limits.hpp"

#include "sandflow/client.hpp"

namespace sandflow::flow {

namespace {

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
        auto r = client_->process(
            actor_id_, std::move(inputs),
            [&](const client::Output& out) { on_output(out.port, out.data); }, o);
        if (!r) return tl::unexpected(r.error());
        return std::move(r->outputs);
    }

  private:
    std::unique_ptr<client::FailoverClient> client_;
    std::string actor_id_, instance_id_;
    std::chrono::milliseconds timeout_;
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
        auto c = client::FailoverClient::connect(std::move(*urls), co);
        if (!c) return tl::unexpected(c.error());
        auto loaded = (*c)->load_source(actor.metadata.component, actor.source,
                                        actor::language_name(actor.metadata.language), node_id,
                                        actor.file.filename().string());
        if (!loaded) return tl::unexpected(loaded.error());
        if (!loaded->success)
            return fail(Errc::script, "the runtime at " + opt_.url + " could not load " +
                                          actor.file.string() + ": " + loaded->error);
        std::string actor_id =
            loaded->actor_id.empty() ? actor.metadata.component : loaded->actor_id;
        return std::make_unique<RemoteRunner>(std::move(*c), std::move(actor_id),
                                              std::string(node_id), opt_.call_timeout);
    }

  private:
    RemoteOptions opt_;
};

}  // namespace

std::unique_ptr<ScriptHost> remote_host(RemoteOptions options) {
    return std::make_unique<RemoteHost>(std::move(options));
}

}  // namespace sandflow::flow
