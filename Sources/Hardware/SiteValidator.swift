import Foundation
import Yams

/// Checks what a single node cannot: duplicate ids, references between sections, per-IQ and per-user
/// limits, site-wide uniqueness of tags and PINs. Works on a config from a file (with marks) or from code.
final class SiteValidator {
    let file: String
    let locate: (SiteSection, Int, String?, Int?) -> Mark?
    private(set) var diagnostics: [SiteFileDiagnostic] = []
    private(set) var fixedConfig: SiteConfig?

    init(file: String, locate: @escaping (SiteSection, Int, String?, Int?) -> Mark?) {
        self.file = file
        self.locate = locate
    }

    func finished() -> [SiteFileDiagnostic] {
        Array(diagnostics.sorted { ($0.line, $0.column) < ($1.line, $1.column) }.prefix(SiteFile.maximumDiagnostics))
    }

    private func report(_ section: SiteSection, _ index: Int, _ field: String?, _ message: String, element: Int? = nil) {
        let mark = locate(section, index, field, element)
        var path = "\(section.rawValue)[\(index)]"
        if let field { path += ".\(field)" }
        if let element { path += "[\(element)]" }
        diagnostics.append(SiteFileDiagnostic(file: file, line: mark?.line ?? 0, column: mark?.column ?? 0,
                                              field: path, message: message))
    }

    private func whereIs(_ section: SiteSection, _ index: Int) -> String {
        if let m = locate(section, index, "id", nil) { return "line \(m.line)" }
        return "\(section.rawValue)[\(index)]"
    }

    /// Field syntax that the file reader checks as it reads; code-built configs get the same checks here.
    func checkSyntaxOfCodeBuiltConfig(_ c: SiteConfig) {
        func bad(_ s: String, _ what: String) {
            diagnostics.append(SiteFileDiagnostic(file: file, line: 0, column: 0, field: what, message: "'\(s)' is not a valid id"))
        }
        if !SiteFileReader.isValidID(c.siteID) { bad(c.siteID, "site.id") }
        for (i, l) in c.locks.enumerated() where !SiteFileReader.isValidID(l.id) { bad(l.id, "locks[\(i)].id") }
        for (i, d) in c.doorControllers.enumerated() where !SiteFileReader.isValidID(d.id) { bad(d.id, "door_controllers[\(i)].id") }
        for (i, q) in c.iqs.enumerated() {
            if !SiteFileReader.isValidID(q.id) { bad(q.id, "iqs[\(i)].id") }
            if !(4...12).contains(q.activationPIN.count) || !q.activationPIN.allSatisfy(\.isASCIIDigit) {
                report(.iqs, i, "activation_pin", "must be 4–12 digits")
            }
            if !IQConfig.rangeLimits.contains(q.range) { report(.iqs, i, "range_m", "out of range") }
            if (q.pairedLocks?.count ?? 0) > IQRadio.maximumLocks {
                report(.iqs, i, "locks", "an IQ serves at most \(IQRadio.maximumLocks) locks")
            }
        }
        for (i, g) in c.accessGroups.enumerated() where !SiteFileReader.isValidID(g.id) { bad(g.id, "access_groups[\(i)].id") }
        for (i, u) in c.users.enumerated() {
            if !SiteFileReader.isValidID(u.id) { bad(u.id, "users[\(i)].id") }
            if u.tags.count > UserConfig.maximumTags { report(.users, i, "tags", "a user has at most \(UserConfig.maximumTags) tags") }
            if let pin = u.pin, !UserConfig.isValidPIN(pin) {
                report(.users, i, "pin", "must be 4–8 digits")
            }
        }
    }

    func validate(_ input: SiteConfig, batteryExplicit: [Bool]?) {
        var c = input
        func duplicates<T>(_ items: [T], _ section: SiteSection, _ what: String, _ id: (T) -> String) -> [String: Int] {
            var seen = [String: Int](minimumCapacity: items.count)
            for (i, item) in items.enumerated() {
                if let first = seen[id(item)] {
                    report(section, i, "id", "duplicate \(what) id '\(id(item))' (first defined at \(whereIs(section, first)))")
                } else {
                    seen[id(item)] = i
                }
            }
            return seen
        }
        let locks = duplicates(c.locks, .locks, "lock", \.id)
        _ = duplicates(c.doorControllers, .doorControllers, "door controller", \.id)
        _ = duplicates(c.iqs, .iqs, "IQ", \.id)
        let groups = duplicates(c.accessGroups, .accessGroups, "access group", \.id)
        _ = duplicates(c.users, .users, "user", \.id)

        // Door controllers: each drives one existing wall reader, and a lock has at most one controller.
        var drivenBy: [String: Int] = [:]
        for (i, d) in c.doorControllers.enumerated() {
            guard let li = locks[d.lockID] else {
                report(.doorControllers, i, "lock", "no lock with id '\(d.lockID)'")
                continue
            }
            if let other = drivenBy[d.lockID] {
                report(.doorControllers, i, "lock", "lock '\(d.lockID)' is already driven by door controller '\(c.doorControllers[other].id)'")
                continue
            }
            drivenBy[d.lockID] = i
            let kind = c.locks[li].kind
            if kind != .wallReader {
                report(.doorControllers, i, "lock", "a door controller drives a door through a wall reader; lock '\(d.lockID)' is of kind \(kind.rawValue) (a battery lock with its own motor)")
            }
            // The reader of a controller door is powered by the controller, not by a battery.
            if let explicit = batteryExplicit, li < explicit.count, explicit[li] {
                report(.locks, li, "battery", "lock '\(d.lockID)' is powered by door controller '\(d.id)' and has no battery")
            }
            c.locks[li].battery = nil
        }

        // IQs: explicit pairings must name existing locks, once each.
        for (i, q) in c.iqs.enumerated() {
            guard let paired = q.pairedLocks else { continue }
            var seen = Set<String>()
            for (j, l) in paired.enumerated() {
                if locks[l] == nil { report(.iqs, i, "locks", "no lock with id '\(l)'", element: j) }
                if !seen.insert(l).inserted { report(.iqs, i, "locks", "lock '\(l)' is listed twice", element: j) }
            }
        }

        for (i, g) in c.accessGroups.enumerated() {
            guard case let .only(ids) = g.locks else { continue }
            var seen = Set<String>()
            for (j, l) in ids.enumerated() {
                if locks[l] == nil { report(.accessGroups, i, "locks", "no lock with id '\(l)'", element: j) }
                if !seen.insert(l).inserted { report(.accessGroups, i, "locks", "lock '\(l)' is listed twice", element: j) }
            }
        }

        // Users: groups exist; tags and PINs identify exactly one user site-wide.
        var tagOwner: [TagUID: Int] = [:], pinOwner: [String: Int] = [:]
        for (i, u) in c.users.enumerated() {
            var seenGroups = Set<String>()
            for (j, g) in u.groups.enumerated() {
                if groups[g] == nil { report(.users, i, "groups", "no access group with id '\(g)'", element: j) }
                if !seenGroups.insert(g).inserted { report(.users, i, "groups", "group '\(g)' is listed twice", element: j) }
            }
            for (j, t) in u.tags.enumerated() {
                if let other = tagOwner[t] {
                    let owner = other == i ? "this user" : "user '\(c.users[other].id)'"
                    report(.users, i, "tags", "tag \(t) is already assigned to \(owner)", element: j)
                } else {
                    tagOwner[t] = i
                }
            }
            if let pin = u.pin {
                if let other = pinOwner[pin] {
                    // The PIN itself is never echoed.
                    report(.users, i, "pin", "this PIN is already used by user '\(c.users[other].id)'; PINs identify a user and must be unique")
                } else {
                    pinOwner[pin] = i
                }
            }
        }
        // Offline lists: a lock keeps at most `offline_capacity` users (every PIN holder, every user whose
        // fobs have offline access) — the same rule the directory applies to changes at run time.
        if diagnostics.isEmpty,
           let o = SiteDirectory.offlineOverflow(users: c.users, groups: c.accessGroups, memberships: [],
                                                 capacity: Dictionary(c.locks.map { ($0.id, $0.offlineCapacity) }, uniquingKeysWith: { a, _ in a })),
           let li = c.locks.firstIndex(where: { $0.id == o.lockID }) {
            report(.locks, li, "offline_capacity", "\(o.users) users have a PIN or offline access at this lock; its offline list holds at most \(o.capacity)")
        }
        if diagnostics.isEmpty {
            c.reindex()
            fixedConfig = c
        }
    }
}

extension SiteConfig {
    /// Validates a configuration built in code with the same rules as the file loader (references,
    /// duplicates, limits). Problems are reported against the pseudo-file `<config>` without positions.
    public static func validated(organisation: String, siteID: String, name: String, timeZone: SiteTimeZone,
                                 locks: [LockConfig], doorControllers: [DoorControllerConfig] = [],
                                 iqs: [IQConfig] = [], accessGroups: [AccessGroupConfig] = [],
                                 users: [UserConfig] = []) throws -> SiteConfig {
        let config = SiteConfig(organisation: organisation, siteID: siteID, name: name, timeZone: timeZone,
                                locks: locks, doorControllers: doorControllers, iqs: iqs,
                                accessGroups: accessGroups, users: users)
        let validator = SiteValidator(file: "<config>", locate: { _, _, _, _ in nil })
        validator.checkSyntaxOfCodeBuiltConfig(config)
        validator.validate(config, batteryExplicit: nil)
        if validator.diagnostics.isEmpty, let fixed = validator.fixedConfig { return fixed }
        throw SiteFileError(validator.finished())
    }
}
