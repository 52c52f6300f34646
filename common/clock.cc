#include "common/clock.h"

namespace ft {

SteadyClock& SteadyClock::Default() {
  static SteadyClock* const clock = new SteadyClock();  // never destroyed: used by atexit code
  return *clock;
}

}  // namespace ft
