// The embedded durable store: one SQLite file (Debian's libsqlite3) in WAL mode, one row
// per instance holding its whole state as JSON with its version. Commits are written on
// one connection, a batch per transaction, by the writer thread (commit_queue.hpp) or,
// with NORMAL while that connection is free, by the caller (commit()); loads read on a
// connection of their own, which WAL lets run beside the writer.
//
// Durability: a call's result is sent after its transaction's COMMIT returned. With
// synchronous=FULL the WAL is fsynced at every commit: the state survives a power cut.
// With NORMAL it is fsynced at checkpoints only: the state survives the server's crash
// (kill -9), the last commits may be lost with the machine.
#include <sqlite3.h>

#include <array>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "core/log.hpp"
#include "runtime/runtime_limits.hpp"
#include "runtime/state/commit_queue.hpp"
#include "runtime/state/store.hpp"
#include "runtime/state/store_limits.hpp"

namespace sandflow::runtime {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSchemaName = "sandflow-state";
constexpr std::string_view kSchemaVersion = "1";
// Stored JSON is read back with the limits of what may be committed, plus room for the
// expiry times and outputs that ride along.
constexpr std::size_t kMaxStoredTextBytes = 2 * limits::kMaxStateBytes;
// How long a statement waits for another connection's lock (another server on the file).
constexpr int kBusyTimeoutMs = static_cast<int>(limits::kStoreTimeout.count()) * 5;
// The WAL's size, in pages, past which the writer thread checkpoints (SQLite's default).
constexpr int kCheckpointFrames = 1000;

const char* const kCreate =
    "CREATE TABLE sandflow_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE sandflow_state("
    " component TEXT NOT NULL, instance_id TEXT NOT NULL, version INTEGER NOT NULL,"
    " state TEXT NOT NULL, expires TEXT NOT NULL, last_call TEXT NOT NULL,"
    " last_outputs TEXT NOT NULL, updated_ms INTEGER NOT NULL,"
    " PRIMARY KEY(component, instance_id)) WITHOUT ROWID;";

struct DbCloser {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtCloser {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
using Stmt = std::unique_ptr<sqlite3_stmt, StmtCloser>;

class SqliteStore final : public QueuedStore {
  public:
    static Result<std::unique_ptr<StateStore>> open(const std::string& path, StoreOptions o) {
        std::unique_ptr<SqliteStore> s(new SqliteStore(path, o));
        if (auto ok = s->init(); !ok) return tl::unexpected(ok.error());
        s->start_queue();
        return std::unique_ptr<StateStore>(std::move(s));
    }

    ~SqliteStore() override { stop_queue(); }  // the writer ends before the connections

    std::string_view kind() const override { return "sqlite"; }
    std::string describe() const override {
        return "sqlite:" + path_ + " (synchronous=" + (opts_.sqlite_full_sync ? "FULL" : "NORMAL") +
               ")";
    }

    Result<std::optional<StoredState>> load(const InstanceRef& ref) override {
        std::lock_guard lk(read_mu_);
        sqlite3_stmt* st = select_.get();
        sqlite3_reset(st);
        bind_text(st, 1, ref.component);
        bind_text(st, 2, ref.instance_id);
        const int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) return std::optional<StoredState>();
        if (rc != SQLITE_ROW)
            return tl::unexpected(db_error(reader_.get(), "reading " + ref.text()));
        StoredState out;
        out.version = static_cast<std::uint64_t>(sqlite3_column_int64(st, 0));
        auto text = [&](int col, std::string_view what) -> Result<json::value> {
            const auto n = static_cast<std::size_t>(sqlite3_column_bytes(st, col));
            if (n > kMaxStoredTextBytes)
                return fail(Errc::state_store,
                            "the state file " + path_ + " holds " + std::to_string(n) +
                                " bytes of " + std::string(what) + " for " + ref.text() +
                                ", more than the " + std::to_string(kMaxStoredTextBytes) +
                                " a commit can write: the file was changed by something else",
                            {{"store", "sqlite"}, {"file", path_}});
            const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, col));
            auto v = parse_json(std::string_view(p ? p : "", n), what);
            if (!v || (col != 3 && !v->is_object()))
                return fail(Errc::state_store,
                            "the state file " + path_ + " holds malformed " + std::string(what) +
                                " for " + ref.text() +
                                ": the file was changed by something "
                                "else; restore it from a backup",
                            {{"store", "sqlite"}, {"file", path_}});
            return v;
        };
        auto state = text(1, "state");
        if (!state) return tl::unexpected(state.error());
        auto expires = text(2, "expiry times");
        if (!expires) return tl::unexpected(expires.error());
        auto exp = expiry_from_json(*expires, "the state file " + path_);
        if (!exp) return tl::unexpected(Error(Errc::state_store, exp.error().message));
        auto outputs = text(4, "outputs");
        if (!outputs) return tl::unexpected(outputs.error());
        out.state = std::move(state->get_object());
        out.expires = std::move(*exp);
        const auto* call = reinterpret_cast<const char*>(sqlite3_column_text(st, 3));
        out.last_call = call ? call : "";
        out.last_outputs = std::move(outputs->get_object());
        sqlite3_reset(st);
        return std::optional<StoredState>(std::move(out));
    }

    // With NORMAL a commit costs no fsync: while the writer is free it is written here, on
    // the caller's thread, and answered before commit() returns, which spares the call two
    // thread switches. It goes to the queue (a group commit on the writer thread) when the
    // writer is busy with another batch, when a checkpoint is due (its fsyncs stay off the
    // callers' threads) and when another connection holds the file's write lock (the
    // queue's thread waits for it; a caller never does). With FULL every commit is queued:
    // its fsync is shared by the batch.
    void commit(StateCommit c, Done done) override {
        if (opts_.sqlite_full_sync || checkpoint_due_.load(std::memory_order_relaxed))
            return QueuedStore::commit(std::move(c), std::move(done));
        std::unique_lock lk(write_mu_, std::try_to_lock);
        if (!lk) return QueuedStore::commit(std::move(c), std::move(done));
        std::vector<QueuedWrite> one;
        one.push_back(QueuedWrite{std::move(c), {}, std::move(done)});
        sqlite3_busy_timeout(writer_.get(), 0);
        auto out = write(one, true);
        sqlite3_busy_timeout(writer_.get(), kBusyTimeoutMs);
        lk.unlock();  // before `done`, which may commit the instance's next call
        if (!out) return QueuedStore::commit(std::move(*one[0].commit), std::move(one[0].done));
        finish(one, std::move(*out));
    }

  private:
    SqliteStore(std::string path, StoreOptions o) : path_(std::move(path)), opts_(o) {}

    Error db_error(sqlite3* db, const std::string& doing) const {
        const int code = sqlite3_extended_errcode(db);
        std::string hint;
        switch (code & 0xff) {
            case SQLITE_CORRUPT:
            case SQLITE_NOTADB:
                hint =
                    "; the file is damaged or not a Sandflow state file: restore it from a "
                    "backup or move it away (Sandflow never starts it afresh by itself)";
                break;
            case SQLITE_FULL:
                hint = "; the disk is full: free space on it";
                break;
            case SQLITE_BUSY:
            case SQLITE_LOCKED:
                hint = "; another process holds the file's lock";
                break;
            case SQLITE_READONLY:
            case SQLITE_CANTOPEN:
            case SQLITE_PERM:
                hint = "; check the file's and its folder's permissions";
                break;
            default:
                break;
        }
        return Error(Errc::state_store,
                     "state file " + path_ + ": " + doing + ": " + sqlite3_errmsg(db) + hint,
                     {{"store", "sqlite"}, {"file", path_}, {"sqlite_code", code}});
    }

    static void bind_text(sqlite3_stmt* st, int i, std::string_view v) {
        sqlite3_bind_text(st, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    }

    Result<Db> open_db() {
        sqlite3* raw = nullptr;
        const int rc = sqlite3_open_v2(
            path_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
            nullptr);
        Db db(raw);
        if (rc != SQLITE_OK) {
            if (!raw)
                return fail(Errc::state_store, "state file " + path_ + ": cannot open it",
                            {{"store", "sqlite"}, {"file", path_}});
            return tl::unexpected(db_error(raw, "opening it"));
        }
        sqlite3_busy_timeout(raw, kBusyTimeoutMs);
        sqlite3_extended_result_codes(raw, 1);
        return db;
    }

    Result<void> exec(sqlite3* db, const char* sql, const std::string& doing) {
        if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK)
            return tl::unexpected(db_error(db, doing));
        return {};
    }

    // A prepared statement that returns no row, on the writer (the batch's BEGIN, COMMIT
    // and ROLLBACK: prepared once, not parsed again for every batch).
    Result<void> step(Stmt& st, const std::string& doing) {
        const int rc = sqlite3_step(st.get());
        std::optional<Error> e;
        if (rc != SQLITE_DONE) e = db_error(writer_.get(), doing);  // before the reset
        sqlite3_reset(st.get());
        if (e) return tl::unexpected(std::move(*e));
        return {};
    }

    // One text column of a one-row query; nullopt when there is no row.
    Result<std::optional<std::string>> query_text(sqlite3* db, const char* sql,
                                                  const std::string& doing) {
        sqlite3_stmt* raw = nullptr;
        if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK)
            return tl::unexpected(db_error(db, doing));
        Stmt st(raw);
        const int rc = sqlite3_step(raw);
        if (rc == SQLITE_DONE) return std::optional<std::string>();
        if (rc != SQLITE_ROW) return tl::unexpected(db_error(db, doing));
        const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(raw, 0));
        return std::optional<std::string>(t ? t : "");
    }

    Error not_ours(const std::string& why) const {
        return Error(Errc::state_store,
                     "state file " + path_ + " is not a Sandflow state database: " + why +
                         "; pass another --state sqlite:PATH, or move the file away (Sandflow "
                         "never overwrites a file it did not make)",
                     {{"store", "sqlite"}, {"file", path_}});
    }

    Result<void> init() {
        std::error_code ec;
        const fs::path p(path_);
        if (p.has_parent_path()) {
            fs::create_directories(p.parent_path(), ec);
            if (ec)
                return fail(Errc::state_store,
                            "state file " + path_ + ": cannot create its folder: " + ec.message(),
                            {{"store", "sqlite"}, {"file", path_}});
        }
        // SQLite's own header first: SQLite would take some files that are not databases
        // for empty ones.
        if (fs::exists(p, ec) && fs::file_size(p, ec) > 0) {
            std::array<char, 16> head{};
            std::ifstream in(p, std::ios::binary);
            in.read(head.data(), head.size());
            if (!in || std::string_view(head.data(), head.size()) !=
                           std::string_view("SQLite format 3\0", 16))
                return tl::unexpected(not_ours("it does not start with SQLite's header"));
        }
        auto w = open_db();
        if (!w) return tl::unexpected(w.error());
        writer_ = std::move(*w);
        sqlite3* db = writer_.get();
        auto check = query_text(db, "PRAGMA quick_check(1)", "checking it (PRAGMA quick_check)");
        if (!check) return tl::unexpected(check.error());
        if (!*check || **check != "ok")
            return fail(Errc::state_store,
                        "state file " + path_ + " is damaged (PRAGMA quick_check: " +
                            (*check ? **check : std::string("no answer")) +
                            "); restore it from a backup or move it away (Sandflow never "
                            "starts it afresh by itself)",
                        {{"store", "sqlite"}, {"file", path_}});
        // The schema is checked before anything is written: a file that is not ours is
        // left exactly as it was.
        auto schema = check_schema(db, false);
        if (!schema) return tl::unexpected(schema.error());
        auto mode = query_text(db, "PRAGMA journal_mode=WAL", "switching it to WAL");
        if (!mode) return tl::unexpected(mode.error());
        if (!*mode || **mode != "wal")
            return fail(Errc::state_store,
                        "state file " + path_ + ": WAL mode is not available there (journal mode " +
                            (*mode ? **mode : std::string("?")) +
                            "); put it on a local file system",
                        {{"store", "sqlite"}, {"file", path_}});
        if (auto ok = exec(
                db,
                opts_.sqlite_full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                "setting synchronous");
            !ok)
            return ok;
        // Checkpoints are the writer thread's (checkpoint()), not every committer's as
        // SQLite's own auto-checkpoint would make them: this hook replaces it.
        sqlite3_wal_hook(
            db,
            [](void* self, sqlite3*, const char*, int frames) {
                if (frames >= kCheckpointFrames)
                    static_cast<SqliteStore*>(self)->checkpoint_due_.store(
                        true, std::memory_order_relaxed);
                return SQLITE_OK;
            },
            this);
        if (!*schema) {
            // A new file: its tables are made under the write lock, so that two servers
            // starting on one new file make them once.
            if (auto ok = exec(db, "BEGIN IMMEDIATE", "locking it to make its tables"); !ok)
                return ok;
            auto made = check_schema(db, true);
            if (!made) {
                (void)exec(db, "ROLLBACK", "rolling back");
                return tl::unexpected(made.error());
            }
            if (auto ok = exec(db, "COMMIT", "committing its tables"); !ok) return ok;
        }

        auto r = open_db();
        if (!r) return tl::unexpected(r.error());
        reader_ = std::move(*r);
        auto prep = [&](sqlite3* d, const char* sql, Stmt& out) -> Result<void> {
            sqlite3_stmt* raw = nullptr;
            if (sqlite3_prepare_v3(d, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr) !=
                SQLITE_OK)
                return tl::unexpected(db_error(d, "preparing a statement"));
            out.reset(raw);
            return {};
        };
        for (auto [d, sql, out] : {
                 std::tuple{reader_.get(),
                            "SELECT version, state, expires, last_call, last_outputs FROM "
                            "sandflow_state WHERE component=?1 AND instance_id=?2",
                            &select_},
                 std::tuple{writer_.get(),
                            "INSERT INTO sandflow_state(component, instance_id, version, state, "
                            "expires, last_call, last_outputs, updated_ms) VALUES(?1, ?2, ?3, ?4, "
                            "?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                            &insert_},
                 std::tuple{writer_.get(),
                            "UPDATE sandflow_state SET version=?3, state=?4, expires=?5, "
                            "last_call=?6, last_outputs=?7, updated_ms=?8 WHERE component=?1 "
                            "AND instance_id=?2 AND version=?9",
                            &update_},
                 std::tuple{writer_.get(),
                            "DELETE FROM sandflow_state WHERE component=?1 AND instance_id=?2",
                            &delete_},
                 std::tuple{writer_.get(), "BEGIN IMMEDIATE", &begin_},
                 std::tuple{writer_.get(), "COMMIT", &commit_},
                 std::tuple{writer_.get(), "ROLLBACK", &rollback_},
             }) {
            if (auto ok = prep(d, sql, *out); !ok) return ok;
        }
        return {};
    }

    // True when the file holds Sandflow's tables; false when it holds no table at all (they
    // are then made when `create`); an error for anything else.
    Result<bool> check_schema(sqlite3* db, bool create) {
        sqlite3_stmt* raw = nullptr;
        if (sqlite3_prepare_v2(db,
                               "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name",
                               -1, &raw, nullptr) != SQLITE_OK)
            return tl::unexpected(db_error(db, "reading its schema"));
        Stmt st(raw);
        std::vector<std::string> tables;
        int rc;
        while ((rc = sqlite3_step(raw)) == SQLITE_ROW && tables.size() < 64)
            tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(raw, 0)));
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return tl::unexpected(db_error(db, "reading its schema"));
        st.reset();
        if (tables.empty()) {
            if (!create) return false;
            if (auto ok = exec(db, kCreate, "creating its tables"); !ok)
                return tl::unexpected(ok.error());
            const std::string meta = "INSERT INTO sandflow_meta VALUES('schema', '" +
                                     std::string(kSchemaName) + "'), ('schema_version', '" +
                                     std::string(kSchemaVersion) + "')";
            if (auto ok = exec(db, meta.c_str(), "writing its schema version"); !ok)
                return tl::unexpected(ok.error());
            return true;
        }
        auto has = [&](std::string_view t) {
            return std::find(tables.begin(), tables.end(), t) != tables.end();
        };
        if (!has("sandflow_meta") || !has("sandflow_state")) {
            std::string names;
            for (std::size_t i = 0; i < tables.size() && i < 5; ++i)
                names += (i ? ", " : "") + tables[i];
            return tl::unexpected(not_ours("it holds other tables (" + names + ")"));
        }
        auto name = query_text(db, "SELECT value FROM sandflow_meta WHERE key='schema'",
                               "reading its schema version");
        if (!name) return tl::unexpected(name.error());
        if (!*name || **name != kSchemaName)
            return tl::unexpected(not_ours("its sandflow_meta names no Sandflow schema"));
        auto version = query_text(db, "SELECT value FROM sandflow_meta WHERE key='schema_version'",
                                  "reading its schema version");
        if (!version) return tl::unexpected(version.error());
        if (!*version || **version != kSchemaVersion)
            return fail(Errc::state_store,
                        "state file " + path_ + " has schema version " +
                            (*version ? **version : std::string("(none)")) +
                            ", this Sandflow reads version " + std::string(kSchemaVersion) +
                            ": run the Sandflow that wrote it, or pass another --state",
                        {{"store", "sqlite"}, {"file", path_}});
        return true;
    }

    // On the queue's thread: the batch in one transaction, answered once it is written
    // (not after the checkpoint that may follow).
    void apply(std::vector<QueuedWrite>& batch) override {
        std::unique_lock lk(write_mu_);
        auto out = write(batch, false);
        lk.unlock();
        finish(batch, std::move(*out));
        if (checkpoint_due_.load(std::memory_order_relaxed)) {
            lk.lock();
            checkpoint();
        }
    }

    // Moves the WAL's pages into the database, fsyncing both (with NORMAL the only fsyncs
    // there are). On the queue's thread, under write_mu_: never on a caller's thread.
    void checkpoint() {
        int log = 0, done = 0;
        const int rc = sqlite3_wal_checkpoint_v2(writer_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                                 &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            spdlog::warn("state store: {}",
                         db_error(writer_.get(), "checkpointing its WAL").message);
        // Not all moved (a reader still uses the old pages): the next commit's WAL hook
        // asks again.
        checkpoint_due_.store(false, std::memory_order_relaxed);
    }

    void finish(std::vector<QueuedWrite>& batch, std::vector<Result<std::uint64_t>> out) {
        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (!out[i]) spdlog::warn("state store: {}", out[i].error().message);
            batch[i].done(std::move(out[i]));
        }
    }

    // One transaction for the batch, under write_mu_. A commit whose version moved fails
    // alone; a failing statement or COMMIT fails the whole batch (rolled back). nullopt,
    // having written nothing, when `unless_busy` and another connection holds the lock.
    std::optional<std::vector<Result<std::uint64_t>>> write(std::vector<QueuedWrite>& batch,
                                                            bool unless_busy) {
        sqlite3* db = writer_.get();
        std::vector<Result<std::uint64_t>> out(batch.size(), std::uint64_t{0});
        auto fail_all = [&](const Error& e) {
            for (auto& r : out) r = tl::unexpected(e);
        };
        const int begun = sqlite3_step(begin_.get());
        if (begun != SQLITE_DONE) {
            const bool busy = (begun & 0xff) == SQLITE_BUSY;
            if (!busy || !unless_busy) fail_all(db_error(db, "beginning a commit"));
            sqlite3_reset(begin_.get());
            if (busy && unless_busy) return std::nullopt;
        } else {
            sqlite3_reset(begin_.get());
            bool failed = false;
            const std::int64_t now = wall_ms();
            for (std::size_t i = 0; i < batch.size() && !failed; ++i) {
                auto& w = batch[i];
                if (!w.commit) {
                    sqlite3_stmt* st = delete_.get();
                    sqlite3_reset(st);
                    bind_text(st, 1, w.erase.component);
                    bind_text(st, 2, w.erase.instance_id);
                    if (sqlite3_step(st) != SQLITE_DONE) {
                        fail_all(db_error(db, "removing " + w.erase.text()));
                        failed = true;
                    }
                    sqlite3_reset(st);
                    continue;
                }
                const StateCommit& c = *w.commit;
                sqlite3_stmt* st = c.base_version == 0 ? insert_.get() : update_.get();
                sqlite3_reset(st);
                const std::string state = to_json_string(c.state);
                const std::string expires = to_json_string(expiry_to_json(c.expires));
                const std::string outputs = to_json_string(c.outputs);
                bind_text(st, 1, c.ref.component);
                bind_text(st, 2, c.ref.instance_id);
                sqlite3_bind_int64(st, 3, static_cast<sqlite3_int64>(c.base_version + 1));
                bind_text(st, 4, state);
                bind_text(st, 5, expires);
                bind_text(st, 6, c.call_id);
                bind_text(st, 7, outputs);
                sqlite3_bind_int64(st, 8, now);
                if (c.base_version != 0)
                    sqlite3_bind_int64(st, 9, static_cast<sqlite3_int64>(c.base_version));
                if (sqlite3_step(st) != SQLITE_DONE) {
                    fail_all(db_error(db, "committing " + c.ref.text()));
                    failed = true;
                } else if (sqlite3_changes(db) != 1) {
                    out[i] = fail(Errc::state_conflict,
                                  "the state of " + c.ref.text() +
                                      " was committed by another server since version " +
                                      std::to_string(c.base_version) +
                                      ", which this call ran on; the call was not committed and "
                                      "the next one runs on the newer state",
                                  {{"store", "sqlite"}, {"file", path_}});
                } else {
                    out[i] = c.base_version + 1;
                }
                sqlite3_reset(st);
            }
            if (failed) {
                (void)step(rollback_, "rolling back");
            } else if (auto done = step(commit_, "committing"); !done) {
                fail_all(done.error());
                (void)step(rollback_, "rolling back");
            }
        }
        return out;
    }

    const std::string path_;
    const StoreOptions opts_;
    std::mutex write_mu_;  // writer_ and its statements: the queue's thread or an inline commit
    Db writer_, reader_;
    Stmt insert_, update_, delete_, begin_, commit_, rollback_;  // on writer_
    std::atomic<bool> checkpoint_due_{false};
    std::mutex read_mu_;
    Stmt select_;  // under read_mu_
};

}  // namespace

Result<std::unique_ptr<StateStore>> open_sqlite_store(const std::string& path, StoreOptions o) {
    return SqliteStore::open(path, o);
}

}  // namespace sandflow::runtime
