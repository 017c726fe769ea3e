#include "choreo/transport/sim_transport.h"

#include <algorithm>
#include <chrono>

namespace choreo {

// ---- SimNetwork ---------------------------------------------------------------------------

SimNetwork::SimNetwork(const Clock& clock, Random& random, Options options)
    : clock_(clock), random_(random), options_(options) {
    CHOREO_ASSERT(options_.queue_messages_max > 0);
}

void SimNetwork::set_faults(const SimFaults& faults) {
    CHOREO_ASSERT(faults.drop_per_mille <= 1000 && faults.duplicate_per_mille <= 1000);
    CHOREO_ASSERT(faults.ack_drop_per_mille <= 1000);
    CHOREO_ASSERT(faults.delay_ms_min >= 0 && faults.delay_ms_min <= faults.delay_ms_max);
    std::lock_guard lock{mutex_};
    faults_ = faults;
}

SimFaults SimNetwork::faults() const {
    std::lock_guard lock{mutex_};
    return faults_;
}

void SimNetwork::partition(std::string_view service_a, std::string_view service_b) {
    std::lock_guard lock{mutex_};
    partitions_.emplace(std::string(service_a), std::string(service_b));
    partitions_.emplace(std::string(service_b), std::string(service_a));
}

void SimNetwork::heal() {
    std::lock_guard lock{mutex_};
    partitions_.clear();
}

bool SimNetwork::cut(const std::string& service_a, const std::string& service_b) const {
    return !partitions_.empty() && partitions_.contains({service_a, service_b});
}

bool SimNetwork::chance_locked(std::uint32_t per_mille) {
    if (per_mille == 0) return false;  // no draw: a fault-free run draws nothing here
    return random_.chance(per_mille, 1000);
}

TimeMs SimNetwork::delay_locked() {
    const TimeMs span = faults_.delay_ms_max - faults_.delay_ms_min;
    if (span == 0) return faults_.delay_ms_min;
    return faults_.delay_ms_min + static_cast<TimeMs>(random_.below(static_cast<std::uint64_t>(span) + 1));
}

void SimNetwork::attach_locked(const Address& self) {
    Mailbox& mailbox = mailboxes_[self.to_string()];
    CHOREO_ASSERT(!mailbox.attached);  // one open endpoint per address
    mailbox.attached = true;
    mailbox.wake = false;
    std::vector<std::string>& instances = instances_[self.service()];
    if (std::find(instances.begin(), instances.end(), self.instance()) == instances.end()) {
        instances.push_back(self.instance());
    }
    auto waiting = unpinned_.find(self.service());
    if (waiting == unpinned_.end()) return;
    for (Parcel& parcel : waiting->second) post_locked(self.to_string(), std::move(parcel));
    unpinned_.erase(waiting);
}

// The mailbox a send goes to: its unicast address, its pinned instance, or the first instance
// that ever joined the service (empty: no instance yet, the copy waits in unpinned_).
std::string SimNetwork::destination_locked(const OutgoingMessage& message) {
    if (message.to.is_unicast()) return message.to.to_string();
    if (!message.route.empty()) return Address::unicast(message.to.service(), message.route).to_string();
    auto instances = instances_.find(message.to.service());
    if (instances == instances_.end() || instances->second.empty()) return {};
    return Address::unicast(message.to.service(), instances->second.front()).to_string();
}

void SimNetwork::post_locked(const std::string& address, Parcel parcel) {
    Mailbox& mailbox = mailboxes_[address];
    const auto key = std::make_pair(parcel.due_ms, parcel.sequence);
    mailbox.queued.emplace(key, std::move(parcel));
    changed_.notify_all();
}

void SimNetwork::confirm_locked(const Address& to, const MessageId& id, const std::string& from_service) {
    if (to.empty()) return;  // an anonymous sender gets no confirmation
    if (cut(from_service, to.service())) {
        stats_.partitioned++;
        return;
    }
    if (chance_locked(faults_.ack_drop_per_mille)) {
        stats_.acks_dropped++;
        return;
    }
    Confirmation confirmation{clock_.now_ms() + delay_locked(), next_sequence_++, id};
    Mailbox& mailbox = mailboxes_[to.to_string()];
    mailbox.confirmations.emplace(std::make_pair(confirmation.due_ms, confirmation.sequence), confirmation);
    changed_.notify_all();
}

std::size_t SimNetwork::replay_old(std::size_t count) {
    std::lock_guard lock{mutex_};
    const std::size_t oldest_half = delivered_.size() / 2;
    if (oldest_half == 0) return 0;
    std::size_t replayed = 0;
    for (; replayed < count; replayed++) {
        const auto& [address, original] = delivered_[random_.below(oldest_half)];
        Parcel copy = original;
        copy.due_ms = clock_.now_ms() + delay_locked();
        copy.sequence = next_sequence_++;
        const std::string destination = address;
        post_locked(destination, std::move(copy));
        stats_.replayed++;
    }
    return replayed;
}

std::optional<TimeMs> SimNetwork::next_due_ms() const {
    std::lock_guard lock{mutex_};
    std::optional<TimeMs> earliest;
    auto consider = [&](TimeMs due) { earliest = earliest ? std::min(*earliest, due) : due; };
    for (const auto& [address, mailbox] : mailboxes_) {
        if (!mailbox.attached) continue;  // nobody can take it before someone attaches
        if (!mailbox.queued.empty()) consider(mailbox.queued.begin()->first.first);
        if (!mailbox.confirmations.empty()) consider(mailbox.confirmations.begin()->first.first);
    }
    return earliest;
}

std::size_t SimNetwork::in_flight() const {
    std::lock_guard lock{mutex_};
    std::size_t count = 0;
    for (const auto& [address, mailbox] : mailboxes_) count += mailbox.queued.size() + mailbox.in_flight.size();
    for (const auto& [service, parcels] : unpinned_) count += parcels.size();
    return count;
}

SimNetworkStats SimNetwork::stats() const {
    std::lock_guard lock{mutex_};
    return stats_;
}

// ---- SimTransport -------------------------------------------------------------------------

SimTransport::SimTransport(SimNetwork& network, Address self)
    : network_(network), self_(std::move(self)), key_(self_.to_string()) {
    CHOREO_ASSERT(self_.is_unicast());
    std::lock_guard lock{network_.mutex_};
    network_.attach_locked(self_);
}

SimTransport::~SimTransport() { close(); }

std::string SimTransport::route(const Address& to) {
    CHOREO_ASSERT(!to.is_unicast());
    std::lock_guard lock{network_.mutex_};
    auto instances = network_.instances_.find(to.service());
    if (instances == network_.instances_.end() || instances->second.empty()) return {};
    std::size_t& next = network_.next_instance_[to.service()];
    const std::string& chosen = instances->second[next % instances->second.size()];
    next++;
    return chosen;
}

Result<std::size_t> SimTransport::send(std::span<const OutgoingMessage> batch) {
    std::lock_guard lock{network_.mutex_};
    if (closed_) return closed_error("closed", "send on a closed endpoint");
    std::size_t accepted = 0;
    for (const OutgoingMessage& message : batch) {
        const std::string destination = network_.destination_locked(message);
        if (!destination.empty()) {
            const SimNetwork::Mailbox& mailbox = network_.mailboxes_[destination];
            if (mailbox.queued.size() + mailbox.in_flight.size() >= network_.options_.queue_messages_max) break;
        }
        accepted++;
        network_.stats_.sent++;
        if (network_.cut(self_.service(), message.to.service())) {
            network_.stats_.partitioned++;
            continue;
        }
        const int copies = network_.chance_locked(network_.faults_.duplicate_per_mille) ? 2 : 1;
        if (copies == 2) network_.stats_.duplicated++;
        for (int copy = 0; copy < copies; copy++) {
            if (network_.chance_locked(network_.faults_.drop_per_mille)) {
                network_.stats_.dropped++;
                continue;
            }
            SimNetwork::Parcel parcel{network_.clock_.now_ms() + network_.delay_locked(), network_.next_sequence_++,
                                      message.id, self_, Bytes(message.bytes.begin(), message.bytes.end())};
            if (destination.empty()) {
                network_.unpinned_[message.to.service()].push_back(std::move(parcel));
            } else {
                network_.post_locked(destination, std::move(parcel));
            }
        }
    }
    return accepted;
}

bool SimTransport::ready_locked(bool want_deliveries) const {
    const SimNetwork::Mailbox& mailbox = network_.mailboxes_.at(key_);
    const TimeMs now_ms = network_.clock_.now_ms();
    if (!mailbox.confirmations.empty() && mailbox.confirmations.begin()->first.first <= now_ms) return true;
    return want_deliveries && !mailbox.queued.empty() && mailbox.queued.begin()->first.first <= now_ms;
}

void SimTransport::take_locked(ReceiveBatch& out, std::size_t deliveries_max) {
    SimNetwork::Mailbox& mailbox = network_.mailboxes_.at(key_);
    const TimeMs now_ms = network_.clock_.now_ms();
    while (!mailbox.confirmations.empty() && mailbox.confirmations.begin()->first.first <= now_ms) {
        out.confirmed.push_back(mailbox.confirmations.begin()->second.id);
        mailbox.confirmations.erase(mailbox.confirmations.begin());
    }
    std::size_t taken = 0;
    while (taken < deliveries_max && !mailbox.queued.empty() && mailbox.queued.begin()->first.first <= now_ms) {
        SimNetwork::Parcel parcel = std::move(mailbox.queued.begin()->second);
        mailbox.queued.erase(mailbox.queued.begin());
        const DeliveryTag tag = network_.next_tag_++;
        out.deliveries.push_back({tag, parcel.bytes, std::nullopt});
        if (network_.delivered_.size() < network_.options_.replay_history_max) {
            network_.delivered_.emplace_back(key_, parcel);
        }
        network_.stats_.delivered++;
        mailbox.in_flight.emplace(tag, std::move(parcel));
        taken++;
    }
}

Status SimTransport::receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us) {
    std::unique_lock lock{network_.mutex_};
    if (closed_) return closed_error("closed", "receive on a closed endpoint");
    SimNetwork::Mailbox& mailbox = network_.mailboxes_.at(key_);
    if (timeout_us > 0 && !ready_locked(deliveries_max > 0)) {
        // Real time, for threads (the conformance suite); a simulation always polls.
        network_.changed_.wait_for(lock, std::chrono::microseconds(timeout_us),
                                   [&] { return closed_ || mailbox.wake || ready_locked(deliveries_max > 0); });
    }
    if (closed_) return closed_error("closed", "endpoint closed while receiving");
    mailbox.wake = false;
    take_locked(out, deliveries_max);
    return Status{};
}

Status SimTransport::acknowledge(std::span<const DeliveryTag> tags) {
    std::lock_guard lock{network_.mutex_};
    if (closed_) return closed_error("closed", "acknowledge on a closed endpoint");
    SimNetwork::Mailbox& mailbox = network_.mailboxes_.at(key_);
    for (DeliveryTag tag : tags) {
        auto found = mailbox.in_flight.find(tag);
        if (found == mailbox.in_flight.end()) continue;  // unknown or already acknowledged
        network_.confirm_locked(found->second.from, found->second.id, self_.service());
        mailbox.in_flight.erase(found);
    }
    return Status{};
}

void SimTransport::wake() {
    std::lock_guard lock{network_.mutex_};
    network_.mailboxes_.at(key_).wake = true;
    network_.changed_.notify_all();
}

void SimTransport::close() {
    std::lock_guard lock{network_.mutex_};
    if (closed_) return;
    closed_ = true;
    SimNetwork::Mailbox& mailbox = network_.mailboxes_.at(key_);
    mailbox.attached = false;
    // Unacknowledged deliveries come again to the next endpoint at this address, due at once.
    for (auto& [tag, parcel] : mailbox.in_flight) {
        parcel.due_ms = network_.clock_.now_ms();
        parcel.sequence = network_.next_sequence_++;
        const auto key = std::make_pair(parcel.due_ms, parcel.sequence);
        mailbox.queued.emplace(key, std::move(parcel));
        network_.stats_.redelivered++;
    }
    mailbox.in_flight.clear();
    mailbox.confirmations.clear();  // confirmations for a dead process are lost with it
    network_.changed_.notify_all();
}

}  // namespace choreo
