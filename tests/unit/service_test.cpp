// The runtime on the memory adapters: group commit, acks after commit, retransmission, crashes.
#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>

#include "choreo/codec.h"
#include "choreo/durable.h"
#include "choreo/durability/memory_store.h"
#include "choreo/service.h"
#include "choreo/transport/memory_transport.h"

namespace choreo {
namespace {

constexpr TimeMs start_ms = 1'700'000'000'000;

struct Deposit {
    std::string account;
    int amount = 0;
    MSGPACK_DEFINE_MAP(account, amount);
};

class ServiceTest : public ::testing::Test {
protected:
    ServiceTest() { start_service(); }

    void start_service() {
        service_.reset();
        transport_.reset();
        transport_ = std::make_unique<MemoryTransport>(network_, Address::unicast("bank", "1"));
        service_ = std::make_unique<Service>(options_, *transport_, store_, clock_, random_);
        service_->on("deposit", [this](Context& ctx, const Deposit& deposit) {
            handler_calls_++;
            if (fail_handler_) throw std::runtime_error("ledger offline");
            const std::string key = "balance/" + deposit.account;
            ctx.save(key, ctx.load<int>(key).value_or(0) + deposit.amount);
            ctx.send("audit", "deposited", deposit);
        });
    }
    // A crash: the service and its transport endpoint vanish; the store keeps what committed.
    void crash_and_restart() {
        store_.recover();
        start_service();
    }
    Envelope deposit(std::uint64_t n, int amount) {
        Envelope message;
        message.id = MessageId{0xABC, n};
        message.kind = "deposit";
        message.from = peer_.local_address();
        message.to = Address::anycast("bank");
        message.sent_at_ms = clock_.now_ms();
        message.body = pack(Deposit{"alice", amount});
        return message;
    }
    void peer_send(const Envelope& message) {
        const Bytes bytes = encode_envelope(message, {}).value();
        peer_send_bytes(message.id, bytes);
    }
    void peer_send_bytes(const MessageId& id, const Bytes& bytes) {
        const OutgoingMessage outgoing{id, Address::unicast("bank", "1"), "", "", bytes};
        ASSERT_EQ(peer_.send({&outgoing, 1}).value(), 1u);
    }
    Status run_until_idle() {
        for (int round = 0; round < 100; round++) {
            Result<bool> worked = service_->run_once(0);
            if (!worked.ok()) return worked.status();
            if (!*worked && network_.pending(transport_->local_address()) == 0) return Status{};
        }
        return Status{};
    }
    int balance() {
        std::optional<Bytes> stored = store_.load_state("balance/alice").value();
        return stored ? unpack<int>(*stored).value() : 0;
    }
    std::vector<MessageId> peer_confirmations() {
        ReceiveBatch batch;
        EXPECT_TRUE(peer_.receive(batch, 100, 0).ok());
        return batch.confirmed;
    }
    std::vector<DeadLetter> dead_letters() { return store_.dead_letters("", 100).value(); }

    ServiceOptions options_{.name = "bank", .instance = "1", .batch_delay_us_max = 0};
    ManualClock clock_{start_ms};
    SeededRandom random_{3};
    MemoryNetwork network_;
    MemoryTransport peer_{network_, Address::unicast("teller", "1")};
    MemoryTransport audit_{network_, Address::unicast("audit", "1")};
    MemoryStore store_;
    std::unique_ptr<MemoryTransport> transport_;
    std::unique_ptr<Service> service_;
    int handler_calls_ = 0;
    bool fail_handler_ = false;
};

TEST_F(ServiceTest, AppliesSendsAndConfirmsToTheSender) {
    peer_send(deposit(1, 10));
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(balance(), 10);
    EXPECT_EQ(peer_confirmations(), (std::vector<MessageId>{deposit(1, 10).id}));  // acked after commit
    ReceiveBatch audit;
    ASSERT_TRUE(audit_.receive(audit, 10, 0).ok());
    ASSERT_EQ(audit.deliveries.size(), 1u);
    const Envelope sent = decode_envelope(audit.deliveries[0].bytes, {}).value();
    EXPECT_EQ(sent.id, derive_id(deposit(1, 10).id, 0));
    EXPECT_EQ(sent.from, Address::unicast("bank", "1"));
    EXPECT_EQ(unpack<Deposit>(sent.body)->amount, 10);
}

TEST_F(ServiceTest, DuplicateDeliveryIsANoOp) {
    peer_send(deposit(1, 10));
    peer_send(deposit(1, 10));
    ASSERT_TRUE(run_until_idle().ok());
    peer_send(deposit(1, 10));  // and once more, in a later batch
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(handler_calls_, 1);
    EXPECT_EQ(balance(), 10);
    EXPECT_EQ(service_->stats().duplicates, 1u);  // the two copies in one batch ran as one
    EXPECT_EQ(peer_confirmations().size(), 3u);  // every copy acknowledged: the sender stops
}

TEST_F(ServiceTest, CrashBetweenCommitAndAckIsRedeliveredAsANoOp) {
    peer_send(deposit(1, 10));
    store_.inject_crash(MemoryStore::CrashPoint::after_commit);
    EXPECT_EQ(run_until_idle().code(), StatusCode::closed);  // the commit landed; the ack did not
    EXPECT_TRUE(peer_confirmations().empty());
    crash_and_restart();  // the unacknowledged delivery comes again
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(handler_calls_, 1);
    EXPECT_EQ(balance(), 10);
    EXPECT_EQ(service_->stats().duplicates, 1u);
    EXPECT_EQ(peer_confirmations().size(), 1u);
}

TEST_F(ServiceTest, CrashBeforeCommitReRunsAndAppliesOnce) {
    peer_send(deposit(1, 10));
    store_.inject_crash(MemoryStore::CrashPoint::before_commit);
    EXPECT_EQ(run_until_idle().code(), StatusCode::closed);
    crash_and_restart();
    EXPECT_EQ(balance(), 0);  // nothing of the crashed batch survived
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(handler_calls_, 2);  // ran twice, applied once
    EXPECT_EQ(balance(), 10);
    EXPECT_EQ(store_.dedup_size(), 1u);
}

TEST_F(ServiceTest, ReplayBeyondTheHorizonIsRefusedAfterPurge) {
    options_.retention.dedup_retention_ms = 60'000;
    options_.retention.purge_interval_ms = 1000;
    start_service();
    const Envelope first = deposit(1, 10);
    peer_send(first);
    ASSERT_TRUE(run_until_idle().ok());
    clock_.advance_ms(61'000);
    ASSERT_TRUE(run_until_idle().ok());  // the purge pass runs between batches
    EXPECT_EQ(store_.dedup_size(), 0u);
    EXPECT_GT(store_.dedup_horizon().value(), first.sent_at_ms);
    peer_confirmations();

    peer_send(first);  // a late replay of an id the table has forgotten
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(handler_calls_, 1);
    EXPECT_EQ(balance(), 10);
    ASSERT_EQ(dead_letters().size(), 1u);
    EXPECT_EQ(dead_letters()[0].reason, refusal::beyond_dedup_horizon);
    EXPECT_EQ(dead_letters()[0].raw, encode_envelope(first, {}).value());
    EXPECT_EQ(peer_confirmations().size(), 1u);  // acknowledged, so the sender stops retrying
}

TEST_F(ServiceTest, ThrowingHandlerRollsBackRetriesAndIsDeadLettered) {
    options_.kernel.handler_attempts_max = 3;
    start_service();
    fail_handler_ = true;
    peer_send(deposit(1, 10));
    for (int round = 0; round < 5; round++) {
        ASSERT_TRUE(run_until_idle().ok());
        clock_.advance_ms(options_.kernel.handler_retry_delay_ms_max);
    }
    EXPECT_EQ(handler_calls_, 3);
    EXPECT_EQ(balance(), 0);
    EXPECT_EQ(store_.outbox_size(), 0u);  // the send of every failed attempt was rolled back
    EXPECT_EQ(store_.dedup_size(), 0u);
    ASSERT_EQ(dead_letters().size(), 1u);
    EXPECT_EQ(dead_letters()[0].reason, refusal::handler_failed);
    EXPECT_NE(dead_letters()[0].detail.find("ledger offline"), std::string::npos);
    EXPECT_EQ(peer_confirmations().size(), 1u);
}

TEST_F(ServiceTest, RedriveAppliesADeadLetterOnceItsHandlerIsFixedAndDeletesTheRow) {
    options_.kernel.handler_attempts_max = 2;
    start_service();
    fail_handler_ = true;
    peer_send(deposit(1, 10));
    for (int round = 0; round < 3; round++) {
        ASSERT_TRUE(run_until_idle().ok());
        clock_.advance_ms(options_.kernel.handler_retry_delay_ms_max);
    }
    ASSERT_EQ(dead_letters().size(), 1u);
    const DeadLetter letter = dead_letters()[0];
    EXPECT_EQ(letter.key, deposit(1, 10).id.to_string());

    fail_handler_ = false;  // the fix is deployed
    ASSERT_TRUE(service_->redrive(letter.key).ok());
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(balance(), 10);
    EXPECT_TRUE(dead_letters().empty());
    EXPECT_EQ(service_->stats().redriven, 1u);
    EXPECT_EQ(store_.dedup_size(), 1u);  // applied under its own id: a late copy is a duplicate

    peer_send(deposit(1, 10));
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(balance(), 10);
    EXPECT_EQ(service_->redrive(letter.key).code(), StatusCode::not_found);
}

TEST_F(ServiceTest, RedriveThatFailsAgainKeepsTheRowWithOneMoreAttempt) {
    options_.kernel.handler_attempts_max = 1;
    start_service();
    fail_handler_ = true;
    peer_send(deposit(1, 10));
    ASSERT_TRUE(run_until_idle().ok());
    ASSERT_EQ(dead_letters().size(), 1u);
    const DeadLetter first = dead_letters()[0];

    clock_.advance_ms(5000);
    ASSERT_TRUE(service_->redrive(first.key).ok());
    ASSERT_TRUE(run_until_idle().ok());
    ASSERT_EQ(dead_letters().size(), 1u);
    const DeadLetter again = dead_letters()[0];
    EXPECT_EQ(again.attempts, first.attempts + 1);
    EXPECT_EQ(again.first_seen_ms, first.first_seen_ms);
    EXPECT_EQ(again.last_seen_ms, first.last_seen_ms + 5000);
    EXPECT_EQ(again.raw, first.raw);
    EXPECT_EQ(balance(), 0);
    EXPECT_EQ(service_->stats().redriven, 0u);
}

TEST_F(ServiceTest, RedriveRefusesWhatItCannotSendAgain) {
    EXPECT_EQ(service_->redrive("no-such-key").code(), StatusCode::not_found);
    options_.kernel.dead_letter_raw_bytes_max = 8;  // keeps only the start of a refused input
    start_service();
    Envelope unknown = deposit(1, 10);
    unknown.kind = "withdraw";  // no handler: unknown_kind
    peer_send(unknown);
    ASSERT_TRUE(run_until_idle().ok());
    ASSERT_EQ(dead_letters().size(), 1u);
    const Status refused = service_->redrive(dead_letters()[0].key);
    EXPECT_EQ(refused.code(), StatusCode::failed_precondition);
    EXPECT_EQ(refused.reason(), "not_redrivable");
    EXPECT_EQ(dead_letters().size(), 1u);  // still there: nothing is lost
}

TEST_F(ServiceTest, RedriveOfAMessageAlreadyAppliedOnlyRemovesTheRow) {
    peer_send(deposit(1, 10));
    ASSERT_TRUE(run_until_idle().ok());
    // A row for an id that was applied meanwhile (e.g. delivered again and applied after a fix).
    CommitBatch batch;
    const Bytes raw = encode_envelope(deposit(1, 10), {}).value();
    batch.dead_letters.push_back({deposit(1, 10).id.to_string(), "handler_failed", "", raw, raw.size(),
                                  clock_.now_ms(), clock_.now_ms(), 1});
    ASSERT_TRUE(store_.commit(batch).ok());
    ASSERT_TRUE(service_->redrive(deposit(1, 10).id.to_string()).ok());
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(handler_calls_, 1);
    EXPECT_EQ(balance(), 10);
    EXPECT_TRUE(dead_letters().empty());
}

// A refused durable function call is answered once: a redelivery of the same invoke, after the
// answer was confirmed, is refused again without a second answer under the same id (the answer's
// sent_at is stamped once, design §4.1). It cannot be redriven either.
TEST_F(ServiceTest, ARefusedInvokeIsAnsweredOnceAndNotRedriven) {
    Envelope invoke;
    invoke.id = MessageId{0xABC, 77};
    invoke.kind = std::string(invoke_kind);
    invoke.from = peer_.local_address();
    invoke.to = Address::anycast("bank");
    invoke.promise = "p1";
    invoke.sent_at_ms = clock_.now_ms();
    invoke.deadline_ms = clock_.now_ms() - 1;  // refused: deadline_exceeded
    invoke.body = encode_invoke({"f", {}, 0});
    auto answers = [&] {
        ReceiveBatch batch;
        EXPECT_TRUE(peer_.receive(batch, 100, 0).ok());
        std::vector<DeliveryTag> tags;
        for (const Delivery& delivery : batch.deliveries) tags.push_back(delivery.tag);
        EXPECT_TRUE(peer_.acknowledge(tags).ok());  // confirms the answer to the bank
        return batch.deliveries.size();
    };
    peer_send(invoke);
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(answers(), 1u);
    ASSERT_TRUE(run_until_idle().ok());  // the confirmation settles the answer's row
    const std::optional<OutboxRow> answer = store_.find_outbox(derive_id(invoke.id, 0)).value();
    ASSERT_TRUE(answer.has_value());
    EXPECT_TRUE(answer->settled);

    clock_.advance_ms(60'000);
    peer_send(invoke);  // the caller retransmits (its ack was lost)
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(answers(), 0u);
    ASSERT_EQ(dead_letters().size(), 1u);
    EXPECT_EQ(dead_letters()[0].attempts, 2u);
    const Status redriven = service_->redrive(dead_letters()[0].key);
    EXPECT_EQ(redriven.reason(), "not_redrivable");
}

TEST_F(ServiceTest, RedriveRefusesAMessageSentBeforeTheHorizon) {
    options_.retention.dedup_retention_ms = 60'000;
    options_.kernel.handler_attempts_max = 1;
    start_service();
    fail_handler_ = true;
    peer_send(deposit(1, 10));
    ASSERT_TRUE(run_until_idle().ok());
    ASSERT_EQ(dead_letters().size(), 1u);
    clock_.advance_ms(61'000);
    ASSERT_TRUE(run_until_idle().ok());  // the purge raises the horizon past the deposit
    fail_handler_ = false;
    const Status refused = service_->redrive(dead_letters()[0].key);
    EXPECT_EQ(refused.reason(), "not_redrivable");
    EXPECT_NE(refused.message().find("horizon"), std::string::npos);
    EXPECT_EQ(dead_letters()[0].reason, refusal::handler_failed);  // the original reason stays
}

TEST_F(ServiceTest, RedrivingTheSameKeyTwiceQueuesItOnce) {
    options_.kernel.handler_attempts_max = 1;
    options_.posted_max = 1;
    start_service();
    fail_handler_ = true;
    peer_send(deposit(1, 10));
    peer_send(deposit(2, 5));
    ASSERT_TRUE(run_until_idle().ok());
    ASSERT_EQ(dead_letters().size(), 2u);
    fail_handler_ = false;
    EXPECT_TRUE(service_->redrive(dead_letters()[0].key).ok());
    EXPECT_TRUE(service_->redrive(dead_letters()[0].key).ok());  // already on its way: a no-op
    EXPECT_EQ(service_->redrive(dead_letters()[1].key).code(), StatusCode::transient);  // posted_max
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(handler_calls_, 3);  // two failed deliveries, one redrive
    ASSERT_EQ(dead_letters().size(), 1u);
    EXPECT_TRUE(service_->redrive(dead_letters()[0].key).ok());  // room again after the commit
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_TRUE(dead_letters().empty());
    EXPECT_EQ(balance(), 15);
}

TEST_F(ServiceTest, HandlerThatRecoversIsAppliedOnce) {
    fail_handler_ = true;
    peer_send(deposit(1, 10));
    ASSERT_TRUE(run_until_idle().ok());
    fail_handler_ = false;
    clock_.advance_ms(options_.kernel.handler_retry_delay_ms_max);
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(handler_calls_, 2);
    EXPECT_EQ(balance(), 10);
    EXPECT_EQ(service_->retries_pending(), 0u);
}

TEST_F(ServiceTest, BadInputIsDeadLetteredAndTheServiceKeepsRunning) {
    Bytes garbage = bytes_of("\x81\xa1v\x01 not an envelope");
    peer_send_bytes(MessageId{1, 1}, garbage);
    Envelope wrong_body = deposit(2, 0);
    wrong_body.body = bytes_of("\xc1");
    peer_send(wrong_body);
    Envelope unknown = deposit(3, 0);
    unknown.kind = "withdraw";
    peer_send(unknown);
    peer_send(deposit(4, 7));
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(balance(), 7);
    std::vector<std::string> reasons;
    for (const DeadLetter& letter : dead_letters()) reasons.push_back(letter.reason);
    std::sort(reasons.begin(), reasons.end());
    EXPECT_EQ(reasons, (std::vector<std::string>{"body_decode_failed", "trailing_bytes", "unknown_kind"}));
}

TEST_F(ServiceTest, UnconfirmedSendsAreRetransmittedByteForByteAndSurviveARestart) {
    peer_send(deposit(1, 10));
    ASSERT_TRUE(run_until_idle().ok());
    ReceiveBatch first;
    ASSERT_TRUE(audit_.receive(first, 10, 0).ok());
    ASSERT_EQ(first.deliveries.size(), 1u);  // audit does not acknowledge it

    crash_and_restart();  // the outbox row is restored from the store and sent again
    ASSERT_TRUE(run_until_idle().ok());
    clock_.advance_ms(options_.kernel.send_retry_delay_ms_max);
    ASSERT_TRUE(run_until_idle().ok());
    ReceiveBatch again;
    ASSERT_TRUE(audit_.receive(again, 10, 0).ok());
    ASSERT_GE(again.deliveries.size(), 1u);
    for (const Delivery& delivery : again.deliveries) EXPECT_EQ(delivery.bytes, first.deliveries[0].bytes);

    std::vector<DeliveryTag> tags{first.deliveries[0].tag};
    for (const Delivery& delivery : again.deliveries) tags.push_back(delivery.tag);
    ASSERT_TRUE(audit_.acknowledge(tags).ok());
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(service_->unsettled_sends(), 0u);
    EXPECT_TRUE(store_.unsettled_outbox({}, 10).value().empty());
}

TEST_F(ServiceTest, TransientCommitFailuresAreRetried) {
    store_.fail_commits(2, transient_error("busy"));
    peer_send(deposit(1, 10));
    for (int round = 0; round < 5; round++) {
        ASSERT_TRUE(run_until_idle().ok());
        clock_.advance_ms(options_.commit_retry_delay_ms_max);
    }
    EXPECT_EQ(balance(), 10);
    EXPECT_EQ(service_->stats().commit_failures, 2u);
    EXPECT_EQ(handler_calls_, 3);
}

TEST_F(ServiceTest, AStoreThatCannotGoOnStopsTheService) {
    store_.fail_commits(1, precondition_error("disk_full"));
    peer_send(deposit(1, 10));
    Status ended = run_until_idle();
    EXPECT_EQ(ended.reason(), "disk_full");
    EXPECT_EQ(service_->run_once(0).status().reason(), "disk_full");  // it stays stopped
    EXPECT_TRUE(peer_confirmations().empty());
}

TEST_F(ServiceTest, GroupCommitBoundsBatches) {
    options_.batch_size_max = 16;
    start_service();
    for (std::uint64_t n = 1; n <= 100; n++) peer_send(deposit(n, 1));
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(balance(), 100);
    const ServiceStats stats = service_->stats();
    EXPECT_EQ(stats.applied, 100u);
    EXPECT_GE(stats.commits, 7u);   // 100 deliveries, at most 16 a commit
    EXPECT_LE(stats.commits, 20u);  // ... and not one commit each
}

TEST_F(ServiceTest, BackpressureLeavesInputInTheTransportUntilSendsAreConfirmed) {
    options_.kernel.sends_per_step_max = 1;
    options_.kernel.outbox_unconfirmed_max = 2;
    start_service();
    for (std::uint64_t n = 1; n <= 5; n++) peer_send(deposit(n, 1));
    ASSERT_TRUE(run_until_idle().ok());
    EXPECT_EQ(balance(), 2);  // two sends wait for audit's confirmation: no room for more
    EXPECT_EQ(service_->unsettled_sends(), 2u);
    EXPECT_FALSE(service_->run_once(0).value());  // waits; does not spin on the held input
    for (int round = 0; round < 10 && balance() < 5; round++) {
        ReceiveBatch audit;
        ASSERT_TRUE(audit_.receive(audit, 10, 0).ok());
        std::vector<DeliveryTag> tags;
        for (const Delivery& delivery : audit.deliveries) tags.push_back(delivery.tag);
        ASSERT_TRUE(audit_.acknowledge(tags).ok());  // confirmations make room
        ASSERT_TRUE(run_until_idle().ok());
    }
    EXPECT_EQ(balance(), 5);
    EXPECT_EQ(handler_calls_, 5);
}

TEST_F(ServiceTest, PostedMessagesAreCommittedThenSent) {
    ASSERT_TRUE(service_->post("audit", "opened", Deposit{"bob", 0}).ok());
    EXPECT_EQ(service_->post("not/an/address", "x", 1).code(), StatusCode::invalid_argument);
    ASSERT_TRUE(run_until_idle().ok());
    ReceiveBatch audit;
    ASSERT_TRUE(audit_.receive(audit, 10, 0).ok());
    ASSERT_EQ(audit.deliveries.size(), 1u);
    const Envelope sent = decode_envelope(audit.deliveries[0].bytes, {}).value();
    EXPECT_EQ(sent.kind, "opened");
    EXPECT_EQ(sent.id.version(), 7);
    EXPECT_TRUE(store_.find_outbox(sent.id).value().has_value());
}

// A destination that holds back (here: nobody receives at ghost/1 and its queue is full) does
// not hold back sends to other destinations, even when the due sends interleave the two.
TEST(ServiceSendTest, ADestinationAtItsBoundDoesNotHoldBackTheOthers) {
    MemoryNetwork network{MemoryNetwork::Options{.queue_messages_max = 25}};
    MemoryTransport transport{network, Address::unicast("bank", "1")};
    MemoryTransport audit{network, Address::unicast("audit", "1")};
    MemoryStore store;
    ManualClock clock{start_ms};  // never advances: a refused send is not offered again by time
    SeededRandom random{5};
    Service service{{.name = "bank", .instance = "1", .batch_delay_us_max = 0}, transport, store, clock, random};
    for (int index = 0; index < 20; index++) {  // ghost's 26th send comes before audit's 14th
        ASSERT_TRUE(service.post("ghost/1", "note", 2 * index).ok());
        ASSERT_TRUE(service.post("audit/1", "note", index).ok());
        ASSERT_TRUE(service.post("ghost/1", "note", 2 * index + 1).ok());
    }
    std::size_t at_audit = 0;
    for (int round = 0; round < 20; round++) {  // audit takes what arrives and acknowledges it
        ASSERT_TRUE(service.run_once(0).ok());
        ReceiveBatch batch;
        ASSERT_TRUE(audit.receive(batch, 100, 0).ok());
        std::vector<DeliveryTag> tags;
        for (const Delivery& delivery : batch.deliveries) tags.push_back(delivery.tag);
        ASSERT_TRUE(audit.acknowledge(tags).ok());
        at_audit += batch.deliveries.size();
    }
    EXPECT_EQ(at_audit, 20u) << "sends to audit waited behind ghost's";
    EXPECT_EQ(network.pending(Address::unicast("ghost", "1")), 25u);
    EXPECT_EQ(service.unsettled_sends(), 40u) << "ghost's 40 wait for confirmation; audit's are settled";
}

TEST_F(ServiceTest, TransportOnAnotherAddressIsRefusedAtStart) {
    MemoryTransport elsewhere{network_, Address::unicast("bank", "2")};
    Service wrong{options_, elsewhere, store_, clock_, random_};
    EXPECT_EQ(wrong.run_once(0).status().reason(), "address_mismatch");
}

TEST_F(ServiceTest, StopFinishesTheBatchInFlightAndRunReturns) {
    SystemClock clock;
    MemoryTransport transport{network_, Address::unicast("bank", "2")};
    Service running{{.name = "bank", .instance = "2", .idle_wait_us_max = 5'000'000}, transport, store_, clock, random_};
    std::atomic<bool> in_handler{false};
    std::atomic<bool> release{false};
    running.on("deposit", [&](Context& ctx, const Deposit& deposit_body) {
        in_handler = true;
        while (!release.load()) std::this_thread::yield();
        ctx.save("stopped-deposit", deposit_body.amount);
    });
    std::thread runner{[&] { EXPECT_TRUE(running.run().ok()); }};
    Envelope message = deposit(1, 5);
    message.to = Address::unicast("bank", "2");
    const Bytes bytes = encode_envelope(message, {}).value();
    const OutgoingMessage outgoing{message.id, message.to, "", "", bytes};
    ASSERT_EQ(peer_.send({&outgoing, 1}).value(), 1u);
    while (!in_handler.load()) std::this_thread::yield();
    running.stop();  // while the batch is in flight
    release = true;
    runner.join();
    // The batch in flight was finished: committed and acknowledged.
    EXPECT_EQ(unpack<int>(*store_.load_state("stopped-deposit").value()).value(), 5);
    ReceiveBatch confirmations;
    ASSERT_TRUE(peer_.receive(confirmations, 10, 1'000'000).ok());
    EXPECT_EQ(confirmations.confirmed, (std::vector<MessageId>{message.id}));
    EXPECT_EQ(running.post("audit", "late", 1).code(), StatusCode::closed);
}

TEST_F(ServiceTest, StopWakesAnIdleService) {
    SystemClock clock;
    MemoryTransport transport{network_, Address::unicast("bank", "3")};
    Service idle{{.name = "bank", .instance = "3", .idle_wait_us_max = 60'000'000}, transport, store_, clock, random_};
    std::thread runner{[&] { EXPECT_TRUE(idle.run().ok()); }};
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it block in receive
    idle.stop();
    runner.join();  // returns long before the 60 s idle wait
}

}  // namespace
}  // namespace choreo
