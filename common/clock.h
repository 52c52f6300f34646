// Clock: the one source of time for timeouts, deadlines and metrics, injected like leveldb's
// Env::NowMicros so that tests advance a ManualClock instead of sleeping.
#ifndef FT_COMMON_CLOCK_H_
#define FT_COMMON_CLOCK_H_

#include <atomic>
#include <chrono>
#include <cstdint>

namespace ft {

using Nanos = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time since an arbitrary origin. Thread-safe.
  virtual Nanos Now() const = 0;
};

// std::chrono::steady_clock. Default() is a process-wide instance that lives forever.
class SteadyClock final : public Clock {
 public:
  Nanos Now() const override {
    return std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch());
  }
  static SteadyClock& Default();
};

// A clock that moves only when told to. Thread-safe: Advance/Set may race with Now.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Nanos start = Nanos(0)) : now_(start.count()) {}
  Nanos Now() const override { return Nanos(now_.load(std::memory_order_acquire)); }
  void Advance(Nanos delta) { now_.fetch_add(delta.count(), std::memory_order_acq_rel); }
  void Set(Nanos now) { now_.store(now.count(), std::memory_order_release); }

 private:
  std::atomic<int64_t> now_;
};

// Seconds between two Now() readings, as a double (for rates and reports).
inline double SecondsBetween(Nanos start, Nanos end) {
  return std::chrono::duration<double>(end - start).count();
}

}  // namespace ft

#endif  // FT_COMMON_CLOCK_H_
