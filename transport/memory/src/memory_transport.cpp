#include "choreo/transport/memory_transport.h"

#include <algorithm>
#include <chrono>

namespace choreo {

std::size_t MemoryNetwork::pending(const Address& address) const {
    std::lock_guard lock{mutex_};
    auto mailbox = mailboxes_.find(address.to_string());
    if (mailbox == mailboxes_.end()) return 0;
    return mailbox->second.queued.size() + mailbox->second.in_flight.size();
}

MemoryTransport::MemoryTransport(MemoryNetwork& network, Address self)
    : network_(network), self_(std::move(self)), key_(self_.to_string()) {
    CHOREO_ASSERT(self_.is_unicast());
    std::lock_guard lock{network_.mutex_};
    MemoryNetwork::Mailbox& mailbox = network_.mailboxes_[key_];
    CHOREO_ASSERT(!mailbox.attached);  // one open endpoint per address
    mailbox.attached = true;
    std::vector<std::string>& instances = network_.instances_[self_.service()];
    if (std::find(instances.begin(), instances.end(), self_.instance()) == instances.end()) {
        instances.push_back(self_.instance());
    }
    // The first instance of a service takes the anycast sends that waited for one; from now on
    // unpinned sends go to it too, so every copy of one id meets the same instance (design §4.6).
    if (instances.front() == self_.instance()) {
        auto unpinned = network_.unpinned_.find(self_.service());
        if (unpinned != network_.unpinned_.end()) {
            for (MemoryNetwork::Parcel& parcel : unpinned->second) mailbox.queued.push_back(std::move(parcel));
            network_.unpinned_.erase(unpinned);
        }
    }
    CHOREO_ASSERT(!network_.unpinned_.contains(self_.service()));
}

MemoryTransport::~MemoryTransport() { close(); }

std::string MemoryTransport::route(const Address& to) {
    CHOREO_ASSERT(!to.is_unicast());
    std::lock_guard lock{network_.mutex_};
    auto instances = network_.instances_.find(to.service());
    if (instances == network_.instances_.end() || instances->second.empty()) return {};
    std::size_t& next = network_.next_instance_[to.service()];
    const std::string& chosen = instances->second[next % instances->second.size()];
    next++;
    return chosen;
}

Result<std::size_t> MemoryTransport::send(std::span<const OutgoingMessage> batch) {
    std::lock_guard lock{network_.mutex_};
    if (closed_) return closed_error();
    std::size_t accepted = 0;
    for (const OutgoingMessage& message : batch) {
        CHOREO_ASSERT(!message.to.empty());
        std::deque<MemoryNetwork::Parcel>* queue = nullptr;
        std::size_t in_flight = 0;  // delivered but unacknowledged count against the bound too
        auto mailbox_of = [&](const std::string& address) {
            MemoryNetwork::Mailbox& mailbox = network_.mailboxes_[address];
            in_flight = mailbox.in_flight.size();
            return &mailbox.queued;
        };
        if (message.to.is_unicast()) {
            queue = mailbox_of(message.to.to_string());
        } else if (!message.route.empty()) {
            queue = mailbox_of(message.to.service() + "/" + message.route);
        } else if (auto instances = network_.instances_.find(message.to.service());
                   instances != network_.instances_.end() && !instances->second.empty()) {
            // Unpinned (its route was chosen before any instance attached): the first instance.
            queue = mailbox_of(message.to.service() + "/" + instances->second.front());
        } else {
            queue = &network_.unpinned_[message.to.service()];
        }
        if (queue->size() + in_flight >= network_.options_.queue_messages_max) break;  // backpressure
        queue->push_back({message.id, self_, Bytes(message.bytes.begin(), message.bytes.end())});
        accepted++;
    }
    network_.changed_.notify_all();
    return accepted;
}

bool MemoryTransport::ready_locked(bool want_deliveries) const {
    if (closed_) return true;
    const MemoryNetwork::Mailbox& mailbox = network_.mailboxes_.at(key_);
    if (mailbox.wake || !mailbox.confirmations.empty()) return true;
    if (!want_deliveries) return false;
    return !mailbox.queued.empty();
}

void MemoryTransport::take_locked(ReceiveBatch& out, std::size_t deliveries_max) {
    MemoryNetwork::Mailbox& mailbox = network_.mailboxes_.at(key_);
    mailbox.wake = false;
    while (!mailbox.queued.empty() && out.deliveries.size() < deliveries_max) {
        const DeliveryTag tag = network_.next_tag_++;
        out.deliveries.push_back({tag, mailbox.queued.front().bytes, std::nullopt});
        mailbox.in_flight.emplace(tag, std::move(mailbox.queued.front()));
        mailbox.queued.pop_front();
    }
    while (!mailbox.confirmations.empty()) {
        out.confirmed.push_back(mailbox.confirmations.front());
        mailbox.confirmations.pop_front();
    }
}

Status MemoryTransport::receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us) {
    CHOREO_ASSERT(timeout_us >= 0);
    std::unique_lock lock{network_.mutex_};
    const bool want_deliveries = deliveries_max > 0;
    if (!ready_locked(want_deliveries) && timeout_us > 0) {
        network_.changed_.wait_for(lock, std::chrono::microseconds(timeout_us),
                                   [&] { return ready_locked(want_deliveries); });
    }
    if (closed_) return closed_error();
    take_locked(out, deliveries_max);
    return Status{};
}

Status MemoryTransport::acknowledge(std::span<const DeliveryTag> tags) {
    std::lock_guard lock{network_.mutex_};
    if (closed_) return closed_error();
    MemoryNetwork::Mailbox& mailbox = network_.mailboxes_.at(key_);
    for (DeliveryTag tag : tags) {
        auto delivered = mailbox.in_flight.find(tag);
        if (delivered == mailbox.in_flight.end()) continue;  // unknown or already acknowledged
        const MemoryNetwork::Parcel& parcel = delivered->second;
        if (!parcel.from.empty() && parcel.from.is_unicast()) {
            network_.mailboxes_[parcel.from.to_string()].confirmations.push_back(parcel.id);
        }
        mailbox.in_flight.erase(delivered);
    }
    network_.changed_.notify_all();
    return Status{};
}

void MemoryTransport::wake() {
    std::lock_guard lock{network_.mutex_};
    network_.mailboxes_.at(key_).wake = true;
    network_.changed_.notify_all();
}

void MemoryTransport::close() {
    std::lock_guard lock{network_.mutex_};
    if (closed_) return;
    closed_ = true;
    MemoryNetwork::Mailbox& mailbox = network_.mailboxes_.at(key_);
    // Unacknowledged deliveries go back to the front, in their original order, for redelivery.
    for (auto delivered = mailbox.in_flight.rbegin(); delivered != mailbox.in_flight.rend(); ++delivered) {
        mailbox.queued.push_front(std::move(delivered->second));
    }
    mailbox.in_flight.clear();
    mailbox.attached = false;
    network_.changed_.notify_all();
}

}  // namespace choreo
