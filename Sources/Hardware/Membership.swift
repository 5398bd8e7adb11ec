import Foundation

/// A time-limited membership of an access group: how a booking (a meeting room 14:00–15:00) becomes
/// access. It applies to every tag and PIN of its user at the group's locks, in the group's weekly
/// windows, from `notBefore − graceBefore` until `notAfter + graceAfter` (exclusive). Platforms give
/// 15 (Kisi, Proximity) or 30 minutes (Spacebring) of grace each side.
public struct Membership: Sendable, Hashable, Codable {
    public static let maximumGrace: TimeInterval = 24 * 3600

    public var id: String
    public var groupID: String
    public var userID: String
    public var notBefore: Date
    public var notAfter: Date
    public var graceBefore: TimeInterval
    public var graceAfter: TimeInterval
    /// The phone key issued for the booking (a signed key carries its own rights, so a booking reaches a
    /// phone as a key of its own); revoked when the booking is cancelled.
    public var keyID: String?

    public init(id: String, groupID: String, userID: String, notBefore: Date, notAfter: Date,
                graceBefore: TimeInterval = 0, graceAfter: TimeInterval = 0, keyID: String? = nil) {
        self.keyID = keyID
        self.id = id
        self.groupID = groupID
        self.userID = userID
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.graceBefore = graceBefore
        self.graceAfter = graceAfter
    }

    /// The first instant the membership opens a door.
    public var opens: Date { notBefore.addingTimeInterval(-graceBefore) }
    /// The instant it stops opening doors.
    public var closes: Date { notAfter.addingTimeInterval(graceAfter) }
}
