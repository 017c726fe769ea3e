#include "choreo/step_workers.h"

namespace choreo {
namespace {
StepResult run_step(StepDispatch& dispatch) {
    return StepResult{std::move(dispatch.execution_id), dispatch.position, dispatch.callable()};
}
}  // namespace

StepWorkers::StepWorkers(std::size_t threads, OnDone on_done) : on_done_(std::move(on_done)) {
    CHOREO_ASSERT(on_done_);
    for (std::size_t index = 0; index < threads; index++) threads_.emplace_back([this] { work(); });
}

StepWorkers::~StepWorkers() {
    {
        std::lock_guard lock{mutex_};
        stopping_ = true;
        queue_.clear();
    }
    changed_.notify_all();
    for (std::thread& thread : threads_) thread.join();
}

void StepWorkers::submit(StepDispatch dispatch) {
    CHOREO_ASSERT(dispatch.callable);
    if (threads_.empty()) {
        on_done_(run_step(dispatch));
        return;
    }
    {
        std::lock_guard lock{mutex_};
        queue_.push_back(std::move(dispatch));
    }
    changed_.notify_one();
}

void StepWorkers::work() {
    for (;;) {
        StepDispatch dispatch;
        {
            std::unique_lock lock{mutex_};
            changed_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            dispatch = std::move(queue_.front());
            queue_.pop_front();
        }
        on_done_(run_step(dispatch));
    }
}

}  // namespace choreo
