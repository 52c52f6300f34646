// Version selection (recovery/version_selection.h).
#include "recovery/version_selection.h"

#include "recovery/protocol.h"

namespace ft::recovery {

VersionSelection::VersionSelection(uint64_t newest, bool older_in_place, int k,
                                   std::vector<uint8_t> has_image)
    : newest_version_(newest),
      older_in_place_(older_in_place && newest >= 2),
      k_(k),
      has_image_(std::move(has_image)),
      newest_(has_image_.size(), 0),
      older_(has_image_.size(), 0) {}

void VersionSelection::Count(NodeId owner, uint8_t intact) {
  if (owner >= has_image_.size() || !has_image_[owner]) return;
  if (intact & kNewestIntact) ++newest_[owner];
  if (intact & kOlderIntact) ++older_[owner];
}

Result<uint64_t> VersionSelection::Choose() const {
  bool newest_ok = true;
  bool older_ok = older_in_place_;
  std::string lost;
  for (NodeId owner = 0; owner < has_image_.size(); ++owner) {
    if (!has_image_[owner]) continue;
    const bool newest = newest_[owner] >= k_;
    const bool older = older_in_place_ && older_[owner] >= k_;
    newest_ok = newest_ok && newest;
    older_ok = older_ok && older;
    if (!newest && !older) {
      lost += StrCat(lost.empty() ? "" : "; ", "owner ", owner, " has ", newest_[owner],
                     " intact fragments of version ", newest_version_);
      if (older_in_place_) lost += StrCat(" and ", older_[owner], " of ", newest_version_ - 1);
    }
  }
  if (newest_ok) return newest_version_;
  if (older_ok) return newest_version_ - 1;
  if (lost.empty()) {
    // Every owner has one of the two, but not the same one: no common version.
    for (NodeId owner = 0; owner < has_image_.size(); ++owner) {
      if (!has_image_[owner]) continue;
      if (newest_[owner] < k_) {
        lost += StrCat(lost.empty() ? "" : "; ", "owner ", owner, " has only version ",
                       newest_version_ - 1, " (", newest_[owner], " intact fragments of ",
                       newest_version_, ")");
      } else if (older_in_place_ && older_[owner] < k_) {
        lost +=
            StrCat(lost.empty() ? "" : "; ", "owner ", owner, " has only version ", newest_version_,
                   " (", older_[owner], " intact fragments of ", newest_version_ - 1, ")");
      }
    }
    return Status::DataLoss("no version every node can restore: ", lost, "; k = ", k_,
                            " fragments are needed");
  }
  return Status::DataLoss("images lost: ", lost, "; k = ", k_,
                          " intact fragments are needed to restore one");
}

std::string VersionSelection::Table() const {
  std::string table = StrCat("intact fragments per owner (k = ", k_, "), version ", newest_version_,
                             older_in_place_ ? StrCat(" | ", newest_version_ - 1) : std::string());
  for (NodeId owner = 0; owner < has_image_.size(); ++owner) {
    if (!has_image_[owner]) continue;
    table += StrCat("\n  owner ", owner, ": ", newest_[owner]);
    if (older_in_place_) table += StrCat(" | ", older_[owner]);
    if (newest_[owner] < k_ && !(older_in_place_ && older_[owner] >= k_)) {
      table += StrCat("  LOST");
    }
  }
  return table;
}

}  // namespace ft::recovery
