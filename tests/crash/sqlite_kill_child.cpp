// sqlite_kill_child.cpp — the process that sqlite_kill_test kills with SIGKILL, again and again.
//
// Two services in one process, over one MemoryNetwork, each on its own SqliteStore file in --dir:
//
//   seed ──produce 0──▶ bank ──credit i (×B)──▶ ledger
//                        ▲ └─produce k+1─┘        │
//                        └────credited i──────────┘
//
// "bank" handles "produce k": it sends credits k*B .. k*B+B-1 to "ledger" and "produce k+1" to
// itself, in one step (one atomic commit), until --credits credits exist. "ledger" handles
// "credit i": it counts the credit in its own state (applied/<i> = old + 1, so a second apply
// shows as 2), adds its amount to a running total, and replies "credited i"; bank counts that
// (confirmed/<i> = old + 1). The workload is durable itself: a restart continues from the outbox.
// The chain starts with one "produce 0" of a fixed id, sent again by every run: after the first
// commit the dedup table drops it, so a kill right after the first send cannot start a second
// chain.
//
// Every message id is deterministic (design §4.3), so the checks can name each outbox row:
//   produce 0 = seed_id; produce k+1 = derive_id(produce k, credits in step k);
//   credit i = derive_id(produce i/B, i%B); credited i = derive_id(credit i, 0).
//
//   sqlite_kill_child --dir D --credits N --mode run [--linger] [--timeout-ms T]
//       runs until every credit is produced, applied, confirmed and every outbox row settled,
//       then exits 0 (--linger: then idles until killed). Prints "start ..." once the stores
//       opened and passed integrity_check, "complete ..." when done.
//   sqlite_kill_child --dir D --credits N --mode check    invariants of any committed state
//   sqlite_kill_child --dir D --credits N --mode verify   check, and everything is complete
//
// Exit status: 0 ok; 2 usage; 3 an invariant is broken; 4 a store cannot open or fails
// integrity_check; 5 a service stopped with an error; 6 --timeout-ms passed before completion, or
// the parent process (the test) is gone.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "choreo/codec.h"
#include "choreo/durability/sqlite_store.h"
#include "choreo/service.h"
#include "choreo/transport/memory_transport.h"

namespace {

using choreo::Address;
using choreo::Bytes;
using choreo::MessageId;
using choreo::SqliteStore;

constexpr std::int64_t credits_per_step = 20;  // B

struct Produce {
    std::int64_t step = 0;
    MSGPACK_DEFINE_MAP(step);
};
struct Credit {
    std::int64_t index = 0;
    std::int64_t amount = 0;
    MSGPACK_DEFINE_MAP(index, amount);
};
struct Credited {
    std::int64_t index = 0;
    MSGPACK_DEFINE_MAP(index);
};

std::int64_t amount_of(std::int64_t index) { return index % 97 + 1; }
std::int64_t steps_for(std::int64_t credits) { return (credits + credits_per_step - 1) / credits_per_step; }
std::int64_t credits_in_step(std::int64_t step, std::int64_t credits) {
    return std::min(credits_per_step, credits - step * credits_per_step);
}
std::int64_t expected_total(std::int64_t credits) {
    std::int64_t total = 0;
    for (std::int64_t index = 0; index < credits; index++) total += amount_of(index);
    return total;
}

// The fixed id of "produce 0": the same in every run, so the dedup table drops a second seed.
MessageId seed_id() { return choreo::derive_id(MessageId{0x63686f72'6b696c6cULL, 0x0000'0000'0000'0001ULL}, 0); }

std::string key(std::string_view prefix, std::int64_t index) { return std::string(prefix) + std::to_string(index); }

struct Options {
    std::string dir;
    std::int64_t credits = 0;
    std::string mode;
    bool linger = false;
    std::int64_t timeout_ms = 0;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "sqlite_kill_child: %s\nusage: sqlite_kill_child --dir D --credits N --mode run|check|verify "
                 "[--linger] [--timeout-ms T]\n",
                 why);
    std::exit(2);
}

Options parse(int argc, char** argv) {
    Options options;
    for (int index = 1; index < argc; index++) {
        const std::string arg = argv[index];
        auto value = [&]() -> std::string {
            if (index + 1 >= argc) usage(("missing value after " + arg).c_str());
            return argv[++index];
        };
        if (arg == "--dir") {
            options.dir = value();
        } else if (arg == "--credits") {
            options.credits = std::atoll(value().c_str());
        } else if (arg == "--mode") {
            options.mode = value();
        } else if (arg == "--linger") {
            options.linger = true;
        } else if (arg == "--timeout-ms") {
            options.timeout_ms = std::atoll(value().c_str());
        } else {
            usage(("unknown argument " + arg).c_str());
        }
    }
    if (options.dir.empty()) usage("--dir is required");
    if (options.credits <= 0 || options.credits > 1'000'000) usage("--credits must be in 1..1000000");
    if (options.mode != "run" && options.mode != "check" && options.mode != "verify") usage("bad --mode");
    return options;
}

std::unique_ptr<SqliteStore> open_store(const std::string& path) {
    choreo::SqliteStoreOptions options;
    options.path = path;
    choreo::Result<std::unique_ptr<SqliteStore>> opened = SqliteStore::open(options);
    if (!opened.ok()) {
        std::fprintf(stderr, "sqlite_kill_child: cannot open %s: %s\n", path.c_str(),
                     opened.status().to_string().c_str());
        std::exit(4);
    }
    std::unique_ptr<SqliteStore> store = std::move(opened).value();
    choreo::Result<std::string> integrity = store->integrity_check();
    if (!integrity.ok() || *integrity != "ok") {
        std::fprintf(stderr, "sqlite_kill_child: integrity_check of %s: %s\n", path.c_str(),
                     integrity.ok() ? integrity->c_str() : integrity.status().to_string().c_str());
        std::exit(4);
    }
    return store;
}

// Reads an integer state value; a read failure or an undecodable value is an invariant failure.
class Reader {
public:
    Reader(SqliteStore& store, const char* name, std::vector<std::string>& problems)
        : store_(store), name_(name), problems_(problems) {}

    std::optional<std::int64_t> integer(const std::string& state_key) {
        choreo::Result<std::optional<Bytes>> stored = store_.load_state(state_key);
        if (!stored.ok()) {
            problem(state_key + ": " + stored.status().to_string());
            return std::nullopt;
        }
        if (!stored->has_value()) return std::nullopt;
        choreo::Result<std::int64_t> value = choreo::unpack<std::int64_t>(**stored);
        if (!value.ok()) {
            problem(state_key + ": " + value.status().to_string());
            return std::nullopt;
        }
        return *value;
    }
    std::int64_t count(const std::string& state_key) { return integer(state_key).value_or(0); }

    // The outbox row of `id`: nullopt when there is none.
    std::optional<choreo::OutboxRow> outbox(const MessageId& id) {
        choreo::Result<std::optional<choreo::OutboxRow>> row = store_.find_outbox(id);
        if (!row.ok()) {
            problem("find_outbox " + id.to_string() + ": " + row.status().to_string());
            return std::nullopt;
        }
        return *row;
    }
    bool applied(const MessageId& id) {
        std::vector<bool> found;
        choreo::Status read = store_.find_dedup({&id, 1}, found);
        if (!read.ok()) {
            problem("find_dedup " + id.to_string() + ": " + read.to_string());
            return false;
        }
        return found.at(0);
    }
    std::size_t unsettled(std::size_t limit) {
        choreo::Result<std::vector<choreo::OutboxRow>> rows = store_.unsettled_outbox(MessageId{}, limit);
        if (!rows.ok()) {
            problem("unsettled_outbox: " + rows.status().to_string());
            return 0;
        }
        return rows->size();
    }
    void no_dead_letters() {
        choreo::Result<std::vector<choreo::DeadLetter>> letters = store_.dead_letters("", 5);
        if (!letters.ok()) {
            problem("dead_letters: " + letters.status().to_string());
            return;
        }
        for (const choreo::DeadLetter& letter : *letters) {
            problem("dead letter " + letter.key + ": " + letter.reason + " (" + letter.detail + ")");
        }
    }
    void problem(std::string text) {
        if (problems_.size() < 40) problems_.push_back(std::string(name_) + ": " + std::move(text));
    }

private:
    SqliteStore& store_;
    const char* name_;
    std::vector<std::string>& problems_;
};

struct Progress {
    std::int64_t steps = 0;      // produce steps committed (bank)
    std::int64_t applied = 0;    // credits applied (ledger)
    std::int64_t confirmed = 0;  // credits confirmed (bank)
    std::size_t bank_unsettled = 0;
    std::size_t ledger_unsettled = 0;
    bool complete(std::int64_t credits) const {
        return steps == steps_for(credits) && applied == credits && confirmed == credits && bank_unsettled == 0 &&
               ledger_unsettled == 0;
    }
    std::string text() const {
        return "steps=" + std::to_string(steps) + " applied=" + std::to_string(applied) +
               " confirmed=" + std::to_string(confirmed) + " unsettled=" + std::to_string(bank_unsettled) + "+" +
               std::to_string(ledger_unsettled);
    }
};

// Counters; the unsettled outbox rows are counted only up to `unsettled_max`.
Progress read_progress(SqliteStore& bank, SqliteStore& ledger, std::vector<std::string>& problems,
                       std::size_t unsettled_max = 1'000'000) {
    Reader bank_reader{bank, "bank", problems};
    Reader ledger_reader{ledger, "ledger", problems};
    Progress progress;
    progress.steps = bank_reader.count("steps");
    progress.confirmed = bank_reader.count("confirmed_count");
    progress.applied = ledger_reader.count("applied_count");
    progress.bank_unsettled = bank_reader.unsettled(unsettled_max);
    progress.ledger_unsettled = ledger_reader.unsettled(unsettled_max);
    return progress;
}

// The invariants of every committed state, whenever the process was killed: each effect at most
// once, and each step's effects (state and outbox rows) all there or all absent.
Progress check(SqliteStore& bank, SqliteStore& ledger, std::int64_t credits, bool require_complete,
               std::vector<std::string>& problems) {
    Reader b{bank, "bank", problems};
    Reader l{ledger, "ledger", problems};
    b.no_dead_letters();
    l.no_dead_letters();
    const Progress progress = read_progress(bank, ledger, problems);
    const std::int64_t steps = steps_for(credits);

    // bank: steps form a prefix 0..n-1, each applied once, its credits' outbox rows committed with it.
    std::int64_t steps_seen = 0;
    bool gap = false;
    MessageId produce = seed_id();
    std::vector<MessageId> credit_ids(static_cast<std::size_t>(credits));
    std::vector<bool> produced(static_cast<std::size_t>(steps), false);
    for (std::int64_t step = 0; step < steps; step++) {
        const std::int64_t count = b.count(key("produced/", step));
        const bool dedup = b.applied(produce);
        const std::int64_t in_step = credits_in_step(step, credits);
        if (count > 1) b.problem("produce " + std::to_string(step) + " applied " + std::to_string(count) + " times");
        if ((count == 1) != dedup) {
            b.problem("produce " + std::to_string(step) + ": state count " + std::to_string(count) +
                      " but dedup row " + (dedup ? "present" : "absent"));
        }
        if (count >= 1 && gap) b.problem("produce " + std::to_string(step) + " applied after a gap");
        if (count == 0) gap = true;
        if (count >= 1) steps_seen++;
        produced[static_cast<std::size_t>(step)] = count >= 1;
        for (std::int64_t offset = 0; offset < in_step; offset++) {
            const MessageId credit = choreo::derive_id(produce, static_cast<std::uint64_t>(offset));
            credit_ids[static_cast<std::size_t>(step * credits_per_step + offset)] = credit;
            const bool row = b.outbox(credit).has_value();
            if (row != (count >= 1)) {
                b.problem("credit " + std::to_string(step * credits_per_step + offset) + ": outbox row " +
                          (row ? "present" : "absent") + " but produce " + std::to_string(step) + " count " +
                          std::to_string(count));
            }
        }
        const MessageId next = choreo::derive_id(produce, static_cast<std::uint64_t>(in_step));
        const bool next_row = b.outbox(next).has_value();
        const bool next_expected = count >= 1 && step + 1 < steps;
        if (next_row != next_expected) {
            b.problem("produce " + std::to_string(step + 1) + ": outbox row " + (next_row ? "present" : "absent") +
                      ", expected " + (next_expected ? "present" : "absent"));
        }
        produce = next;
    }
    if (b.count(key("produced/", steps)) != 0) b.problem("a produce step beyond the last one was applied");
    if (steps_seen != progress.steps) {
        b.problem("steps counter " + std::to_string(progress.steps) + " but " + std::to_string(steps_seen) +
                  " steps recorded");
    }

    // ledger and bank: every credit applied at most once, confirmed at most once and only after
    // it was applied; each applied credit's reply in the ledger's outbox.
    std::int64_t applied_seen = 0;
    std::int64_t confirmed_seen = 0;
    std::int64_t total_seen = 0;
    for (std::int64_t index = 0; index < credits; index++) {
        const std::string label = "credit " + std::to_string(index);
        const MessageId credit = credit_ids[static_cast<std::size_t>(index)];
        const std::int64_t applied = l.count(key("applied/", index));
        const std::int64_t confirmed = b.count(key("confirmed/", index));
        if (applied > 1) l.problem(label + " applied " + std::to_string(applied) + " times");
        if (confirmed > 1) b.problem(label + " confirmed " + std::to_string(confirmed) + " times");
        if (confirmed >= 1 && applied == 0) b.problem(label + " confirmed but never applied");
        if (applied >= 1 && !produced[static_cast<std::size_t>(index / credits_per_step)]) {
            l.problem(label + " applied but never produced");
        }
        if ((applied >= 1) != l.applied(credit)) l.problem(label + ": state and dedup row disagree");
        const MessageId reply = choreo::derive_id(credit, 0);
        if (l.outbox(reply).has_value() != (applied >= 1)) l.problem(label + ": reply outbox row and state disagree");
        if ((confirmed >= 1) != b.applied(reply)) b.problem(label + ": confirmation state and dedup row disagree");
        if (require_complete) {
            std::optional<choreo::OutboxRow> sent = b.outbox(credit);
            std::optional<choreo::OutboxRow> replied = l.outbox(reply);
            if (!sent || !sent->settled) b.problem(label + ": outbox row missing or unsettled");
            if (!replied || !replied->settled) l.problem(label + ": reply outbox row missing or unsettled");
        }
        applied_seen += applied;
        confirmed_seen += confirmed;
        if (applied >= 1) total_seen += amount_of(index);
    }
    for (std::int64_t index = credits; index < credits + credits_per_step; index++) {
        if (l.count(key("applied/", index)) != 0) l.problem("credit " + std::to_string(index) + " beyond --credits applied");
    }
    if (applied_seen != progress.applied) {
        l.problem("applied_count " + std::to_string(progress.applied) + " but " + std::to_string(applied_seen) +
                  " applications recorded");
    }
    if (confirmed_seen != progress.confirmed) {
        b.problem("confirmed_count " + std::to_string(progress.confirmed) + " but " +
                  std::to_string(confirmed_seen) + " confirmations recorded");
    }
    if (l.count("total") != total_seen) {
        l.problem("total " + std::to_string(l.count("total")) + " but the applied credits sum to " +
                  std::to_string(total_seen));
    }
    if (require_complete) {
        if (!progress.complete(credits)) b.problem("incomplete: " + progress.text());
        if (l.count("total") != expected_total(credits)) {
            l.problem("total " + std::to_string(l.count("total")) + ", expected " +
                      std::to_string(expected_total(credits)));
        }
    }
    return progress;
}

int run_check(const Options& options, bool require_complete) {
    std::unique_ptr<SqliteStore> bank = open_store(options.dir + "/bank.db");
    std::unique_ptr<SqliteStore> ledger = open_store(options.dir + "/ledger.db");
    std::vector<std::string> problems;
    const Progress progress = check(*bank, *ledger, options.credits, require_complete, problems);
    for (const std::string& problem : problems) std::fprintf(stderr, "sqlite_kill_child: VIOLATION %s\n", problem.c_str());
    std::printf("%s integrity=ok %s total=%lld\n", problems.empty() ? "checked" : "broken", progress.text().c_str(),
                static_cast<long long>(Reader{*ledger, "ledger", problems}.count("total")));
    return problems.empty() ? 0 : 3;
}

void wait_ms(std::int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

int run(const Options& options) {
    const auto process_start = std::chrono::steady_clock::now();
    std::unique_ptr<SqliteStore> bank_store = open_store(options.dir + "/bank.db");
    std::unique_ptr<SqliteStore> ledger_store = open_store(options.dir + "/ledger.db");
    std::vector<std::string> problems;
    const Progress before = read_progress(*bank_store, *ledger_store, problems);
    for (const std::string& problem : problems) std::fprintf(stderr, "sqlite_kill_child: %s\n", problem.c_str());
    if (!problems.empty()) return 4;
    std::printf("start integrity=ok %s after %.0f ms\n", before.text().c_str(),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - process_start).count());
    std::fflush(stdout);

    const std::int64_t credits = options.credits;
    choreo::MemoryNetwork network;
    choreo::MemoryTransport bank_transport{network, Address::unicast("bank", "1")};
    choreo::MemoryTransport ledger_transport{network, Address::unicast("ledger", "1")};
    choreo::MemoryTransport seed_transport{network, Address::unicast("seed", "1")};
    choreo::ServiceOptions bank_options;
    bank_options.name = "bank";
    choreo::ServiceOptions ledger_options;
    ledger_options.name = "ledger";
    choreo::Service bank{bank_options, bank_transport, *bank_store};
    choreo::Service ledger{ledger_options, ledger_transport, *ledger_store};

    bank.on("produce", [credits](choreo::Context& ctx, const Produce& produce) {
        const std::string produced = key("produced/", produce.step);
        ctx.save(produced, ctx.load<std::int64_t>(produced).value_or(0) + 1);
        ctx.save("steps", ctx.load<std::int64_t>("steps").value_or(0) + 1);
        const std::int64_t first = produce.step * credits_per_step;
        for (std::int64_t index = first; index < first + credits_in_step(produce.step, credits); index++) {
            ctx.send("ledger", "credit", Credit{index, amount_of(index)});
        }
        if (produce.step + 1 < steps_for(credits)) ctx.send(ctx.self(), "produce", Produce{produce.step + 1});
    });
    ledger.on("credit", [](choreo::Context& ctx, const Credit& credit) {
        const std::string applied = key("applied/", credit.index);
        ctx.save(applied, ctx.load<std::int64_t>(applied).value_or(0) + 1);
        ctx.save("applied_count", ctx.load<std::int64_t>("applied_count").value_or(0) + 1);
        ctx.save("total", ctx.load<std::int64_t>("total").value_or(0) + credit.amount);
        ctx.reply("credited", Credited{credit.index});
    });
    bank.on("credited", [](choreo::Context& ctx, const Credited& credited) {
        const std::string confirmed = key("confirmed/", credited.index);
        ctx.save(confirmed, ctx.load<std::int64_t>(confirmed).value_or(0) + 1);
        ctx.save("confirmed_count", ctx.load<std::int64_t>("confirmed_count").value_or(0) + 1);
    });

    std::atomic<bool> failed{false};
    auto runner = [&failed](choreo::Service& service) {
        choreo::Status end = service.run();
        if (!end.ok()) {
            std::fprintf(stderr, "sqlite_kill_child: %s stopped: %s\n", service.address().to_string().c_str(),
                         end.to_string().c_str());
            failed = true;
        }
    };
    std::thread bank_thread{runner, std::ref(bank)};
    std::thread ledger_thread{runner, std::ref(ledger)};

    // Every run sends the seed again, with the same id: only the first one applied starts a chain.
    choreo::Envelope seed;
    seed.id = seed_id();
    seed.kind = "produce";
    seed.from = seed_transport.local_address();
    seed.to = Address::unicast("bank", "1");
    seed.correlation = "credit-chain";
    seed.sent_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    seed.body = choreo::pack(Produce{0});
    choreo::Result<Bytes> seed_bytes = choreo::encode_envelope(seed, choreo::MessageLimits{});
    if (!seed_bytes.ok()) {
        std::fprintf(stderr, "sqlite_kill_child: encode seed: %s\n", seed_bytes.status().to_string().c_str());
        std::exit(5);
    }
    const choreo::OutgoingMessage seed_message{seed.id, seed.to, "", seed.correlation, *seed_bytes};
    choreo::Result<std::size_t> sent = seed_transport.send({&seed_message, 1});
    if (!sent.ok() || *sent != 1) {
        std::fprintf(stderr, "sqlite_kill_child: seed not sent\n");
        std::exit(5);
    }

    const auto started = std::chrono::steady_clock::now();
    const pid_t parent = ::getppid();
    int status = 0;
    for (;;) {
        if (failed) {
            status = 5;
            break;
        }
        if (::getppid() != parent) {
            std::fprintf(stderr, "sqlite_kill_child: the test that started it is gone\n");
            status = 6;
            break;
        }
        const Progress now = read_progress(*bank_store, *ledger_store, problems, 1);
        if (!problems.empty()) {
            for (const std::string& problem : problems) std::fprintf(stderr, "sqlite_kill_child: %s\n", problem.c_str());
            status = 5;
            break;
        }
        if (now.complete(credits)) {
            std::printf("complete %s\n", now.text().c_str());
            std::fflush(stdout);
            break;
        }
        const auto elapsed = std::chrono::steady_clock::now() - started;
        if (options.timeout_ms > 0 && elapsed > std::chrono::milliseconds(options.timeout_ms)) {
            std::fprintf(stderr, "sqlite_kill_child: not complete after %lld ms: %s\n",
                         static_cast<long long>(options.timeout_ms), now.text().c_str());
            status = 6;
            break;
        }
        wait_ms(20);
    }
    while (status == 0 && options.linger && !failed && ::getppid() == parent) wait_ms(20);  // idle, until killed

    bank.stop();
    ledger.stop();
    bank_thread.join();
    ledger_thread.join();
    if (failed && status == 0) status = 5;
    return status;
}

}  // namespace

int main(int argc, char** argv) {
    const Options options = parse(argc, argv);
    if (options.mode == "check") return run_check(options, false);
    if (options.mode == "verify") return run_check(options, true);
    return run(options);
}
