import Events
import Foundation
import Hardware
import MobileKey

/// Hardware audit records → CloudEvents for the access core. Every audit kind has an event type:
/// nothing a device records is dropped on the way upstream.
enum EventMapping {
    static func type(_ k: AuditKind) -> EventType {
        switch k {
        case .accessGranted: return .accessGranted
        case .accessDenied: return .accessDenied
        case .unlocked: return .lockUnlocked
        case .locked: return .lockLocked
        case .lockUncertain: return .lockUncertain
        case .officeModeStarted: return .officeModeStarted
        case .officeModeEnded: return .officeModeEnded
        case .batteryLow: return .batteryLow
        case .batteryDepleted: return .batteryDepleted
        case .batteryReplaced: return .batteryReplaced
        case .keypadLockedOut: return .keypadLockedOut
        case .trailOverflow: return .trailOverflow
        case .accessListUpdated: return .accessListUpdated
        case .revocationListUpdated: return .revocationUpdated
        case .timeSynced: return .clockAdjusted
        case .lockdownStarted: return .lockdownStarted
        case .lockdownEnded: return .lockdownEnded
        case .doorOpened: return .doorOpened
        case .doorClosed: return .doorClosed
        case .doorForcedOpen: return .doorForced
        case .doorHeldOpen: return .doorHeldOpen
        case .powerLost: return .powerLost
        case .powerRestored: return .powerRestored
        case .iqOnline: return .iqOnline
        case .iqOffline: return .iqOffline
        case .iqActivated: return .iqActivated
        case .iqActivationFailed: return .iqActivationFailed
        case .iqDeactivated: return .iqDeactivated
        case .trailCollected: return .trailCollected
        case .remoteOpenRequested: return .remoteOpenRequested
        }
    }

    static func method(_ m: Hardware.AccessMethod?) -> Events.AccessMethod? {
        guard let m else { return nil }
        return Events.AccessMethod(rawValue: m.rawValue)
    }

    static func action(_ a: TapAction?) -> AccessAction? {
        guard let a else { return nil }
        return AccessAction(rawValue: a.name)
    }

    /// `key_id` is hex (docs/EVENTS.md). A credential's key id already is; a tag's UID is written by
    /// the lock as `04:A2:3B:1C` and goes upstream without its separators (`04A23B1C`) — with them the
    /// journal refuses the event, and a fob tap would never reach the access core.
    static func keyID(_ r: AuditRecord) -> String? {
        guard let k = r.keyID else { return nil }
        return r.method == .tag ? k.replacingOccurrences(of: ":", with: "") : k
    }

    static func event(for r: AuditRecord, siteID: String) throws -> KeywayEvent {
        let source: EventSource
        switch r.deviceKind {
        case .lock: source = try .lock(site: siteID, id: r.deviceID)
        case .doorController: source = try .controller(site: siteID, id: r.deviceID)
        case .iq: source = try .iq(site: siteID, id: r.deviceID)
        }
        var attrs: [String: EventAttribute] = ["device_sequence": .int(Int64(clamping: r.sequence))]
        if let s = r.lockState { attrs["lock_state"] = .string(s.rawValue) }
        if let v = r.accessListVersion { attrs["access_list_version"] = .int(Int64(clamping: v)) }
        if let t = r.openTime { attrs["open_time_s"] = .int(Int64(t)) }
        if let b = r.batteryLevel { attrs["battery_level"] = .int(Int64(b)) }
        if let n = r.lostCount { attrs["lost_count"] = .int(Int64(clamping: n)) }
        if let l = r.lostSequences { attrs["lost_from"] = .int(Int64(clamping: l.lowerBound)); attrs["lost_through"] = .int(Int64(clamping: l.upperBound)) }
        if let c = r.count { attrs["count"] = .int(Int64(clamping: c)) }
        if let d = r.detail { attrs["detail"] = .string(String(d.prefix(200))) }
        if r.deviceKind != .lock, let l = r.lockID { attrs["lock_id"] = .string(l) }
        return KeywayEvent(type: type(r.kind), source: source, time: r.time,
                           door: r.deviceKind == .lock ? nil : r.lockID,
                           iq: r.iqID, user: r.userID, keyID: keyID(r),
                           method: method(r.method), action: action(r.action), reason: r.reason?.rawValue,
                           revocationVersion: r.revocationListVersion.map { Int64(clamping: $0) },
                           attributes: attrs)
    }

    /// The audit record an event of a lock came from — for rebuilding a lock's trail from the events the
    /// journal holds for it after a restart. nil for an event that did not come from a device record.
    static func record(from e: RecordedEvent) -> AuditRecord? {
        guard let kind = kinds[e.type] else { return nil }
        let deviceKind: DeviceKind
        switch e.source.kind {
        case .lock: deviceKind = .lock
        case .controller: deviceKind = .doorController
        case .iq: deviceKind = .iq
        case .emulator: return nil
        }
        func int(_ name: String) -> Int64? { if case .int(let v)? = e.event.attributes[name] { return v } else { return nil } }
        func string(_ name: String) -> String? { if case .string(let v)? = e.event.attributes[name] { return v } else { return nil } }
        // The journal's number is the device's (events recorded before devices numbered their own —
        // older data directories — may carry another `device_sequence`; the journal's is what collection uses).
        let sequence = UInt64(clamping: e.sequence)
        var r = AuditRecord(deviceKind: deviceKind, deviceID: e.source.id, sequence: sequence, time: e.event.time, kind: kind)
        r.lockID = deviceKind == .lock ? nil : (string("lock_id") ?? e.event.door)
        r.iqID = e.event.iq
        r.userID = e.event.user
        r.keyID = e.event.keyID
        r.method = e.event.method.flatMap { Hardware.AccessMethod(rawValue: $0.rawValue) }
        r.action = e.event.action.flatMap { TapAction(name: $0.rawValue) }
        r.result = e.type.result.flatMap { AccessResult(rawValue: $0) }
        r.reason = e.event.reason.map { Reason(rawValue: $0) }
        r.lockState = string("lock_state").flatMap { LockState(rawValue: $0) }
        r.revocationListVersion = e.event.revocationVersion.map { UInt64(clamping: $0) }
        r.accessListVersion = int("access_list_version").map { UInt64(clamping: $0) }
        r.openTime = int("open_time_s").map { UInt16(clamping: $0) }
        r.batteryLevel = int("battery_level").map { UInt8(clamping: $0) }
        r.lostCount = int("lost_count").map { UInt64(clamping: $0) }
        if let a = int("lost_from"), let b = int("lost_through"), a <= b { r.lostSequences = UInt64(clamping: a)...UInt64(clamping: b) }
        r.count = int("count").map { UInt64(clamping: $0) }
        r.detail = string("detail")
        return r
    }

    private static let kinds: [EventType: AuditKind] = {
        var m: [EventType: AuditKind] = [:]
        for k in AuditKind.allCases { m[type(k)] = k }
        return m
    }()
}
