// ComputePlacement: a deterministic placement of every owner's k + m fragments, O(N (k + m)) when
// stores have room (a full domain costs a scan of the candidate domains).
//
// Words used below: nodes are grouped by failure domain; domains are numbered 0..D-1 in the order
// of their ids, and a node's *position* is its index among its domain's members in rank order.
// An owner is *active* when its footprint is > 0; its *active position* counts only active
// members of its domain.
//
// 1. Domain sequence (spread). An owner in domain d visits the domains in rounds: d+1, d+2, ...,
//    d+D-1 and then d itself (all mod D), taking one holder from each domain that still has a node
//    it may use (a domain of s nodes offers s, the owner's own domain s-1), until it has k + m.
//    So no domain repeats while there are enough domains, the own domain comes last in every
//    round, and when domains run short every one is reused as evenly as its size allows. The
//    sequence depends only on d, so it is computed once per domain: O(D (k + m)).
// 2. Node inside the domain (balance). The picks that all owners make of another domain e form a
//    *stream* dealt round-robin over e's members: source domains in index order, inside one the
//    active owners in active-position order, and each owner's n picks of e (its rounds) as n
//    consecutive slots. So an owner of active position a gets positions c + a n, c + a n + 1, ...
//    (mod size of e) from the stream's cursor c: distinct, since n <= size; and every source
//    continues the deal where the previous stopped, so e's members receive counts that differ by
//    at most one. When every domain has the same size s (one node per domain, round-robin ranks,
//    equal racks) each source deals a multiple of s, so every node receives exactly k + m. Picks
//    of the owner's own domain take positions p+1, p+2, ... after the owner's position p: a
//    rotation per round, never the owner.
// 3. Capacity. From that preferred node the scan moves forward inside the domain to the first
//    node that is not the owner, not yet one of its holders, below the domain's fair share
//    (fragments sent to e / members with room for the smallest footprint, rounded up) and with
//    room for the footprint; then, if none, without the fair-share bound. When the domain has no
//    such node the fragment goes to the next candidate domain: among the domains this owner has
//    used least, in cyclic order after the preferred one, the own domain last. Each domain keeps an
//    upper bound of its members' free bytes, so a full domain is skipped in O(1). A fragment is
//    borrowed when the first candidate that was acceptable but for its room (where it would go if
//    stores were unlimited) was full. Owners are placed in rank order and each holder packs its
//    extents in that allocation order.
#include "recovery/placement.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"

namespace ft::recovery {

uint64_t ExtentBytesFor(uint64_t footprint_bytes) {
  constexpr uint64_t kSlotAlignment = 4096;
  if (footprint_bytes == 0) return 0;
  const uint64_t slot = (footprint_bytes + 1) / 2;
  const uint64_t grown = slot + slot / 8;
  return 2 * ((grown + kSlotAlignment - 1) / kSlotAlignment * kSlotAlignment);
}

bool ExtentStillFits(uint64_t extent_bytes, uint64_t footprint_bytes) {
  return footprint_bytes > 0 && footprint_bytes <= extent_bytes &&
         extent_bytes <= 2 * ExtentBytesFor(footprint_bytes);
}

FreeSpan FreeSpanOf(const NodeSpec& node) {
  const uint64_t begin = std::min(node.reserved_begin, node.capacity_bytes);
  const uint64_t end = std::min(std::max(node.reserved_end, begin), node.capacity_bytes);
  if (end == begin) return {0, node.capacity_bytes};
  const uint64_t above = node.capacity_bytes - end;
  return above >= begin ? FreeSpan{end, above} : FreeSpan{0, begin};
}

namespace {

constexpr int64_t kMaxWidth = 64;
constexpr uint32_t kNoNode = std::numeric_limits<uint32_t>::max();

// World totals (sums of footprint x width over all nodes) can exceed 64 bits; errors report them
// exactly.
__extension__ typedef unsigned __int128 Uint128;

std::string Decimal(Uint128 value) {
  std::string digits;
  do {
    digits.push_back(static_cast<char>('0' + static_cast<int>(value % 10)));
    value /= 10;
  } while (value != 0);
  return {digits.rbegin(), digits.rend()};
}

Status ValidateShape(size_t n, int k, int m) {
  if (k < 1) return Status::InvalidArgument("k = ", k, ": need k >= 1 data fragments");
  if (m < 1) return Status::InvalidArgument("m = ", m, ": need m >= 1 parity fragments");
  const int64_t width = int64_t{k} + m;
  if (width > kMaxWidth) {
    return Status::InvalidArgument("k + m = ", width, " exceeds the limit of ", kMaxWidth,
                                   " fragments per stripe");
  }
  if (n > std::numeric_limits<uint32_t>::max()) {
    return Status::InvalidArgument(n, " nodes exceed the NodeId range");
  }
  if (static_cast<uint64_t>(width) >= n) {
    if (n >= 3) {
      return Status::InvalidArgument("k + m = ", width, " needs at least ", width + 1, " nodes; ",
                                     n, " nodes allow k + m <= ", n - 1);
    }
    return Status::InvalidArgument("k + m = ", width, " needs at least ", width + 1, " nodes; ", n,
                                   n == 1 ? " node allows" : " nodes allow",
                                   " no stripe (k >= 1 and m >= 1 need at least 3 nodes)");
  }
  return Status::Ok();
}

// Nodes grouped by failure domain (see the words at the top of the file).
struct Domains {
  std::vector<NodeId> members;     // grouped by domain index, rank order inside a domain
  std::vector<uint32_t> begin;     // D + 1 offsets into members
  std::vector<uint32_t> active;    // per domain: members with a footprint > 0
  std::vector<uint32_t> hosts;     // per domain: members with room for the smallest footprint
  std::vector<uint32_t> domain;    // per node: its domain index
  std::vector<uint32_t> position;  // per node: index among its domain's members
  std::vector<uint32_t> active_position;  // per active node: index among active members

  size_t count() const { return begin.size() - 1; }
  uint32_t size(uint32_t e) const { return begin[e + 1] - begin[e]; }

  explicit Domains(std::span<const NodeSpec> nodes)
      : domain(nodes.size()), position(nodes.size()), active_position(nodes.size()) {
    const size_t n = nodes.size();
    uint64_t smallest = std::numeric_limits<uint64_t>::max();
    for (const NodeSpec& node : nodes) {
      if (node.footprint_bytes > 0) smallest = std::min(smallest, node.footprint_bytes);
    }
    std::vector<uint64_t> keys(n);
    for (size_t r = 0; r < n; ++r) keys[r] = (uint64_t{nodes[r].domain} << 32) | r;
    if (!std::is_sorted(keys.begin(), keys.end())) std::sort(keys.begin(), keys.end());
    members.resize(n);
    begin.reserve(n + 1);
    for (size_t i = 0; i < n; ++i) {
      const auto rank = static_cast<NodeId>(keys[i] & 0xffffffffu);
      if (i == 0 || (keys[i] >> 32) != (keys[i - 1] >> 32)) {
        begin.push_back(static_cast<uint32_t>(i));
        active.push_back(0);
        hosts.push_back(0);
      }
      members[i] = rank;
      const auto e = static_cast<uint32_t>(begin.size() - 1);
      domain[rank] = e;
      position[rank] = static_cast<uint32_t>(i) - begin[e];
      if (nodes[rank].footprint_bytes > 0) active_position[rank] = active[e]++;
      if (FreeSpanOf(nodes[rank]).room >= smallest) ++hosts[e];
    }
    begin.push_back(static_cast<uint32_t>(n));
  }
};

// One entry of a domain's sequence (step 1): the domain to pick from, the how-manieth pick of
// that domain it is, how many picks of it the sequence makes, and the target stream's cursor
// where this source domain's deal starts (step 2).
struct Pick {
  uint32_t domain = 0;
  uint32_t round = 0;
  uint32_t rounds = 0;
  uint32_t stream_base = 0;  // the cursor modulo the target's size
};

// value mod size, with the cheaper 32-bit division when it suffices (this is on the hot path).
uint32_t Mod(uint64_t value, uint32_t size) {
  if (value <= std::numeric_limits<uint32_t>::max()) return static_cast<uint32_t>(value) % size;
  return static_cast<uint32_t>(value % size);
}

// Builds the sequences of all domains (D x width entries) and the fair share of each domain.
void PlanSequences(const Domains& domains, int width, std::vector<Pick>* sequences,
                   std::vector<uint32_t>* fair_share) {
  const size_t d_count = domains.count();
  const auto w = static_cast<size_t>(width);
  sequences->assign(d_count * w, Pick{});
  std::vector<uint64_t> stream_end(d_count, 0);  // slots dealt from other domains so far
  std::vector<uint64_t> own_picks(d_count, 0);   // picks of the owners' own domain
  std::vector<uint32_t> taken(d_count, 0);
  std::vector<uint32_t> touched;
  touched.reserve(w);
  for (uint32_t d = 0; d < d_count; ++d) {
    const uint32_t active = domains.active[d];
    if (active == 0) continue;  // nobody here places anything
    Pick* seq = &(*sequences)[d * w];
    size_t j = 0;
    while (j < w) {
      const size_t before = j;
      for (size_t t = 1; t <= d_count && j < w; ++t) {
        const auto e = static_cast<uint32_t>((d + t) % d_count);  // t == D: the own domain
        const uint32_t limit = domains.size(e) - (e == d ? 1 : 0);
        if (taken[e] >= limit) continue;
        if (taken[e] == 0) touched.push_back(e);
        seq[j].domain = e;
        seq[j].round = taken[e]++;
        ++j;
      }
      // width < N guarantees enough nodes other than the owner.
      FT_CHECK_MSG(j > before, "placement: domains ran out of nodes");
    }
    for (size_t i = 0; i < w; ++i) {
      const uint32_t e = seq[i].domain;
      seq[i].rounds = taken[e];
      seq[i].stream_base = Mod(stream_end[e], domains.size(e));
    }
    for (uint32_t e : touched) {
      (e == d ? own_picks[e] : stream_end[e]) += uint64_t{active} * taken[e];
      taken[e] = 0;
    }
    touched.clear();
  }
  fair_share->resize(d_count);
  for (size_t e = 0; e < d_count; ++e) {
    // Shared by the members that can host anything: a node without a store takes no share.
    const uint64_t hosts =
        domains.hosts[e] > 0 ? domains.hosts[e] : domains.size(static_cast<uint32_t>(e));
    (*fair_share)[e] = static_cast<uint32_t>((stream_end[e] + own_picks[e] + hosts - 1) / hosts);
  }
}

// Whether the node a fragment would have gone to if every store were unlimited (the first
// candidate that is acceptable but for its room) was full: then the fragment is borrowed.
enum class Preferred { kUnseen, kHadRoom, kFull };

class Placer {
 public:
  Placer(std::span<const NodeSpec> nodes, int width)
      : nodes_(nodes),
        width_(width),
        domains_(nodes),
        used_(nodes.size(), 0),
        room_(nodes.size()),
        count_(nodes.size(), 0),
        chosen_by_(nodes.size(), 0),
        owner_picks_(domains_.count(), 0),
        max_room_(domains_.count(), 0) {
    PlanSequences(domains_, width_, &sequences_, &fair_share_);
    for (size_t e = 0; e < domains_.count(); ++e) {
      for (uint32_t i = domains_.begin[e]; i < domains_.begin[e + 1]; ++i) {
        max_room_[e] = std::max(max_room_[e], FreeSpanOf(nodes_[domains_.members[i]]).room);
      }
    }
    for (size_t node = 0; node < nodes_.size(); ++node) {
      const FreeSpan span = FreeSpanOf(nodes_[node]);
      used_[node] = span.base;
      room_[node] = span.room;
    }
    touched_.reserve(static_cast<size_t>(width_));
  }

  // Chooses the owner's holders into `slots` (width entries) and reports the bytes it borrowed.
  Status PlaceOwner(NodeId owner, FragmentSlot* slots, uint64_t* borrowed) {
    const uint64_t footprint = nodes_[owner].footprint_bytes;
    const uint32_t d = domains_.domain[owner];
    const Pick* seq = &sequences_[static_cast<size_t>(d) * static_cast<size_t>(width_)];
    for (uint32_t e : touched_) owner_picks_[e] = 0;
    touched_.clear();
    for (int column = 0; column < width_; ++column) {
      const Pick& pick = seq[column];
      Preferred preferred = Preferred::kUnseen;
      uint32_t holder = kNoNode;
      // An earlier fragment may have gone to this domain instead of a full one: then it has had
      // its share and the fragment goes to a less used domain.
      if (owner_picks_[pick.domain] <= pick.round) {
        const uint32_t start =
            pick.domain == d
                ? OwnDomainPosition(owner, pick.round)
                : Mod(uint64_t{pick.stream_base} +
                          uint64_t{domains_.active_position[owner]} * pick.rounds + pick.round,
                      domains_.size(pick.domain));
        holder = TryDomain(owner, pick.domain, start, &preferred);
      }
      if (holder == kNoNode) holder = Fallback(owner, pick.domain, &preferred);
      if (holder == kNoNode) return Exhausted(owner, column);
      const uint32_t e = domains_.domain[holder];
      if (owner_picks_[e]++ == 0) touched_.push_back(e);
      chosen_by_[holder] = owner + 1;
      ++count_[holder];
      slots[column] = FragmentSlot{holder, used_[holder]};
      used_[holder] += footprint;
      room_[holder] -= footprint;
      if (preferred == Preferred::kFull) *borrowed += footprint;
    }
    min_domains_ = std::min(min_domains_, static_cast<int>(touched_.size()));
    return Status::Ok();
  }

  std::vector<uint64_t>& used() { return used_; }
  const std::vector<uint32_t>& count() const { return count_; }
  int min_domains() const {
    return min_domains_ == std::numeric_limits<int>::max() ? 0 : min_domains_;
  }

 private:
  uint32_t OwnDomainPosition(NodeId owner, uint32_t round) const {
    const uint32_t d = domains_.domain[owner];
    return Mod(uint64_t{domains_.position[owner]} + 1 + round, domains_.size(d));
  }

  // Scans domain e forward from position `start` for a holder (step 3); kNoNode when none fits.
  // The first candidate met that is acceptable but for its room settles *preferred.
  uint32_t TryDomain(NodeId owner, uint32_t e, uint32_t start, Preferred* preferred) {
    const uint64_t footprint = nodes_[owner].footprint_bytes;
    if (max_room_[e] < footprint) {  // every member is full for this footprint
      if (*preferred == Preferred::kUnseen) *preferred = Preferred::kFull;
      return kNoNode;
    }
    const NodeId* members = &domains_.members[domains_.begin[e]];
    // The common case, balanced and not full: the preferred node takes it.
    const NodeId first = members[start];
    if (first != owner && chosen_by_[first] != owner + 1 && count_[first] < fair_share_[e] &&
        room_[first] >= footprint) {
      if (*preferred == Preferred::kUnseen) *preferred = Preferred::kHadRoom;
      return first;
    }
    const uint32_t size = domains_.size(e);
    uint64_t max_room = 0;
    for (int pass = 0; pass < 2; ++pass) {
      const bool fair = pass == 0;
      uint32_t i = start;
      for (uint32_t t = 0; t < size; ++t, i = (i + 1 == size) ? 0 : i + 1) {
        const NodeId node = members[i];
        const uint64_t room = room_[node];
        if (fair) max_room = std::max(max_room, room);
        if (node == owner || chosen_by_[node] == owner + 1) continue;
        if (fair && count_[node] >= fair_share_[e]) continue;
        if (*preferred == Preferred::kUnseen) {
          *preferred = room < footprint ? Preferred::kFull : Preferred::kHadRoom;
        }
        if (room < footprint) continue;
        return node;
      }
      if (fair) max_room_[e] = max_room;  // a whole scan: the bound is exact now
    }
    return kNoNode;
  }

  // The next candidate domains after `preferred`: least used by this owner first, then in cyclic
  // order, the owner's own domain last among equals.
  uint32_t Fallback(NodeId owner, uint32_t preferred_domain, Preferred* preferred) {
    const uint32_t d = domains_.domain[owner];
    const auto d_count = static_cast<uint32_t>(domains_.count());
    for (int level = 0; level < width_; ++level) {
      const auto picks = static_cast<uint32_t>(level);
      for (uint32_t t = 1; t <= d_count; ++t) {
        const uint32_t e = (preferred_domain + t) % d_count;
        if (e == d) continue;
        if (owner_picks_[e] != picks || picks >= domains_.size(e)) continue;
        const uint32_t start =
            Mod(uint64_t{domains_.active_position[owner]} + picks, domains_.size(e));
        const uint32_t holder = TryDomain(owner, e, start, preferred);
        if (holder != kNoNode) return holder;
      }
      if (owner_picks_[d] == picks && picks + 1 < domains_.size(d)) {
        const uint32_t holder = TryDomain(owner, d, OwnDomainPosition(owner, picks), preferred);
        if (holder != kNoNode) return holder;
      }
    }
    return kNoNode;
  }

  Status Exhausted(NodeId owner, int column) const {
    const uint64_t footprint = nodes_[owner].footprint_bytes;
    const int missing_holders = width_ - column;
    Uint128 need = 0;
    Uint128 offered = 0;
    for (const NodeSpec& node : nodes_) {
      need += Uint128{node.footprint_bytes} * static_cast<unsigned>(width_);
      offered += FreeSpanOf(node).room;  // a committed version's bytes are not on offer
    }
    const std::string head =
        StrCat("owner ", owner, " (footprint ", footprint, " bytes) still needs ", missing_holders,
               " of ", width_, " holders, but no node it may use has ", footprint, " free bytes; ");
    if (need > offered) {
      return Status::ResourceExhausted(head, "the world lacks ", Decimal(need - offered),
                                       " bytes (all fragments need ", Decimal(need),
                                       ", stores offer ", Decimal(offered), ")");
    }
    return Status::ResourceExhausted(
        head, "stores offer ", Decimal(offered), " bytes, enough for all fragments (",
        Decimal(need), "), but not where this owner can use them: ",
        Decimal(Uint128{footprint} * static_cast<unsigned>(missing_holders)),
        " bytes missing for owner ", owner);
  }

  std::span<const NodeSpec> nodes_;
  int width_;
  Domains domains_;
  std::vector<Pick> sequences_;        // D x width
  std::vector<uint32_t> fair_share_;   // per domain: fragments per node when spread evenly
  std::vector<uint64_t> used_;         // per node: the end of its last extent
  std::vector<uint64_t> room_;         // per node: free bytes left in its free span
  std::vector<uint32_t> count_;        // per node: fragments hosted
  std::vector<uint32_t> chosen_by_;    // per node: 1 + the last owner that chose it
  std::vector<uint32_t> owner_picks_;  // per domain: holders of the current owner there
  std::vector<uint32_t> touched_;      // domains with owner_picks_ > 0
  std::vector<uint64_t> max_room_;     // per domain: upper bound of a member's free bytes
  int min_domains_ = std::numeric_limits<int>::max();
};

}  // namespace

std::string Placement::Describe() const {
  const size_t n = nodes();
  size_t min_hosted = n == 0 ? 0 : std::numeric_limits<size_t>::max();
  size_t max_hosted = 0;
  for (size_t node = 0; node < n; ++node) {
    const size_t hosted = hosted_begin_[node + 1] - hosted_begin_[node];
    min_hosted = std::min(min_hosted, hosted);
    max_hosted = std::max(max_hosted, hosted);
  }
  size_t owners = 0;
  size_t borrowers = 0;
  Uint128 borrowed = 0;
  for (size_t node = 0; node < n; ++node) {
    if (footprint_bytes_[node] > 0) ++owners;
    if (borrowed_bytes_[node] > 0) ++borrowers;
    borrowed += borrowed_bytes_[node];
  }
  return StrCat(n, " nodes, ", owners, " with fragments, k = ", k_, ", m = ", m_,
                ": fragments per node min ", min_hosted, " max ", max_hosted,
                ", distinct domains per owner min ", min_owner_domains_, ", borrowed ",
                Decimal(borrowed), " bytes by ", borrowers, " owners");
}

Result<Placement> ComputePlacement(std::span<const NodeSpec> nodes, int k, int m) {
  FT_RETURN_IF_ERROR(ValidateShape(nodes.size(), k, m));
  const size_t n = nodes.size();
  const int width = k + m;
  const auto w = static_cast<size_t>(width);

  Placement placement;
  placement.k_ = k;
  placement.m_ = m;
  placement.slots_.assign(n * w, FragmentSlot{});
  placement.borrowed_bytes_.assign(n, 0);
  placement.footprint_bytes_.resize(n);
  for (size_t owner = 0; owner < n; ++owner) {
    placement.footprint_bytes_[owner] = nodes[owner].footprint_bytes;
  }

  Placer placer(nodes, width);
  for (size_t owner = 0; owner < n; ++owner) {
    if (nodes[owner].footprint_bytes == 0) continue;
    FT_RETURN_IF_ERROR(placer.PlaceOwner(static_cast<NodeId>(owner), &placement.slots_[owner * w],
                                         &placement.borrowed_bytes_[owner]));
  }
  placement.min_owner_domains_ = placer.min_domains();

  // Group by holder (a counting sort); visiting owners and columns in order keeps each holder's
  // list in (owner, column) order, which is also its allocation order.
  placement.hosted_begin_.assign(n + 1, 0);
  for (size_t node = 0; node < n; ++node) {
    placement.hosted_begin_[node + 1] = placement.hosted_begin_[node] + placer.count()[node];
  }
  placement.hosted_.resize(placement.hosted_begin_[n]);
  std::vector<size_t> next(placement.hosted_begin_.begin(), placement.hosted_begin_.end() - 1);
  for (size_t owner = 0; owner < n; ++owner) {
    if (nodes[owner].footprint_bytes == 0) continue;
    for (int column = 0; column < width; ++column) {
      const FragmentSlot& slot = placement.slots_[owner * w + static_cast<size_t>(column)];
      placement.hosted_[next[slot.holder]++] =
          HostedFragment{static_cast<NodeId>(owner), column, slot.store_offset};
    }
  }
  placement.used_bytes_ = std::move(placer.used());
  return placement;
}

}  // namespace ft::recovery
