// tests/conformance/transport_conformance.h — the one suite every Transport adapter passes.
//
// Watermill-style: the suite is written once against the Transport interface; each adapter's
// test file supplies a harness that opens endpoints, declares what the adapter cannot do through
// Transport::Features (tests for a missing feature are skipped), and instantiates the suite.
// Every test uses fresh service names, so a broker or a network that outlives one test (Kafka
// topics, ZeroMQ endpoints) never sees traffic from another test or an earlier run.
//
// An adapter instantiates it in its own test file, which links the OBJECT library
// `choreo_transport_conformance`:
//
//   class ZmqHarness final : public choreo::conformance::TransportHarness {
//    public:
//     choreo::Transport::Features features() const override { return {.ordering = true}; }
//     std::unique_ptr<choreo::Transport> open(const choreo::Address& self) override {
//       return std::make_unique<choreo::ZmqTransport>(directory_, self);
//     }
//     std::chrono::milliseconds patience() const override { return std::chrono::seconds{30}; }
//     // Kafka only: confirms when the broker stored a message, not when a receiver acknowledged.
//     // bool confirms_on_acknowledge() const override { return false; }
//    private:
//     ZmqDirectory directory_;   // whatever the endpoints of one test share
//   };
//   using choreo::conformance::TransportConformance;   // the macro wants a plain name
//   INSTANTIATE_TEST_SUITE_P(Zmq, TransportConformance,
//       ::testing::Values(choreo::conformance::TransportHarnessFactory{
//           "zmq", [] { return std::make_unique<ZmqHarness>(); }}),
//       choreo::conformance::harness_name);
//
// Waiting for what must happen is always polling with a deadline (patience(), 10 s unless the
// harness says more), never a fixed sleep, because real sockets and brokers are slow and noisy.
// Fixed short waits appear only to check that something does NOT happen (receive_for).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "choreo/address.h"
#include "choreo/bytes.h"
#include "choreo/ids.h"
#include "choreo/transport.h"

namespace choreo::conformance {

// One per test: owns whatever the endpoints of that test share (a network, a broker client).
// It is destroyed after every endpoint it opened.
class TransportHarness {
public:
    virtual ~TransportHarness() = default;
    virtual Transport::Features features() const = 0;
    // Opens an endpoint receiving on `self` (unicast "service/instance"). Opening the same address
    // again after the previous endpoint was closed/destroyed models a restart.
    virtual std::unique_ptr<Transport> open(const Address& self) = 0;

    // How long a test waits for something that must happen (a delivery, a confirmation) before
    // it fails. Adapters with slow start-up (consumer-group rebalances) may ask for more.
    virtual std::chrono::milliseconds patience() const { return std::chrono::seconds{10}; }
    // True for brokerless transports: a send is confirmed only after the receiver acknowledged
    // it. Broker transports (Kafka) confirm once the broker stored the message, possibly before
    // any receiver saw it, and return false here. (transport.h, ReceiveBatch::confirmed.)
    virtual bool confirms_on_acknowledge() const { return true; }
};

struct TransportHarnessFactory {
    std::string name;  // letters, digits and '_' only: it becomes part of the test name
    std::function<std::unique_ptr<TransportHarness>()> make;
};

// Prints a factory as its name in test output (found by argument-dependent lookup).
void PrintTo(const TransportHarnessFactory& factory, std::ostream* out);

// The name generator for INSTANTIATE_TEST_SUITE_P: the factory's name.
std::string harness_name(const ::testing::TestParamInfo<TransportHarnessFactory>& info);

using Deadline = std::chrono::steady_clock::time_point;

inline Deadline deadline_after(std::chrono::milliseconds wait) { return std::chrono::steady_clock::now() + wait; }

// A service name no other test uses, in this process or an earlier run: the running test's
// name, the process id, the process start time and a process-wide counter. Thread-safe.
std::string fresh_service_name();
// A unicast address `fresh_service_name()/instance`: "a fresh address per test".
Address fresh_address(std::string_view instance = "1");
// A new UUIDv7 message id. Thread-safe.
MessageId fresh_message_id();
// A real encoded envelope (choreo/codec.h) with this id, so adapters that look inside see valid ones.
Bytes envelope_bytes(const MessageId& id, const Address& from, const Address& to,
                     std::string_view body = "conformance");

// Messages ready to send, each with fresh id and a real encoded envelope.
struct Outbox {
    std::vector<MessageId> ids;
    std::vector<Bytes> bytes;               // what `messages` borrow: never grow it
    std::vector<OutgoingMessage> messages;  // messages[i] carries ids[i] and bytes[i]
};
// `count` messages from `from` to `to`; `route` as route(to) returned (anycast only); one
// partition `key` for all, so broker transports keep them in one ordered stream.
Outbox make_outbox(std::size_t count, const Address& from, const Address& to,
                   const std::string& route = {}, const std::string& key = "conformance");

// Everything one endpoint received over one or more polls, in arrival order.
struct Received {
    std::vector<Delivery> deliveries;
    std::vector<MessageId> delivered_order;            // envelope id of each delivery
    std::map<MessageId, std::size_t> delivered_count;  // how often each id was delivered
    std::map<MessageId, std::size_t> confirmed_count;  // how often each id was confirmed
    std::size_t polls = 0;

    std::size_t delivered(const MessageId& id) const;
    std::size_t confirmed(const MessageId& id) const;
    std::vector<DeliveryTag> tags() const;
};

struct PollOptions {
    std::size_t deliveries_max = 256;  // handed to every receive call
    bool acknowledge = false;          // acknowledge each batch right after receiving it
    std::chrono::milliseconds receive_timeout{50};
};

// One receive call with `options`, folded into `received`. Records a test failure and returns
// the status when receive fails; checks that no more than deliveries_max came back.
Status receive_once(Transport& transport, Received& received, const PollOptions& options = {});

// Polls (receive with options.receive_timeout) until done(received) holds or `deadline` passes.
// Returns whether done held. A failing receive records a test failure and stops the loop.
bool receive_until(Transport& transport, Received& received,
                   const std::function<bool(const Received&)>& done, Deadline deadline,
                   const PollOptions& options = {});

// Polls for `duration` whatever arrives: for checking that something does NOT arrive. Tests use
// it only after the positive event it guards was observed (or for the brief's "short receive"),
// never as a sleep that makes a positive check pass.
void receive_for(Transport& transport, Received& received, std::chrono::milliseconds duration,
                 const PollOptions& options = {});

// Offers `batch` until every message is accepted or the deadline passes (backpressure makes
// send accept fewer; in between it waits 10 ms for receivers to drain). Returns how many were
// accepted; records a test failure if send failed.
std::size_t send_all(Transport& transport, std::span<const OutgoingMessage> batch, Deadline deadline);

// The envelope id inside a delivery's bytes (the suite only sends encoded envelopes).
MessageId envelope_id_of(const Delivery& delivery);

// The suite. Tests for a feature the harness lacks are skipped.
class TransportConformance : public ::testing::TestWithParam<TransportHarnessFactory> {
protected:
    void SetUp() override;
    void TearDown() override;

    TransportHarness& harness() { return *harness_; }
    Transport::Features features() const { return harness_->features(); }
    // Opens through the harness and checks the endpoint reports `self` as its address.
    std::unique_ptr<Transport> open(const Address& self);
    Deadline patient_deadline() const { return deadline_after(harness_->patience()); }

    // Sends one fresh message from `from` to `to`, checks it arrives intact, acknowledges it and
    // checks the sender gets the confirmation. Use with ASSERT_NO_FATAL_FAILURE.
    void expect_round_trip(Transport& from, Transport& to, Received* at_to = nullptr);

private:
    std::unique_ptr<TransportHarness> harness_;
};

}  // namespace choreo::conformance
