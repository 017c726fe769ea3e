// sqlite_purge — how long one retention pass holds up the runtime on the SQLite store.
//
// The runtime purges between batches (design §4.1, issue 4 item 3): each pass deletes at most
// `rows_max` rows in one transaction, so while it runs no batch commits. This measures the
// duration of every pass while a large backlog drains (dedup rows, settled outbox rows, settled
// promises, finished executions with history), next to the baseline of one group commit of a
// 256-step batch on the same file, in the same run.
//
//   ./sqlite_purge [--rows N] [--rows-max M] [--wal-pages P] [--quick] [--dir PATH]
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "choreo/durability/sqlite_store.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Settings {
    int rows = 200'000;     // dedup rows; a quarter as many outbox rows, promises and history records
    std::size_t rows_max = 1000;
    std::int64_t wal_pages = 1000;  // SqliteStoreOptions::wal_autocheckpoint_pages
    std::string dir;
    bool quick = false;
};

Settings parse(int argc, char** argv) {
    Settings settings;
    for (int index = 1; index < argc; index++) {
        const bool has_value = index + 1 < argc;
        if (std::strcmp(argv[index], "--quick") == 0) {
            settings.quick = true;
            settings.rows = 4000;
        } else if (std::strcmp(argv[index], "--rows") == 0 && has_value) {
            settings.rows = std::atoi(argv[++index]);
        } else if (std::strcmp(argv[index], "--rows-max") == 0 && has_value) {
            settings.rows_max = static_cast<std::size_t>(std::atoi(argv[++index]));
        } else if (std::strcmp(argv[index], "--wal-pages") == 0 && has_value) {
            settings.wal_pages = std::atoll(argv[++index]);
        } else if (std::strcmp(argv[index], "--dir") == 0 && has_value) {
            settings.dir = argv[++index];
        }
    }
    return settings;
}

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

choreo::MessageId id(std::uint64_t space, int n) { return choreo::MessageId{space, static_cast<std::uint64_t>(n + 1)}; }

// One batch of 256 steps as the runtime commits it: dedup row + state write + outbox row each.
choreo::CommitBatch step_batch(int first, choreo::TimeMs now_ms) {
    choreo::CommitBatch batch;
    for (int n = first; n < first + 256; n++) {
        batch.dedup.push_back({id(9, n), now_ms});
        batch.state.push_back({"account/" + std::to_string(n % 1000), choreo::Bytes(64, 1)});
    }
    return batch;
}

// Fills the backlog: everything old enough to purge, in batches of 1,000 rows per table.
bool fill(choreo::SqliteStore& store, int rows) {
    const choreo::Bytes body(200, 7);
    for (int first = 0; first < rows; first += 1000) {
        choreo::CommitBatch batch;
        for (int n = first; n < std::min(rows, first + 1000); n++) {
            batch.dedup.push_back({id(1, n), 1000 + n});
            if (n % 4 != 0) continue;
            choreo::OutboxRow row;
            row.id = id(2, n);
            row.to = choreo::Address::anycast("audit");
            row.bytes = body;
            row.sent_at_ms = 1000 + n;
            row.settled = true;
            row.settled_at_ms = 2000 + n;
            batch.outbox.push_back(row);
            choreo::PromiseRow promise = choreo::make_pending_promise("job-" + std::to_string(n), 1000, 0);
            batch.promises_created.push_back(promise);
            batch.promises_settled.push_back({promise.id, choreo::PromiseState::resolved, body, 2000 + n});
            choreo::ExecutionRow execution;
            execution.id = "exec-" + std::to_string(n);
            execution.function = "f";
            execution.state = choreo::ExecutionState::completed;
            execution.created_at_ms = 1000;
            execution.finished_at_ms = 2000 + n;
            batch.executions.push_back(execution);
            batch.history.push_back({execution.id, 0, choreo::HistoryKind::step, "s", choreo::HistoryStatus::completed, body});
        }
        if (!store.commit(batch).ok()) return false;
    }
    return true;
}

double percentile(std::vector<double> values, int percent) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    const std::size_t index = std::min(values.size() - 1, values.size() * static_cast<std::size_t>(percent) / 100);
    return values[index];
}

}  // namespace

int main(int argc, char** argv) {
    const Settings settings = parse(argc, argv);
    std::string dir = settings.dir;
    if (dir.empty()) {
        std::string pattern = (std::filesystem::temp_directory_path() / "choreo-purge-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) return 2;
        dir = pattern;
    }
    choreo::SqliteStoreOptions options;
    options.path = dir + "/purge.db";
    options.wal_autocheckpoint_pages = settings.wal_pages;
    auto opened = choreo::SqliteStore::open(options);
    if (!opened.ok()) {
        std::fprintf(stderr, "%s\n", opened.status().to_string().c_str());
        return 2;
    }
    choreo::SqliteStore& store = **opened;
    if (!fill(store, settings.rows)) return 2;

    std::vector<double> commit_ms;  // the baseline: one 256-step group commit on the same file
    for (int round = 0; round < 20; round++) {
        const auto start = Clock::now();
        if (!store.commit(step_batch(round * 256, 1'000'000)).ok()) return 2;
        commit_ms.push_back(ms_since(start));
    }

    choreo::PurgeRequest request;
    request.dedup_sent_before_ms = 1'000'000 - 1;  // every filled row, not the baseline's
    request.outbox_settled_before_ms = 1'000'000;
    request.promise_settled_before_ms = 1'000'000;
    request.execution_finished_before_ms = 1'000'000;
    request.rows_max = settings.rows_max;
    std::vector<double> pass_ms;
    std::size_t deleted = 0;
    const auto drain_start = Clock::now();
    for (;;) {
        const auto start = Clock::now();
        choreo::Result<choreo::PurgeResult> purged = store.purge(request);
        pass_ms.push_back(ms_since(start));
        if (!purged.ok()) {
            std::fprintf(stderr, "purge: %s\n", purged.status().to_string().c_str());
            return 2;
        }
        deleted += purged->rows_deleted;
        if (!purged->more) break;
    }
    const double drain_ms = ms_since(drain_start);
    const std::size_t expected = static_cast<std::size_t>(settings.rows) + 4 * static_cast<std::size_t>((settings.rows + 3) / 4);
    std::printf("sqlite_purge: %zu rows deleted in %zu passes of at most %zu rows (synchronous=full), %.0f ms\n",
                deleted, pass_ms.size(), settings.rows_max, drain_ms);
    std::printf("  purge pass ms:        median %6.2f  p99 %6.2f  max %6.2f\n", percentile(pass_ms, 50),
                percentile(pass_ms, 99), percentile(pass_ms, 100));
    std::printf("  256-step commit ms:   median %6.2f  p99 %6.2f  max %6.2f   (baseline, same file)\n",
                percentile(commit_ms, 50), percentile(commit_ms, 99), percentile(commit_ms, 100));
    std::printf("  ratio (median pass / median commit): %.2f\n", percentile(pass_ms, 50) / percentile(commit_ms, 50));
    const choreo::Result<std::string> integrity = store.integrity_check();
    const bool whole = integrity.ok() && integrity.value() == "ok";
    opened->reset();
    if (settings.dir.empty()) std::filesystem::remove_all(dir);
    if (deleted != expected || !whole) {
        std::fprintf(stderr, "FAILED: deleted %zu of %zu rows, integrity %s\n", deleted, expected, whole ? "ok" : "bad");
        return 1;
    }
    return 0;
}
