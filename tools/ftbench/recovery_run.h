// `ftbench checkpoint --kill RANKS | --freeze RANKS [--kill-at POINT] [--spares S | --respawn]`:
// the checkpoint measurement of checkpoint.h with a loss in the middle, on the loopback fabric.
//
// Versions are numbered as the engine numbers them: version 1 is the untimed first checkpoint
// (it sizes the stores), and the run commits up to version V + 1 (V = --versions, as many timed
// checkpoints as a run without a failure takes). The image of version v is the pattern of
// (rank, v). After version F = ceil(V / 2) committed, the victims fail at POINT:
//   idle     before version F + 1 starts (the survivors' images already hold unsaved work of
//            F + 1). Restores F.
//   prepare  the survivors called CheckpointAsync for F + 1 (their PREPAREs are out), the
//            victims not yet: no GO can come. Restores F.
//   write    every rank called CheckpointAsync for F + 1 and each victim's first cell WRITE of
//            it is in flight: a FaultyFabric rule holds the victims' cell WRITEs
//            (WorkKind::kCell), so none of them completes before the failure. Restores F.
//   headers  every cell WRITE of each victim completed (landed) and its k + m header WRITEs,
//            posted only after that, are held by a FaultyFabric rule (WorkKind::kHeader).
//            Restores F.
//   commit   every rank sent its DONE of F + 1: a FaultyFabric rule lets each victim's first
//            receive from the coordinator (the GO) through and holds the next (the COMMIT or
//            ABORT) unseen; the survivors' checkpoints end first, then the victims fail.
//            Restores what the coordinator decided (the outcome of rank 0's checkpoint: F + 1
//            when every DONE was in), which every rank must agree on.
//   recovery as idle, then a second loss while Recover() runs: a FaultyFabric rule holds the
//            replacements' READs of their images, and once one is held the replacements are
//            killed. The recovery restarts in a newer view once a second new process
//            (LoopbackWorld::Replace) takes each rank; the run verifies it as any other.
// --kill kills the victims' processes (LoopbackWorld::Kill: the survivors see broken links);
// --freeze hangs them (LoopbackWorld::Freeze: only the heartbeat tells; the world is left to
// run at least 10 heartbeat intervals first, so that every first beat was seen). The second
// loss of `recovery` is always a kill. The rules exist only for the point that needs them (the
// fabrics are wrapped in a FaultyFabric then) and are removed before any replacement starts.
//
// The replacements: S idle spares (S = --spares, default one per victim) start with the world
// and wait in WaitForAssignment on threads of their own, as spare processes would (zeroing the
// store the coordinator hints while they wait); the coordinator gives each a lost rank, and it
// protects a fresh image buffer of the same size, filled with garbage. With --respawn there are
// no spares: each victim gets a new process after the loss (LoopbackWorld::Replace, as ftrun
// --respawn). Every member calls Recover() at once; a victim without a replacement takes no
// part, and the recovery fails with FailedPrecondition after the engines' timeout (--timeout,
// 5 s by default in that case). After the recovery every image must equal the restored
// version's bytes, and the run checkpoints on to version V + 1 and verifies the last one as
// checkpoint.h does (read back with one holder's fragments treated as lost).
//
// Timed figures: the versions before the failure and after the recovery, except the version
// the failure hit (the aborted attempt, or at `commit` the version committed across it) and
// the first version after the recovery (it connects to the replacements), which is reported
// apart.
//
// Exit codes: 0 recovered and verified; 3 more victims than m for some owner (Recover()
// returned DataLoss: its message names the owners); 1 any other failure (a recovery that
// failed, a wrong version or image); 2 bad flags: rank 0 (the coordinator cannot be replaced
// yet), a rank outside the world, a rank twice, --kill with --freeze, --respawn with --spares,
// --kill-at or --spares without a victim, --versions below 3, or --fabric rdma (recovery over rdma
// goes through ftrun --kill).
#ifndef FT_TOOLS_FTBENCH_RECOVERY_RUN_H_
#define FT_TOOLS_FTBENCH_RECOVERY_RUN_H_

#include <CLI/CLI.hpp>

#include "tools/ftbench/checkpoint.h"
#include "tools/ftbench/failure_plan.h"

namespace ft::ftbench {

int RunRecovery(const CheckpointOptions& options);

}  // namespace ft::ftbench

#endif  // FT_TOOLS_FTBENCH_RECOVERY_RUN_H_
