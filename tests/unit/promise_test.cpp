// Durable promise rules as pure functions (design §4.5).
#include <gtest/gtest.h>

#include "choreo/promise.h"

namespace choreo {
namespace {

constexpr TimeMs now_ms = 1'000'000;

PromiseSettle settle(PromiseState state, std::string_view value = "", TimeMs at_ms = now_ms) {
    return PromiseSettle{"p", state, bytes_of(value), at_ms};
}

TEST(PromiseTest, FirstSettleWinsSameIsANoOpConflictIsReported) {
    PromiseRow row = make_pending_promise("p", now_ms, 0);
    ASSERT_EQ(decide_settle(row, settle(PromiseState::resolved, "1"), now_ms), SettleDecision::apply);
    apply_settle(row, settle(PromiseState::resolved, "1"));
    EXPECT_EQ(row.state, PromiseState::resolved);
    EXPECT_EQ(row.value, bytes_of("1"));
    EXPECT_EQ(row.settled_at_ms, now_ms);
    EXPECT_EQ(decide_settle(row, settle(PromiseState::resolved, "1", now_ms + 5), now_ms + 5),
              SettleDecision::already_same);
    EXPECT_EQ(decide_settle(row, settle(PromiseState::resolved, "2"), now_ms), SettleDecision::already_settled);
    EXPECT_EQ(decide_settle(row, settle(PromiseState::rejected, "1"), now_ms), SettleDecision::already_settled);
    EXPECT_EQ(decide_settle(row, settle(PromiseState::canceled), now_ms), SettleDecision::already_settled);
}

TEST(PromiseTest, DeadlineTimesOutAPendingPromiseButAnEarlierSettleWins) {
    PromiseRow row = make_pending_promise("p", now_ms, now_ms + 100);
    EXPECT_EQ(effective_state(row, now_ms + 99), PromiseState::pending);
    EXPECT_EQ(decide_settle(row, settle(PromiseState::resolved, "x"), now_ms + 99), SettleDecision::apply);
    EXPECT_EQ(effective_state(row, now_ms + 100), PromiseState::timed_out);
    EXPECT_EQ(decide_settle(row, settle(PromiseState::resolved, "x"), now_ms + 100), SettleDecision::already_settled);
    EXPECT_EQ(decide_settle(row, settle(PromiseState::timed_out), now_ms + 100), SettleDecision::already_same);

    const PromiseSettle timeout = timeout_settle(row);
    EXPECT_EQ(timeout.state, PromiseState::timed_out);
    EXPECT_EQ(timeout.settled_at_ms, now_ms + 100);  // settled at the deadline, not when noticed
    apply_settle(row, timeout);
    EXPECT_EQ(decide_settle(row, settle(PromiseState::resolved, "late"), now_ms + 500),
              SettleDecision::already_settled);  // a reply after the timeout changes nothing
}

TEST(PromiseTest, ATimerResolvesAtItsDeadline) {
    PromiseRow timer = make_timer_promise("e.2", now_ms, now_ms + 60'000);
    EXPECT_TRUE(timer.timer);
    EXPECT_EQ(effective_state(timer, now_ms + 59'999), PromiseState::pending);
    EXPECT_EQ(effective_state(timer, now_ms + 60'000), PromiseState::resolved);
    const PromiseSettle fired = timeout_settle(timer);
    EXPECT_EQ(fired.state, PromiseState::resolved);
    EXPECT_EQ(fired.settled_at_ms, now_ms + 60'000);
    EXPECT_EQ(decide_settle(timer, fired, now_ms + 70'000), SettleDecision::already_same);  // fires once
}

TEST(PromiseTest, ResolvedBeforeTheDeadlineStaysResolved) {
    PromiseRow row = make_pending_promise("p", now_ms, now_ms + 100);
    apply_settle(row, settle(PromiseState::resolved, "v", now_ms + 50));
    EXPECT_EQ(effective_state(row, now_ms + 1000), PromiseState::resolved);
}

TEST(PromiseTest, ChildIdsAreDeterministicAndNameTheirExecution) {
    EXPECT_EQ(child_promise_id("order-7", 0), "order-7.0");
    EXPECT_EQ(child_promise_id("order-7.3", 12), "order-7.3.12");
    EXPECT_EQ(parent_execution_id("order-7.3.12"), "order-7.3");
    EXPECT_EQ(parent_execution_id("order-7.0"), "order-7");
    EXPECT_EQ(parent_execution_id("order-7"), std::nullopt);
    EXPECT_EQ(parent_execution_id("v1.x"), std::nullopt);  // a dot in a root id is not a child
    EXPECT_EQ(parent_execution_id(".3"), std::nullopt);
    EXPECT_EQ(parent_execution_id("a."), std::nullopt);
}

TEST(PromiseTest, PromiseIdsAreBounded) {
    EXPECT_TRUE(valid_promise_id("order-7.3"));
    EXPECT_FALSE(valid_promise_id(""));
    EXPECT_FALSE(valid_promise_id("has space"));
    EXPECT_FALSE(valid_promise_id(std::string(promise_id_bytes_max + 1, 'a')));
    EXPECT_TRUE(valid_promise_id(std::string(promise_id_bytes_max, 'a')));
}

TEST(PromiseTest, StateNames) {
    EXPECT_EQ(promise_state_name(PromiseState::timed_out), "timed_out");
    EXPECT_EQ(promise_state_name(PromiseState::pending), "pending");
}

TEST(PromiseDeathTest, SettlingASettledPromiseIsAProgrammerError) {
    PromiseRow row = make_pending_promise("p", now_ms, 0);
    apply_settle(row, settle(PromiseState::resolved));
    EXPECT_DEATH(apply_settle(row, settle(PromiseState::rejected)), "row.state == PromiseState::pending");
}

}  // namespace
}  // namespace choreo
