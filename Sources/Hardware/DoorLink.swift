import Foundation
import KeywayCrypto

/// State shared between a lock and the door controller whose relay carries out its decisions.
///
/// The lock writes what it wants (release or not, passage or not); the controller writes power and the
/// door-position switch. Both read the physical result synchronously, so the lock never awaits its
/// controller (no reentrancy) and the controller awaits the lock only to let it record state changes.
final class DoorLink: Sendable {
    struct Snapshot {
        let relay: RelayKind
        let commandedRelease: Bool
        let passage: Bool
        let powered: Bool
        let doorOpen: Bool

        /// The relay coil: fail-secure strikes energise to unlock; fail-safe strikes and mag locks
        /// energise to lock.
        var energised: Bool {
            guard powered else { return false }
            return relay == .electricStrikeFailSecure ? commandedRelease : !commandedRelease
        }
        /// Whether the door can be pushed open without force.
        var free: Bool { relay.failSafe ? !energised : energised }
    }

    let relay: RelayKind
    private struct Wires {
        var commandedRelease = false
        var passage = false
        var powered = true
        var doorOpen = false
    }
    private let wires = PthreadLocked(Wires())

    init(relay: RelayKind) { self.relay = relay }

    var snapshot: Snapshot {
        wires.withLock { w in
            Snapshot(relay: relay, commandedRelease: w.commandedRelease, passage: w.passage, powered: w.powered, doorOpen: w.doorOpen)
        }
    }

    func command(release: Bool, passage: Bool) {
        wires.withLock { $0.commandedRelease = release; $0.passage = passage }
    }

    func setPowered(_ on: Bool) { wires.withLock { $0.powered = on } }
    func setDoorOpen(_ open: Bool) { wires.withLock { $0.doorOpen = open } }
}
