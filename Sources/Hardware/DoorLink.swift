import Foundation

/// State shared between a lock and the door controller whose relay carries out its decisions.
///
/// The lock writes what it wants (release or not, passage or not); the controller writes power and the
/// door-position switch. Both read the physical result synchronously, so the lock never awaits its
/// controller (no reentrancy) and the controller awaits the lock only to let it record state changes.
final class DoorLink: @unchecked Sendable {
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
    private let mutex = NSLock()
    private var commandedRelease = false
    private var passage = false
    private var powered = true
    private var doorOpen = false

    init(relay: RelayKind) { self.relay = relay }

    var snapshot: Snapshot {
        mutex.lock(); defer { mutex.unlock() }
        return Snapshot(relay: relay, commandedRelease: commandedRelease, passage: passage, powered: powered, doorOpen: doorOpen)
    }

    func command(release: Bool, passage: Bool) {
        mutex.lock(); commandedRelease = release; self.passage = passage; mutex.unlock()
    }

    func setPowered(_ on: Bool) { mutex.lock(); powered = on; mutex.unlock() }
    func setDoorOpen(_ open: Bool) { mutex.lock(); doorOpen = open; mutex.unlock() }
}
