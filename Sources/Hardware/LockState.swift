import Foundation

/// The state a lock reports (Matter Door Lock: Locked / Unlocked / NotFullyLocked, plus Passage).
public enum LockState: String, Sendable, Hashable, Codable, CaseIterable {
    case locked
    case unlocked
    /// Passage: held open until someone with the right, a lock schedule or the end of an easy office
    /// mode window locks it.
    case officeMode = "office_mode"
    /// The lock cannot vouch that it is secured: battery depleted, or the door stood open when the
    /// lock relocked (a strike or magnet cannot secure an open door).
    case uncertain
}
