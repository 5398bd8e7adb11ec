import Foundation

/// What a lock keeps in flash besides its trail, stored with every write that changes it.
struct LockMemory: Codable, Equatable {
    static let statePart = "state"
    static let accessListPart = "access_list"
    static let revocationListPart = "revocation_list"

    enum CommandKind: String, Codable { case locked, unlocked, officeMode = "office_mode" }
    var command: CommandKind
    /// Clock instant: the end of the open window (unlocked) or of an easy-office-mode passage.
    var until: Date?
    var reportedState: LockState
    var batteryLevel: UInt8?
    var batteryLowReported: Bool
    var clockOffset: Double
    var decisionFloor: Date?
    var wrongPINs: UInt8
    var keypadLockedUntil: Date?
    var openTime: UInt8
    var accessListVersion: UInt64
    var revocationListVersion: UInt64
    /// Settings changed at runtime (PATCH /v1/locks); absent in memory written before they existed.
    var accessType: LockAccessType?
    var easyOfficeMode: Timetable?
    /// The platform's lockdown (absent in memory written before lockdown existed: not locked down).
    var lockedDown: Bool?

    static func decode(_ bytes: [UInt8]?) -> LockMemory? {
        guard let bytes else { return nil }
        return try? JSONDecoder().decode(LockMemory.self, from: Data(bytes))
    }

    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        return Array((try? e.encode(value)) ?? Data())
    }
}
