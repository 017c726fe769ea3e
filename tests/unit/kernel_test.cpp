// The kernel as a pure function: given inputs (and what the store holds) → exact effects.
#include <gtest/gtest.h>

#include <stdexcept>

#include "choreo/codec.h"
#include "choreo/context.h"
#include "choreo/durability/memory_store.h"
#include "choreo/kernel.h"

namespace choreo {
namespace {

constexpr TimeMs start_ms = 1'700'000'000'000;

class FixedRouter final : public Router {
public:
    std::string route(const Address& to) override { return to.service() == "billing" ? "b2" : ""; }
};

// A store reader whose reads fail on demand.
class FailingReader final : public StoreReader {
public:
    explicit FailingReader(Store& store) : store_(store) {}
    Status find_dedup(std::span<const MessageId> ids, std::vector<bool>& found) override {
        if (fail_dedup) return transient_error("busy");
        return store_.find_dedup(ids, found);
    }
    Result<TimeMs> dedup_horizon() override { return store_.dedup_horizon(); }
    Result<std::optional<Bytes>> load_state(std::string_view key) override {
        if (fail_state) return Status(transient_error("busy"));
        return store_.load_state(key);
    }
    Result<std::optional<PromiseRow>> find_promise(std::string_view id) override { return store_.find_promise(id); }
    Result<std::optional<ExecutionRow>> find_execution(std::string_view id) override {
        return store_.find_execution(id);
    }
    Result<std::vector<HistoryRecord>> load_history(std::string_view id, std::size_t limit) override {
        return store_.load_history(id, limit);
    }
    Result<std::optional<OutboxRow>> find_outbox(const MessageId& id) override { return store_.find_outbox(id); }
    bool fail_dedup = false;
    bool fail_state = false;

private:
    Store& store_;
};

class KernelTest : public ::testing::Test {
protected:
    KernelTest() { options_.self = Address::unicast("orders", "1"); }

    Kernel& kernel() {
        if (!kernel_) kernel_ = std::make_unique<Kernel>(options_, handlers_, functions_, clock_, random_, router_);
        return *kernel_;
    }
    Envelope envelope(std::uint64_t n, std::string kind = "add", std::string to = "orders") {
        Envelope message;
        message.id = MessageId{0x1111, n};
        message.kind = std::move(kind);
        message.from = Address::unicast("client", "7");
        message.to = Address::parse(to).value();
        message.sent_at_ms = start_ms - 1000;
        message.body = pack(static_cast<int>(n));
        return message;
    }
    Delivery delivery(const Envelope& message, DeliveryTag tag) {
        return Delivery{tag, encode_envelope(message, options_.limits).value(), std::nullopt};
    }
    BatchEffects step(StepInputs inputs) {
        Result<BatchEffects> effects = kernel().step(inputs, store_);
        EXPECT_TRUE(effects.ok()) << effects.status().to_string();
        return std::move(effects).value();
    }
    BatchEffects step_and_commit(StepInputs inputs) {
        BatchEffects effects = step(std::move(inputs));
        EXPECT_TRUE(store_.commit(effects.commit).ok());
        kernel().committed(effects);
        return effects;
    }
    void on_add_save_and_send() {
        handlers_["add"] = [this](StepContext& step_context) {
            calls_++;
            Context ctx{step_context};
            const int value = unpack<int>(ctx.message().body).value();
            ctx.save("total", ctx.load<int>("total").value_or(0) + value);
            ctx.send("billing", "charge", value);
        };
    }

    KernelOptions options_;
    HandlerTable handlers_;
    FunctionTable functions_;
    ManualClock clock_{start_ms};
    SeededRandom random_{7};
    FixedRouter router_;
    MemoryStore store_;
    std::unique_ptr<Kernel> kernel_;
    int calls_ = 0;
};

TEST_F(KernelTest, AppliesAMessageIntoExactEffects) {
    on_add_save_and_send();
    const Envelope input = envelope(5);
    BatchEffects effects = step({{delivery(input, 42)}, {}, {}});

    EXPECT_EQ(effects.now_ms, start_ms);
    EXPECT_EQ(effects.commit.dedup, (std::vector<DedupRow>{{input.id, input.sent_at_ms}}));
    EXPECT_EQ(effects.commit.state, (std::vector<StateWrite>{{"total", pack(5)}}));
    EXPECT_EQ(effects.acks, (std::vector<DeliveryTag>{42}));
    ASSERT_EQ(effects.commit.outbox.size(), 1u);
    const OutboxRow& row = effects.commit.outbox[0];
    EXPECT_EQ(row.id, derive_id(input.id, 0));
    EXPECT_EQ(row.to, Address::anycast("billing"));
    EXPECT_EQ(row.route, "b2");  // anycast pinned before the first send (design §4.6)
    EXPECT_EQ(row.sent_at_ms, start_ms);
    EXPECT_FALSE(row.settled);

    const Envelope sent = decode_envelope(row.bytes, options_.limits).value();
    EXPECT_EQ(sent.id, row.id);
    EXPECT_EQ(sent.kind, "charge");
    EXPECT_EQ(sent.from, options_.self);
    EXPECT_EQ(sent.causation, input.id.to_string());
    EXPECT_EQ(sent.correlation, input.id.to_string());  // the input had none: its id starts one
    EXPECT_EQ(sent.sent_at_ms, start_ms);
    EXPECT_EQ(unpack<int>(sent.body).value(), 5);
    EXPECT_EQ(row.key, sent.correlation);

    EXPECT_TRUE(effects.commit.dead_letters.empty());
    EXPECT_TRUE(effects.retries.empty());
    EXPECT_EQ(effects.trace, (std::vector<TraceEvent>{{TraceKind::applied, input.id, "add", ""}}));
}

TEST_F(KernelTest, StepIsAFunctionOfItsInputsAndLeavesTheKernelAlone) {
    on_add_save_and_send();
    const StepInputs inputs{{delivery(envelope(1), 1), delivery(envelope(2), 2)}, {}, {}};
    BatchEffects first = step(inputs);
    BatchEffects second = step(inputs);
    EXPECT_EQ(first.commit.dedup, second.commit.dedup);
    EXPECT_EQ(first.commit.state, second.commit.state);
    EXPECT_EQ(first.commit.outbox, second.commit.outbox);
    EXPECT_EQ(first.acks, second.acks);
    EXPECT_EQ(first.trace, second.trace);
    EXPECT_EQ(kernel().unsettled_count(), 0u);  // nothing moves until committed()
    EXPECT_EQ(store_.dedup_size(), 0u);          // and the kernel never writes the store
}

TEST_F(KernelTest, CorrelationIsInherited) {
    on_add_save_and_send();
    Envelope input = envelope(1);
    input.correlation = "saga-9";
    BatchEffects effects = step({{delivery(input, 1)}, {}, {}});
    ASSERT_EQ(effects.commit.outbox.size(), 1u);
    EXPECT_EQ(decode_envelope(effects.commit.outbox[0].bytes, options_.limits)->correlation, "saga-9");
    EXPECT_EQ(effects.commit.outbox[0].key, "saga-9");
}

TEST_F(KernelTest, ReplayOfAnAppliedIdIsANoOp) {
    on_add_save_and_send();
    step_and_commit({{delivery(envelope(3), 1)}, {}, {}});
    ASSERT_EQ(calls_, 1);
    BatchEffects replay = step({{delivery(envelope(3), 2)}, {}, {}});
    EXPECT_EQ(calls_, 1);
    EXPECT_TRUE(replay.commit.empty());
    EXPECT_EQ(replay.acks, (std::vector<DeliveryTag>{2}));  // acked, so the sender stops
    EXPECT_EQ(replay.trace, (std::vector<TraceEvent>{{TraceKind::duplicate, envelope(3).id, "add", ""}}));
}

TEST_F(KernelTest, DuplicatesInsideOneBatchRunOnce) {
    on_add_save_and_send();
    BatchEffects effects = step({{delivery(envelope(4), 1), delivery(envelope(4), 2)}, {}, {}});
    EXPECT_EQ(calls_, 1);
    EXPECT_EQ(effects.commit.dedup.size(), 1u);
    EXPECT_EQ(effects.acks, (std::vector<DeliveryTag>{1, 2}));
}

TEST_F(KernelTest, StateWritesAreVisibleToLaterInputsOfTheSameBatch) {
    on_add_save_and_send();
    BatchEffects effects = step({{delivery(envelope(2), 1), delivery(envelope(3), 2)}, {}, {}});
    EXPECT_EQ(effects.commit.state, (std::vector<StateWrite>{{"total", pack(2)}, {"total", pack(5)}}));
    ASSERT_TRUE(store_.commit(effects.commit).ok());
    EXPECT_EQ(store_.load_state("total").value(), pack(5));  // the last write wins
}

TEST_F(KernelTest, UnknownIdBelowTheHorizonIsRefusedNotApplied) {
    on_add_save_and_send();
    ASSERT_TRUE(store_.purge({.dedup_sent_before_ms = start_ms, .outbox_settled_before_ms = 0, .rows_max = 10}).ok());
    const Envelope old = envelope(8);  // sent_at = start - 1000 < horizon
    BatchEffects effects = step({{delivery(old, 5)}, {}, {}});
    EXPECT_EQ(calls_, 0);
    EXPECT_TRUE(effects.commit.dedup.empty());
    ASSERT_EQ(effects.commit.dead_letters.size(), 1u);
    EXPECT_EQ(effects.commit.dead_letters[0].reason, refusal::beyond_dedup_horizon);
    EXPECT_EQ(effects.commit.dead_letters[0].key, old.id.to_string());
    EXPECT_EQ(effects.commit.dead_letters[0].raw, delivery(old, 5).bytes);
    EXPECT_EQ(effects.acks, (std::vector<DeliveryTag>{5}));  // acknowledged: the sender stops
}

TEST_F(KernelTest, KnownIdBelowTheHorizonIsStillADuplicate) {
    on_add_save_and_send();
    step_and_commit({{delivery(envelope(8), 1), delivery(envelope(9), 2)}, {}, {}});
    // A bounded purge pass: the horizon moves to T at once, but only one old row goes.
    PurgeResult purged = store_.purge({.dedup_sent_before_ms = start_ms, .outbox_settled_before_ms = 0, .rows_max = 1}).value();
    ASSERT_TRUE(purged.more);
    BatchEffects effects = step({{delivery(envelope(8), 3), delivery(envelope(9), 4)}, {}, {}});
    EXPECT_EQ(calls_, 2);
    ASSERT_EQ(effects.trace.size(), 2u);
    EXPECT_EQ(effects.trace[0].kind, TraceKind::dead_lettered);  // forgotten: refused
    EXPECT_EQ(effects.trace[0].reason, refusal::beyond_dedup_horizon);
    EXPECT_EQ(effects.trace[1].kind, TraceKind::duplicate);      // still remembered: a no-op
}

TEST_F(KernelTest, UndecodableBytesAreDeadLetteredWithTheDecodeReason) {
    on_add_save_and_send();
    Bytes bytes = delivery(envelope(1), 1).bytes;
    bytes.resize(bytes.size() / 2);
    BatchEffects effects = step({{Delivery{9, bytes, std::nullopt}}, {}, {}});
    ASSERT_EQ(effects.commit.dead_letters.size(), 1u);
    const DeadLetter& letter = effects.commit.dead_letters[0];
    EXPECT_EQ(letter.reason, "truncated");
    EXPECT_EQ(letter.key, content_id(bytes).to_string());
    EXPECT_EQ(letter.raw, bytes);
    EXPECT_EQ(letter.raw_size, bytes.size());
    EXPECT_EQ(letter.first_seen_ms, start_ms);
    EXPECT_EQ(effects.acks, (std::vector<DeliveryTag>{9}));
    EXPECT_EQ(effects.trace[0].kind, TraceKind::dead_lettered);
}

TEST_F(KernelTest, UnknownKindMisaddressedAndExpiredAreDeadLettered) {
    on_add_save_and_send();
    Envelope expired = envelope(3);
    expired.deadline_ms = start_ms - 1;
    BatchEffects effects = step({{delivery(envelope(1, "nope"), 1), delivery(envelope(2, "add", "billing"), 2),
                                  delivery(envelope(4, "add", "orders/2"), 3), delivery(expired, 4)},
                                 {},
                                 {}});
    ASSERT_EQ(effects.commit.dead_letters.size(), 4u);
    EXPECT_EQ(effects.commit.dead_letters[0].reason, refusal::unknown_kind);
    EXPECT_EQ(effects.commit.dead_letters[1].reason, refusal::misaddressed);
    EXPECT_EQ(effects.commit.dead_letters[2].reason, refusal::misaddressed);  // another instance
    EXPECT_EQ(effects.commit.dead_letters[3].reason, refusal::deadline_exceeded);
    EXPECT_EQ(effects.acks, (std::vector<DeliveryTag>{1, 2, 3, 4}));
    EXPECT_EQ(calls_, 0);
}

TEST_F(KernelTest, ThrowingHandlerRollsBackItsStepAndIsRetriedThenDeadLettered) {
    options_.handler_attempts_max = 3;
    handlers_["add"] = [this](StepContext& step_context) {
        calls_++;
        step_context.save("half-done", bytes_of("x"));
        step_context.send(Address::anycast("billing"), "charge", {});
        throw std::runtime_error("gateway down");
    };
    BatchEffects first = step_and_commit({{delivery(envelope(1), 11)}, {}, {}});
    EXPECT_TRUE(first.commit.empty());  // no dedup row, no state, no outbox row
    EXPECT_TRUE(first.acks.empty());    // not acknowledged: it is retried
    ASSERT_EQ(first.retries.size(), 1u);
    EXPECT_EQ(first.retries[0].attempts, 1u);
    EXPECT_GE(first.retries[0].due_ms, start_ms + options_.handler_retry_delay_ms_min / 2);
    EXPECT_LE(first.retries[0].due_ms, start_ms + options_.handler_retry_delay_ms_min);
    EXPECT_EQ(first.retries[0].last_error, "gateway down");

    EXPECT_FALSE(kernel().has_due_work());
    BatchEffects early = step({});
    EXPECT_EQ(calls_, 1);  // not due yet
    EXPECT_TRUE(early.trace.empty());

    clock_.advance_ms(options_.handler_retry_delay_ms_max);
    EXPECT_TRUE(kernel().has_due_work());
    BatchEffects second = step_and_commit({{delivery(envelope(1), 12)}, {}, {}});  // a redelivery joins it
    EXPECT_EQ(calls_, 2);
    ASSERT_EQ(second.retries.size(), 1u);
    EXPECT_EQ(second.retries[0].attempts, 2u);
    EXPECT_EQ(second.retries[0].tags, (std::vector<DeliveryTag>{11, 12}));

    clock_.advance_ms(options_.handler_retry_delay_ms_max);
    BatchEffects last = step_and_commit({});
    EXPECT_EQ(calls_, 3);
    ASSERT_EQ(last.commit.dead_letters.size(), 1u);
    EXPECT_EQ(last.commit.dead_letters[0].reason, refusal::handler_failed);
    EXPECT_NE(last.commit.dead_letters[0].detail.find("gateway down"), std::string::npos);
    EXPECT_TRUE(last.commit.state.empty());
    EXPECT_TRUE(last.commit.outbox.empty());
    EXPECT_EQ(last.acks, (std::vector<DeliveryTag>{11, 12}));
    EXPECT_EQ(kernel().retries_pending(), 0u);
}

TEST_F(KernelTest, RejectDeadLettersAtOnce) {
    handlers_["add"] = [](StepContext& step_context) {
        Context ctx{step_context};
        ctx.save("partial", 1);
        ctx.reject("invalid_order", "order has no lines");
    };
    BatchEffects effects = step({{delivery(envelope(1), 1)}, {}, {}});
    ASSERT_EQ(effects.commit.dead_letters.size(), 1u);
    EXPECT_EQ(effects.commit.dead_letters[0].reason, "invalid_order");
    EXPECT_EQ(effects.commit.dead_letters[0].detail, "order has no lines");
    EXPECT_TRUE(effects.commit.state.empty());
    EXPECT_TRUE(effects.retries.empty());
}

TEST_F(KernelTest, LimitsRefuseTheStep) {
    options_.sends_per_step_max = 2;
    options_.state_value_bytes_max = 4;
    handlers_["add"] = [](StepContext& step_context) {
        for (int n = 0; n < 3; n++) step_context.send(Address::anycast("billing"), "charge", {});
    };
    handlers_["big"] = [](StepContext& step_context) { step_context.save("k", Bytes(5, 0)); };
    handlers_["huge"] = [](StepContext& step_context) {
        step_context.send(Address::anycast("billing"), "charge", Bytes(2 * 1024 * 1024, 1));
    };
    handlers_["reply"] = [](StepContext& step_context) { step_context.reply("r", {}); };
    Envelope anonymous = envelope(4, "reply");
    anonymous.from = Address{};
    BatchEffects effects = step({{delivery(envelope(1), 1), delivery(envelope(2, "big"), 2),
                                  delivery(envelope(3, "huge"), 3), delivery(anonymous, 4)},
                                 {},
                                 {}});
    ASSERT_EQ(effects.commit.dead_letters.size(), 4u);
    EXPECT_EQ(effects.commit.dead_letters[0].reason, refusal::too_many_sends);
    EXPECT_EQ(effects.commit.dead_letters[1].reason, refusal::state_too_large);
    EXPECT_EQ(effects.commit.dead_letters[2].reason, refusal::outgoing_invalid);
    EXPECT_EQ(effects.commit.dead_letters[3].reason, refusal::no_reply_address);
    EXPECT_TRUE(effects.commit.outbox.empty());
    EXPECT_TRUE(effects.commit.state.empty());
}

TEST_F(KernelTest, SendsAreRetransmittedWithBackoffUntilConfirmed) {
    on_add_save_and_send();
    BatchEffects applied = step_and_commit({{delivery(envelope(1), 1)}, {}, {}});
    const MessageId sent_id = applied.commit.outbox[0].id;
    EXPECT_EQ(kernel().take_sends_due(10), (std::vector<MessageId>{sent_id}));
    EXPECT_TRUE(kernel().take_sends_due(10).empty());  // backing off
    EXPECT_EQ(kernel().outgoing(sent_id).bytes.size(), applied.commit.outbox[0].bytes.size());
    clock_.advance_ms(options_.send_retry_delay_ms_min);
    EXPECT_EQ(kernel().take_sends_due(10), (std::vector<MessageId>{sent_id}));  // retransmission

    BatchEffects confirmed = step_and_commit({{}, {sent_id, sent_id}, {}});
    EXPECT_EQ(confirmed.commit.outbox_settled,
              (std::vector<OutboxSettle>{{sent_id, start_ms + options_.send_retry_delay_ms_min, OutboxOutcome::delivered}}));
    EXPECT_EQ(kernel().unsettled_count(), 0u);
    clock_.advance_ms(options_.send_retry_delay_ms_max);
    EXPECT_TRUE(kernel().take_sends_due(10).empty());
    EXPECT_TRUE(store_.find_outbox(sent_id).value()->settled);
}

TEST_F(KernelTest, RefusedSendsAreOfferedAgainWithoutCountingAnAttempt) {
    on_add_save_and_send();
    BatchEffects applied = step_and_commit({{delivery(envelope(1), 1)}, {}, {}});
    const MessageId sent_id = applied.commit.outbox[0].id;
    std::vector<MessageId> due = kernel().take_sends_due(10);
    kernel().send_refused(due);
    clock_.advance_ms(options_.send_retry_delay_ms_min);
    EXPECT_EQ(kernel().take_sends_due(10), (std::vector<MessageId>{sent_id}));
}

TEST_F(KernelTest, ExhaustedSendsAreDeadLetteredNotLost) {
    options_.send_attempts_max = 2;
    on_add_save_and_send();
    BatchEffects applied = step_and_commit({{delivery(envelope(1), 1)}, {}, {}});
    const MessageId sent_id = applied.commit.outbox[0].id;
    for (int attempt = 0; attempt < 2; attempt++) {
        EXPECT_EQ(kernel().take_sends_due(10).size(), 1u);
        clock_.advance_ms(options_.send_retry_delay_ms_max);
    }
    EXPECT_TRUE(kernel().take_sends_due(10).empty());
    EXPECT_TRUE(kernel().has_due_work());
    BatchEffects given_up = step_and_commit({});
    ASSERT_EQ(given_up.commit.dead_letters.size(), 1u);
    EXPECT_EQ(given_up.commit.dead_letters[0].reason, refusal::send_attempts_exhausted);
    EXPECT_EQ(given_up.commit.dead_letters[0].key, sent_id.to_string());
    EXPECT_EQ(given_up.commit.dead_letters[0].raw, applied.commit.outbox[0].bytes);
    EXPECT_EQ(given_up.commit.outbox_settled[0].outcome, OutboxOutcome::dead_lettered);
    EXPECT_EQ(kernel().unsettled_count(), 0u);
    EXPECT_FALSE(store_.unsettled_outbox({}, 10).value().size());
}

TEST_F(KernelTest, SendsTheTransportRefusesForGoodAreDeadLetteredWithItsReason) {
    on_add_save_and_send();
    BatchEffects applied = step_and_commit({{delivery(envelope(1), 1)}, {}, {}});
    const MessageId sent_id = applied.commit.outbox[0].id;
    ASSERT_EQ(kernel().take_sends_due(10).size(), 1u);
    StepInputs refused;
    refused.undeliverable = {{sent_id, "message_too_large", "2000 bytes, over 1000"},
                             {sent_id, "message_too_large", "the same report twice"},
                             {MessageId{0x9, 0x9}, "no_route", "not ours: ignored"}};
    BatchEffects given_up = step_and_commit(std::move(refused));
    ASSERT_EQ(given_up.commit.dead_letters.size(), 1u);
    EXPECT_EQ(given_up.commit.dead_letters[0].reason, "message_too_large");
    EXPECT_EQ(given_up.commit.dead_letters[0].detail, "2000 bytes, over 1000");
    EXPECT_EQ(given_up.commit.dead_letters[0].raw, applied.commit.outbox[0].bytes);
    ASSERT_EQ(given_up.commit.outbox_settled.size(), 1u);
    EXPECT_EQ(given_up.commit.outbox_settled[0].outcome, OutboxOutcome::dead_lettered);
    EXPECT_EQ(kernel().unsettled_count(), 0u);
    EXPECT_TRUE(kernel().take_sends_due(10).empty()) << "a refused send is not retransmitted";
}

TEST_F(KernelTest, AMalformedDeliveryIsDeadLetteredAsMalformedFrameAndAcknowledged) {
    on_add_save_and_send();
    // Even bytes that would decode: the transport said it could not frame them.
    Delivery malformed = delivery(envelope(1), 7);
    malformed.malformed = "an id frame of 15 bytes (want 16)";
    BatchEffects effects = step_and_commit({{malformed, delivery(envelope(2), 8)}, {}, {}});
    EXPECT_EQ(calls_, 1);
    ASSERT_EQ(effects.commit.dead_letters.size(), 1u);
    EXPECT_EQ(effects.commit.dead_letters[0].reason, refusal::malformed_frame);
    EXPECT_EQ(effects.commit.dead_letters[0].detail, "an id frame of 15 bytes (want 16)");
    EXPECT_EQ(effects.commit.dead_letters[0].raw, malformed.bytes);
    EXPECT_EQ(effects.acks, (std::vector<DeliveryTag>{7, 8}));
    EXPECT_EQ(effects.commit.dedup.size(), 1u) << "only the well-framed input is remembered";
}

TEST_F(KernelTest, BackpressureDefersInputWithoutAcknowledgingIt) {
    options_.sends_per_step_max = 1;
    options_.outbox_unconfirmed_max = 2;
    on_add_save_and_send();
    BatchEffects effects =
        step_and_commit({{delivery(envelope(1), 1), delivery(envelope(2), 2), delivery(envelope(3), 3)}, {}, {}});
    EXPECT_EQ(effects.acks, (std::vector<DeliveryTag>{1, 2}));  // two sends may wait unconfirmed
    ASSERT_EQ(effects.deferred.size(), 1u);
    EXPECT_EQ(effects.deferred[0].tag, 3u);
    BatchEffects still = step({{effects.deferred[0]}, {}, {}});
    EXPECT_TRUE(still.acks.empty());  // still two unconfirmed sends: the input waits
    EXPECT_EQ(still.deferred.size(), 1u);
    const MessageId sent_id = effects.commit.outbox[0].id;
    BatchEffects drained = step({{effects.deferred[0]}, {sent_id}, {}});
    EXPECT_EQ(drained.acks, (std::vector<DeliveryTag>{3}));
}

TEST_F(KernelTest, OriginatedMessagesGetTimeOrderedIds) {
    StepInputs inputs;
    inputs.originated.push_back({Address::anycast("billing"), "charge", pack(9), {}});
    BatchEffects effects = step(std::move(inputs));
    ASSERT_EQ(effects.commit.outbox.size(), 1u);
    const OutboxRow& row = effects.commit.outbox[0];
    EXPECT_EQ(row.id.version(), 7);
    EXPECT_EQ(row.id.timestamp_ms(), start_ms);
    EXPECT_EQ(row.route, "b2");
    EXPECT_TRUE(effects.commit.dedup.empty());
    EXPECT_EQ(effects.trace[0].kind, TraceKind::originated);
}

TEST_F(KernelTest, StreamPositionsNeverPassAnInputStillWaiting) {
    handlers_["add"] = [](StepContext& step_context) {
        if (unpack<int>(step_context.message().body).value() == 2) throw std::runtime_error("not yet");
    };
    auto at = [&](std::uint64_t n, std::int64_t offset) {
        Delivery d = delivery(envelope(n), n);
        d.position = StreamPosition{"orders/0", offset};
        return d;
    };
    BatchEffects effects = step_and_commit({{at(1, 10), at(2, 11), at(3, 12)}, {}, {}});
    EXPECT_EQ(effects.commit.positions, (std::vector<ConsumedPosition>{{"orders/0", 11}}));
    BatchEffects later = step({{at(4, 13)}, {}, {}});
    EXPECT_EQ(later.commit.positions, (std::vector<ConsumedPosition>{{"orders/0", 11}}));
}

// A copy of an id in the same batch (Kafka: the same record produced twice, at two offsets) is
// one candidate; its offset is resolved with it, so a restart does not read the copy again.
TEST_F(KernelTest, ACopyInTheSameBatchMovesTheStreamPositionPastIt) {
    on_add_save_and_send();
    auto at = [&](std::uint64_t n, std::int64_t offset) {
        Delivery d = delivery(envelope(n), n * 100 + static_cast<std::uint64_t>(offset));
        d.position = StreamPosition{"orders/0", offset};
        return d;
    };
    BatchEffects effects = step_and_commit({{at(1, 10), at(1, 11)}, {}, {}});
    EXPECT_EQ(effects.acks.size(), 2u);
    EXPECT_EQ(effects.commit.positions, (std::vector<ConsumedPosition>{{"orders/0", 12}}));
}

TEST_F(KernelTest, AFailedStoreReadFailsTheWholeStep) {
    on_add_save_and_send();
    FailingReader reader{store_};
    reader.fail_dedup = true;
    EXPECT_EQ(kernel().step({{delivery(envelope(1), 1)}, {}, {}}, reader).status().code(), StatusCode::transient);
    reader.fail_dedup = false;
    reader.fail_state = true;
    Result<BatchEffects> failed = kernel().step({{delivery(envelope(1), 1)}, {}, {}}, reader);
    EXPECT_EQ(failed.status().code(), StatusCode::aborted);  // the batch runs again; input not refused
}

TEST_F(KernelTest, AHandlerThatSwallowsAFailedReadStillFailsTheStep) {
    handlers_["add"] = [](StepContext& step_context) {
        try {
            (void)step_context.load("x");
        } catch (...) {
        }
        step_context.save("y", {});
    };
    FailingReader reader{store_};
    reader.fail_state = true;
    EXPECT_FALSE(kernel().step({{delivery(envelope(1), 1)}, {}, {}}, reader).ok());
}

}  // namespace
}  // namespace choreo
