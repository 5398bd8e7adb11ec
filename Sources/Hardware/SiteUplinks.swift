import Foundation
import KeywayCrypto

/// Which locks reach an online, activated IQ right now: what a SALTO KS lock means by "online". Each
/// IQ publishes the locks it links while its uplink is up; a lock reads the table when it decides a tag
/// or PIN (synchronously, without an actor hop), and falls back on its offline list when no IQ links it.
public final class SiteUplinks: Sendable {
    /// Lock id → ids of the IQs that link it now.
    private let links = PthreadLocked<[String: Set<String>]>([:])

    public init() {}

    public func isOnline(_ lockID: String) -> Bool {
        links.withLock { !($0[lockID]?.isEmpty ?? true) }
    }

    /// Replaces what one IQ links: `locks` while it is online and activated, none otherwise.
    func publish(iq: String, locks: [String]) {
        links.withLock { table in
            for (lock, iqs) in table where iqs.contains(iq) {
                var rest = iqs
                rest.remove(iq)
                table[lock] = rest.isEmpty ? nil : rest
            }
            for lock in locks { table[lock, default: []].insert(iq) }
        }
    }
}
