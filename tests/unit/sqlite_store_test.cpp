// sqlite_store_test.cpp — SqliteStore runs the store conformance suite on real files, plus what
// only it has: opening checks, schema versions, files that are not ours, read-only places, a
// full disk, and the WAL left behind by a killed process.
#include "choreo/durability/sqlite_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <thread>

#include "choreo/codec.h"
#include "choreo/service.h"
#include "choreo/transport/memory_transport.h"
#include "conformance/store_conformance.h"
#include "support/temp_dir.h"

namespace choreo {
namespace {

using conformance::StoreConformance;
using conformance::StoreHarness;
using conformance::StoreHarnessFactory;
using conformance::StoreHarnessName;
using testing_support::TempDir;

std::unique_ptr<SqliteStore> open_or_die(SqliteStoreOptions options) {
    Result<std::unique_ptr<SqliteStore>> opened = SqliteStore::open(std::move(options));
    CHOREO_ASSERT(opened.ok());
    return std::move(opened).value();
}

// A fresh file per test; a crash closes the connection without the clean close's checkpoint, so
// the reopened store has to recover from the WAL, as after a SIGKILL.
class SqliteStoreHarness final : public StoreHarness {
public:
    std::unique_ptr<Store> open() override { return open_or_die({.path = dir_.file("store.db")}); }
    std::unique_ptr<Store> crash_and_reopen(std::unique_ptr<Store> store) override {
        auto* sqlite = dynamic_cast<SqliteStore*>(store.get());
        CHOREO_ASSERT(sqlite != nullptr);
        sqlite->abandon();
        store.reset();
        return open();
    }

private:
    TempDir dir_{"choreo-sqlite"};
};

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreConformance,
                         ::testing::Values(StoreHarnessFactory{
                             "sqlite", [] { return std::make_unique<SqliteStoreHarness>(); }}),
                         StoreHarnessName);

// ---- what only the SQLite store has: files -------------------------------------------------

Result<std::unique_ptr<SqliteStore>> open_path(const std::string& path) { return SqliteStore::open({.path = path}); }

std::string read_file(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// Runs SQL on a file with the plain SQLite API, as another program would.
void raw_sql(const std::string& path, const char* sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    const int code = sqlite3_exec(db, sql, nullptr, nullptr, &error);
    EXPECT_EQ(code, SQLITE_OK) << (error ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
}

CommitBatch state_batch(int n, std::size_t value_bytes) {
    CommitBatch batch;
    batch.dedup.push_back({MessageId{7, static_cast<std::uint64_t>(n + 1)}, 1000 + n});
    batch.state.push_back({"key/" + std::to_string(n), Bytes(value_bytes, static_cast<std::uint8_t>(n))});
    return batch;
}

// Every batch 0..count-1 of state_batch is there, whole; batch `count` is not.
void expect_batches(Store& store, int count, std::size_t value_bytes) {
    for (int n = 0; n < count; n++) {
        std::optional<Bytes> value = store.load_state("key/" + std::to_string(n)).value();
        ASSERT_TRUE(value.has_value()) << "batch " << n << " was lost";
        EXPECT_EQ(*value, Bytes(value_bytes, static_cast<std::uint8_t>(n)));
    }
    EXPECT_FALSE(store.load_state("key/" + std::to_string(count)).value().has_value());
    std::vector<bool> found;
    ASSERT_TRUE(store.find_dedup(std::vector<MessageId>{MessageId{7, static_cast<std::uint64_t>(count + 1)}}, found).ok());
    EXPECT_FALSE(found[0]);
}

// Commits batches until one fails; returns how many committed and the failure.
std::pair<int, Status> commit_until_failure(Store& store, std::size_t value_bytes, int limit) {
    for (int n = 0; n < limit; n++) {
        Status committed = store.commit(state_batch(n, value_bytes));
        if (!committed.ok()) return {n, committed};
    }
    return {limit, Status{}};
}

TEST(SqliteStore, ANewFileGetsTheSchemaAndReopens) {
    TempDir dir;
    const std::string path = dir.file("new.db");
    {
        auto store = open_path(path);
        ASSERT_TRUE(store.ok()) << store.status().to_string();
        ASSERT_TRUE((*store)->commit(state_batch(0, 10)).ok());
    }
    auto again = open_path(path);
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    expect_batches(**again, 1, 10);
    EXPECT_EQ((*again)->integrity_check().value(), "ok");
}

TEST(SqliteStore, AnEmptyFileIsInitialized) {
    TempDir dir;
    const std::string path = dir.file("empty.db");
    std::ofstream{path}.close();
    auto store = open_path(path);
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    EXPECT_EQ((*store)->dedup_horizon().value(), 0);
}

TEST(SqliteStore, AMissingFileWithoutCreateIsRefused) {
    TempDir dir;
    auto store = SqliteStore::open({.path = dir.file("missing.db"), .create = false});
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().reason(), "store_cannot_open");
    EXPECT_FALSE(std::filesystem::exists(dir.file("missing.db")));
}

TEST(SqliteStore, AFileThatIsNotSqliteIsRefusedAndLeftUntouched) {
    TempDir dir;
    const std::string path = dir.file("notes.txt");
    std::string text;
    for (int line = 0; line < 200; line++) text += "order " + std::to_string(line) + " shipped\n";
    std::ofstream{path, std::ios::binary} << text;
    auto store = open_path(path);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), StatusCode::failed_precondition);
    EXPECT_EQ(store.status().reason(), "not_a_choreo_database");
    EXPECT_NE(store.status().message().find(path), std::string::npos);
    EXPECT_EQ(read_file(path), text);
}

TEST(SqliteStore, AnotherApplicationsDatabaseIsRefusedAndLeftUntouched) {
    TempDir dir;
    const std::string path = dir.file("crm.db");
    raw_sql(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); "
                  "INSERT INTO customers (name) VALUES ('ada');");
    const std::string before = read_file(path);
    auto store = open_path(path);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().reason(), "not_a_choreo_database");
    EXPECT_EQ(read_file(path), before);  // not even switched to WAL
}

TEST(SqliteStore, ANewerSchemaIsRefusedAndItsDataKept) {
    TempDir dir;
    const std::string path = dir.file("future.db");
    {
        auto store = open_path(path);
        ASSERT_TRUE(store.ok());
        ASSERT_TRUE((*store)->commit(state_batch(0, 10)).ok());
    }
    raw_sql(path, "PRAGMA user_version = 2");  // what a newer choreo would leave
    auto refused = open_path(path);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().reason(), "schema_too_new");
    EXPECT_NE(refused.status().message().find("version 2"), std::string::npos);

    raw_sql(path, "PRAGMA user_version = 1");
    auto store = open_path(path);
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    expect_batches(**store, 1, 10);
}

// Root ignores file permissions, so as root the check runs in a child that drops to `nobody`.
// Returns what `check` returned in the process that ran it.
std::string run_unprivileged(const std::function<std::string()>& check) {
    if (::geteuid() != 0) return check();
    int pipe_fds[2];
    CHOREO_ASSERT(::pipe(pipe_fds) == 0);
    const pid_t child = ::fork();
    CHOREO_ASSERT(child >= 0);
    if (child == 0) {
        ::close(pipe_fds[0]);
        std::string answer = (::setgid(65534) == 0 && ::setuid(65534) == 0) ? check() : "cannot drop privileges";
        const ssize_t written = ::write(pipe_fds[1], answer.data(), answer.size());
        ::_exit(written == static_cast<ssize_t>(answer.size()) ? 0 : 1);
    }
    ::close(pipe_fds[1]);
    std::string answer;
    char buffer[512];
    for (ssize_t got; (got = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) answer.append(buffer, static_cast<std::size_t>(got));
    ::close(pipe_fds[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    return answer;
}

std::string open_reason(const std::string& path) {
    auto store = open_path(path);
    return store.ok() ? std::string("opened") : store.status().reason() + ": " + store.status().message();
}

TEST(SqliteStore, AReadOnlyDirectoryIsAClearError) {
    TempDir dir;
    ::chmod(dir.path().c_str(), 0755);
    const std::filesystem::path locked = dir.path() / "locked";
    std::filesystem::create_directory(locked);
    {
        auto store = open_path((locked / "existing.db").string());  // made while still writable
        ASSERT_TRUE(store.ok());
        ASSERT_TRUE((*store)->commit(state_batch(0, 10)).ok());
    }
    ::chmod((locked / "existing.db").c_str(), 0444);
    ::chmod(locked.c_str(), 0555);

    const std::string fresh = run_unprivileged([&] { return open_reason((locked / "new.db").string()); });
    EXPECT_EQ(fresh.substr(0, fresh.find(':')), "store_cannot_open") << fresh;
    const std::string existing = run_unprivileged([&] { return open_reason((locked / "existing.db").string()); });
    EXPECT_EQ(existing.substr(0, existing.find(':')), "store_not_writable") << existing;

    ::chmod(locked.c_str(), 0755);  // nothing committed was lost
    ::chmod((locked / "existing.db").c_str(), 0644);
    auto store = open_path((locked / "existing.db").string());
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    expect_batches(**store, 1, 10);
}

// size_bytes_max fails a commit with SQLITE_FULL exactly as a full disk does.
TEST(SqliteStore, AFullStoreRefusesTheCommitAndKeepsEveryEarlierOne) {
    TempDir dir;
    const std::string path = dir.file("capped.db");
    constexpr std::size_t value_bytes = 16 * 1024;
    int committed = 0;
    {
        auto store = SqliteStore::open({.path = path, .size_bytes_max = 512 * 1024});
        ASSERT_TRUE(store.ok()) << store.status().to_string();
        auto [count, failure] = commit_until_failure(**store, value_bytes, 1000);
        committed = count;
        ASSERT_FALSE(failure.ok()) << "never filled up";
        EXPECT_EQ(failure.code(), StatusCode::failed_precondition);
        EXPECT_EQ(failure.reason(), "store_full") << failure.to_string();
        EXPECT_GT(committed, 5);
        expect_batches(**store, committed, value_bytes);  // still readable after the failure
        EXPECT_FALSE((*store)->commit(state_batch(committed, value_bytes)).ok());  // and still full
    }
    auto store = open_path(path);  // more room: everything committed is there, and it goes on
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    expect_batches(**store, committed, value_bytes);
    EXPECT_EQ((*store)->integrity_check().value(), "ok");
    EXPECT_TRUE((*store)->commit(state_batch(committed, value_bytes)).ok());
}

// A real full disk: a 1 MiB tmpfs, mounted in a private mount namespace of a child process.
// Needs CAP_SYS_ADMIN (CI runs as root); skipped with a message where that is not allowed.
TEST(SqliteStore, ARealFullDiskRefusesTheCommitAndKeepsEveryEarlierOne) {
    TempDir dir;
    const std::string mount_point = dir.file("tiny");
    std::filesystem::create_directory(mount_point);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        if (::unshare(CLONE_NEWNS) != 0) ::_exit(77);
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(77);
        if (::mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=1m") != 0) ::_exit(77);
        const std::string path = mount_point + "/full.db";
        int code = 0;
        {
            auto store = open_path(path);
            if (!store.ok()) ::_exit(10);
            auto [count, failure] = commit_until_failure(**store, 16 * 1024, 1000);
            if (failure.ok()) ::_exit(11);                    // never filled up
            if (failure.reason() != "store_full") {
                std::fprintf(stderr, "full disk gave %s\n", failure.to_string().c_str());
                ::_exit(12);
            }
            if (count < 5) ::_exit(13);
            for (int n = 0; n < count; n++) {  // still readable on the same connection
                auto value = (*store)->load_state("key/" + std::to_string(n));
                if (!value.ok() || !value->has_value()) ::_exit(14);
            }
            store->reset();
            auto again = open_path(path);     // a new process would find every commit
            if (!again.ok()) {
                std::fprintf(stderr, "reopen: %s\n", again.status().to_string().c_str());
                ::_exit(15);
            }
            for (int n = 0; n < count; n++) {
                auto value = (*again)->load_state("key/" + std::to_string(n));
                if (!value.ok() || !value->has_value() || (*value)->size() != 16 * 1024) ::_exit(16);
            }
            Result<std::string> integrity = (*again)->integrity_check();
            code = integrity.ok() && integrity.value() == "ok" ? 0 : 17;
        }
        ::_exit(code);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "cannot mount a tmpfs here (needs CAP_SYS_ADMIN)";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "see the exit codes in the child above";
}

// The runtime on a store that fills up: run() stops with store_full, and after the operator
// makes room the service resumes; every input is applied exactly once.
TEST(SqliteStore, AServiceStopsOnAFullStoreAndResumesExactlyOnceWithRoom) {
    TempDir dir;
    const std::string path = dir.file("bank.db");
    MemoryNetwork network;
    MemoryTransport teller{network, Address::unicast("teller", "1")};
    ManualClock clock{1'700'000'000'000};
    SeededRandom random{5};
    ServiceOptions options{.name = "bank", .instance = "1", .batch_size_max = 8, .batch_delay_us_max = 0};
    options.step_workers_max = 0;
    constexpr int deposits = 200;
    const std::string padding(8 * 1024, 'x');  // each deposit stores 8 KiB: the cap is reached quickly
    for (int n = 0; n < deposits; n++) {
        Envelope message;
        message.id = MessageId{0xD, static_cast<std::uint64_t>(n + 1)};
        message.kind = "deposit";
        message.from = teller.local_address();
        message.to = Address::anycast("bank");
        message.sent_at_ms = clock.now_ms();
        message.body = pack(n);
        const Bytes bytes = encode_envelope(message, {}).value();
        const OutgoingMessage outgoing{message.id, Address::unicast("bank", "1"), "", "", bytes};
        ASSERT_EQ(teller.send({&outgoing, 1}).value(), 1u);
    }
    auto run_service = [&](SqliteStore& store) -> Status {
        MemoryTransport transport{network, Address::unicast("bank", "1")};
        Service service{options, transport, store, clock, random};
        service.on("deposit", [&](Context& ctx, const int& n) {
            const std::string key = "applied/" + std::to_string(n);
            ctx.save(key, ctx.load<int>(key).value_or(0) + 1);
            ctx.save("padding/" + std::to_string(n), padding);
        });
        for (int round = 0; round < 1000; round++) {
            Result<bool> worked = service.run_once(0);
            if (!worked.ok()) return worked.status();
            if (!*worked && network.pending(transport.local_address()) == 0) return Status{};
        }
        return aborted_error("not_idle", "the service did not go idle");
    };
    {
        auto capped = SqliteStore::open({.path = path, .size_bytes_max = 600 * 1024});
        ASSERT_TRUE(capped.ok()) << capped.status().to_string();
        const Status stopped = run_service(**capped);
        EXPECT_EQ(stopped.reason(), "store_full") << stopped.to_string();
    }
    auto roomy = open_path(path);
    ASSERT_TRUE(roomy.ok()) << roomy.status().to_string();
    ASSERT_TRUE(run_service(**roomy).ok());
    for (int n = 0; n < deposits; n++) {
        std::optional<Bytes> applied = (*roomy)->load_state("applied/" + std::to_string(n)).value();
        ASSERT_TRUE(applied.has_value()) << "deposit " << n << " was lost";
        EXPECT_EQ(unpack<int>(*applied).value(), 1) << "deposit " << n;
    }
    EXPECT_EQ((*roomy)->integrity_check().value(), "ok");
}

TEST(SqliteStore, AFileAlreadyOverTheCapIsRefusedAtOpen) {
    TempDir dir;
    const std::string path = dir.file("big.db");
    {
        auto store = open_path(path);
        ASSERT_TRUE(store.ok());
        for (int n = 0; n < 10; n++) ASSERT_TRUE((*store)->commit(state_batch(n, 16 * 1024)).ok());
    }
    auto capped = SqliteStore::open({.path = path, .size_bytes_max = 64 * 1024});
    ASSERT_FALSE(capped.ok());
    EXPECT_EQ(capped.status().reason(), "store_full");
}

// Two processes (here: two connections on two threads) opening one new file at the same moment:
// one creates the schema, the other finds it done.
TEST(SqliteStore, OpeningANewFileTwiceAtOnceCreatesTheSchemaOnce) {
    for (int round = 0; round < 10; round++) {
        TempDir dir;
        const std::string path = dir.file("race.db");
        Status first_status;
        Status second_status;
        std::thread first{[&] { first_status = open_path(path).status(); }};
        std::thread second{[&] { second_status = open_path(path).status(); }};
        first.join();
        second.join();
        EXPECT_TRUE(first_status.ok()) << first_status.to_string();
        EXPECT_TRUE(second_status.ok()) << second_status.to_string();
    }
}

TEST(SqliteStore, AClosedStoreSaysSo) {
    TempDir dir;
    auto store = open_path(dir.file("closed.db"));
    ASSERT_TRUE(store.ok());
    (*store)->abandon();
    EXPECT_EQ((*store)->commit(state_batch(0, 1)).code(), StatusCode::closed);
    EXPECT_EQ((*store)->dedup_horizon().status().code(), StatusCode::closed);
}

TEST(SqliteStore, BadOptionsAreRefused) {
    EXPECT_EQ(SqliteStore::open({}).status().code(), StatusCode::invalid_argument);
    EXPECT_EQ(SqliteStore::open({.path = "x.db", .busy_timeout_ms = -1}).status().code(), StatusCode::invalid_argument);
}

}  // namespace
}  // namespace choreo
