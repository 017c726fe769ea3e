// simulator.cpp — deterministic simulation: one seed drives the network, the crashes and the
// clock; four real services (real kernel and runtime) run a saga-shaped workload on one thread.
//
// The world: "shop" runs a durable function `order` per order: it reserves every item on
// "stock" at once (fan-out of durable calls), sleeps on a durable timer, charges on "pay", and
// when the charge is declined it releases every item again (compensation); at the end it sends
// "order-ended" to "ledger", whose plain event handler records the outcome. Each service keeps a
// MemoryStore that crashes before or after a commit, or its process is killed between batches;
// the SimNetwork drops, duplicates, delays, reorders, partitions and replays old messages.
//
// A run has a safety phase (faults on) and a liveness phase (faults off, partitions healed) and
// then checks, over the whole run:
//   - effect once: the ledger applied each order's end exactly once, even with late replays;
//   - nothing lost: every order ended, and its end reached the ledger;
//   - promises settle once: no execution completed twice, no settle conflict;
//   - sagas end whole: each order is "completed" or, when declined, "compensated", as the rule says;
//   - interruption transparency: the same seed without faults gives the same outcomes;
//   - determinism: the same seed twice gives the same trace, event for event.
//
//   simulator --seed N            one seed (a failure prints how to reproduce it)
//   simulator --seeds A..B        a range
//   simulator --swarm             fault probabilities drawn per seed
//   simulator --require-marks     fail if a rare path was never reached in the whole range
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "choreo/durability/memory_store.h"
#include "choreo/service.h"
#include "choreo/transport/sim_transport.h"

namespace {

using choreo::TimeMs;

struct Order {
    std::string id;
    std::vector<std::string> items;
    int amount = 0;
    MSGPACK_DEFINE_MAP(id, items, amount);
};

struct Ended {
    std::string order;
    std::string outcome;
    MSGPACK_DEFINE_MAP(order, outcome);
};

// The saga's rule: a charge of a multiple of 5 is declined.
bool declined(int amount) { return amount % 5 == 0; }
std::string expected_outcome(const Order& order) { return declined(order.amount) ? "compensated" : "completed"; }

// ---- the workload --------------------------------------------------------------------------

choreo::Task<std::string> run_order(choreo::DurableContext& ctx, Order order) {
    std::vector<choreo::Future<std::string>> reservations;
    for (const std::string& item : order.items) {
        reservations.push_back(ctx.call_async<std::string>("stock", "reserve", item));
    }
    std::vector<std::string> reserved = co_await ctx.all(std::move(reservations));
    co_await ctx.sleep_ms(100 + 10 * order.amount);
    bool paid = true;
    try {
        co_await ctx.call<std::string>("pay", "charge", order.amount);
    } catch (const choreo::DurableError&) {
        paid = false;
    }
    std::string outcome = "completed";
    if (!paid) {
        for (const std::string& item : order.items) co_await ctx.call<std::string>("stock", "release", item);
        outcome = "compensated";
    }
    ctx.send("ledger", "order-ended", Ended{order.id, outcome});
    co_return outcome;
}

choreo::Task<std::string> reserve(choreo::DurableContext&, std::string item) { co_return "reserved " + item; }
choreo::Task<std::string> release(choreo::DurableContext&, std::string item) { co_return "released " + item; }
choreo::Task<std::string> charge(choreo::DurableContext&, int amount) {
    if (declined(amount)) throw std::runtime_error("card declined");
    co_return "charged " + std::to_string(amount);
}

// ---- configuration -------------------------------------------------------------------------

// A rule broken on purpose (--break): the simulator must then find a failing seed.
enum class BrokenRule { none, ack_before_commit, skip_dedup_read };

struct Faults {
    choreo::SimFaults network{};
    std::uint32_t crash_per_mille = 0;      // per tick: a service's next commit crashes
    std::uint32_t kill_per_mille = 0;       // per tick: a service's process dies between batches
    std::uint32_t busy_per_mille = 0;       // per tick: a store fails its next commits as busy
    std::uint32_t partition_per_mille = 0;  // per tick: two services are cut apart
    std::uint32_t heal_per_mille = 0;       // per tick: partitions heal
    std::uint32_t replay_per_mille = 0;     // per tick: old messages are replayed
};

Faults default_faults() {
    Faults faults;
    faults.network = {.drop_per_mille = 50, .duplicate_per_mille = 50, .ack_drop_per_mille = 50,
                      .delay_ms_min = 0, .delay_ms_max = 200};
    faults.crash_per_mille = 8;
    faults.kill_per_mille = 4;
    faults.busy_per_mille = 5;
    faults.partition_per_mille = 3;
    faults.heal_per_mille = 30;
    faults.replay_per_mille = 20;
    return faults;
}

// Swarm testing: each seed gets its own mix, some faults off entirely.
Faults swarm_faults(choreo::Random& random) {
    auto pick = [&](std::uint32_t max) { return random.chance(1, 4) ? 0u : static_cast<std::uint32_t>(random.below(max + 1)); };
    Faults faults;
    faults.network.drop_per_mille = pick(200);
    faults.network.duplicate_per_mille = pick(200);
    faults.network.ack_drop_per_mille = pick(200);
    faults.network.delay_ms_max = static_cast<TimeMs>(pick(1000));
    faults.crash_per_mille = pick(30);
    faults.kill_per_mille = pick(20);
    faults.busy_per_mille = pick(20);
    faults.partition_per_mille = pick(10);
    faults.heal_per_mille = 5 + pick(50);
    faults.replay_per_mille = pick(50);
    return faults;
}

// ---- the world -----------------------------------------------------------------------------

// Rare paths the run reached; the CI run fails if one is never hit across its seeds.
struct Marks {
    std::map<std::string, std::uint64_t> counts;
    void hit(const std::string& mark, std::uint64_t times = 1) { counts[mark] += times; }
};

const std::vector<std::string> required_marks = {
    "duplicate_dropped", "crash_before_commit", "crash_after_commit", "kill_between_batches",
    "timer_fired",       "timer_after_restart", "redelivered",        "late_replay",
    "ack_lost",          "partition",           "compensation",       "retransmission",
    "horizon_refusal",   "nondeterminism",      "commit_busy",
};

// The liveness phase ends well inside the dedup retention, so a first delivery is never below
// the horizon; the late phase then jumps past it.
constexpr TimeMs liveness_ms = 30 * 60'000;
constexpr TimeMs dedup_retention_ms = 2 * liveness_ms;
constexpr std::uint64_t ticks_max = 2'000'000;  // a world that never goes idle is a failure too

struct Outcome {
    std::map<std::string, std::string> results;  // order -> the execution's result
    std::map<std::string, std::string> ledger;   // order -> "count outcome" as the ledger holds it
    std::vector<std::string> violations;
    std::uint64_t trace_hash = 1469598103934665603ULL;  // FNV-1a over every committed trace event
    std::uint64_t events = 0;
    std::uint64_t committed_batches = 0;
    Marks marks;
};

class World {
public:
    World(std::uint64_t seed, bool with_faults, bool swarm, BrokenRule broken)
        : seed_(seed), broken_(broken), random_(seed * 0x9E3779B97F4A7C15ULL + 1), network_(clock_, random_) {
        // The fault mix has its own generator: the orders and everything else the world draws
        // are then the same with faults and without (interruption transparency compares them).
        choreo::SeededRandom mix{seed ^ 0x5DEECE66DULL};
        if (with_faults) faults_ = swarm ? swarm_faults(mix) : default_faults();
        network_.set_faults(faults_.network);
        for (const char* name : {"shop", "stock", "pay", "ledger"}) {
            nodes_.push_back(std::make_unique<Node>());
            Node& node = *nodes_.back();
            node.name = name;
            // Effect once, from the store's own record: every applied input commits its dedup
            // row; the same id committed twice at one consumer is a second apply. This sees
            // batches whose process crashed right after the commit, which the trace does not.
            node.store.set_commit_listener([this, &node](const choreo::CommitBatch& batch) {
                for (const choreo::DedupRow& row : batch.dedup) {
                    if (!committed_.insert({node.name, row.id}).second) {
                        outcome_.violations.push_back(node.name + " committed " + row.id.to_string() + " twice");
                    }
                }
                outcome_.committed_batches++;
            });
        }
        for (std::size_t index = 0; index < nodes_.size(); index++) start(index);
        make_orders();
    }

    Outcome run() {
        const TimeMs safety_end = clock_.now_ms() + 30'000;
        while (clock_.now_ms() < safety_end && ticks_ < ticks_max) tick(true);
        network_.heal();
        network_.set_faults({});  // liveness: a quiet network, no crashes, no busy disk
        for (const std::unique_ptr<Node>& node : nodes_) {
            node->store.inject_crash(choreo::MemoryStore::CrashPoint::none);
            node->store.fail_commits(0, {});
            node->armed = choreo::MemoryStore::CrashPoint::none;
        }
        const TimeMs liveness_end = clock_.now_ms() + liveness_ms;
        while (clock_.now_ms() < liveness_end && !all_done() && ticks_ < ticks_max) tick(false);
        if (!all_done()) {
            outcome_.violations.push_back("liveness: not done after " + std::to_string(liveness_ms / 1000) +
                                          " quiet virtual seconds (" + std::to_string(network_.in_flight()) +
                                          " messages in flight, " + std::to_string(ticks_) + " ticks)");
        }
        check();
        check_nothing_pending();
        late_replays();
        const choreo::SimNetworkStats stats = network_.stats();
        outcome_.marks.hit("redelivered", stats.redelivered);
        outcome_.marks.hit("late_replay", stats.replayed);
        outcome_.marks.hit("ack_lost", stats.acks_dropped);
        return std::move(outcome_);
    }

private:
    struct Node {
        std::string name;
        choreo::MemoryStore store;
        std::unique_ptr<choreo::SeededRandom> random;
        std::unique_ptr<choreo::SimTransport> transport;
        std::unique_ptr<choreo::Service> service;
        choreo::MemoryStore::CrashPoint armed = choreo::MemoryStore::CrashPoint::none;
        std::uint32_t restarts = 0;
        bool busy_streak = false;          // busy commits injected since the last good commit
        std::uint64_t commits_at_busy = 0;
    };

    void start(std::size_t index) {
        Node& node = *nodes_[index];
        node.service.reset();
        node.transport.reset();  // unacknowledged deliveries go back to the network
        node.store.recover();
        node.armed = choreo::MemoryStore::CrashPoint::none;
        node.store.fail_commits(0, {});  // a new process: the busy streak ended with the old one
        node.busy_streak = false;
        node.random = std::make_unique<choreo::SeededRandom>(seed_ * 1'000'003 + index * 7919 + node.restarts);
        node.transport = std::make_unique<choreo::SimTransport>(network_, choreo::Address::unicast(node.name, "1"));
        choreo::ServiceOptions options;
        options.name = node.name;
        options.instance = "1";
        options.batch_size_max = 16;
        options.batch_delay_us_max = 0;    // never wait in real time
        options.idle_wait_us_max = 0;
        options.step_workers_max = 0;      // steps run inline: one thread
        options.kernel.send_retry_delay_ms_min = 50;
        options.kernel.send_retry_delay_ms_max = 2'000;
        options.retention.dedup_retention_ms = dedup_retention_ms;  // the late phase outlives it
        options.kernel.testing_skip_dedup_read = broken_ == BrokenRule::skip_dedup_read;
        options.testing_ack_before_commit = broken_ == BrokenRule::ack_before_commit;
        node.service = std::make_unique<choreo::Service>(options, *node.transport, node.store, clock_, *node.random);
        register_workload(node);
        node.service->set_observer([this, &node](const choreo::TraceEvent& event) { observe(node, event); });
        if (node.name == "shop") start_orders(node);
    }

    void register_workload(Node& node) {
        choreo::Service& service = *node.service;
        if (node.name == "shop") service.function("order", run_order);
        if (node.name == "stock") {
            service.function("reserve", reserve);
            service.function("release", release);
            // Deliberately nondeterministic: its code takes another path in every other process
            // generation, so a replay after some restarts no longer matches its history and the
            // execution fails with `nondeterminism`. It is outside the saga: its result is not
            // part of the outcomes compared with the run without faults.
            const std::uint32_t generation = node.restarts;
            service.function("audit", [generation](choreo::DurableContext& ctx, int rounds) -> choreo::Task<int> {
                for (int round = 0; round < rounds; round++) {
                    if (generation % 2 == 0) {
                        co_await ctx.sleep_ms(200);
                    } else {
                        co_await ctx.call<std::string>("stock", "reserve", std::string("audit"));
                    }
                }
                co_return rounds;
            });
            service.start("stock", "audit", "audit", 20).ignore();
        }
        if (node.name == "pay") service.function("charge", charge);
        if (node.name == "ledger") {
            service.on("order-ended", [](choreo::Context& ctx, const Ended& ended) {
                const std::string key = "ended/" + ended.order;
                ctx.save(key, ctx.load<int>(key).value_or(0) + 1);
                ctx.save("outcome/" + ended.order, ended.outcome);
            });
        }
    }

    void make_orders() {
        const int count = 4 + static_cast<int>(random_.below(5));
        for (int n = 0; n < count; n++) {
            Order order;
            order.id = "order-" + std::to_string(n);
            const int items = 1 + static_cast<int>(random_.below(4));
            for (int item = 0; item < items; item++) order.items.push_back("item-" + std::to_string(random_.below(20)));
            order.amount = 1 + static_cast<int>(random_.below(30));
            orders_.push_back(order);
        }
        start_orders(*nodes_[0]);
    }

    // A client retries its starts after the shop restarts: a start that never committed is lost
    // with the process, and the same id twice is the same execution.
    void start_orders(Node& shop) {
        for (const Order& order : orders_) {
            choreo::Result<std::optional<choreo::PromiseRow>> row = shop.service->result(order.id);
            if (row.ok() && row->has_value()) continue;
            shop.service->start("shop", "order", order.id, order).ignore();
        }
    }

    // After everything ended: time passes beyond the dedup retention, the purge forgets old ids and
    // raises the horizon, and old messages arrive once more. Each must have no effect: refused
    // below the horizon (a dead letter) or, if still remembered, dropped as a duplicate.
    void late_replays() {
        late_phase_ = true;
        clock_.advance_ms(dedup_retention_ms + 60'000);
        for (int round = 0; round < 200; round++) tick(false);  // purge passes run between batches
        network_.replay_old(20);
        const TimeMs end = clock_.now_ms() + 60'000;
        while (clock_.now_ms() < end) tick(false);
        const std::map<std::string, std::string> results = outcome_.results;
        const std::map<std::string, std::string> ledger = outcome_.ledger;
        outcome_.results.clear();
        outcome_.ledger.clear();
        check();
        if (outcome_.results != results || outcome_.ledger != ledger) {
            outcome_.violations.push_back("a late replay changed an outcome");
        }
    }

    // Every committed send was confirmed (or dead-lettered with a reason: none is expected here),
    // and nothing was refused.
    void check_nothing_pending() {
        for (const std::unique_ptr<Node>& node : nodes_) {
            choreo::Result<std::vector<choreo::OutboxRow>> unsettled = node->store.unsettled_outbox({}, 10);
            if (unsettled.ok() && !unsettled->empty()) {
                outcome_.violations.push_back(node->name + " has " + std::to_string(unsettled->size()) +
                                              "+ sends never confirmed");
            }
            choreo::Result<std::vector<choreo::ExecutionRow>> running = node->store.running_executions("", 10);
            if (running.ok() && !running->empty()) {
                outcome_.violations.push_back(node->name + " still runs execution " + (*running)[0].id);
            }
            choreo::Result<std::vector<choreo::PromiseRow>> timers = node->store.pending_promises_with_deadline("", 10);
            if (timers.ok() && !timers->empty()) {
                outcome_.violations.push_back(node->name + " still has pending promise " + (*timers)[0].id);
            }
            if (node->service->retries_pending() > 0) {
                outcome_.violations.push_back(node->name + " still has handler retries waiting");
            }
            choreo::Result<std::vector<choreo::DeadLetter>> letters = node->store.dead_letters("", 10);
            if (letters.ok() && !letters->empty()) {
                outcome_.violations.push_back(node->name + " dead-lettered " + (*letters)[0].key + ": " +
                                              (*letters)[0].reason + " " + (*letters)[0].detail);
            }
        }
    }

    void observe(Node& node, const choreo::TraceEvent& event) {
        std::uint64_t& hash = outcome_.trace_hash;
        auto fold = [&](std::string_view text) {
            for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ULL;
            hash = (hash ^ 0xFF) * 1099511628211ULL;
        };
        fold(node.name);
        fold(choreo::trace_kind_name(event.kind));
        fold(event.id.to_string());
        fold(event.message_kind);
        fold(event.reason);
        fold(event.subject);
        fold(std::to_string(clock_.now_ms()));
        outcome_.events++;
        using choreo::TraceKind;
        if (event.kind == TraceKind::duplicate) outcome_.marks.hit("duplicate_dropped");
        if (event.kind == TraceKind::applied && !applied_.insert({node.name, event.id}).second) {
            // Effect once, as a property of the trace: a consumer applies an id at most once.
            outcome_.violations.push_back(node.name + " applied " + event.id.to_string() + " twice");
        }
        if (event.kind == TraceKind::dead_lettered && event.reason == choreo::refusal::beyond_dedup_horizon) {
            outcome_.marks.hit("horizon_refusal");
            if (!late_phase_) outcome_.violations.push_back(node.name + " refused a first delivery below the horizon");
        }
        if (event.kind == TraceKind::timer_fired) {
            outcome_.marks.hit("timer_fired");
            if (node.restarts > 0) outcome_.marks.hit("timer_after_restart");
        }
        if (event.kind == TraceKind::settle_conflict && late_phase_) {
            // A late replay of a call, refused below the horizon, answers it with a rejection: the
            // caller reports the conflict with the settled promise and applies nothing.
            outcome_.marks.hit("late_settle_conflict");
        } else if (event.kind == TraceKind::settle_conflict) {
            outcome_.violations.push_back(node.name + ": settle conflict on " + event.subject + " (" + event.reason + ")");
        }
        if (event.kind == TraceKind::execution_completed || event.kind == TraceKind::execution_failed) {
            const std::string key = node.name + "/" + event.subject;
            if (++settled_[key] > 1) outcome_.violations.push_back("execution " + key + " settled twice");
            if (node.name == "stock" && event.message_kind == "release") outcome_.marks.hit("compensation");
            if (event.kind == TraceKind::execution_failed &&
                event.reason.find(choreo::durable_error::nondeterminism) != std::string::npos) {
                outcome_.marks.hit("nondeterminism");
            }
        }
    }

    void tick(bool safety) {
        ticks_++;
        if (safety) inject_faults();
        bool worked = false;
        // Every service gets a turn, in an order the seed picks.
        std::vector<std::size_t> order(nodes_.size());
        for (std::size_t index = 0; index < order.size(); index++) order[index] = index;
        for (std::size_t index = order.size(); index > 1; index--) {
            std::swap(order[index - 1], order[random_.below(index)]);
        }
        for (std::size_t index : order) worked |= run_node(index);
        if (worked) return;
        // Idle: time moves to the next arrival, or a little (timers and retransmissions are due
        // inside the services).
        const TimeMs step = 1 + static_cast<TimeMs>(random_.below(50));
        const std::optional<TimeMs> next = network_.next_due_ms();
        const TimeMs target = next && *next > clock_.now_ms() ? std::min(*next, clock_.now_ms() + step)
                                                              : clock_.now_ms() + step;
        clock_.set_ms(target);
    }

    bool run_node(std::size_t index) {
        Node& node = *nodes_[index];
        choreo::Result<bool> worked = node.service->run_once(0);
        if (worked.ok()) {
            if (node.service->stats().sends > node.service->stats().confirmed + node.service->unsettled_sends()) {
                outcome_.marks.hit("retransmission");
            }
            return *worked;
        }
        // The store crashed (injected): the process is gone; a new one starts on its store.
        if (node.armed == choreo::MemoryStore::CrashPoint::before_commit) outcome_.marks.hit("crash_before_commit");
        if (node.armed == choreo::MemoryStore::CrashPoint::after_commit) outcome_.marks.hit("crash_after_commit");
        if (!node.store.crashed()) {
            outcome_.violations.push_back(node.name + " stopped without a crash: " + worked.status().to_string());
        }
        node.restarts++;
        start(index);
        return true;
    }

    void inject_faults() {
        if (faults_.crash_per_mille > 0 && random_.chance(faults_.crash_per_mille, 1000)) {
            Node& node = *nodes_[random_.below(nodes_.size())];
            if (node.armed == choreo::MemoryStore::CrashPoint::none) {
                node.armed = random_.chance(1, 2) ? choreo::MemoryStore::CrashPoint::before_commit
                                                  : choreo::MemoryStore::CrashPoint::after_commit;
                node.store.inject_crash(node.armed);
            }
        }
        if (faults_.kill_per_mille > 0 && random_.chance(faults_.kill_per_mille, 1000)) {
            const std::size_t index = random_.below(nodes_.size());
            if (nodes_[index]->armed == choreo::MemoryStore::CrashPoint::none) {
                outcome_.marks.hit("kill_between_batches");
                nodes_[index]->restarts++;
                start(index);
            }
        }
        if (faults_.busy_per_mille > 0 && random_.chance(faults_.busy_per_mille, 1000)) {
            // A busy disk: the next 1-3 commits fail as transient; the runtime backs off and
            // runs the same inputs again (fewer than its commit_attempts_max).
            // At most one streak between two good commits, so it stays under commit_attempts_max.
            Node& node = *nodes_[random_.below(nodes_.size())];
            const std::uint64_t commits = node.service->stats().commits;
            if (!node.busy_streak || commits > node.commits_at_busy) {
                node.store.fail_commits(1 + random_.below(3), choreo::transient_error("store_busy", "simulated"));
                node.busy_streak = true;
                node.commits_at_busy = commits;
                outcome_.marks.hit("commit_busy");
            }
        }
        if (faults_.partition_per_mille > 0 && random_.chance(faults_.partition_per_mille, 1000)) {
            const std::size_t a = random_.below(nodes_.size());
            const std::size_t b = random_.below(nodes_.size());
            if (a != b) {
                network_.partition(nodes_[a]->name, nodes_[b]->name);
                outcome_.marks.hit("partition");
            }
        }
        if (faults_.heal_per_mille > 0 && random_.chance(faults_.heal_per_mille, 1000)) network_.heal();
        if (faults_.replay_per_mille > 0 && random_.chance(faults_.replay_per_mille, 1000)) {
            network_.replay_old(1 + random_.below(3));
        }
    }

    bool all_done() {
        Node& shop = *nodes_[0];
        Node& ledger = *nodes_[3];
        for (const Order& order : orders_) {
            choreo::Result<std::optional<choreo::PromiseRow>> row = shop.service->result(order.id);
            if (!row.ok() || !row->has_value() || (*row)->state == choreo::PromiseState::pending) return false;
            choreo::Result<std::optional<choreo::Bytes>> ended = ledger.store.load_state("ended/" + order.id);
            if (!ended.ok() || !ended->has_value()) return false;
        }
        // A send whose copies were all lost waits for its retransmission timer while the network
        // is idle: done means every outbox is settled too.
        for (const std::unique_ptr<Node>& node : nodes_) {
            if (node->service->unsettled_sends() != 0) return false;
        }
        return network_.in_flight() == 0;
    }

    void check() {
        Node& shop = *nodes_[0];
        Node& ledger = *nodes_[3];
        for (const Order& order : orders_) {
            choreo::Result<std::optional<choreo::PromiseRow>> row = shop.service->result(order.id);
            if (!row.ok() || !row->has_value() || (*row)->state != choreo::PromiseState::resolved) {
                outcome_.violations.push_back(order.id + " did not end (lost, or stuck)");
                continue;
            }
            choreo::Result<std::string> decoded = choreo::unpack<std::string>((*row)->value);
            const std::string result = decoded.ok() ? decoded.value() : "?";
            outcome_.results[order.id] = result;
            if (result != expected_outcome(order)) {
                outcome_.violations.push_back(order.id + " ended " + result + ", expected " + expected_outcome(order));
            }
            const std::optional<choreo::Bytes> count = ledger.store.load_state("ended/" + order.id).value();
            const std::optional<choreo::Bytes> recorded = ledger.store.load_state("outcome/" + order.id).value();
            const int applied = count ? choreo::unpack<int>(*count).value() : 0;
            const std::string outcome = recorded ? choreo::unpack<std::string>(*recorded).value() : "none";
            outcome_.ledger[order.id] = std::to_string(applied) + " " + outcome;
            if (applied != 1) {
                outcome_.violations.push_back("ledger applied the end of " + order.id + " " + std::to_string(applied) +
                                              " times");
            }
            if (outcome != result) outcome_.violations.push_back("ledger holds " + outcome + " for " + order.id);
        }
    }

    std::uint64_t seed_;
    BrokenRule broken_;
    choreo::ManualClock clock_{1'700'000'000'000};
    choreo::SeededRandom random_;
    choreo::SimNetwork network_;
    Faults faults_{};
    std::vector<std::unique_ptr<Node>> nodes_;
    std::vector<Order> orders_;
    std::map<std::string, int> settled_;
    std::set<std::pair<std::string, choreo::MessageId>> applied_;
    std::set<std::pair<std::string, choreo::MessageId>> committed_;
    std::uint64_t ticks_ = 0;
    bool late_phase_ = false;
    Outcome outcome_;
};

// ---- driver --------------------------------------------------------------------------------

struct Settings {
    std::uint64_t first = 1;
    std::uint64_t last = 1;
    bool swarm = false;
    bool require_marks = false;
    BrokenRule broken = BrokenRule::none;
    bool expect_failure = false;
};

bool parse_range(const char* text, Settings& settings) {
    const char* dots = std::strstr(text, "..");
    if (dots == nullptr) return false;
    settings.first = std::strtoull(text, nullptr, 10);
    settings.last = std::strtoull(dots + 2, nullptr, 10);
    return settings.first <= settings.last;
}

Settings parse(int argc, char** argv) {
    Settings settings;
    for (int index = 1; index < argc; index++) {
        const bool has_value = index + 1 < argc;
        if (std::strcmp(argv[index], "--seed") == 0 && has_value) {
            settings.first = settings.last = std::strtoull(argv[++index], nullptr, 10);
        } else if (std::strcmp(argv[index], "--seeds") == 0 && has_value) {
            if (!parse_range(argv[++index], settings)) {
                std::fprintf(stderr, "--seeds takes A..B\n");
                std::exit(2);
            }
        } else if (std::strcmp(argv[index], "--swarm") == 0) {
            settings.swarm = true;
        } else if (std::strcmp(argv[index], "--require-marks") == 0) {
            settings.require_marks = true;
        } else if (std::strcmp(argv[index], "--break") == 0 && has_value) {
            const std::string rule = argv[++index];
            if (rule == "ack_before_commit") {
                settings.broken = BrokenRule::ack_before_commit;
            } else if (rule == "skip_dedup_read") {
                settings.broken = BrokenRule::skip_dedup_read;
            } else {
                std::fprintf(stderr, "--break takes ack_before_commit or skip_dedup_read\n");
                std::exit(2);
            }
            settings.expect_failure = true;
        } else {
            std::fprintf(stderr, "usage: simulator [--seed N | --seeds A..B] [--swarm] [--require-marks] "
                                 "[--break ack_before_commit|skip_dedup_read]\n");
            std::exit(2);
        }
    }
    return settings;
}

// Runs one seed three times (faults, faults again, no faults) and compares. Returns the
// violations (empty: the seed passed) and adds its marks to `marks`.
std::vector<std::string> check_seed(std::uint64_t seed, const Settings& settings, Marks& marks) {
    Outcome faulty = World{seed, true, settings.swarm, settings.broken}.run();
    Outcome again = World{seed, true, settings.swarm, settings.broken}.run();
    Outcome calm = World{seed, false, settings.swarm, settings.broken}.run();
    std::vector<std::string> violations = faulty.violations;
    if (faulty.trace_hash != again.trace_hash || faulty.events != again.events ||
        faulty.committed_batches != again.committed_batches || faulty.results != again.results ||
        faulty.ledger != again.ledger || faulty.violations != again.violations) {
        violations.push_back("not deterministic: the same seed gave two different traces (" +
                             std::to_string(faulty.events) + " and " + std::to_string(again.events) + " events)");
    }
    for (const std::string& violation : calm.violations) violations.push_back("without faults: " + violation);
    if (faulty.results != calm.results || faulty.ledger != calm.ledger) {
        violations.push_back("interruptions changed the outcome: with faults and without differ");
    }
    for (const auto& [mark, count] : faulty.marks.counts) marks.hit(mark, count);
    return violations;
}

}  // namespace

int main(int argc, char** argv) {
    const Settings settings = parse(argc, argv);
    Marks marks;
    std::uint64_t failed = 0;
    for (std::uint64_t seed = settings.first; seed <= settings.last; seed++) {
        const std::vector<std::string> violations = check_seed(seed, settings, marks);
        if (violations.empty()) continue;
        failed++;
        std::printf("seed %" PRIu64 " FAILED:\n", seed);
        for (const std::string& violation : violations) std::printf("  %s\n", violation.c_str());
        std::printf("reproduce: ./scripts/sim --seed %" PRIu64 "%s%s\n", seed, settings.swarm ? " --swarm" : "",
                    settings.broken == BrokenRule::ack_before_commit ? " --break ack_before_commit"
                    : settings.broken == BrokenRule::skip_dedup_read ? " --break skip_dedup_read"
                                                                     : "");
        if (settings.expect_failure) break;  // found: the simulator has teeth
    }
    if (settings.expect_failure) {
        std::printf("simulator: rule broken on purpose; %s\n",
                    failed > 0 ? "a violating seed was found (above)" : "NO seed caught it");
        return failed > 0 ? 0 : 1;
    }
    const std::uint64_t seeds = settings.last - settings.first + 1;
    std::printf("simulator: %" PRIu64 " seeds (%" PRIu64 "..%" PRIu64 "%s), %" PRIu64 " failed\n", seeds,
                settings.first, settings.last, settings.swarm ? ", swarm" : "", failed);
    std::printf("marks:");
    bool missing = false;
    for (const std::string& mark : required_marks) {
        const std::uint64_t count = marks.counts[mark];
        std::printf(" %s=%" PRIu64, mark.c_str(), count);
        missing |= count == 0;
    }
    std::printf("\n");
    if (settings.require_marks && missing) {
        std::printf("a required mark was never hit: the faults no longer reach that path\n");
        return 1;
    }
    return failed == 0 ? 0 : 1;
}
