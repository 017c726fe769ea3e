// choreo/step_workers.h — the bounded pool that runs durable function steps off the runtime
// thread, so one slow step (an HTTP call, a file write) never stalls other executions.
//
// With zero threads a step runs inline, on the caller's thread, at submit (simulation and tests
// use this). Completed steps are handed to `on_done` from the worker thread; the runtime feeds
// them back to its kernel as inputs. Destruction waits for running steps and drops queued ones
// (their start is recorded, so a restart runs them again). The queue is bounded by the
// kernel's steps_in_flight_max: no more steps are outstanding than that.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "choreo/durable.h"

namespace choreo {

class StepWorkers {
public:
    using OnDone = std::function<void(StepResult)>;  // called on a worker thread (or inline)

    StepWorkers(std::size_t threads, OnDone on_done);
    ~StepWorkers();
    StepWorkers(const StepWorkers&) = delete;
    StepWorkers& operator=(const StepWorkers&) = delete;

    // Runtime thread. The callable may refer to a parked frame: the kernel keeps it alive until
    // the result comes back.
    void submit(StepDispatch dispatch);

private:
    void work();

    OnDone on_done_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<StepDispatch> queue_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace choreo
