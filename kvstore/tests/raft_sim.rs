//! Deterministic simulation of the Raft core (`kvstore::raft::sim`): targeted scenarios with
//! asserted outcomes, then many seeded random runs per scenario with every safety invariant
//! checked after every tick. A failing seed prints the command that replays it:
//!
//! ```text
//! RAFT_SIM_SCENARIO=churn RAFT_SIM_SEED=1234 cargo test -p kvstore --test raft_sim replay -- --nocapture
//! ```
//!
//! `RAFT_SIM_SEEDS` sets how many seeds each scenario runs (default 400: 3,600 runs in all).

use kvstore::raft::sim::{Sim, SimOptions};
use kvstore::raft::{ConfigChange, Role};

fn run_seeds(scenario: &str) {
    let seeds: u64 = std::env::var("RAFT_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let mut totals = kvstore::raft::sim::SimStats::default();
    for seed in 0..seeds {
        let opts = SimOptions::scenario(scenario, seed).expect("a known scenario");
        let replay = opts.replay_command(scenario);
        let result = std::panic::catch_unwind(|| Sim::new(opts).run());
        match result {
            Ok(stats) => totals.add(&stats),
            Err(_) => panic!("scenario {scenario}, seed {seed} failed; replay with:\n  {replay}"),
        }
    }
    eprintln!("{scenario}: {seeds} seeds, {totals:?}");
    // The runs must have done real work, or the invariants checked nothing.
    assert!(
        totals.acknowledged > seeds * 10,
        "{scenario}: too few writes acknowledged"
    );
    assert!(totals.leaders_elected >= seeds, "{scenario}: no elections");
    assert!(
        totals.reads_served > seeds,
        "{scenario}: too few reads served"
    );
    // Leases need check-quorum (voters ignore candidates while they hear from a leader).
    if scenario == "no_pre_vote" {
        assert_eq!(
            totals.lease_reads, 0,
            "{scenario}: a lease without check-quorum"
        );
    } else {
        assert!(
            totals.lease_reads > seeds / 25,
            "{scenario}: too few reads served from a lease"
        );
    }
    if scenario == "membership" {
        assert!(
            totals.config_changes > seeds * 3,
            "{scenario}: too few membership changes committed"
        );
    }
    if scenario == "quiescence" {
        assert!(
            totals.quiesced_ticks > seeds * 500 && totals.quiesce_wakes > seeds,
            "{scenario}: groups too rarely quiesced or woken"
        );
    }
    if scenario == "stalls" {
        assert!(totals.stalls > seeds, "{scenario}: too few stalls");
    }
    if scenario == "snapshots" {
        assert!(
            totals.snapshots_installed > seeds / 10,
            "{scenario}: no snapshots sent"
        );
        // Transfers a follower's disk could not take were dropped and started over.
        assert!(
            totals.snapshot_pieces_lost > 0,
            "{scenario}: no piece of a snapshot was lost"
        );
    }
}

#[test]
fn seeds_reliable() {
    run_seeds("reliable");
}
#[test]
fn seeds_lossy() {
    run_seeds("lossy");
}
#[test]
fn seeds_partitions() {
    run_seeds("partitions");
}
#[test]
fn seeds_crashes() {
    run_seeds("crashes");
}
#[test]
fn seeds_figure8_unreliable() {
    run_seeds("figure8_unreliable");
}
#[test]
fn seeds_churn() {
    run_seeds("churn");
}
#[test]
fn seeds_snapshots() {
    run_seeds("snapshots");
}
#[test]
fn seeds_membership() {
    run_seeds("membership");
}
#[test]
fn seeds_no_pre_vote() {
    run_seeds("no_pre_vote");
}
#[test]
fn seeds_stalls() {
    run_seeds("stalls");
}
#[test]
fn seeds_quiescence() {
    run_seeds("quiescence");
}

/// Replays one run from `RAFT_SIM_SCENARIO` and `RAFT_SIM_SEED` (does nothing without them).
#[test]
fn replay() {
    let (Ok(scenario), Ok(seed)) = (
        std::env::var("RAFT_SIM_SCENARIO"),
        std::env::var("RAFT_SIM_SEED"),
    ) else {
        return;
    };
    let seed = seed.parse().expect("RAFT_SIM_SEED is a number");
    let opts = SimOptions::scenario(&scenario, seed).expect("a known scenario");
    let stats = Sim::new(opts).run();
    eprintln!("{scenario} seed {seed}: {stats:?}");
}

fn quiet(seed: u64, nodes: usize) -> Sim {
    Sim::new(SimOptions {
        propose: 0.0,
        read: 0.0,
        ..SimOptions::reliable(seed, nodes)
    })
}

fn ticks(sim: &mut Sim, n: u64) {
    for _ in 0..n {
        sim.tick();
    }
}

fn leader_within(sim: &mut Sim, n: u64) -> usize {
    for _ in 0..n {
        sim.tick();
        if let Some(i) = sim.leader_index() {
            return i;
        }
    }
    panic!("no leader within {n} ticks");
}

#[test]
fn a_leader_is_elected_and_stays_without_faults() {
    for seed in 0..20 {
        let mut sim = quiet(seed, 3);
        let leader = leader_within(&mut sim, 60);
        let term = sim.raft(leader).unwrap().term();
        ticks(&mut sim, 500);
        assert_eq!(
            sim.leader_index(),
            Some(leader),
            "seed {seed}: leadership changed"
        );
        assert_eq!(
            sim.raft(leader).unwrap().term(),
            term,
            "seed {seed}: term changed"
        );
    }
}

#[test]
fn a_new_leader_is_elected_when_the_leader_is_cut_off_and_the_old_one_steps_down() {
    for seed in 0..20 {
        let mut sim = quiet(seed, 3);
        let old = leader_within(&mut sim, 60);
        let mut groups = [0u8; 3];
        groups[old] = 1;
        sim.partition(&groups);
        // Check-quorum: the isolated leader steps down within two election timeouts.
        ticks(&mut sim, 60);
        assert_ne!(sim.raft(old).unwrap().role(), Role::Leader, "seed {seed}");
        let new = sim.leader_index().expect("the majority elects a leader");
        assert_ne!(new, old);
        let term = sim.raft(new).unwrap().term();
        // Pre-vote: the old leader, back after a long time alone, does not depose the new one.
        ticks(&mut sim, 300);
        sim.heal();
        ticks(&mut sim, 100);
        assert_eq!(
            sim.leader_index(),
            Some(new),
            "seed {seed}: the rejoining node disrupted"
        );
        assert_eq!(sim.raft(new).unwrap().term(), term, "seed {seed}");
        assert_eq!(
            sim.raft(old).unwrap().term(),
            term,
            "seed {seed}: it learnt the term"
        );
    }
}

#[test]
fn no_agreement_without_a_majority_then_agreement_after_healing() {
    let mut sim = quiet(7, 5);
    let leader = leader_within(&mut sim, 60);
    ticks(&mut sim, 10);
    let committed = sim.raft(leader).unwrap().log().committed();
    // The leader and one follower on one side, three followers on the other.
    let other = (leader + 1) % 5;
    let mut groups = [1u8; 5];
    groups[leader] = 0;
    groups[other] = 0;
    sim.partition(&groups);
    for _ in 0..5 {
        sim.propose_somewhere();
    }
    ticks(&mut sim, 5);
    let minority_leader = sim.raft(leader).unwrap();
    assert!(minority_leader.log().last_index() > committed);
    assert_eq!(
        minority_leader.log().committed(),
        committed,
        "a minority must not commit"
    );
    // Heal: the group commits again, and all five agree.
    sim.heal_and_converge();
    let applied: Vec<u64> = (0..5).map(|i| sim.applied(i)).collect();
    assert!(
        applied.iter().all(|&a| a == applied[0] && a > committed),
        "{applied:?}"
    );
}

#[test]
fn a_rejoining_leader_discards_its_uncommitted_entries_and_backs_up_fast() {
    let mut sim = quiet(11, 5);
    let old = leader_within(&mut sim, 60);
    ticks(&mut sim, 10);
    // The old leader and one follower take 50 proposals that cannot commit.
    let buddy = (old + 1) % 5;
    let mut groups = [1u8; 5];
    groups[old] = 0;
    groups[buddy] = 0;
    sim.partition(&groups);
    for _ in 0..50 {
        sim.propose_somewhere();
    }
    let uncommitted_last = sim.raft(old).unwrap().log().last_index();
    // Isolate the old leader; the other side elects a leader and commits 50 entries.
    ticks(&mut sim, 60);
    let new = sim.leader_index().expect("the majority elects a leader");
    assert_ne!(new, old);
    for _ in 0..50 {
        sim.propose_somewhere();
    }
    ticks(&mut sim, 40);
    let rejections_before = sim.stats.append_rejections;
    sim.heal_and_converge();
    let rejections = sim.stats.append_rejections - rejections_before;
    // One rejection per term of divergence, not one per entry (50 here).
    assert!(
        rejections <= 6,
        "{rejections} rejections: backtracking is not fast"
    );
    let old_log = sim.raft(old).unwrap().log();
    assert!(old_log.committed() > uncommitted_last);
    let new_log = sim.raft(new).unwrap().log();
    for index in old_log.first_index()..=old_log.committed() {
        assert_eq!(old_log.entry(index), new_log.entry(index), "entry {index}");
    }
}

#[test]
fn a_follower_that_falls_behind_the_compacted_log_gets_a_snapshot_in_chunks() {
    let mut sim = Sim::new(SimOptions {
        compact_after: Some(5),
        propose: 0.0,
        read: 0.0,
        ..SimOptions::reliable(3, 3)
    });
    let leader = leader_within(&mut sim, 60);
    let behind = (leader + 1) % 3;
    sim.crash(behind);
    for _ in 0..40 {
        sim.propose_somewhere();
        sim.tick();
    }
    assert!(sim.raft(leader).unwrap().log().snapshot().index > 5);
    sim.heal_and_converge();
    // 64 snapshot bytes in 24-byte chunks: one install, and the machines agree (checked by
    // the simulator's state machine safety invariant at every apply).
    assert!(sim.stats.snapshots_installed >= 1, "{:?}", sim.stats);
    assert_eq!(sim.applied(behind), sim.applied(leader));
}

/// A follower that needs a snapshot while the leader keeps writing and compacting: the
/// transfer (three chunks, a round trip each) outlasts a compaction interval. It must finish
/// the snapshot it started rather than start over at each compaction, and the leader must
/// keep the entries after it, so that the follower then catches up from the log, all while
/// the writes go on.
#[test]
fn a_follower_catches_up_by_snapshot_under_a_steady_write_rate() {
    for seed in 0..20 {
        let mut sim = Sim::new(SimOptions {
            compact_after: Some(8),
            propose: 0.0,
            read: 0.0,
            delay_ticks_max: 3,
            ..SimOptions::reliable(seed, 3)
        });
        let leader = leader_within(&mut sim, 60);
        let behind = (leader + 1) % 3;
        sim.crash(behind);
        for _ in 0..30 {
            sim.propose_somewhere();
            sim.tick();
        }
        sim.restart(behind);
        let mut caught_up_at = None;
        // A write every tick; a transfer takes three round trips of up to six ticks.
        for tick in 0..400 {
            sim.propose_somewhere();
            sim.tick();
            let commit = sim.raft(leader).map_or(0, |r| r.log().committed());
            let installed = sim.stats.snapshots_installed;
            if installed >= 1 && sim.applied(behind) + 8 >= commit {
                caught_up_at = Some(tick);
                break;
            }
        }
        assert!(
            caught_up_at.is_some(),
            "seed {seed}: the follower never caught up (applied {}, leader commit {}): {:?}",
            sim.applied(behind),
            sim.raft(leader).map_or(0, |r| r.log().committed()),
            sim.stats
        );
    }
}

#[test]
fn reads_see_every_acknowledged_write() {
    // A read-heavy run; the simulator asserts each read's index covers the writes
    // acknowledged before it was asked.
    let mut sim = Sim::new(SimOptions {
        read: 0.8,
        propose: 0.8,
        ..SimOptions::scenario("partitions", 5).unwrap()
    });
    let stats = sim.run();
    assert!(stats.reads_served > 100, "{stats:?}");
}

/// Ticks until node `i` (0-based) has applied everything the leader committed.
fn caught_up_within(sim: &mut Sim, i: usize, n: u64) {
    for _ in 0..n {
        sim.tick();
        let leader = sim.leader_index().expect("a leader");
        let commit = sim.raft(leader).unwrap().log().committed();
        if sim.applied(i) == commit && sim.raft(i).unwrap().membership().contains(i as u64 + 1) {
            return;
        }
    }
    panic!("node {} did not catch up within {n} ticks", i + 1);
}

#[test]
fn a_learner_catches_up_then_votes_and_a_removed_leader_steps_down_for_good() {
    for seed in 0..10 {
        // Nodes 1 to 3 found the group under a steady write load; 4 starts empty.
        let mut sim = Sim::new(SimOptions {
            members: 3,
            read: 0.0,
            ..SimOptions::reliable(seed, 4)
        });
        let leader = leader_within(&mut sim, 60);
        ticks(&mut sim, 50);

        // Node 4 joins as a learner: it gets the whole log, but counts for nothing.
        sim.change_membership(ConfigChange::AddLearner(4)).unwrap();
        caught_up_within(&mut sim, 3, 200);
        let m = sim.raft(leader).unwrap().membership().clone();
        assert!(m.learners.contains(&4) && m.quorum() == 2, "seed {seed}");
        assert_eq!(sim.raft(3).unwrap().role(), Role::Follower);

        // Promoted, it votes: quorum 3 of 4.
        ticks(&mut sim, 5);
        sim.change_membership(ConfigChange::AddVoter(4)).unwrap();
        ticks(&mut sim, 20);
        let m = sim.raft(leader).unwrap().membership().clone();
        assert_eq!(m.voters.len(), 4, "seed {seed}");
        assert_eq!(m.quorum(), 3);

        // The leader removes itself: it steps down once that commits, the others elect a
        // leader among themselves and go on committing, and it never leads again.
        let removed = sim.raft(leader).unwrap().id();
        sim.change_membership(ConfigChange::Remove(removed))
            .unwrap();
        let mut new_leader = None;
        for _ in 0..300 {
            sim.tick();
            let l = sim.leader_index();
            if let Some(l) = l {
                if l != leader {
                    new_leader = Some(l);
                }
            }
            if new_leader.is_some() {
                assert_ne!(l, Some(leader), "seed {seed}: the removed node led again");
            }
        }
        let new_leader = new_leader.expect("a new leader");
        let raft = sim.raft(new_leader).unwrap();
        assert!(!raft.membership().contains(removed));
        assert_eq!(raft.membership().voters.len(), 3);
        assert!(
            raft.log().committed() > sim.raft(leader).unwrap().log().committed(),
            "seed {seed}: the group went on committing without the removed node"
        );
        assert_ne!(sim.raft(leader).unwrap().role(), Role::Leader);
    }
}
